#!/usr/bin/env bash
# The Slurm batch scripts (jobs/train.sbatch, sweep.sbatch, prepare.sbatch) on a real
# Slurm: a private one-node cluster on this machine (munged, slurmctld,
# slurmd), started here and stopped again whatever happens.
#
#   bash tests/slurm/run_slurm_tests.sh CLLM_BINARY REPO_ROOT
#
# Installs slurmctld, slurmd, slurm-client and munge if missing (root only;
# not root: exit 77, skipped). Cases, one PASS/FAIL line each:
#   a-srun      2 tasks x 1 cpu, srun --mpi=pmix: COMPLETED 0:0, final
#               checkpoint, "final validation loss", each rank on its own core
#   a-mpirun    the same with CLLM_LAUNCHER=mpirun; bitwise the a-srun result
#   b-preempt   SIGUSR1 to the batch shell mid-run: checkpoint, exit 4,
#               requeue, "resuming from", COMPLETED with Restarts >= 1, and
#               /model and /optimizer bitwise those of an uninterrupted run
#   c-bad-data  a missing --data file: FAILED 1:0, "cllm: error: <file>",
#               Restarts 0
#   d-limit     CLLM_MAX_REQUEUES=0 and a signal: FAILED 4:0, not requeued
#   e-sweep     jobs/sweep.sbatch as a 2-task array: one folder per rate,
#               each checkpoint records its rate
#   f-stall     rank 1 stopped (SIGSTOP) in a run with --stall-abort 2:
#               rank 0 names it, every rank exits 5, srun ends the step,
#               FAILED 5:0, not requeued
#   g-prepare   jobs/prepare.sbatch on 2 tasks x 1 cpu (GPT-2 BPE, a folder
#               of 3 files): COMPLETED 0:0, the token arrays of a 1-process
#               prepare (h5diff); without --out: FAILED 2:0
# Exits 1 if any case fails. CLLM_SLURM_TEST_CASES="b-preempt ..." runs only
# those cases; CLLM_SLURM_TEST_KEEP=1 keeps the work folder;
# CLLM_SLURM_TEST_REF_ARGS adds options to b-preempt's uninterrupted reference
# run (e.g. "--seed 7" to see the bitwise comparison fail).
# Functions below run through run_case:
# shellcheck disable=SC2317
set -uo pipefail

