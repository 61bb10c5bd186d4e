#!/usr/bin/env python3
"""A cllm checkpoint, loaded into PyTorch, reproduces cllm's validation loss.

Run with Debian's interpreter, which has python3-torch, numpy and h5py:

    /usr/bin/python3 tests/python/test_checkpoint_torch.py \
        --cllm build/release/cllm --source-dir .

What it does, in a temporary folder:
  1. `cllm prepare data/austen.txt` (byte tokenizer), then `cllm train` a
     tiny model for 30 steps; the final checkpoint holds the parameters that
     the final val_loss in metrics.jsonl was computed on;
  2. checks the dataset and checkpoint schema (format attributes, /model,
     /optimizer/m, /optimizer/v with matching shapes, /state step);
  3. loads /model/<name> into a nanoGPT-style PyTorch GPT-2 (lm_head tied to
     wte), built from the checkpoint's root attributes, in float64;
  4. evaluates it on exactly the validation windows cllm uses (see
     Trainer::evaluate and validation_window_start) and requires the mean
     cross-entropy to match metrics' val_loss to 1e-4 relative.

The LayerNorm and tanh-GELU formulas (and LayerNorm eps) come from
tests/reference/make_reference.py, the PyTorch ground truth of the C++ model
tests, so both tests pin the same numerics.

Exit status: 0 pass, 1 fail (with a FAIL: line saying why), 77 skipped
because torch, numpy or h5py cannot be imported (ctest reports it as skipped,
not passed).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

SKIP = 77

try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the interpreter
    print(f"SKIP: {e} (run with an interpreter that has torch, numpy and h5py, "
          f"e.g. /usr/bin/python3); this interpreter is {sys.executable}")
    sys.exit(SKIP)

# The run this test makes. Ranks is 1: cllm is started without mpiexec.
STEPS = 30
MICRO_BATCH = 2
EVAL_BATCHES = 4
RANKS = 1
TRAIN_ARGS = ["--layers", "2", "--heads", "2", "--embd", "32", "--seq-len", "32",
              "--micro-batch", str(MICRO_BATCH), "--global-batch", "8",
              "--steps", str(STEPS), "--lr", "3e-3", "--warmup", "5",
              "--log-every", "10", "--eval-every", "0",
              "--eval-batches", str(EVAL_BATCHES), "--sample-tokens", "0",
              "--threads", "2"]

REL_TOLERANCE = 1e-4


class TestFailure(Exception):
    pass


def check(cond, message):
    """Like assert, but not stripped by python -O."""
    if not cond:
        raise TestFailure(message)


def attr_str(value):
    """HDF5 string attributes come back as bytes (fixed length) or str."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return attr_str(value[()])
    return value


