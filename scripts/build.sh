#!/usr/bin/env bash
# Configure and build CMake presets into build/<preset>.
#
#   scripts/build.sh [PRESET...]      (default: release; presets: release debug asan tsan fuzz)
#
# CLLM_JOBS sets the number of parallel build jobs (default: nproc).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

(( $# > 0 )) || set -- release
jobs="${CLLM_JOBS:-$(nproc)}"

for preset in "$@"; do
  echo "build.sh: configuring and building preset '$preset' in build/$preset (-j $jobs)"
  cmake --preset "$preset"
  cmake --build --preset "$preset" -j "$jobs"
done
