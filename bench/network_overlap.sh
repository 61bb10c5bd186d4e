#!/usr/bin/env bash
# How much of the gradient allreduce does --overlap hide on a slow network?
# Runs `cllm bench` across an emulated cluster network (tests/netns/cluster.sh:
# one network namespace per rank, veths shaped to RATE and DELAY one way),
# with --overlap off and on for each setting, and once over shared memory
# with --overlap on, and prints one table.
#
#   bench/network_overlap.sh [-p PRESET] [-n RANKS] [-t THREADS] [-s STEPS] [-w WARMUP] [-r ROUNDS] [RATE:DELAY...]
#   bench/network_overlap.sh                               # medium, 2 x 1, 1gbit:1ms and 600mbit:1ms
#   bench/network_overlap.sh -r 3 -s 8                     # three rounds: medians, and ranges
#   bench/network_overlap.sh -p small 10gbit:100us 1gbit:1ms 100mbit:5ms
#
# Defaults: preset medium, 2 ranks, 1 thread per rank, 5 timed steps after
# 1 warm-up step, 1 round (each cell is one short run: expect several per
# cent of noise on a 2-core machine; with -r, every run of a round runs
# before the next round starts, so a drift hits all, and each cell is the
# median over the rounds with their range in brackets), settings 1gbit:1ms
# and 600mbit:1ms (the medium preset's allreduce is a third of its step,
# then about as long as its backward, on the 2-core Zen 5 of
# docs/performance.md's figures; on the Zen 3, whose step is twice as long,
# 400mbit:1ms and 300mbit:1ms). A setting
# is RATE:DELAY in tc's units; leave either side empty for none (":1ms").
# Needs root (network namespaces; exit 77 otherwise) and /usr/bin/python3.
#
# Columns: ms/step and exposed communication, the mean milliseconds per step
# that the step waited for the gradient allreduce after its threads were done
# (bench's JSON key comm_exposed_ms, the mean of the ranks); rank spread, the
# least and most of one rank (a rank that ends backward first waits for the
# others too: the spread is their skew); hidden = 1 - exposed(on) / exposed(off)
# for the same setting; x bound = ms/step over the larger of compute alone
# (the shared-memory step less its wait) and communication alone (the
# overlap-off wait, all of the allreduce after backward): 1.00 is perfect
# overlap. Where the binary's JSON has no comm_exposed_ms, the
# allreduce share of the step (time_split.allreduce x ms_per_step) stands in,
# marked *; where it has no --overlap option, both rows run its one
# behaviour, marked ~ (only the plumbing is measured then).
#
# CLLM_BINARY picks the executable (default build/release/cllm);
# CLLM_BENCH_ARGS adds bench options to every run (e.g. "--bucket-mb 1").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
me=network_overlap.sh
usage() { sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; }  # the comment block above
preset=medium ranks=2 threads=1 steps=5 warmup=1 rounds=1
while getopts "p:n:t:s:w:r:h" opt; do
  case $opt in
    p) preset=$OPTARG ;;
    n) ranks=$OPTARG ;;
    t) threads=$OPTARG ;;
    s) steps=$OPTARG ;;
    w) warmup=$OPTARG ;;
    r) rounds=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(( $# > 0 )) || set -- 1gbit:1ms 600mbit:1ms
for v in ranks threads steps rounds; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$me: -${v:0:1} must be a positive integer" >&2; exit 2; }
done
[[ $warmup =~ ^[0-9]+$ ]] || { echo "$me: -w must be a whole number" >&2; exit 2; }
for s in "$@"; do
  [[ $s == *:* ]] || { echo "$me: setting '$s' is not RATE:DELAY (e.g. 1gbit:1ms)" >&2; exit 2; }
done

cllm=${CLLM_BINARY:-$root/build/release/cllm}
[[ -x $cllm ]] || { echo "$me: $cllm not built (scripts/build.sh release)" >&2; exit 1; }
[[ -x /usr/bin/python3 ]] || { echo "$me: needs /usr/bin/python3 (scripts/setup.sh test)" >&2; exit 1; }
# shellcheck disable=SC2206
bench_args=(${CLLM_BENCH_ARGS:-})
# A binary from before --overlap: run it without the option, rows marked.
has_overlap=1
"$cllm" bench --help 2>/dev/null | grep -q -- '--overlap' || has_overlap=0

# Threads per rank, as jobs/local.sh sets them when oversubscribing: the
# ranks are never bound here (cluster.sh cannot bind across namespaces the
# way one mpirun does), so idle threads must sleep, not spin.
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
export OMP_NUM_THREADS=$threads
if (( ranks * threads > cores )); then export OMP_WAIT_POLICY=passive OMP_PROC_BIND=false; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cllm-overlap.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run NAME OVERLAP [RATE DELAY]: one bench; its JSON line in $work/NAME.json.
# Without RATE and DELAY, over shared memory (a plain mpirun).
run() {
  local name=$1 overlap=$2 cmd status=0
  local bench=("$cllm" bench --preset "$preset" --threads "$threads" --steps "$steps"
               --warmup-steps "$warmup" --json "${bench_args[@]}")
  (( has_overlap )) && bench+=(--overlap "$overlap")
  if (( $# > 2 )); then
    cmd=("$root/tests/netns/cluster.sh" -n "$ranks")
    [[ -n $3 ]] && cmd+=(--rate "$3")
    [[ -n $4 ]] && cmd+=(--delay "$4")
    cmd+=(--)
  else
    cmd=(mpirun -np "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS)
    [[ -n ${OMP_WAIT_POLICY:-} ]] && cmd+=(-x OMP_WAIT_POLICY -x OMP_PROC_BIND)
    (( EUID == 0 )) && cmd+=(--allow-run-as-root)
  fi
  echo "$me: $name, overlap $overlap ..." >&2
  "${cmd[@]}" "${bench[@]}" >"$work/$name.out" 2>"$work/$name.err" || status=$?
  if (( status == 77 )); then
    echo "$me: skipped: $(grep -m1 'cluster.sh' "$work/$name.err")" >&2
    exit 77
  fi
  if (( status != 0 )); then
    echo "$me: $name, overlap $overlap failed (exit $status):" >&2
    tail -n 20 "$work/$name.err" >&2
    exit 1
  fi
  grep '^{' "$work/$name.out" | tail -n 1 >"$work/$name.json" || true
  [[ -s $work/$name.json ]] || { echo "$me: $name: no JSON line from cllm bench" >&2; cat "$work/$name.out" >&2; exit 1; }
}

rows=("shared memory|on|shm|")  # "label|overlap|run name|paired off run (on rows only)"
i=0
for s in "$@"; do
  rows+=("$s|off|net$i-off|" "$s|on|net$i-on|net$i-off")
  i=$((i + 1))
done
for (( r = 0; r < rounds; r++ )); do
  run "r$r-shm" on
  i=0
  for s in "$@"; do
    rate=${s%%:*} delay=${s#*:}
    run "r$r-net$i-off" off "$rate" "$delay"
    run "r$r-net$i-on" on "$rate" "$delay"
    i=$((i + 1))
  done
done

echo "$me: preset $preset, $ranks ranks x $threads thread(s), $steps steps (+$warmup warm-up) per run, $rounds round(s); $(basename "$cllm") bench${bench_args[*]:+ ${bench_args[*]}}"
/usr/bin/python3 - "$has_overlap" "$work" "$rounds" "${rows[@]}" <<'EOF'
import json, statistics, sys

has_overlap = sys.argv[1] == "1"
work, rounds = sys.argv[2], int(sys.argv[3])
stand_in = False

def load(r, name):
    with open(f"{work}/r{r}-{name}.json") as f:
        return json.loads(f.read())

def number(v):
    return isinstance(v, (int, float))

def exposed(d):
    """comm_exposed_ms, or the allreduce share of the step where the binary has none."""
    global stand_in
    if number(d.get("comm_exposed_ms")):
        return float(d["comm_exposed_ms"])
    share = (d.get("time_split") or {}).get("allreduce")
    if number(share) and number(d.get("ms_per_step")):
        stand_in = True
        return share * d["ms_per_step"]
    return None

def cell(values, digits):
    """The median over the rounds, and with several rounds their range."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    text = f"{statistics.median(values):.{digits}f}"
    if len(values) > 1:
        text += f" ({min(values):.{digits}f}-{max(values):.{digits}f})"
    return text

def spread(ds):
    """The least and most one rank waited, over every round."""
    lo = [d.get("comm_exposed_min_ms") for d in ds]
    hi = [d.get("comm_exposed_max_ms") for d in ds]
    if not all(number(v) for v in lo + hi):
        return "-"
    return f"{min(lo):.0f}-{max(hi):.0f}"

wide = rounds > 1
fmt = "{:<22} {:>7} " + ("{:>24} {:>22} {:>12} {:>18} {:>18}" if wide else "{:>10} {:>15} {:>12} {:>7} {:>8}")
print(fmt.format("setting", "overlap", "ms/step", "exposed ms/step", "rank spread", "hidden", "x bound"))

# Per round: compute alone is that round's shared-memory step less its wait.
compute = []
for r in range(rounds):
    d = load(r, "shm")
    ms, e = d.get("ms_per_step"), exposed(d)
    compute.append(ms - e if number(ms) and e is not None else None)
for row in sys.argv[4:]:
    label, overlap, name, off_name = row.split("|")
    ds = [load(r, name) for r in range(rounds)]
    ms = [d.get("ms_per_step") if number(d.get("ms_per_step")) else None for d in ds]
    e = [exposed(d) for d in ds]
    hidden, bound = [], []
    if off_name:
        for r in range(rounds):
            e_off = exposed(load(r, off_name))
            hidden.append(1 - e[r] / e_off if e[r] is not None and e_off else None)
            bound.append(ms[r] / max(compute[r], e_off)
                         if ms[r] is not None and compute[r] and e_off is not None else None)
    starred = any(v is not None and "comm_exposed_ms" not in d for v, d in zip(e, ds))
    print(fmt.format(label, overlap + ("" if has_overlap else "~"), cell(ms, 1),
                     cell(e, 1) + ("*" if starred else ""), spread(ds),
                     cell(hidden, 2) if off_name else "-", cell(bound, 2) if off_name else "-"))
if stand_in:
    print("* no comm_exposed_ms in this binary's JSON: time_split.allreduce x ms_per_step stands in")
if not has_overlap:
    print("~ this binary has no --overlap option: both rows ran its one behaviour")
EOF