def attr_int(value):
    check(np.ndim(value) == 0, f"expected a scalar attribute, got {value!r}")
    check(float(value) == int(value), f"expected an integer attribute, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# The model: nanoGPT's GPT, with the LayerNorm / GELU formulas of
# make_reference.py (which the C++ model tests are checked against).

def import_reference(source_dir):
    ref_dir = os.path.join(source_dir, "tests", "reference")
    sys.path.insert(0, ref_dir)
    try:
        import make_reference
    finally:
        sys.path.remove(ref_dir)
    return make_reference


class LayerNorm(nn.Module):
    def __init__(self, ref, n):
        super().__init__()
        self.ref = ref
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return self.ref.layernorm(x, self.weight, self.bias)  # eps = ref.LN_EPS


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, seq_len):
        super().__init__()
        check(n_embd % n_head == 0, f"n_embd {n_embd} not divisible by n_head {n_head}")
        self.n_embd, self.n_head = n_embd, n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)  # weight [3C, C]: q, k, v row blocks
        self.c_proj = nn.Linear(n_embd, n_embd)
        mask = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # [B, nh, T, hs]
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, ref, n_embd):
        super().__init__()
        self.ref = ref
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        return self.c_proj(self.ref.gelu_tanh(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, ref, n_embd, n_head, seq_len):
        super().__init__()
        self.ln_1 = LayerNorm(ref, n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, seq_len)
        self.ln_2 = LayerNorm(ref, n_embd)
        self.mlp = MLP(ref, n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, ref, vocab_size, seq_len, n_layer, n_head, n_embd):
        super().__init__()
        self.seq_len = seq_len
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(seq_len, n_embd),
            h=nn.ModuleList([Block(ref, n_embd, n_head, seq_len) for _ in range(n_layer)]),
            ln_f=LayerNorm(ref, n_embd),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT

    def forward(self, idx, targets):
        B, T = idx.shape
        check(T <= self.seq_len, f"sequence of {T} tokens exceeds seq_len {self.seq_len}")
        pos = torch.arange(T, dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


# ---------------------------------------------------------------------------

def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(p.stdout, end="", flush=True)
    check(p.returncode == 0, f"command exited with status {p.returncode}: {' '.join(cmd)}")


def final_val_loss(metrics_path):
    with open(metrics_path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    check(lines, f"{metrics_path} is empty")
    last = json.loads(lines[-1])
    check(last.get("step") == STEPS, f"last metrics line is step {last.get('step')}, want {STEPS}")
    check("val_loss" in last, f"last metrics line has no val_loss: {lines[-1]}")
    val_loss = float(last["val_loss"])
    check(math.isfinite(val_loss), f"val_loss is not finite: {val_loss}")
    return val_loss


def check_dataset(path):
    with h5py.File(path, "r") as f:
        check(attr_str(f.attrs.get("format")) == "cllm-dataset",
              f"dataset format attribute is {f.attrs.get('format')!r}, want 'cllm-dataset'")
        check(attr_str(f.attrs.get("tokenizer")) == "byte",
              f"dataset tokenizer attribute is {f.attrs.get('tokenizer')!r}, want 'byte'")
        check("val/tokens" in f, "dataset has no /val/tokens")
        val = np.asarray(f["val/tokens"][...], dtype=np.int64)
        vocab = attr_int(f.attrs["vocab_size"])
    check(val.ndim == 1, f"/val/tokens has shape {val.shape}, want 1-D")
    check(val.min() >= 0 and val.max() < vocab, "validation tokens outside the vocabulary")
    return val, vocab


def load_checkpoint(path):
    """Return (root attributes as ints, {name: float32 array}) after checking
    the schema."""
    with h5py.File(path, "r") as f:
        check(attr_str(f.attrs.get("format")) == "cllm-checkpoint",
              f"checkpoint format attribute is {f.attrs.get('format')!r}, want 'cllm-checkpoint'")
        shape = {k: attr_int(f.attrs[k])
                 for k in ("vocab_size", "seq_len", "n_layer", "n_head", "n_embd", "micro_batch")}
        check("state" in f, "checkpoint has no /state")
        check("step" in f["state"].attrs, "/state has no step attribute")
        step = attr_int(f["state"].attrs["step"])
        check(step == STEPS, f"/state step is {step}, want {STEPS}")
        check("model" in f, "checkpoint has no /model group")
        params = {}
        for name, ds in f["model"].items():
            check(isinstance(ds, h5py.Dataset), f"/model/{name} is not a dataset")
            params[name] = np.asarray(ds[...])
        check(params, "/model is empty")
        check("lm_head.weight" not in params, "/model has an lm_head.weight (it should be tied to wte)")
        for kind in ("m", "v"):
            group = f"optimizer/{kind}"
            check(group in f, f"checkpoint has no /{group}")
            names = set(f[group].keys())
            check(names == set(params),
                  f"/{group} names differ from /model: missing {sorted(set(params) - names)}, "
                  f"extra {sorted(names - set(params))}")
            for name, value in params.items():
                got = f[group][name].shape
                check(got == value.shape,
                      f"/{group}/{name} has shape {got}, /model/{name} has {value.shape}")
    for name, value in params.items():
        check(value.dtype == np.float32, f"/model/{name} is {value.dtype}, want float32")
        check(np.all(np.isfinite(value)), f"/model/{name} has non-finite values")
    return shape, params


def build_model(ref, shape, params):
    model = GPT(ref, shape["vocab_size"], shape["seq_len"], shape["n_layer"],
                shape["n_head"], shape["n_embd"]).double()
    want = set(model.state_dict()) - {"lm_head.weight"}
    check(set(params) == want,
          f"/model names differ from nanoGPT's state_dict: missing {sorted(want - set(params))}, "
          f"extra {sorted(set(params) - want)}")
    state = {k: torch.from_numpy(v.astype(np.float64)) for k, v in params.items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]
    for k, v in state.items():
        expect = tuple(model.state_dict()[k].shape)
        check(tuple(v.shape) == expect, f"/model/{k} has shape {tuple(v.shape)}, want {expect}")
    model.load_state_dict(state, strict=True)
    check(model.lm_head.weight is model.transformer.wte.weight, "lm_head is not tied to wte")
    model.eval()
    return model


def validation_windows(val, T, B, eval_batches, ranks):
    """Inputs and targets of every window of cllm's evaluate(), in order."""
    per_rank = -(-eval_batches // ranks)  # ceil
    n_batches = per_rank * ranks
    n_windows = n_batches * B
    n_val = len(val)
    check(n_val > T, f"validation split has {n_val} tokens, not more than seq_len {T}")
    n_starts = n_val - T
    check((n_windows - 1) * n_starts < 2 ** 64, "window start arithmetic would overflow uint64")
    starts = [w * n_starts // n_windows for w in range(n_windows)]
    inputs = np.stack([val[s:s + T] for s in starts])
    targets = np.stack([val[s + 1:s + T + 1] for s in starts])
    check(inputs.shape == (n_windows, T) and targets.shape == (n_windows, T),
          f"window shapes {inputs.shape} {targets.shape}, want ({n_windows}, {T})")
    return starts, torch.from_numpy(inputs), torch.from_numpy(targets)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cllm", required=True, help="path to the cllm executable")
    ap.add_argument("--source-dir", required=True, help="repository root")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    cllm = os.path.abspath(args.cllm)
    src = os.path.abspath(args.source_dir)
    check(os.access(cllm, os.X_OK), f"--cllm {cllm} is not an executable")
    text = os.path.join(src, "data", "austen.txt")
    check(os.path.isfile(text), f"{text} not found (is --source-dir the repository root?)")

    torch.set_num_threads(1)
    ref = import_reference(src)
    print(f"model numerics from {ref.__file__} (LayerNorm eps {ref.LN_EPS})")

    tmp = tempfile.mkdtemp(prefix="cllm_torch_")
    try:
        data = os.path.join(tmp, "austen.h5")
        out = os.path.join(tmp, "run")
        run([cllm, "prepare", text, "--out", data])
        run([cllm, "train", "--data", data, "--out", out] + TRAIN_ARGS)

        val, vocab = check_dataset(data)
        ckpt = os.path.join(out, f"checkpoint-{STEPS:08d}.h5")
        check(os.path.isfile(ckpt), f"final checkpoint {ckpt} not written")
        shape, params = load_checkpoint(ckpt)
        check(shape["vocab_size"] == vocab,
              f"checkpoint vocab_size {shape['vocab_size']} != dataset vocab_size {vocab}")
        check(shape["micro_batch"] == MICRO_BATCH,
              f"checkpoint micro_batch {shape['micro_batch']}, want {MICRO_BATCH}")
        cllm_loss = final_val_loss(os.path.join(out, "metrics.jsonl"))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)

    model = build_model(ref, shape, params)
    T = shape["seq_len"]
    starts, inputs, targets = validation_windows(val, T, MICRO_BATCH, EVAL_BATCHES, RANKS)
    print(f"validation: {len(val)} tokens, {len(starts)} windows of {T}, starts {starts}")
    with torch.no_grad():
        torch_loss = model(inputs, targets).item()

    rel = abs(torch_loss - cllm_loss) / abs(torch_loss)
    print(f"cllm  val_loss (metrics.jsonl): {cllm_loss:.8f}")
    print(f"torch val_loss (float64):       {torch_loss:.8f}")
    print(f"relative difference:            {rel:.3e} (tolerance {REL_TOLERANCE:.0e})")
    # A model that learned nothing would sit at ln V whatever its layout; the
    # run must have moved well below that for the comparison to mean much.
    check(cllm_loss < 0.8 * math.log(vocab),
          f"cllm val_loss {cllm_loss} is not well below ln V = {math.log(vocab):.4f}: "
          f"the model did not train, so the comparison would prove little")
    check(rel <= REL_TOLERANCE,  # also false for NaN
          f"torch val_loss {torch_loss:.8f} differs from cllm's {cllm_loss:.8f} "
          f"by {rel:.3e} relative (tolerance {REL_TOLERANCE:.0e})")
    print("PASS")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TestFailure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
