# What every test script here begins with: its one argument, the cllm to
# test (or $CLLM_TEST_BINARY, as in tests/support/process.h, to run a test
# against another build), and log and fail lines under the script's tag.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/test_start.sh" TAG "$@"
#
# Sets cllm, here (this folder) and root (the project's).
if (( $# != 2 )); then
  echo "usage: $0 CLLM_BINARY" >&2
  exit 2
fi
netns_test_tag=$1
cllm=$(realpath "${CLLM_TEST_BINARY:-$2}")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { echo "$netns_test_tag: $*"; }
fail() { log "FAIL: $*"; exit 1; }
[[ -x $cllm ]] || fail "$cllm is not an executable"
