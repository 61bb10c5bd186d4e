#!/usr/bin/env bash
# Local launcher: run cllm as RANKS MPI ranks of THREADS OpenMP threads each
# on this machine.
#
#   jobs/local.sh [-n RANKS] [-t THREADS] [--] SUBCOMMAND [cllm options...]
#   jobs/local.sh -n 2 -t 1 train --preset small --data data/austen.txt --out runs/demo
#
# Defaults: 2 ranks, and the cores split evenly between them. When ranks x
# threads fit the cores, each rank gets its own THREADS cores (mpirun
# --map-by slot:PE=THREADS --bind-to core) and its threads are pinned inside
# them; otherwise ranks are not bound (--oversubscribe --bind-to none) and
# idle threads sleep instead of spinning (OMP_WAIT_POLICY=passive).
# CLLM_BINARY overrides the executable; MPIRUN_ARGS adds mpirun options
# (e.g. MPIRUN_ARGS=--report-bindings).
set -euo pipefail

# GNU nproc answers OMP_NUM_THREADS when it is set: ask for the cores.
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
ranks=2
threads=
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
while getopts "n:t:h" opt; do
  case $opt in
    n) ranks=$OPTARG ;;
    t) threads=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
if ! [[ "$ranks" =~ ^[1-9][0-9]*$ ]]; then echo "jobs/local.sh: -n must be a positive integer" >&2; exit 2; fi
threads=${threads:-$(( cores / ranks > 0 ? cores / ranks : 1 ))}
if ! [[ "$threads" =~ ^[1-9][0-9]*$ ]]; then echo "jobs/local.sh: -t must be a positive integer" >&2; exit 2; fi
if (( $# == 0 )); then usage >&2; exit 2; fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cllm=${CLLM_BINARY:-$root/build/release/cllm}
if [[ ! -x "$cllm" ]]; then echo "jobs/local.sh: $cllm not built (scripts/build.sh release)" >&2; exit 1; fi

args=(-np "$ranks" -x "OMP_NUM_THREADS=$threads")
if (( ranks * threads <= cores )); then
  args+=(--map-by "slot:PE=$threads" --bind-to core -x OMP_PROC_BIND=close -x OMP_PLACES=cores)
else
  echo "jobs/local.sh: $ranks ranks x $threads threads > $cores cores: oversubscribing, unbound" >&2
  # No pinning either: inherited OMP_PROC_BIND would stack every rank's
  # threads on the first cores.
  args+=(--oversubscribe --bind-to none -x OMP_WAIT_POLICY=passive -x OMP_PROC_BIND=false)
fi
(( EUID == 0 )) && args+=(--allow-run-as-root)
# shellcheck disable=SC2206
extra=(${MPIRUN_ARGS:-})
exec mpirun "${args[@]}" "${extra[@]}" "$cllm" "$@"
