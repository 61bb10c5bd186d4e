#!/usr/bin/env python3
"""h5py reads the checkpoints and datasets cllm writes, user block and all,
and their checksum is what docs/architecture.md (File checksums) says.

Run with Debian's interpreter, which has numpy and h5py:

    /usr/bin/python3 tests/python/test_file_checksum.py --cllm build/release/cllm \
        --source-dir .

`cllm prepare` writes a dataset of 20,000 bytes of Austen and `cllm train`
a checkpoint of it. For each: h5py opens it and reports a 512-byte user
block; the dataset's tokens are the text's bytes and the checkpoint's wte
has the model's shape; the header's lines are recomputed here with hashlib
from the file's bytes (blocks of 64 MiB: one here), independently of cllm's
code.

Exit status: 0 pass, 1 fail (with a FAIL: line saying why), 77 skipped
because numpy or h5py cannot be imported (ctest reports it as skipped).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

from needs_h5py import h5py, np  # or exit 77: skipped


def expected_header(data, block=64 << 20):
    """The checksum header as docs/architecture.md defines it."""
    body = data[512:]
    hexes = "".join(hashlib.sha256(body[i:i + block]).hexdigest() + "\n"
                    for i in range(0, len(body), block))
    text = (f"cllm-sha256 v1\nlength {len(data)}\nblock {block}\n"
            f"sha256 {hashlib.sha256(hexes.encode()).hexdigest()}\n").encode()
    return text + b"\0" * (512 - len(text))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cllm", required=True, help="the cllm executable")
    parser.add_argument("--source-dir", required=True, help="the repository")
    args = parser.parse_args()
    failures = []
    with tempfile.TemporaryDirectory(prefix="cllm-checksum-") as tmp:
        with open(os.path.join(args.source_dir, "data/austen.txt"), "rb") as f:
            text = f.read(20000)
        corpus = os.path.join(tmp, "small.txt")
        with open(corpus, "wb") as f:
            f.write(text)
        data = os.path.join(tmp, "small.h5")
        run = os.path.join(tmp, "run")
        for cmd in ([args.cllm, "prepare", corpus, "--out", data],
                    [args.cllm, "train", "--data", data, "--out", run, "--layers", "1",
                     "--heads", "2", "--embd", "32", "--seq-len", "16", "--micro-batch", "2",
                     "--global-batch", "4", "--steps", "2", "--eval-every", "0",
                     "--sample-tokens", "0", "--threads", "1"]):
            r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
            if r.returncode != 0:
                print(f"FAIL: {' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
                return 1
        checkpoint = os.path.join(run, "checkpoint-00000002.h5")
        for path in (data, checkpoint):
            with open(path, "rb") as f:
                contents = f.read()
            if contents[:512] != expected_header(contents):
                failures.append(f"{path}: header {contents[:64]!r}, hashlib says "
                                f"{expected_header(contents)[:64]!r}")
            with h5py.File(path, "r") as f:
                print(f"{os.path.basename(path)}: {len(contents)} bytes, user block "
                      f"{f.userblock_size}, format {f.attrs['format']}")
                if f.userblock_size != 512:
                    failures.append(f"{path}: h5py sees a user block of {f.userblock_size}")
                if path == data:
                    tokens = np.concatenate([f["train/tokens"][()], f["val/tokens"][()]])
                    if tokens.tobytes() != text:
                        failures.append(f"{path}: h5py's tokens are not the text's bytes")
                elif f["model/transformer.wte.weight"].shape != (256, 32):
                    failures.append(f"{path}: wte of shape {f['model/transformer.wte.weight'].shape}")
    for f in failures:
        print(f"FAIL: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
