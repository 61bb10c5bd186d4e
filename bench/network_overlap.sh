#!/usr/bin/env bash
# How much of the gradient allreduce does --overlap hide on a slow network?
# Runs `cllm bench` across an emulated cluster network (tests/netns/cluster.sh:
# one network namespace per rank, veths shaped to RATE and DELAY one way),
# with --overlap off and on for each setting, and once over shared memory
# with --overlap on, and prints one table.
#
#   bench/network_overlap.sh [-p PRESET] [-n RANKS] [-t THREADS] [-s STEPS] [-w WARMUP] [RATE:DELAY...]
#   bench/network_overlap.sh                               # medium, 2 x 1, 1gbit:1ms and 600mbit:1ms
#   bench/network_overlap.sh -p small 10gbit:100us 1gbit:1ms 100mbit:5ms
#
# Defaults: preset medium, 2 ranks, 1 thread per rank, 5 timed steps after
# 1 warm-up step (each cell is one short run: expect several per cent of
# noise on a 2-core machine), settings 1gbit:1ms and 600mbit:1ms (the medium
# preset's allreduce is a third of its step, then about as long as its
# backward, on the 2-core Zen 5 of docs/performance.md's figures; on the
# Zen 3, whose step is twice as long, 400mbit:1ms and 300mbit:1ms). A setting
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
preset=medium ranks=2 threads=1 steps=5 warmup=1
while getopts "p:n:t:s:w:h" opt; do
  case $opt in
    p) preset=$OPTARG ;;
    n) ranks=$OPTARG ;;
    t) threads=$OPTARG ;;
    s) steps=$OPTARG ;;
    w) warmup=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(( $# > 0 )) || set -- 1gbit:1ms 600mbit:1ms
for v in ranks threads steps; do
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

rows=()  # "label|overlap|json file|paired off json (on rows only)"
run shm on
rows+=("shared memory|on|$work/shm.json|")
i=0
for s in "$@"; do
  rate=${s%%:*} delay=${s#*:}
  run "net$i-off" off "$rate" "$delay"
  run "net$i-on" on "$rate" "$delay"
  rows+=("$s|off|$work/net$i-off.json|")
  rows+=("$s|on|$work/net$i-on.json|$work/net$i-off.json")
  i=$((i + 1))
done

echo "$me: preset $preset, $ranks ranks x $threads thread(s), $steps steps (+$warmup warm-up) per run; $(basename "$cllm") bench${bench_args[*]:+ ${bench_args[*]}}"
/usr/bin/python3 - "$has_overlap" "${rows[@]}" <<'EOF'
import json, sys

has_overlap = sys.argv[1] == "1"
stand_in = False

def load(path):
    with open(path) as f:
        return json.loads(f.read())

def exposed(d):
    """comm_exposed_ms, or the allreduce share of the step where the binary has none."""
    global stand_in
    if isinstance(d.get("comm_exposed_ms"), (int, float)):
        return float(d["comm_exposed_ms"])
    share = (d.get("time_split") or {}).get("allreduce")
    if isinstance(share, (int, float)) and isinstance(d.get("ms_per_step"), (int, float)):
        stand_in = True
        return share * d["ms_per_step"]
    return None

fmt = "{:<22} {:>7} {:>10} {:>15} {:>12} {:>7} {:>8}"
print(fmt.format("setting", "overlap", "ms/step", "exposed ms/step", "rank spread", "hidden", "x bound"))

def spread(d):
    lo, hi = d.get("comm_exposed_min_ms"), d.get("comm_exposed_max_ms")
    return f"{lo:.0f}-{hi:.0f}" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else "-"

compute = None  # the shared-memory step less its wait: the first row
for row in sys.argv[2:]:
    label, overlap, path, off_path = row.split("|")
    d = load(path)
    ms = d.get("ms_per_step")
    e = exposed(d)
    hidden = bound = "-"
    if compute is None and isinstance(ms, (int, float)) and e is not None:
        compute = ms - e
    if off_path:
        e_off = exposed(load(off_path))
        hidden = f"{1 - e / e_off:.2f}" if e is not None and e_off else "n/a"
        if isinstance(ms, (int, float)) and compute and e_off is not None:
            bound = f"{ms / max(compute, e_off):.2f}"
    mark = ("" if has_overlap else "~") + ("*" if e is not None and "comm_exposed_ms" not in d else "")
    print(fmt.format(label, overlap + ("" if has_overlap else "~"),
                     f"{ms:.1f}" if isinstance(ms, (int, float)) else "n/a",
                     (f"{e:.1f}" if e is not None else "n/a") + ("*" if "*" in mark else ""),
                     spread(d), hidden, bound))
if stand_in:
    print("* no comm_exposed_ms in this binary's JSON: time_split.allreduce x ms_per_step stands in")
if not has_overlap:
    print("~ this binary has no --overlap option: both rows ran its one behaviour")
EOF
