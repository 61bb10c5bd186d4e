#!/usr/bin/env python3
"""A dataset written by h5py with the schema of docs/architecture.md trains.

Run with Debian's interpreter, which has numpy and h5py:

    /usr/bin/python3 tests/python/test_h5py_dataset.py --cllm build/release/cllm

docs/architecture.md documents the dataset file so that other tools can write one.
This test writes it the way a Python user would: root attributes as plain
Python str, int and float values (h5py stores a str as a variable-length
UTF-8 string, an int as int64), the byte tokenizer's tokens stored as uint8
and again as uint16 (no chunking, no filters). `cllm train` must train 2
steps on each. A gpt2-bpe dataset whose tokenizer file declares 1 GiB (in
a file of a few KiB: unwritten chunks) must be refused in one line before
cllm allocates it.

Exit status: 0 pass, 1 fail (with a FAIL: line saying why), 77 skipped
because numpy or h5py cannot be imported (ctest reports it as skipped).
"""

import argparse
import os
import subprocess
import sys
import tempfile

from needs_h5py import h5py, np  # or exit 77: skipped

TRAIN_ARGS = ["--layers", "1", "--heads", "2", "--embd", "32", "--seq-len", "16",
              "--micro-batch", "2", "--global-batch", "4", "--steps", "2",
              "--log-every", "1", "--eval-every", "0", "--eval-batches", "1",
              "--sample-tokens", "0", "--threads", "1"]


def write_dataset(path, dtype):
    """The documented schema, with h5py's defaults for every attribute."""
    vocab_size = 256
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, vocab_size, size=4000).astype(dtype)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "cllm-dataset"
        f.attrs["format_version"] = 1
        f.attrs["vocab_size"] = vocab_size
        f.attrs["tokenizer"] = "byte"
        f.attrs["eot_token"] = -1
        f.attrs["sources"] = "random tokens \u2014 written by h5py"  # beyond ASCII
        f.attrs["sources_sha256"] = "0" * 64
        f.attrs["val_fraction"] = 0.1
        f["train/tokens"] = tokens[:3600]
        f["val/tokens"] = tokens[3600:]
    with h5py.File(path, "r") as f:  # what h5py made of the str attributes
        string_type = f.attrs.get_id("format").get_type()
        return (f"{'variable' if string_type.is_variable_str() else 'fixed'}-length, "
                f"cset {'UTF-8' if string_type.get_cset() == h5py.h5t.CSET_UTF8 else 'ASCII'}")


def write_huge_tokenizer_dataset(path):
    """A gpt2-bpe dataset whose encoder.json claims 1 GiB and stores nothing."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 50257, size=4000).astype(np.uint16)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "cllm-dataset"
        f.attrs["format_version"] = 1
        f.attrs["vocab_size"] = 50257
        f.attrs["tokenizer"] = "gpt2-bpe"
        f.attrs["eot_token"] = 50256
        f.create_dataset("tokenizer/encoder.json", shape=(1 << 30,), dtype=np.uint8,
                         chunks=(1 << 20,), compression="gzip")
        f["tokenizer/vocab.bpe"] = np.frombuffer(b"#version: 0.2\n", dtype=np.uint8)
        f["train/tokens"] = tokens[:3600]
        f["val/tokens"] = tokens[3600:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cllm", required=True, help="the cllm executable")
    args = parser.parse_args()
    failures = []
    with tempfile.TemporaryDirectory(prefix="cllm-h5py-") as tmp:
        for dtype in (np.uint8, np.uint16):
            name = np.dtype(dtype).name
            path = os.path.join(tmp, f"h5py-{name}.h5")
            strings = write_dataset(path, dtype)
            out = os.path.join(tmp, f"run-{name}")
            cmd = [args.cllm, "train", "--data", path, "--out", out] + TRAIN_ARGS
            r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
            print(f"{name} tokens, string attributes {strings}: exit {r.returncode}")
            if r.returncode != 0:
                failures.append(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
            elif "vocab 256" not in r.stdout or "step 2/2" not in r.stdout:
                failures.append(f"{' '.join(cmd)} did not train 2 steps:\n{r.stdout}")
        path = os.path.join(tmp, "huge-tokenizer.h5")
        write_huge_tokenizer_dataset(path)
        cmd = [args.cllm, "train", "--data", path, "--out", os.path.join(tmp, "run-huge")]
        cmd += TRAIN_ARGS
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        err = r.stderr.strip()
        print(f"encoder.json declaring 1 GiB in a {os.path.getsize(path)}-byte file: "
              f"exit {r.returncode}: {err}")
        if r.returncode != 1 or len(err.splitlines()) != 1 or path not in err \
                or "'encoder.json' declares 1073741824 bytes" not in err:
            failures.append(f"{' '.join(cmd)}: wanted exit 1 and one line naming the file "
                            f"and encoder.json's size, got exit {r.returncode}: {err}")
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
