#!/usr/bin/env python3
"""A large corpus that is not Austen repeated, for prepare's benchmarks.

Words are drawn at random with Austen's frequencies (data/austen.txt), one
in twenty replaced by a pseudo-word from a pool of 500,000 (names, typos and
numbers in web text), with punctuation, line breaks and paragraphs. No
block repeats, and GPT-2 BPE's word cache meets new words throughout, as in
real corpora; repeated Austen is the friendliest case for that cache.

  bench/make_corpus.py --megabytes 2000 --out /tmp/corpus.txt [--seed 1]
"""
import argparse
import random
import re
import string
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megabytes", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--source", default="data/austen.txt")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    # Units as they join: " word", or punctuation that follows a word.
    units = [u if u in ".,;:!?" else " " + u
             for u in re.findall(r"[A-Za-z']+|[.,;:!?]", open(a.source, encoding="utf-8").read())]
    letters = string.ascii_letters + string.digits
    pool = [" " + "".join(rng.choices(letters, k=rng.randint(3, 11))) for _ in range(500_000)]
    target = int(a.megabytes * 1e6)
    written = 0
    with open(a.out, "w", encoding="utf-8") as out:
        while written < target:
            drawn = rng.choices(units, k=200_000)
            for i in rng.sample(range(len(drawn)), 10_000):
                drawn[i] = rng.choice(pool)
            for i in rng.sample(range(len(drawn)), 2_000):
                drawn[i] = ".\n\n"
            text = "".join(drawn)[: target - written] + "\n"
            out.write(text)
            written += len(text)  # ASCII
    print(f"make_corpus: {a.out}: {written / 1e6:.0f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
