#!/usr/bin/env bash
# Ranks against threads on one node: tokens/s of 2 ranks x 1 thread against
# 1 rank x 2 threads (the same global batch), alternating the two so that a
# noisy machine's drift hits both, and the ratio of their medians.
#
#   bench/layout_ratio.sh [-p PRESET] [-r REPEATS] [-s STEPS]    (default: small and medium, 3, 20)
#
# CLLM_BINARY picks the executable (default build/release/cllm); CLLM_BENCH_ARGS
# adds bench options to every run (e.g. "--overlap off").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
presets=() repeats=3 steps=20
while getopts "p:r:s:h" opt; do
  case $opt in
    p) presets+=("$OPTARG") ;;
    r) repeats=$OPTARG ;;
    s) steps=$OPTARG ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
done
(( ${#presets[@]} )) || presets=(small medium)
cllm=${CLLM_BINARY:-build/release/cllm}
root=(); (( EUID == 0 )) && root=(--allow-run-as-root)
# shellcheck disable=SC2086
bench=(bench --steps "$steps" --warmup-steps 2 --json ${CLLM_BENCH_ARGS:-})
tokens() { /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["tokens_per_s"])'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf '%-8s %12s %12s %8s\n' preset "1x2 tok/s" "2x1 tok/s" "2x1/1x2"
for preset in "${presets[@]}"; do
  threads=() ranks=()
  for ((i = 0; i < repeats; ++i)); do
    threads+=("$(OMP_PROC_BIND=close "$cllm" "${bench[@]}" --preset "$preset" --threads 2 | tokens)")
    ranks+=("$(mpirun "${root[@]}" -np 2 --map-by slot:PE=1 --bind-to core -x OMP_PROC_BIND=close \
                 "$cllm" "${bench[@]}" --preset "$preset" --threads 1 | tokens)")
  done
  a=$(median "${threads[@]}") b=$(median "${ranks[@]}")
  printf '%-8s %12.0f %12.0f %8.3f   (runs: 1x2 %s; 2x1 %s)\n' "$preset" "$a" "$b" \
    "$(/usr/bin/python3 -c "print($b / $a)")" "${threads[*]}" "${ranks[*]}"
done
