# shellcheck shell=bash
# Shared logic of jobs/train.sbatch, jobs/sweep.sbatch and jobs/prepare.sbatch:
# sourced, not run.
#
#   cllm_job_train OUT [cllm train options...]
#
# runs `cllm train --out OUT ...` as one job step over the whole allocation,
# forwards SIGUSR1/SIGTERM sent to the batch shell to the step, and decides
# what the job does with the step's exit code:
#   0        the run is finished: the job ends COMPLETED
#   4        cllm stopped on a signal after writing a checkpoint: the job
#            requeues itself (resuming from that checkpoint), unless the
#            batch shell got SIGTERM (scancel, or Slurm ending the job: it
#            decides) or SLURM_RESTART_COUNT reached CLLM_MAX_REQUEUES
#   other    the job ends FAILED with that code, never requeued (5: the
#            ranks gave up waiting for a stalled one, --stall-abort; the
#            log names it)
#
# Environment:
#   CLLM_BINARY        the cllm executable (default: ROOT/build/release/cllm)
#   CLLM_DATA          dataset used when the options have no --data
#                      (default: ROOT/data/austen.h5, else ROOT/data/austen.txt)
#   CLLM_LAUNCHER      srun (default): srun --mpi=pmix --cpu-bind=cores;
#                      mpirun: Open MPI's mpirun inside the allocation
#                      (--map-by slot:PE=<cpus per task> --bind-to core)
#   CLLM_MAX_REQUEUES  most restarts by requeue (default 20)
#   CLLM_REQUEUE_DELAY seconds between the requeue and the restart (default 5)
#   SRUN_ARGS, MPIRUN_ARGS  extra launcher options (split on spaces)
# ROOT is the repository the submitted script lives in (CLLM_ROOT overrides).

cllm_log() { printf '%s cllm-job %s: %s\n' "$(date '+%F %T')" "${SLURM_JOB_ID:-?}" "$*"; }

# True when the options contain OPT (as "OPT VALUE" or "OPT=VALUE").
cllm_has_option() {
  local opt=$1 a
  shift
  for a in "$@"; do
    [[ "$a" == "$opt" || "$a" == "$opt="* ]] && return 0
  done
  return 1
}

cllm__on_signal() {
  cllm__signals=$((cllm__signals + 1))
  [[ $1 == TERM ]] && cllm__got_term=1
  if [[ -n ${cllm__step_pid:-} ]] && kill -0 "$cllm__step_pid" 2>/dev/null; then
    cllm_log "got SIG$1: sending SIGUSR1 to the job step ($CLLM_LAUNCHER pid $cllm__step_pid), which checkpoints and stops at the next step boundary"
    kill -USR1 "$cllm__step_pid" 2>/dev/null || true
  else
    cllm_log "got SIG$1 with no step running"
  fi
}

# Sets cllm__launch to the job step's launcher (srun or mpirun, one rank
# per task, OMP_NUM_THREADS = cpus per task, each rank on its own cores) and
# exports the OpenMP settings. Returns 2 for an unknown CLLM_LAUNCHER.
cllm_launcher() {
  local cpt=${SLURM_CPUS_PER_TASK:-1}
  local ntasks=${SLURM_NTASKS:-1}
  export OMP_NUM_THREADS=$cpt OMP_PROC_BIND=close OMP_PLACES=cores
  CLLM_LAUNCHER=${CLLM_LAUNCHER:-srun}
  case $CLLM_LAUNCHER in
    srun)
      # Slurm 22.05's srun no longer reads SLURM_CPUS_PER_TASK: pass it.
      # --kill-on-bad-exit: when ranks give up on a stalled one (exit 5,
      # --stall-abort), srun ends the stalled one too instead of waiting for
      # it until the time limit (mpirun does so by itself).
      cllm__launch=(srun --mpi=pmix --cpu-bind=cores --kill-on-bad-exit=1 --ntasks="$ntasks"
                    --cpus-per-task="$cpt")
      # shellcheck disable=SC2206
      cllm__launch+=(${SRUN_ARGS:-}) ;;
    mpirun)
      # A plain scancel (or preemption) sends SIGTERM to mpirun as well as to
      # the ranks; mpirun then SIGKILLs the ranks after
      # odls_base_sigkill_timeout (1 s by default): give them the time a
      # step and a checkpoint take.
      cllm__launch=(mpirun -np "$ntasks" --map-by "slot:PE=$cpt" --bind-to core
                    --mca odls_base_sigkill_timeout "${CLLM_SIGKILL_TIMEOUT:-120}"
                    -x OMP_NUM_THREADS -x OMP_PROC_BIND -x OMP_PLACES)
      # Ranks on other nodes see only what -x forwards (srun forwards all).
      [[ -n ${OPENBLAS_CORETYPE:-} ]] && cllm__launch+=(-x OPENBLAS_CORETYPE)
      (( EUID == 0 )) && cllm__launch+=(--allow-run-as-root)
      # shellcheck disable=SC2206
      cllm__launch+=(${MPIRUN_ARGS:-}) ;;
    *)
      cllm_log "error: CLLM_LAUNCHER=$CLLM_LAUNCHER: expected srun or mpirun" >&2
      return 2 ;;
  esac
}

