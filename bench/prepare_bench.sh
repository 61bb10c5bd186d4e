#!/usr/bin/env bash
# cllm prepare's speed and peak memory, byte-level and GPT-2 BPE, on corpora
# of two sizes that are not Austen repeated (bench/make_corpus.py), with 1
# thread, all of them, and (mpirun) as many ranks of one thread.
#
#   bench/prepare_bench.sh [CLLM [OTHER_CLLM]]   (sizes: SIZES="200 2000" MB;
#                                                REPEATS=3: each layout 3 times)
#
# Prints one line per run: binary, tokenizer, MB, ranks x threads, seconds,
# MB/s, peak RSS (GNU time; of one process only, so none under mpirun). OTHER_CLLM, if given, runs the same on the smaller corpus
# only (an older build would need many times the corpus in memory).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cllm=$(realpath "${1:-build/release/cllm}")
other=${2:+$(realpath "$2")}
sizes=(${SIZES:-200 2000})
work=${WORK:-/tmp/cllm-prepare-bench}
mkdir -p "$work"
for mb in "${sizes[@]}"; do
  [[ -s $work/corpus-$mb.txt ]] || python3 bench/make_corpus.py --megabytes "$mb" --out "$work/corpus-$mb.txt"
done
run() {  # binary tokenizer mb threads [ranks]
  local out=$work/out.h5 log=$work/time.log ranks=${5:-1} launch=()
  (( ranks > 1 )) && launch=(mpirun -np "$ranks" --bind-to none -x OMP_NUM_THREADS --allow-run-as-root)
  OMP_NUM_THREADS=$4 /usr/bin/time -v "${launch[@]}" "$1" prepare "$work/corpus-$3.txt" --out "$out" \
    --tokenizer "$2" --vocab-dir data/gpt2-bpe >/dev/null 2>"$log"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$log")
  (( ranks > 1 )) && rss=-
  printf '%-28s %-9s %6s MB  %2s x %2s  %7.1f s  %6.1f MB/s  %6s MiB peak RSS\n' \
    "$(basename "$(dirname "$1")")/$(basename "$1")" "$2" "$3" "$ranks" "$4" "$wall" "$(echo "$3 / $wall" | bc -l)" "$rss"
  rm -f "$out"
}
threads=$(nproc)
for tok in byte gpt2-bpe; do
  for mb in "${sizes[@]}"; do
    # Interleaved, so that a noisy spell on a shared machine falls on all three.
    for ((rep = 0; rep < ${REPEATS:-1}; ++rep)); do
      for t in 1 "$threads"; do run "$cllm" "$tok" "$mb" "$t"; done
      run "$cllm" "$tok" "$mb" 1 "$threads"
    done
  done
  if [[ -n $other ]]; then
    for t in 1 "$threads"; do run "$other" "$tok" "${sizes[0]}" "$t"; done
  fi
done
