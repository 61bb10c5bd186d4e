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
#
# SIGTERM, SIGINT (Ctrl-C), SIGHUP and SIGUSR1 stop the run cleanly: the
# ranks write a checkpoint at the next step boundary and the script exits 4,
# the ranks' code; the same command continues. A second Ctrl-C ends the
# ranks at once (mpirun's SIGTERM, and SIGKILL a second later) and the
# script dies of SIGINT.
set -euo pipefail

# The stop signals are caught from the start (the traps are below): one
# that arrives before mpirun is started ends the script with exit 4 and
# nothing started.
mpirun_pid=
signals=0 interrupts=0
# shellcheck disable=SC2317  # run by the traps below
stop_ranks() {  # $1: the signal this script got
  signals=$((signals + 1))
  [[ $1 == INT ]] && interrupts=$((interrupts + 1))
  [[ -n $mpirun_pid ]] || return 0  # sent once mpirun's pid is known, below
  if (( interrupts > 1 )); then
    echo "jobs/local.sh: second SIGINT: ending the ranks now (SIGTERM to mpirun, which kills them)" >&2
    kill -TERM "$mpirun_pid" 2>/dev/null || true
  else
    local again=
    [[ $1 == INT ]] && again=" (Ctrl-C again: at once)"
    echo "jobs/local.sh: got SIG$1: the ranks stop after this step with a checkpoint$again" >&2
    usr1_to_mpirun
  fi
}
# mpirun dies of SIGUSR1 (exit 138) until it has installed its handler, in
# its first tens of milliseconds: wait for the handler (SigCgt, bit 9).
usr1_to_mpirun() {
  local i caught
  for ((i = 0; i < 1000; ++i)); do
    caught=$(awk '/^SigCgt:/ { print $2 }' "/proc/$mpirun_pid/status" 2>/dev/null) || break
    [[ -n $caught ]] && (( (16#$caught >> 9) & 1 )) && break
    sleep 0.01
  done
  kill -USR1 "$mpirun_pid" 2>/dev/null || true
}
trap 'stop_ranks TERM' TERM
trap 'stop_ranks INT' INT
trap 'stop_ranks HUP' HUP
trap 'stop_ranks USR1' USR1

# Started with & by a script (a non-interactive shell), this script ignores
# SIGINT, and bash can neither trap nor reset a signal ignored on entry:
# the INT trap above would do nothing. So it runs itself again with SIGINT
# at its default action (coreutils' env, 8.31 or later).
sigint_ignored() {
  local ignored
  ignored=$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$$/status" 2>/dev/null) || return 1
  [[ -n $ignored ]] && (( 16#$ignored & (1 << 1) ))  # bit 1: signal 2, SIGINT
}
if sigint_ignored; then
  if [[ -z ${CLLM_LOCAL_SH_SIGINT_RESET:-} ]] && env --default-signal=INT true 2>/dev/null; then
    CLLM_LOCAL_SH_SIGINT_RESET=1 exec env --default-signal=INT "$BASH" "${BASH_SOURCE[0]}" "$@"
  fi
  echo "jobs/local.sh: SIGINT is ignored (started with & from a script?): stop the run with SIGTERM" >&2
fi
unset CLLM_LOCAL_SH_SIGINT_RESET

# GNU nproc answers OMP_NUM_THREADS when it is set: ask for the cores.
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
ranks=2
threads=
usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }  # the comment block above
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

# mpirun answers SIGTERM and SIGINT by killing the job - SIGTERM to every
# rank, SIGKILL a second later - and returns 1: a step and a checkpoint that
# take longer are lost. SIGUSR1 it passes on to every rank, which makes cllm
# checkpoint at the step boundary and exit 4, and mpirun then returns 4. So
# mpirun runs in a session of its own, where a terminal's Ctrl-C does not
# reach it, and this script turns the stop signals into SIGUSR1 for it and
# exits with mpirun's status.
if (( signals > 0 )); then
  echo "jobs/local.sh: stopped before the ranks started: nothing to save" >&2
  exit 4
fi
setsid mpirun "${args[@]}" "${extra[@]}" "$cllm" "$@" &
mpirun_pid=$!
(( signals == 0 )) || usr1_to_mpirun
# bash runs a trap only between commands: `wait` returns early (status >
# 128) when one runs, so wait again until mpirun itself has ended.
while :; do
  seen=$signals
  status=0
  wait "$mpirun_pid" || status=$?
  (( signals == seen )) && break
done
if (( interrupts > 1 )); then
  # Stopped by Ctrl-C: die of SIGINT, as a shell running this script in a
  # loop or another script expects, so that it stops too.
  trap - INT
  kill -INT $$
fi
exit "$status"
