#!/usr/bin/env bash
# Install the Debian 12 packages CLLM needs. The one place that lists them.
#
#   scripts/setup.sh [build|test|bench|all]     (default: build)
#
#   build  compilers, CMake, Open MPI, parallel HDF5 (Open MPI flavour) and
#          hdf5-tools, CLI11, oneDNN (the matrix engine; its CMake package
#          needs the OpenCL headers, ocl-icd-opencl-dev) and OpenBLAS (OpenMP
#          build), GoogleTest/GoogleMock,
#          Google Benchmark, PCRE2 and nlohmann-json (GPT-2 tokenizer),
#          OpenSSL's libcrypto (SHA-256 of dataset sources)
#   test   build + clang-14 with LLVM's OpenMP runtime and sanitizer runtimes
#          (the asan and tsan presets; libclang-rt-14-dev also has libFuzzer, for the
#          fuzz preset), Python 3 with NumPy, PyTorch and h5py (reference
#          checks; tests/fuzz/triage.py) and matplotlib (scripts/plot.py), Slurm and munge (tests/slurm: batch
#          jobs on a real Slurm), iproute2 and iptables (tests/netns: an
#          emulated cluster network of network namespaces)
#   bench  test + hyperfine (if the archive has it)
#   all    same as bench
#
# Runs as root, or through sudo when not root. Only packages that are not yet
# installed are installed, so a second run takes well under a second.
set -euo pipefail

mode="${1:-build}"
case "$mode" in
  -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  build|test|bench|all) ;;
  *) echo "setup.sh: unknown mode '$mode' (expected build, test, bench or all)" >&2; exit 2 ;;
esac

build_pkgs=(build-essential cmake pkg-config
            openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools zlib1g-dev libdeflate-dev
            libcli11-dev libdnnl-dev ocl-icd-opencl-dev libopenblas-openmp-dev libssl-dev
            libgtest-dev libgmock-dev libbenchmark-dev
            libpcre2-dev nlohmann-json3-dev)
test_pkgs=(clang-14 libomp-14-dev libclang-rt-14-dev
           python3 python3-numpy python3-torch python3-h5py python3-matplotlib
           slurmctld slurmd slurm-client munge
           iproute2 iptables)
optional_bench_pkgs=(hyperfine)

required=("${build_pkgs[@]}")
optional=()
case "$mode" in
  test) required+=("${test_pkgs[@]}") ;;
  bench|all) required+=("${test_pkgs[@]}"); optional+=("${optional_bench_pkgs[@]}") ;;
esac

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

missing=()
for p in "${required[@]}"; do is_installed "$p" || missing+=("$p"); done
missing_optional=()
for p in "${optional[@]}"; do is_installed "$p" || missing_optional+=("$p"); done

total=$(( ${#required[@]} + ${#optional[@]} ))
if (( ${#missing[@]} == 0 && ${#missing_optional[@]} == 0 )); then
  echo "setup.sh: all $total packages for '$mode' are installed; nothing is missing"
  exit 0
fi

as_root=()
if (( EUID != 0 )); then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    if (( ${#missing[@]} == 0 )); then
      echo "setup.sh: all required packages for '$mode' are installed; optional ${missing_optional[*]} skipped (not root, no sudo)"
      exit 0
    fi
    echo "setup.sh: missing packages: ${missing[*]}; run as root (or install sudo)" >&2
    exit 1
  fi
fi
apt_env=(env DEBIAN_FRONTEND=noninteractive)
apt_opts=(-o DPkg::Lock::Timeout=600)

"${as_root[@]}" "${apt_env[@]}" apt-get "${apt_opts[@]}" update -q

# Optional packages are installed only if the archive has an installable version.
skipped=()
for p in "${missing_optional[@]}"; do
  cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [[ -n "$cand" && "$cand" != "(none)" ]]; then
    missing+=("$p")
  else
    skipped+=("$p")
  fi
done

if (( ${#missing[@]} == 0 )); then
  echo "setup.sh: nothing to install for '$mode' (not in the archive, skipped: ${skipped[*]})"
  exit 0
fi

echo "setup.sh: installing ${#missing[@]} missing package(s) for '$mode': ${missing[*]}${skipped[*]:+ (not in the archive, skipped: ${skipped[*]})}"
"${as_root[@]}" "${apt_env[@]}" apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}"
