#!/usr/bin/env bash
# The whole test suite: install packages, build the release, asan and tsan
# presets, and run each preset's ctest suite.
#
#   scripts/test.sh
#
# Every preset is built and tested even if an earlier one fails; a one-line
# summary per preset is printed at the end and the exit status is non-zero if
# any build or test run failed. CLLM_JOBS sets the build parallelism.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

presets=(release asan tsan)

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
  echo "test.sh: ctest --preset $p"
  start=$SECONDS
  if ctest --preset "$p"; then
    result[$p]="PASS: ${result[$p]}, tests passed in $((SECONDS - start)) s"
  else
    result[$p]="FAIL: ${result[$p]}, tests failed after $((SECONDS - start)) s"
    status=1
  fi
done

echo
echo "test.sh: summary"
for p in "${presets[@]}"; do
  printf '  %-8s %s\n' "$p" "${result[$p]}"
done
exit "$status"
