#!/usr/bin/env bash
# Runs every libFuzzer target of the fuzz preset for SECONDS each (default
# 60), one after another, then each target over the inputs that once crashed
# it (tests/fuzz/regressions/<target>/). Exits non-zero if cllm's code
# crashes, leaks, hangs, runs out of memory or breaks a promise the driver
# checks, naming the target and the input.
#
#   cmake --preset fuzz && cmake --build --preset fuzz
#   tests/fuzz/run_fuzzers.sh [SECONDS] [TARGET...]
#
# The fuzzers start from tests/fuzz/corpus/<target>/, copied to a scratch
# folder (the checked-in corpus never grows), and keep going after a crash
# (libFuzzer's fork mode). Each crashing input is then run alone and its
# report triaged (triage.py): crashes inside Debian's HDF5 1.10.8 on corrupt
# files are listed but not counted, as no change to cllm can fix them - apart,
# those on files without a checksum and those on inputs the driver sealed
# with a fresh checksum (a damaged cllm file is refused before HDF5).
# Crashing inputs are kept in build/fuzz/artifacts/<target>/, with a
# .report.txt beside each; libFuzzer's logs in build/fuzz/logs/.
# CLLM_FUZZ_BUILD names another build folder.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

seconds="${1:-60}"
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
(( ${#targets[@]} > 0 )) || targets=(fuzz_dataset fuzz_checkpoint fuzz_bpe fuzz_config fuzz_safetensors fuzz_corpus fuzz_token_file)
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || (( seconds < 1 )); then
  echo "run_fuzzers.sh: SECONDS must be a positive whole number, not '$seconds'" >&2
  exit 2
fi

build="${CLLM_FUZZ_BUILD:-build/fuzz}"
bin="$build/tests/fuzz"
artifacts="$build/artifacts"
logs="$build/logs"
# Large enough for the seeds (a tiny model's checkpoint is 149 KiB), small
# enough that inputs do not grow without need.
declare -A max_len=([fuzz_dataset]=81920 [fuzz_checkpoint]=163840 [fuzz_bpe]=4096
                    [fuzz_config]=4096 [fuzz_safetensors]=8192 [fuzz_corpus]=8192
                    [fuzz_token_file]=8192)
for t in "${targets[@]}"; do
  if [[ -z "${max_len[$t]:-}" ]]; then
    echo "run_fuzzers.sh: unknown target '$t' (fuzz_dataset fuzz_checkpoint fuzz_bpe fuzz_config fuzz_safetensors fuzz_corpus fuzz_token_file)" >&2
    exit 2
  fi
  if [[ ! -x "$bin/$t" ]]; then
    echo "run_fuzzers.sh: $bin/$t is not built (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
    exit 2
  fi
done

# One thread: the targets run one after another on what may be a 2-core machine.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# A huge malloc (HDF5 sizes some by what the file says) returns NULL, as it
# would outside ASan, and HDF5 reports an error; a huge C++ new still stops
# the fuzzer.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
# HDF5's own leaks on corrupt files (lsan.supp says which).
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp}"
# An allocation over the limit stops the target with its stack (libFuzzer
# leaves the malloc limit off unless it is given), so that the triage can
# tell whose it is; growth of the resident set past it is cllm's.
common=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=30)

scratch="$(mktemp -d "${TMPDIR:-/tmp}/cllm-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$logs"

status=0
failures=()
summary=()
# Runs input alone through target; 0 when it runs clean, else 1 with the
# report in $2.report.txt (kept beside the input).
run_alone() {
  local t="$1" input="$2"
  "$bin/$t" "${common[@]}" "$input" >"$input.report.txt" 2>&1
}

for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "$scratch/artifacts/$t" "$artifacts/$t"
  cp tests/fuzz/corpus/"$t"/* "$scratch/$t"/
  dict=()
  [[ -f "tests/fuzz/${t#fuzz_}.dict" ]] && dict=(-dict="tests/fuzz/${t#fuzz_}.dict")
  log="$logs/$t.log"
  echo "run_fuzzers.sh: $t for $seconds s (log: $log)"
  start=$SECONDS
  "$bin/$t" "${common[@]}" -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
      -max_total_time="$seconds" -max_len="${max_len[$t]}" \
      -artifact_prefix="$scratch/artifacts/$t/" "${dict[@]}" "$scratch/$t" >"$log" 2>&1
  rc=$?
  elapsed=$(( SECONDS - start ))
  # Fork mode's last progress line: "#N: cov: C ft: F corp: K exec/s E ...".
  last="$(grep -E '^#[0-9]+: cov: ' "$log" | tail -1)"
  execs="$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$last")"
  line="$t: ${execs:-?} inputs in $elapsed s ($(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))/s), ${cov:-cov: ?}, corpus $(ls "$scratch/$t" | wc -l) inputs"
  # Fork mode exits with the last job's status, a crash's if the last input
  # crashed: the crashes are judged below, input by input. Only a run that
  # did not reach its end is a failure here.
  if (( rc != 0 )) && ! grep -q '^INFO: fuzzed for [0-9]* seconds' "$log"; then
    status=1
    failures+=("$t: libFuzzer exited with $rc before the end (see $log)")
    tail -n 40 "$log"
  fi
  ours=0 hdf5=0 hdf5_sealed=0 not_alone=0 slow=0
  shopt -s nullglob
  found=("$scratch/artifacts/$t"/*)
  shopt -u nullglob
  for a in "${found[@]}"; do
    kept="$artifacts/$t/$(basename "$a")"
    cp "$a" "$kept"
    if [[ "$(basename "$a")" == slow-unit-* ]]; then
      slow=$(( slow + 1 ))
      echo "run_fuzzers.sh: $t: an input took over 10 s: $kept"
      continue
    fi
    if run_alone "$t" "$kept"; then
      not_alone=$(( not_alone + 1 ))
      echo "run_fuzzers.sh: warning: $t: $kept crashed it while fuzzing but not alone (HDF5's state from earlier inputs?)"
      continue
    fi
    verdict="$(tests/fuzz/triage.py "$kept.report.txt")"
    if [[ "$verdict" == hdf5:* && "$(head -c 14 "$kept")" == "cllm-sha256 v1" ]]; then
      # The driver wrote a fresh checksum into the input (fuzz_common.h): a
      # damaged file never gets this far, only one forged to pass.
      hdf5_sealed=$(( hdf5_sealed + 1 ))
      echo "run_fuzzers.sh: $t: HDF5's bug, not cllm's, on the input with its checksum written afresh: ${verdict#hdf5: } ($kept)"
    elif [[ "$verdict" == hdf5:* ]]; then
      hdf5=$(( hdf5 + 1 ))
      echo "run_fuzzers.sh: $t: HDF5's bug, not cllm's, on a file without a checksum: ${verdict#hdf5: } ($kept)"
    else
      ours=$(( ours + 1 ))
      status=1
      failures+=("$t: ${verdict#cllm: }; input: $kept (report: $kept.report.txt)")
      grep -m1 -A25 -E 'ERROR: |runtime error: |^fuzz: ' "$kept.report.txt"
    fi
  done
  (( ${#found[@]} > 0 )) &&
    line="$line; crashes: $ours cllm's, $hdf5 HDF5's without a checksum, $hdf5_sealed HDF5's with one written afresh, $not_alone not alone; $slow slow input(s)"
  summary+=("$line")
done

# Inputs that once crashed a target: each must now run clean.
for t in "${targets[@]}"; do
  shopt -s nullglob
  inputs=(tests/fuzz/regressions/"$t"/*)
  shopt -u nullglob
  failed=0
  for f in "${inputs[@]}"; do
    log="$logs/$t.regression.$(basename "$f").log"
    if ! "$bin/$t" "${common[@]}" "$f" >"$log" 2>&1; then
      status=1
      failed=$(( failed + 1 ))
      failures+=("$t: regression input $f fails again (log: $log)")
      grep -m1 -A25 -E 'ERROR: |runtime error: |^fuzz: ' "$log"
    fi
  done
  summary+=("$t: ${#inputs[@]} regression input(s), $failed failing")
done

echo
echo "run_fuzzers.sh: summary ($seconds s per target)"
printf '  %s\n' "${summary[@]}"
if (( status != 0 )); then
  echo "run_fuzzers.sh: FAILED:"
  printf '  %s\n' "${failures[@]}"
fi
exit "$status"