# Sets cllm__binary to the cllm executable of a job, or says why not
# (returns 1; 2 outside a Slurm job).
cllm_binary() {
  if [[ -z ${SLURM_JOB_ID:-} ]]; then
    echo "cllm-job: not inside a Slurm job: submit with sbatch (jobs/local.sh runs without Slurm)" >&2
    return 2
  fi
  cllm__binary=${CLLM_BINARY:-${CLLM_ROOT:?}/build/release/cllm}
  if [[ ! -x "$cllm__binary" ]]; then
    cllm_log "error: $cllm__binary is not an executable (build it: scripts/build.sh release; or set CLLM_BINARY)" >&2
    return 1
  fi
}

# cllm prepare over the whole allocation (jobs/prepare.sbatch): one job
# step, its exit code the job's. Not requeued: a prepare begins again.
cllm_job_prepare() {
  cllm_binary || return
  if ! cllm_has_option --out "$@"; then
    cllm_log "error: give the dataset to write with --out (on a file system every node sees)" >&2
    return 2
  fi
  cllm_launcher || return
  cllm_log "job ${SLURM_JOB_NAME:-?} on ${SLURM_JOB_NODELIST:-?}: $SLURM_NTASKS ranks x $OMP_NUM_THREADS threads"
  cllm_log "launching: ${cllm__launch[*]} $cllm__binary prepare $*"
  local rc=0
  "${cllm__launch[@]}" "$cllm__binary" prepare "$@" || rc=$?
  cllm_log "cllm prepare exited $rc"
  return "$rc"
}

cllm_job_train() {
  local out=$1
  shift
  cllm_binary || return
  local root=$CLLM_ROOT cllm=$cllm__binary
  local args=(train "$@")
  if ! cllm_has_option --data "$@"; then
    local data=${CLLM_DATA:-}
    if [[ -z $data ]]; then
      data=$root/data/austen.h5
      [[ -e $data ]] || data=$root/data/austen.txt
    fi
    args+=(--data "$data")
  fi
  cllm_has_option --out "$@" || args+=(--out "$out")

  cllm_launcher || return
  local cpt=$OMP_NUM_THREADS ntasks=${SLURM_NTASKS:-1} launch=("${cllm__launch[@]}")

  local restarts=${SLURM_RESTART_COUNT:-0}
  local max=${CLLM_MAX_REQUEUES:-20}
  cllm_log "job ${SLURM_JOB_NAME:-?} on ${SLURM_JOB_NODELIST:-?}: $ntasks ranks x $cpt threads (OMP_NUM_THREADS=$cpt), restart $restarts of at most $max, output folder $out"
  cllm_log "launching: ${launch[*]} $cllm ${args[*]}"

  cllm__signals=0 cllm__got_term=0 cllm__step_pid=
  trap 'cllm__on_signal USR1' USR1
  trap 'cllm__on_signal TERM' TERM
  "${launch[@]}" "$cllm" "${args[@]}" &
  cllm__step_pid=$!
  # A signal that came before the step's pid was known: forward it now (a
  # second SIGUSR1 does no harm).
  (( cllm__signals == 0 )) || kill -USR1 "$cllm__step_pid" 2>/dev/null || true
  # bash runs a trap only between commands: `wait` returns early (status >
  # 128) when one runs, so wait again until the step itself has ended.
  local rc seen
  while :; do
    seen=$cllm__signals
    rc=0
    wait "$cllm__step_pid" || rc=$?
    (( cllm__signals == seen )) && break
  done
  cllm__step_pid=

  case $rc in
    0)
      cllm_log "cllm exited 0: training finished; not requeueing"
      return 0 ;;
    4)
      if (( cllm__got_term )); then
        cllm_log "cllm exited 4 (checkpoint written) after SIGTERM: the job is being cancelled or ended by Slurm; not requeueing (submitting the same job again resumes)"
        return 4
      fi
      if (( restarts >= max )); then
        cllm_log "cllm exited 4 (checkpoint written), but the job has restarted $restarts times (CLLM_MAX_REQUEUES=$max): not requeueing"
        return 4
      fi
      local delay=${CLLM_REQUEUE_DELAY:-5}
      cllm_log "cllm exited 4 (checkpoint written): requeueing job $SLURM_JOB_ID (restart $((restarts + 1)) of at most $max), to start in ${delay} s"
      # The requeue sends SIGTERM to this shell and its children: ignore it,
      # so that the update below runs. The job is PENDING|COMPLETING until
      # this script exits; if its begin time is then in the past, slurmctld
      # delays the restart by the credential lifetime (~2 min), hence a
      # start time a few seconds ahead rather than "now".
      trap '' TERM USR1
      if ! scontrol requeue "$SLURM_JOB_ID"; then
        cllm_log "error: scontrol requeue $SLURM_JOB_ID failed (was the job submitted with --requeue?)"
        return 4
      fi
      scontrol update JobId="$SLURM_JOB_ID" StartTime="now+$delay" ||
        cllm_log "warning: could not set the start time: the restart may take ~2 minutes"
      return 0 ;;
    5)
      cllm_log "cllm exited 5 (the ranks gave up waiting for a stalled rank): failed; not requeueing"
      return 5 ;;
    *)
      cllm_log "cllm exited $rc: failed; not requeueing"
      return "$rc" ;;
  esac
}
