#!/usr/bin/env bash
# The gradient allreduce is bandwidth-optimal across nodes: 4 ranks, each in
# a network namespace of its own (tests/netns/cluster.sh), run `cllm bench
# --overlap off`, and every rank sends 2(p-1)/p = 1.5 gradients per step over
# its veth, within 15% - as Rabenseifner's reduce-scatter + allgather, or a
# ring, would. Open MPI's default for an in-place MPI_Iallreduce (a binomial
# reduce to rank 0, then a broadcast) makes rank 0 send 2 gradients a step
# and rank 3 one: this test fails on it (OMPI_MCA_coll_libnbc_iallreduce_algorithm=2
# in the environment shows that).
#
#   tests/netns/test_allreduce_traffic.sh CLLM_BINARY
#
# Exit 0: balanced; 1: not, or the run failed; 77: skipped (no network
# namespaces: not root).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/test_start.sh" netns-traffic "$@"

out=$(mktemp "${TMPDIR:-/tmp}/cllm-netns-traffic.XXXXXX")
trap 'rm -f "$out"' EXIT
ranks=4 warmup=1 steps=2
status=0
"$here/cluster.sh" -n "$ranks" -- "$cllm" bench --preset small --threads 1 --micro-batch 2 \
  --warmup-steps "$warmup" --steps "$steps" --overlap off --json >"$out" 2>&1 || status=$?
if (( status == 77 )); then
  log "skipped: $(grep -m1 'cluster.sh' "$out")"
  exit 77
fi
if (( status != 0 )); then
  cat "$out"
  log "FAIL: the run across the emulated network exited $status"
  exit 1
fi
grep '^cluster.sh' "$out" | sed 's/^/netns-traffic: /'

/usr/bin/python3 - "$out" "$ranks" "$((warmup + steps))" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
ranks, steps = int(sys.argv[2]), int(sys.argv[3])
result = json.loads(next(l for l in text.splitlines() if l.startswith("{")))
params = result["params"]
# With the overlap off every rank waits for the whole allreduce after
# backward: the least rank's wait is more than nothing, and the mean lies
# between the least and the most.
exposed = [result[k] for k in ("comm_exposed_min_ms", "comm_exposed_ms", "comm_exposed_max_ms")]
exposed_ok = 0 < exposed[0] <= exposed[1] <= exposed[2]
print(f"netns-traffic: {'PASS' if exposed_ok else 'FAIL'}: exposed ms/step per rank "
      f"least {exposed[0]}, mean {exposed[1]}, most {exposed[2]}")
sent = [int(s) for s in re.findall(r"rank \d+ \(\S+\) sent (\d+) bytes", text)]
optimal = 2 * (ranks - 1) / ranks * 4 * params * steps  # bytes a rank must send
ok = len(sent) == ranks and all(optimal <= s <= 1.15 * optimal for s in sent)
shares = ", ".join(f"{s / optimal:.3f}" for s in sent)
print(f"netns-traffic: {'PASS' if ok else 'FAIL'}: bytes sent per rank over {steps} steps "
      f"= {shares} x 2(p-1)/p x the {4 * params} gradient bytes (allowed 1 to 1.15)")
sys.exit(0 if ok and exposed_ok else 1)
PY
