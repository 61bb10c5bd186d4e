#!/usr/bin/python3
"""Writes the hand-made inputs of tests/fuzz/regressions/ (README.md says what
each one is) from the seed corpus, with h5py: files that byte mutations
rarely make, but that crashed cllm before it checked what they break.

    /usr/bin/python3 tests/fuzz/make_regressions.py    (Debian's python3-h5py)
"""
import os
import shutil

import h5py
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
dataset_seed = os.path.join(here, "corpus/fuzz_dataset/byte-4000.h5")
checkpoint_seed = os.path.join(here, "corpus/fuzz_checkpoint/byte-1layer-embd4.h5")


def out(target, name):
    folder = os.path.join(here, "regressions", target)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)


def dataset_copy(name):
    path = out("fuzz_dataset", name)
    shutil.copy(dataset_seed, path)
    return h5py.File(path, "r+")


with dataset_copy("format-attribute-is-an-array.h5") as f:
    del f.attrs["format"]
    f.attrs.create("format", np.array([b"cllm-dataset"] * 2), dtype=h5py.string_dtype("utf-8", 12))

with dataset_copy("format-attribute-is-a-vlen-array.h5") as f:
    del f.attrs["format"]
    f.attrs.create("format", ["cllm-dataset"] * 4, dtype=h5py.string_dtype())

with dataset_copy("vocab-size-10.h5") as f:
    f.attrs["vocab_size"] = np.int64(10)

with dataset_copy("tokens-past-int32.h5") as f:
    tokens = np.full(16, 2**40, dtype=np.uint64)
    del f["train/tokens"]
    f.create_dataset("train/tokens", data=tokens)

# A checkpoint of a model with a vocabulary of 10 and the byte tokenizer,
# written without chunks (a tenth of the size of cllm's own).
with h5py.File(checkpoint_seed, "r") as src, \
        h5py.File(out("fuzz_checkpoint", "model-vocab-10.h5"), "w") as dst:
    def copy(name, obj):
        if isinstance(obj, h5py.Group):
            group = dst.require_group(name)
            group.attrs.update(obj.attrs)
        else:
            data = obj[()]
            if name.endswith("transformer.wte.weight"):
                data = data[:10]
            dst.create_dataset(name, data=data)
    dst.attrs.update(src.attrs)
    src.visititems(copy)
    dst.attrs["vocab_size"] = np.int64(10)
