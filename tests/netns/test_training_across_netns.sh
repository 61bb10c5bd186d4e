#!/usr/bin/env bash
# Training across an emulated network is bitwise training over shared memory.
#
#   tests/netns/test_training_across_netns.sh CLLM_BINARY
#
# Trains the same short run (small preset, 6 steps, 2 ranks x 1 thread) twice:
# as plain `mpirun -np 2` on this machine (shared memory between the ranks),
# and through tests/netns/cluster.sh, each rank in a network namespace of its
# own, talking TCP over veths shaped to 200mbit and 1 ms one way. Then:
#   - every record of metrics.jsonl has the same step, loss, lr, grad_norm and
#     val_loss, compared exactly;
#   - the final checkpoint's /model and /optimizer tensors are bitwise equal
#     (h5py, Debian's /usr/bin/python3), and both runs print the same
#     parameter checksum;
#   - the gradients really crossed the emulated network: each rank sent at
#     least half the gradient per step over its veth (what any allreduce of
#     2 ranks must send), and the steps took at least that traffic's time at
#     200mbit, so the shaping was in force.
#
# Why bitwise, not "close": cllm sums gradients with MPI_Iallreduce(MPI_SUM).
# With 2 ranks each element of the sum is a single addition, a + b or b + a,
# and IEEE addition is commutative, so every allreduce algorithm gives the
# same bits. Open MPI also picks the algorithm the same way in both runs:
# coll/libnbc (nonblocking; coll/tuned for blocking calls) chooses by
# communicator size, message size and the operation, never by the transport
# underneath (vader in one run, tcp in the other). Everything else a rank
# computes is its own and deterministic.
#
# Exit 0: equal; 1: they differ or a run failed; 77: skipped (no network
# namespaces: not root; or no h5py). CLLM_NETNS_TEST_ARGS adds cllm options
# to the networked run only (e.g. "--seed 7", to see the comparison fail).
# The work folder is removed on exit; CLLM_NETNS_TEST_KEEP=1 keeps it.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/test_start.sh" netns-test "$@"
if ! /usr/bin/python3 -c 'import h5py, numpy' 2>/dev/null; then
  log "skipped: /usr/bin/python3 cannot import h5py and numpy (scripts/setup.sh test)"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cllm-netns-test.XXXXXX")