if (( $# != 2 )); then
  echo "usage: $0 CLLM_BINARY REPO_ROOT" >&2
  exit 2
fi
cllm=$(realpath "$1")
root=$(realpath "$2")
log() { echo "slurm-test: $*"; }
[[ -x $cllm ]] || { log "FAIL: $cllm is not an executable"; exit 1; }
[[ -f $root/jobs/train.sbatch ]] || { log "FAIL: $root/jobs/train.sbatch not found"; exit 1; }
if (( EUID != 0 )); then
  log "skipped: slurmd and munged need root"
  exit 77
fi

# An outer Slurm job's variables would leak into the submitted jobs.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(SLURM|SBATCH|SRUN|SALLOC)_' || true)
unset CLLM_LAUNCHER CLLM_OUT CLLM_DATA CLLM_MAX_REQUEUES CLLM_REQUEUE_DELAY CLLM_LRS CLLM_ROOT SRUN_ARGS MPIRUN_ARGS

t_start=$SECONDS
# Every wait is capped so that the cases end by this time and cleanup still
# fits in ctest's 900 s.
deadline=$(( t_start + ${CLLM_SLURM_TEST_BUDGET:-720} ))
# cap N: N seconds, or the time left before the deadline if less (at least 1)
cap() { local left=$(( deadline - SECONDS )); (( left < 1 )) && left=1; echo $(( $1 < left ? $1 : left )); }

# --- packages ---------------------------------------------------------------
missing=()
for p in slurmctld slurmd slurm-client munge; do
  [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$p")
done
if (( ${#missing[@]} )); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null &&
         apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }; then
    log "FAIL: could not install ${missing[*]}"
    exit 1
  fi
fi

# --- a private cluster ------------------------------------------------------
work=$(mktemp -d /tmp/cllm-slurm-test.XXXXXX)
chmod 755 "$work"
started_munged=
case_pid=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -n $case_pid ]] && kill -TERM "$case_pid" 2>/dev/null
  if [[ -f $work/slurmctld.pid ]]; then
    scancel --quiet --user=root 2>/dev/null
    local i
    for (( i = 0; i < 30; i++ )); do
      [[ -z "$(squeue -h 2>/dev/null)" ]] && break
      sleep 1
    done
    (( i < 30 )) || log "warning: jobs still listed after 30 s: $(squeue -h 2>&1 | tr '\n' ';')"
  fi
  stop_daemon slurmd "$work/slurmd.pid"
  stop_daemon slurmctld "$work/slurmctld.pid"
  [[ -n $started_munged ]] && stop_daemon munged "$started_munged"
  if (( rc != 0 )) || [[ -n ${CLLM_SLURM_TEST_KEEP:-} ]]; then
    log "work folder kept: $work"
  else
    rm -rf "$work"
  fi
  log "total $((SECONDS - t_start)) s"
  exit "$rc"
}
# stop_daemon NAME PIDFILE: TERM the pid in PIDFILE, KILL after 15 s.
stop_daemon() {
  local pid i
  [[ -f $2 ]] || return 0
  pid=$(<"$2")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for (( i = 0; i < 150; i++ )); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "warning: $1 ($pid) ignored SIGTERM: SIGKILL"
  kill -KILL "$pid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
if [[ -f /run/munge/munged.pid ]] && kill -0 "$(< /run/munge/munged.pid)" 2>/dev/null; then
  log "munged already running: using it"
else
  runuser -u munge -- /usr/sbin/munged || { log "FAIL: munged did not start"; exit 1; }
  started_munged=/run/munge/munged.pid
fi

# Two free TCP ports, so that another Slurm on this machine is left alone.
used=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _ local _; do
         [[ $local == *:* ]] && printf '%d\n' "0x${local##*:}"
       done | sort -u)
for (( i = 0; i < 100; i++ )); do
  port=$(( 20000 + (RANDOM % 2000) * 2 ))
  grep -qxE "$port|$((port + 1))" <<< "$used" || break
done
host=$(hostname -s)
node=$(slurmd -C | head -n 1 | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^RealMemory=/) { split($i, a, "="); $i = "RealMemory=" int(a[2] * 0.9) } print }')
mkdir -p "$work/state" "$work/spool" "$work/jobs"
export SLURM_CONF=$work/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=cllmtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=pmix
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerParameters=sched_interval=2,bf_interval=1
KillWait=10
MinJobAge=3600
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
$node NodeAddr=127.0.0.1
PartitionName=cllm Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -c || { log "FAIL: slurmctld did not start (see $work/slurmctld.log)"; exit 1; }
slurmd || { log "FAIL: slurmd did not start (see $work/slurmd.log)"; exit 1; }
for (( i = 0; i < 30; i++ )); do
  [[ "$(sinfo -h -o %T 2>/dev/null)" == idle ]] && break
  sleep 1
done
if (( i == 30 )); then
  log "FAIL: node not idle after 30 s: $(sinfo 2>&1)"
  exit 1
fi
log "cluster up in $((SECONDS - t_start)) s: $node (ports $port, $((port + 1)), config $SLURM_CONF)"

data=$work/austen.h5
"$cllm" prepare "$root/data/austen.txt" --out "$data" >/dev/null || { log "FAIL: cllm prepare"; exit 1; }
export CLLM_DATA=$data CLLM_BINARY=$cllm
tiny=(--layers 2 --heads 2 --embd 32 --seq-len 32 --micro-batch 2 --global-batch 8
      --warmup 10 --eval-every 0 --log-every 10 --sample-tokens 20)
jobs=$work/jobs   # the submit directory: outputs go to $jobs/runs/<job name>

# --- helpers ----------------------------------------------------------------
# submit NAME [sbatch options] SCRIPT [args]: prints the job id (log: $jobs/NAME.out)
submit() {
  local name=$1
  shift
  sbatch --parsable -J "$name" -D "$jobs" -o "$jobs/$name.out" "$@" | cut -d';' -f1
}
# wait_gone ID TIMEOUT: until squeue no longer lists the job (or its tasks)
wait_gone() {
  local i n
  n=$(cap "$2")
  for (( i = 0; i < n; i++ )); do
    [[ -z "$(squeue -h -j "$1" 2>/dev/null)" ]] && return 0
    sleep 1
  done
  echo "job $1 still listed after $n s: $(squeue -h -j "$1" 2>&1)"
  return 1
}
# wait_log FILE REGEX TIMEOUT: until a line of FILE matches (0.2 s polls)
wait_log() {
  local i n
  n=$(cap "$3")
  for (( i = 0; i < n * 5; i++ )); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "no line matching '$2' in $1 after $n s"
  return 1
}
# field ID NAME: NAME=value from scontrol show job
field() { scontrol show job "$1" 2>/dev/null | grep -oE "(^|[ ])$2=[^ ]*" | head -n 1 | cut -d= -f2-; }
# expect WHAT ACTUAL WANTED
expect() {
  [[ "$2" == "$3" ]] && return 0
  echo "$1 is '$2', expected '$3'"
  return 1
}
# same_weights A B: /model and /optimizer bitwise equal
same_weights() {
  local g out
  for g in /model /optimizer; do
    if ! out=$(h5diff -d 0 "$1" "$2" "$g" "$g" 2>&1); then
      echo "h5diff -d 0 $1 $2 $g $g:"
      head -n 8 <<< "$out"
      return 1
    fi
  done
}
# lr_of CHECKPOINT: the root attribute lr
lr_of() { h5dump -a lr "$1" 2>/dev/null | sed -n 's/.*(0): *\([^ ]*\).*/\1/p'; }

failed=0
# run_case NAME FUNCTION: one PASS/FAIL line with the time; on failure the
# case's messages and the end of its job logs
run_case() {
  local t0=$SECONDS out rc=0
  if [[ -n ${CLLM_SLURM_TEST_CASES:-} && " $CLLM_SLURM_TEST_CASES " != *" $1 "* ]]; then
    return 0
  fi
  if (( SECONDS >= deadline )); then
    failed=1
    log "FAIL $1 (not run: the time budget of $(( deadline - t_start )) s is spent)"
    return 0
  fi
  # In the background, so that a signal to this script is handled at once.
  "$2" > "$work/case.log" 2>&1 &
  case_pid=$!
  wait "$case_pid" || rc=$?
  case_pid=
  out=$(< "$work/case.log")
  if (( rc == 0 )); then
    log "PASS $1 ($((SECONDS - t0)) s)"
  else
    failed=1
    log "FAIL $1 ($((SECONDS - t0)) s)"
    printf '%s\n' "$out" | sed 's/^/    /'
    local f
    for f in "$jobs/$1"*.out; do
      [[ -f $f ]] || continue
      echo "    --- $f (last 40 lines)"
      tail -n 40 "$f" | sed 's/^/    /'
    done
  fi
}

# --- cases ------------------------------------------------------------------
steps_a=60
case_a_srun() {
  local id out=$jobs/a-srun.out ok=0
  id=$(SRUN_ARGS=--cpu-bind=verbose,cores submit a-srun -n 2 -c 1 "$root/jobs/train.sbatch" "${tiny[@]}" --steps "$steps_a") || return 1
  wait_gone "$id" 60 || return 1
  expect JobState "$(field "$id" JobState)" COMPLETED || ok=1
  expect ExitCode "$(field "$id" ExitCode)" 0:0 || ok=1
  expect Restarts "$(field "$id" Restarts)" 0 || ok=1
  [[ -f $jobs/runs/a-srun/checkpoint-000000$steps_a.h5 ]] || { echo "no runs/a-srun/checkpoint-000000$steps_a.h5"; ok=1; }
  grep -q 'launching: srun --mpi=pmix --cpu-bind=cores' "$out" || { echo "log: no srun launch line"; ok=1; }
  grep -q '^final validation loss' "$out" || { echo "log: no 'final validation loss'"; ok=1; }
  grep -q '2 rank(s) x 1 thread(s)' "$out" || { echo "log: not 2 ranks x 1 thread"; ok=1; }
  # --cpu-bind=verbose: "cpu-bind=MASK - host, task  0  0 [pid]: mask 0x1 set"
  local masks
  masks=$(grep -oE 'task +[0-9]+ .*mask 0x[0-9a-f]+' "$out" | awk '{print $NF}' | sort -u | wc -l)
  expect "distinct rank cpu masks" "$masks" 2 || ok=1
  return "$ok"
}
case_a_mpirun() {
  local id out=$jobs/a-mpirun.out ok=0
  id=$(CLLM_LAUNCHER=mpirun MPIRUN_ARGS=--report-bindings submit a-mpirun -n 2 -c 1 "$root/jobs/train.sbatch" "${tiny[@]}" --steps "$steps_a") || return 1
  wait_gone "$id" 60 || return 1
  expect JobState "$(field "$id" JobState)" COMPLETED || ok=1
  expect ExitCode "$(field "$id" ExitCode)" 0:0 || ok=1
  local ckpt=$jobs/runs/a-mpirun/checkpoint-000000$steps_a.h5
  [[ -f $ckpt ]] || { echo "no runs/a-mpirun/checkpoint-000000$steps_a.h5"; return 1; }
  grep -q 'launching: mpirun -np 2 --map-by slot:PE=1 --bind-to core' "$out" || { echo "log: no mpirun launch line"; ok=1; }
  grep -q '^final validation loss' "$out" || { echo "log: no 'final validation loss'"; ok=1; }
  local bound
  bound=$(grep -cE 'MCW rank [01] bound to' "$out")
  expect "ranks reported bound" "$bound" 2 || ok=1
  # Same layout, same seed: the srun run's result, bitwise.
  same_weights "$ckpt" "$jobs/runs/a-srun/checkpoint-000000$steps_a.h5" || ok=1
  return "$ok"
}

steps_b=1500
case_b_preempt() {
  local id out=$jobs/b-preempt.out ok=0 args=("${tiny[@]}" --steps "$steps_b" --checkpoint-every 0 --keep 0)
  id=$(submit b-preempt -n 2 -c 1 "$root/jobs/train.sbatch" "${args[@]}") || return 1
  wait_log "$out" '^step +20/' 30 || return 1
  scancel --signal=USR1 --batch "$id" || { echo "scancel --signal=USR1 --batch $id failed"; return 1; }
  wait_gone "$id" 120 || return 1
  expect JobState "$(field "$id" JobState)" COMPLETED || ok=1
  expect ExitCode "$(field "$id" ExitCode)" 0:0 || ok=1
  local restarts stop
  restarts=$(field "$id" Restarts)
  if ! [[ $restarts =~ ^[0-9]+$ ]] || (( restarts < 1 )); then echo "Restarts is '$restarts', expected >= 1"; ok=1; fi
  grep -q 'got SIGUSR1: sending SIGUSR1 to the job step' "$out" || { echo "log: signal not forwarded"; ok=1; }
  stop=$(sed -n 's/^stopped after step \([0-9]*\) of .*(exit code 4)$/\1/p' "$out" | head -n 1)
  if [[ -z $stop ]] || (( stop < 20 || stop >= steps_b )); then echo "log: no 'stopped after step N' mid-run (N='$stop')"; ok=1; fi
  grep -q 'cllm exited 4 (checkpoint written): requeueing' "$out" || { echo "log: no requeue decision"; ok=1; }
  grep -q "^resuming from runs/b-preempt/checkpoint-$(printf '%08d' "${stop:-0}").h5" "$out" ||
    { echo "log: no 'resuming from runs/b-preempt/checkpoint-$(printf '%08d' "${stop:-0}").h5'"; ok=1; }
  grep -q '^final validation loss' "$out" || { echo "log: no 'final validation loss'"; ok=1; }
  local ckpt=$jobs/runs/b-preempt/checkpoint-0000$steps_b.h5
  [[ -f $ckpt ]] || { echo "no final checkpoint $ckpt"; return 1; }
  # The same training uninterrupted, same layout (2 ranks x 1 thread), no Slurm.
  local ref_args
  read -r -a ref_args <<< "${CLLM_SLURM_TEST_REF_ARGS:-}"
  if ! (cd "$work" && CLLM_BINARY=$cllm timeout "$(cap 90)" "$root/jobs/local.sh" -n 2 -t 1 -- train "${args[@]}" \
          --data "$data" --out "$work/ref" "${ref_args[@]}" > "$work/ref.log" 2>&1); then
    echo "uninterrupted reference run failed:"; tail -n 5 "$work/ref.log"; return 1
  fi
  same_weights "$ckpt" "$work/ref/checkpoint-0000$steps_b.h5" || ok=1
  return "$ok"
}

case_c_bad_data() {
  local id out=$jobs/c-bad-data.out ok=0 nofile=$work/no-such-dataset.h5
  id=$(submit c-bad-data -n 2 -c 1 "$root/jobs/train.sbatch" "${tiny[@]}" --steps 10 --data "$nofile") || return 1
  wait_gone "$id" 45 || return 1
  expect JobState "$(field "$id" JobState)" FAILED || ok=1
  expect ExitCode "$(field "$id" ExitCode)" 1:0 || ok=1
  expect Restarts "$(field "$id" Restarts)" 0 || ok=1
  grep -q "^cllm: error: .*$nofile" "$out" || { echo "log: no 'cllm: error: ...$nofile'"; ok=1; }
  grep -q 'cllm exited 1: failed; not requeueing' "$out" || { echo "log: no 'not requeueing' decision"; ok=1; }
  return "$ok"
}

case_d_limit() {
  local id out=$jobs/d-limit.out ok=0
  id=$(CLLM_MAX_REQUEUES=0 submit d-limit -n 2 -c 1 "$root/jobs/train.sbatch" "${tiny[@]}" --steps "$steps_b" --checkpoint-every 0) || return 1
  wait_log "$out" '^step +20/' 30 || return 1
  scancel --signal=USR1 --batch "$id" || return 1
  wait_gone "$id" 60 || return 1
  expect JobState "$(field "$id" JobState)" FAILED || ok=1
  expect ExitCode "$(field "$id" ExitCode)" 4:0 || ok=1
  expect Restarts "$(field "$id" Restarts)" 0 || ok=1
  grep -q 'CLLM_MAX_REQUEUES=0): not requeueing' "$out" || { echo "log: no requeue-limit decision"; ok=1; }
  compgen -G "$jobs/runs/d-limit/checkpoint-*.h5" >/dev/null || { echo "no checkpoint in runs/d-limit"; ok=1; }
  return "$ok"
}

case_e_sweep() {
  local id ok=0 t lr ckpt
  local lrs=(1e-3 2e-3)
  id=$(CLLM_LRS="${lrs[*]}" sbatch --parsable -J e-sweep -D "$jobs" -o "$jobs/e-sweep-%a.out" --array=0-1 -n 2 -c 1 \
         "$root/jobs/sweep.sbatch" "${tiny[@]}" --steps 20) || return 1
  wait_gone "$id" 60 || return 1
  for t in 0 1; do
    lr=${lrs[$t]}
    expect "task $t JobState" "$(field "${id}_$t" JobState)" COMPLETED || ok=1
    expect "task $t ExitCode" "$(field "${id}_$t" ExitCode)" 0:0 || ok=1
    ckpt=$jobs/runs/e-sweep/lr-$lr/checkpoint-00000020.h5
    if [[ -f $ckpt ]]; then
      # the attribute is a double: 0.001, 0.002
      awk -v a="$(lr_of "$ckpt")" -v b="$lr" 'BEGIN { exit !(a != "" && a + 0 == b + 0) }' ||
        { echo "$ckpt: lr attribute '$(lr_of "$ckpt")', expected $lr"; ok=1; }
    else
      echo "no $ckpt"; ok=1
    fi
    grep -q "array task $t of job $id: learning rate $lr" "$jobs/e-sweep-$t.out" || { echo "task $t log: no rate line"; ok=1; }
  done
  return "$ok"
}

case_f_stall() {
  local id out=$jobs/f-stall.out ok=0 pid rank1=
  id=$(submit f-stall -n 2 -c 1 "$root/jobs/train.sbatch" "${tiny[@]}" --steps 100000 --checkpoint-every 0 --stall-abort 2) || return 1
  wait_log "$out" '^step +20/' 30 || return 1
  for pid in $(pgrep -f "$cllm train"); do
    tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx 'SLURM_PROCID=1' && rank1=$pid
  done
  [[ -n $rank1 ]] || { echo "rank 1's process not found"; return 1; }
  kill -STOP "$rank1"
  # Stopped for good: srun, not a SIGCONT, must end it.
  wait_gone "$id" 60 || { kill -CONT "$rank1"; return 1; }
  expect JobState "$(field "$id" JobState)" FAILED || ok=1
  expect ExitCode "$(field "$id" ExitCode)" 5:0 || ok=1
  expect Restarts "$(field "$id" Restarts)" 0 || ok=1
  grep -qE '^cllm: error: rank 0: step [0-9]+: gave up after 2\.[0-9] s waiting in .* for rank 1, which does not answer' "$out" ||
    { echo "log: rank 0 did not name rank 1"; ok=1; }
  grep -q 'cllm exited 5 (the ranks gave up waiting for a stalled rank): failed; not requeueing' "$out" ||
    { echo "log: no 'not requeueing' decision for exit 5"; ok=1; }
  return "$ok"
}

case_g_prepare() {
  local id out=$jobs/g-prepare.out ok=0 corpus=$work/corpus split
  mkdir -p "$corpus"
  head -c 1500000 "$root/data/austen.txt" > "$corpus/1.txt"
  tail -c +1500001 "$root/data/austen.txt" | head -c 1000000 > "$corpus/2.txt"
  tail -c +2500001 "$root/data/austen.txt" > "$corpus/3.txt"
  local opts=(--tokenizer gpt2-bpe --vocab-dir "$root/data/gpt2-bpe")
  "$cllm" prepare "$corpus" "${opts[@]}" --out "$work/one.h5" > /dev/null || { echo "1-process prepare failed"; return 1; }
  id=$(submit g-prepare -n 2 -c 1 "$root/jobs/prepare.sbatch" "$corpus" "${opts[@]}" --out "$jobs/two.h5") || return 1
  wait_gone "$id" 60 || return 1
  expect JobState "$(field "$id" JobState)" COMPLETED || ok=1
  expect ExitCode "$(field "$id" ExitCode)" 0:0 || ok=1
  grep -q "2 ranks x 1 threads" "$out" || { echo "log: not 2 ranks x 1 thread"; ok=1; }
  # One node: the ranks take shares from one counter, and the line is the whole corpus's.
  grep -qE '^prepare: [0-9]+ of 4 MB \(' "$out" || { echo "log: no progress line of the whole corpus"; ok=1; }
  for split in /train/tokens /val/tokens; do
    h5diff "$work/one.h5" "$jobs/two.h5" "$split" "$split" > /dev/null 2>&1 ||
      { echo "$split differs from the 1-process dataset's"; ok=1; }
  done
  id=$(submit g-prepare-no-out -n 2 -c 1 "$root/jobs/prepare.sbatch" "$corpus") || return 1
  wait_gone "$id" 30 || return 1
  expect "no --out: JobState" "$(field "$id" JobState)" FAILED || ok=1
  expect "no --out: ExitCode" "$(field "$id" ExitCode)" 2:0 || ok=1
  grep -q "error: give the dataset to write with --out" "$jobs/g-prepare-no-out.out" || { echo "log: no --out error"; ok=1; }
  return "$ok"
}

run_case a-srun case_a_srun
run_case a-mpirun case_a_mpirun
run_case b-preempt case_b_preempt
run_case c-bad-data case_c_bad_data
run_case d-limit case_d_limit
run_case e-sweep case_e_sweep
run_case f-stall case_f_stall
run_case g-prepare case_g_prepare

if (( failed )); then
  log "FAILED (logs in $work; slurmctld.log, slurmd.log)"
  exit 1
fi
log "all cases passed"
exit 0
