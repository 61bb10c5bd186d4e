#!/usr/bin/env bash
# The whole test suite: install packages, build the release, asan, tsan and
# fuzz presets, run the first three's ctest suites, and run each fuzz target
# for CLLM_FUZZ_SECONDS (default 30) on its seed corpus, then over the inputs
# that once crashed it (tests/fuzz/run_fuzzers.sh).
#
#   scripts/test.sh
#
# Every preset is built and tested even if an earlier one fails; a one-line
# summary per preset is printed at the end and the exit status is non-zero if
# any build or test run failed. CLLM_JOBS sets the build parallelism.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

presets=(release asan tsan fuzz)
fuzz_seconds="${CLLM_FUZZ_SECONDS:-30}"

# Open MPI refuses to run as root without both of these; tests may start more
# ranks than there are cores.
if (( EUID == 0 )); then
  export OMPI_ALLOW_RUN_AS_ROOT=1
  export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1

scripts/setup.sh test

declare -A result
for p in "${presets[@]}"; do
  start=$SECONDS
  if scripts/build.sh "$p"; then
    result[$p]="built in $((SECONDS - start)) s"
  else
    result[$p]="FAIL: build failed after $((SECONDS - start)) s"
  fi
done

status=0
for p in "${presets[@]}"; do
  if [[ "${result[$p]}" == FAIL* ]]; then
    status=1
    continue
  fi
  start=$SECONDS
  if [[ "$p" == fuzz ]]; then
    test_cmd=(tests/fuzz/run_fuzzers.sh "$fuzz_seconds")
    what="fuzz targets ($fuzz_seconds s each)"
  else
    test_cmd=(ctest --preset "$p")
    what=tests
  fi
  echo "test.sh: ${test_cmd[*]}"
  if "${test_cmd[@]}"; then
    result[$p]="PASS: ${result[$p]}, $what passed in $((SECONDS - start)) s"
  else
    result[$p]="FAIL: ${result[$p]}, $what failed after $((SECONDS - start)) s"
    status=1
  fi
done

echo
echo "test.sh: summary"
for p in "${presets[@]}"; do
  printf '  %-8s %s\n' "$p" "${result[$p]}"
done
exit "$status"