cleanup() {
  if [[ ${CLLM_NETNS_TEST_KEEP:-0} == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rate=200mbit rate_bits=200000000 delay=1ms steps=6
train=(train --preset small --data "$root/data/austen.txt" --steps "$steps" --threads 1
       --global-batch 8 --micro-batch 4 --warmup 2 --log-every 1 --eval-every 0
       --eval-batches 2 --sample-tokens 0 --checkpoint-every 0 --resume none)
# shellcheck disable=SC2206
extra=(${CLLM_NETNS_TEST_ARGS:-})

# The networked run first: where namespaces cannot be made, skip at once.
start=$SECONDS
status=0
"$here/cluster.sh" -n 2 --rate "$rate" --delay "$delay" -- \
  "$cllm" "${train[@]}" --out "$work/netns" "${extra[@]}" >"$work/netns.log" 2>&1 || status=$?
if (( status == 77 )); then
  log "skipped: $(grep -m1 'cluster.sh' "$work/netns.log")"
  exit 77
fi
if (( status != 0 )); then
  cat "$work/netns.log"
  fail "the run across the emulated network exited $status"
fi
log "across network namespaces ($rate, $delay): $((SECONDS - start)) s"

start=$SECONDS
mpi=(mpirun -np 2 --oversubscribe --bind-to none)
(( EUID == 0 )) && mpi+=(--allow-run-as-root)
"${mpi[@]}" "$cllm" "${train[@]}" --out "$work/shm" >"$work/shm.log" 2>&1 \
  || { cat "$work/shm.log"; fail "the run over shared memory exited with an error"; }
log "over shared memory: $((SECONDS - start)) s"

grep -h '^cluster.sh' "$work/netns.log" | sed 's/^/netns-test: /'

/usr/bin/python3 - "$work" "$steps" "$rate_bits" <<'EOF'
import glob, json, re, sys
import h5py, numpy as np

work, steps, rate_bits = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
failures = []

def records(run):
    with open(f"{work}/{run}/metrics.jsonl") as f:
        return [json.loads(line) for line in f]

# The figures that must agree; timings (ms_per_step, comm_wait_s, ...) need not.
keys = ("step", "loss", "lr", "grad_norm", "val_loss")
shm, net = records("shm"), records("netns")
if len(shm) != steps or len(net) != steps:
    failures.append(f"metrics.jsonl has {len(shm)} (shared memory) and {len(net)} (netns) records, expected {steps}")
for a, b in zip(shm, net):
    for k in keys:
        if a.get(k) != b.get(k):
            failures.append(f"step {a.get('step')}: {k} {a.get(k)!r} (shared memory) vs {b.get(k)!r} (netns)")

def checkpoint(run):
    files = sorted(glob.glob(f"{work}/{run}/checkpoint-*.h5"))
    if len(files) != 1:
        failures.append(f"{run}: expected one checkpoint, found {files}")
        return None
    return files[0]

tensors = nbytes = 0
differing = []  # tensors that differ: listed after the rest, the first few only
a, b = checkpoint("shm"), checkpoint("netns")
if a and b:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = []
        fa.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and
                      n.split("/")[0] in ("model", "optimizer") else None)
        if not any(n.startswith("model/") for n in names):
            failures.append(f"{a} has no /model tensors")
        for n in names:
            if n not in fb:
                failures.append(f"/{n} missing from the netns run's checkpoint")
                continue
            x, y = fa[n][()], fb[n][()]
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                diff = int(np.count_nonzero(x.view(np.uint8) != y.view(np.uint8))) if x.shape == y.shape else -1
                differing.append(f"/{n} differs ({diff} of {x.nbytes} bytes)")
            tensors += 1
            nbytes += x.nbytes
        failures += differing[:5]
        if len(differing) > 5:
            failures.append(f"... and {len(differing) - 5} more of the {len(names)} tensors differ")
        if fa.attrs.get("step") != fb.attrs.get("step"):
            failures.append(f"checkpoint step {fa.attrs.get('step')} vs {fb.attrs.get('step')}")

def grep(run, pattern):
    with open(f"{work}/{run}.log") as f:
        return re.findall(pattern, f.read())

sums = grep("shm", r"parameter checksum (\w+)"), grep("netns", r"parameter checksum (\w+)")
if len(sums[0]) != 1 or sums[0] != sums[1]:
    failures.append(f"parameter checksums {sums[0]} (shared memory) vs {sums[1]} (netns)")

# The traffic over the veths (cluster.sh's lines) and the time it needs.
params = int(grep("netns", r"(\d+) parameters")[0])
least = steps * params * 4 // 2  # bytes: each rank sends at least half of each step's gradient
sent = [int(s) for s in grep("netns", r"rank \d+ \(\S+\) sent (\d+) bytes")]
if len(sent) != 2 or min(sent) < least:
    failures.append(f"bytes sent per rank over the veths {sent}, expected at least {least}")
wire_s = least * 8 / rate_bits
step_s = sum(r.get("ms_per_step", 0) for r in net) / 1e3
if step_s < wire_s:
    failures.append(f"the networked steps took {step_s:.2f} s, less than the {wire_s:.2f} s "
                    f"their traffic needs at {rate_bits / 1e6:g} Mbit/s: the rate limit was not in force")

if failures:
    for f in failures:
        print(f"netns-test: FAIL: {f}")
    sys.exit(1)
print(f"netns-test: PASS: {len(net)} steps' losses equal; {tensors} tensors ({nbytes} bytes) of "
      f"/model and /optimizer bitwise equal; checksum {sums[0][0]}; each rank sent >= {least} bytes "
      f"over its veth ({sent}); steps took {step_s:.2f} s >= {wire_s:.2f} s of wire time")
EOF
