#!/usr/bin/env bash
# cllm prepare across an emulated cluster network writes the file one
# process writes, byte for byte.
#
#   tests/netns/test_prepare_across_netns.sh CLLM_BINARY
#
# Ranks on nodes of their own (tests/netns/cluster.sh: a network namespace
# and an Open MPI daemon a rank, TCP between them) share no memory, so each
# filters a share of every chunk round by its speed, where ranks of one node
# take chunks from a counter they share: this is the test of that path. For
# byte-level text and GPT-2 BPE, on 2 ranks x 1 thread and 3 ranks x 2
# threads, the dataset must equal the 1-process one (cmp): tokens, HDF5's
# structures and the checksum header. Exit 0: equal; 1: not, or a run
# failed; 77: skipped (no network namespaces: not root).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/test_start.sh" netns-prepare-test "$@"

work=$(mktemp -d "${TMPDIR:-/tmp}/cllm-netns-prepare.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two files, so that a share ends inside one and the next starts it;
# byte-level text six times Austen, for three chunk rounds on 2 x 1.
mkdir -p "$work/bpe" "$work/byte"
cp "$root/data/austen.txt" "$work/bpe/a.txt"
head -c 1500000 "$root/data/austen.txt" > "$work/bpe/b.txt"
for i in 1 2 3 4 5 6; do cat "$root/data/austen.txt"; done > "$work/byte/a.txt"
cp "$work/bpe/b.txt" "$work/byte/b.txt"
for tok in byte gpt2-bpe; do
  in=$work/byte
  [[ $tok == byte ]] || in=$work/bpe
  args=(prepare "$in" --tokenizer "$tok" --vocab-dir "$root/data/gpt2-bpe")
  OMP_NUM_THREADS=1 "$cllm" "${args[@]}" --out "$work/one-$tok.h5" >"$work/one.log" 2>&1 \
    || { cat "$work/one.log"; fail "$tok: the 1-process prepare exited with an error"; }
  for layout in 2x1 3x2; do
    status=0
    OMP_NUM_THREADS=${layout#*x} "$here/cluster.sh" -n "${layout%x*}" -- \
      "$cllm" "${args[@]}" --out "$work/$layout-$tok.h5" >"$work/net.log" 2>&1 || status=$?
    if (( status == 77 )); then
      log "skipped: $(grep -m1 'cluster.sh' "$work/net.log")"
      exit 77
    fi
    (( status == 0 )) || { cat "$work/net.log"; fail "$tok on $layout: prepare across namespaces exited $status"; }
    cmp "$work/one-$tok.h5" "$work/$layout-$tok.h5" \
      || fail "$tok: the dataset of $layout ranks x threads across namespaces differs from 1 process's"
    log "$tok, $layout across namespaces: the 1-process file, $(stat -c %s "$work/one-$tok.h5") bytes"
  done
done
log "PASS"
