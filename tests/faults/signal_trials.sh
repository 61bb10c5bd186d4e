#!/usr/bin/env bash
# Random stop signals against a training run, and its continuation: each
# trial starts `jobs/local.sh -n 2 -t 2 -- train ... --precision bf16 --trace`,
# sends one random signal (SIGTERM, SIGINT, SIGHUP or SIGUSR1) to the
# launcher at a random moment, checks the exit code (4 stopped, 0 finished
# first), reruns the same command to the end, and compares the final
# checkpoint with an uninterrupted run's (h5diff -d 0: bitwise) and the
# trace with a JSON parser. Not a ctest: 20 trials take minutes.
#
#   tests/faults/signal_trials.sh [TRIALS] [SEED] [WITHIN_MS]   (defaults 20, 1,
#   the reference run's time + 10%; 300 tries the launcher's and ranks' start)
set -euo pipefail
trials=${1:-20}
seed=${2:-1}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d /tmp/cllm-signal-trials-XXXXXX)
trap 'rm -rf "$work"' EXIT
RANDOM=$seed

steps=60
run() {  # run OUT: the training command, in the background; its pid in $!
  "$root/jobs/local.sh" -n 2 -t 2 -- train --data "$root/data/austen.txt" --out "$1" \
    --layers 2 --heads 2 --embd 64 --seq-len 64 --micro-batch 4 --global-batch 16 \
    --steps $steps --checkpoint-every 4 --eval-every 8 --precision bf16 \
    --trace "$1/../$(basename "$1").trace.json" > "$1.log" 2>&1 &
}
final() { echo "$1/checkpoint-$(printf %08d $steps).h5"; }

mkdir -p "$work/reference"
start=$(date +%s%N)
run "$work/reference"; wait $! || { echo "reference run failed"; cat "$work/reference.log"; exit 1; }
reference=$(final "$work/reference")
# Signals land anywhere from the launcher's start to a little past the end.
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
span_ms=${3:-$((took_ms * 11 / 10))}
echo "reference run: $took_ms ms; signals within the first $span_ms ms"

signals=(TERM INT HUP USR1)
passed=0
for ((i = 1; i <= trials; ++i)); do
  out="$work/trial-$i"
  mkdir -p "$out"
  signal=${signals[RANDOM % 4]}
  delay=$(awk -v ms=$(( (RANDOM * 32768 + RANDOM) % span_ms )) 'BEGIN { print ms / 1000 }')
  run "$out"
  pid=$!
  sleep "$delay"
  kill -s "$signal" "$pid" 2>/dev/null || true
  code=0; wait "$pid" || code=$?
  verdict=ok
  if [[ $code != 4 && $code != 0 ]]; then verdict="exit $code"; fi
  if [[ $verdict == ok ]]; then
    mv "$out.log" "$out.first.log"
    run "$out"; again=0; wait $! || again=$?
    if [[ $again != 0 ]]; then verdict="continuation exit $again"
    elif ! h5diff -d 0 "$reference" "$(final "$out")" > /dev/null; then verdict="not bitwise"
    elif ! python3 - "$work/trial-$i.trace.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read().rstrip()
json.loads(text if text.endswith("]") else text.rstrip(",") + "]")
PY
    then verdict="trace does not parse"; fi
  fi
  [[ $verdict == ok ]] && passed=$((passed + 1))
  printf 'trial %2d: SIG%-4s after %5.3f s: exit %d: %s\n' "$i" "$signal" "$delay" "$code" "$verdict"
done
echo "$passed of $trials trials stopped with their documented code and continued bitwise"
(( passed == trials ))
