#!/usr/bin/env python3
"""Generate tests/reference/gpt_reference.bin, the PyTorch ground truth that
the C++ GPT-2 tests compare against.

Run with Debian's interpreter, which has python3-torch (1.13) and numpy:

    /usr/bin/python3 tests/reference/make_reference.py [--out PATH]

What it does:
  1. builds a tiny nanoGPT-style GPT-2 (V=256, T=16, L=2, NH=2, C=32, B=4)
     with weights from torch.manual_seed(1234), rounded to float32;
  2. runs the forward and backward pass in float64 and records the loss,
     logits and every parameter gradient;
  3. runs 10 AdamW steps (with global-norm clipping) on the same batch and
     records the loss before each step and the pre-clip gradient norm;
  4. checks the autograd gradients against central finite differences and
     exits non-zero if they disagree;
  5. writes everything in the CLLM tensor file format (see tensorfile.py
     and README.md for the record list).

Everything is computed in float64 so the reference is far more accurate
than the float32 C++ code under test; the file stores float32 because that
is what the C++ side works in, and the weights are pre-rounded to float32
so that storing them loses nothing.
"""

import argparse
import hashlib
import math
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tensorfile  # noqa: E402  (sibling module, path set up above)

# ---------------------------------------------------------------------------
# Configuration. Changing any of these changes the reference file, and the
# C++ test reads the config record, so keep them in sync through the file.
V, T, L, NH, C, B = 256, 16, 2, 2, 32, 4
HS = C // NH
LN_EPS = 1e-5
SEED = 1234

LR = 1e-2
BETA1, BETA2 = 0.9, 0.95
ADAM_EPS = 1e-8
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
ADAM_STEPS = 10

# The finite-difference check must agree with autograd to this relative
# error; in float64 a correct gradient lands many orders of magnitude below.
FD_TOLERANCE = 1e-6


def param_shapes():
    """(name, shape) in nanoGPT state_dict order, minus the tied lm_head.

    The order is part of the file format contract: param/ and grad/ records
    are written in this order.
    """
    shapes = [("transformer.wte.weight", (V, C)),
              ("transformer.wpe.weight", (T, C))]
    for i in range(L):
        p = f"transformer.h.{i}."
        shapes += [
            (p + "ln_1.weight", (C,)),
            (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (3 * C, C)),
            (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)),
            (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)),
            (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (4 * C, C)),
            (p + "mlp.c_fc.bias", (4 * C,)),
            (p + "mlp.c_proj.weight", (C, 4 * C)),
            (p + "mlp.c_proj.bias", (C,)),
        ]
    shapes += [("transformer.ln_f.weight", (C,)),
               ("transformer.ln_f.bias", (C,))]
    return shapes


def init_params():
    """Draw the initial weights from the global torch generator.

    Unlike nanoGPT (LayerNorm weight 1, biases 0), LayerNorm weights and all
    biases are randomised: with the textbook init their gradients and their
    use in the forward pass would go untested by a simple "all ones / all
    zeros" bug in the C++ code.

    Draw order is the parameter order above, one randn per tensor; the C++
    side never needs to reproduce it, it reads the weights from the file.
    """
    params = OrderedDict()
    for name, shape in param_shapes():
        z = torch.randn(shape, dtype=torch.float64)
        if name.endswith(".bias"):
            w = 0.02 * z
        elif ".ln_" in name:  # LayerNorm weight (ln_1, ln_2, ln_f)
            w = 1.0 + 0.1 * z
        elif name.endswith("c_proj.weight"):
            # GPT-2 scales residual-stream output projections down by
            # 1/sqrt(2L) so the residual variance does not grow with depth.
            w = (0.02 / math.sqrt(2 * L)) * z
        else:  # embeddings and the remaining Linear weights
            w = 0.02 * z
        # Round to float32 and back: the file stores float32, and the C++
        # model must start from exactly the weights the float64 reference
        # used, otherwise the comparison would include a rounding error of
        # the inputs that has nothing to do with the code under test.
        params[name] = w.float().double()
    return params


# ---------------------------------------------------------------------------
# The model, written out by hand as pure functions of a parameter dict so
# that every operation the C++ code must implement is visible here.

def layernorm(x, w, b):
    # Biased variance (divide by C), eps inside the sqrt: same as nn.LayerNorm.
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + LN_EPS) * w + b


def linear(x, w, b=None):
    # w is [out, in] as in nn.Linear.
    y = x @ w.t()
    return y if b is None else y + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(x, p):
    Bx, Tx, _ = x.shape
    qkv = linear(x, p["attn.c_attn.weight"], p["attn.c_attn.bias"])  # [B,T,3C]
    # q, k, v are consecutive C-wide column blocks, in that order.
    q, k, v = qkv.split(C, dim=2)
    # Head h is the h-th consecutive HS-wide slice of each of q, k, v.
    q = q.view(Bx, Tx, NH, HS).transpose(1, 2)  # [B,NH,T,HS]
    k = k.view(Bx, Tx, NH, HS).transpose(1, 2)
    v = v.view(Bx, Tx, NH, HS).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)  # [B,NH,T,T]
    causal = torch.ones(Tx, Tx, dtype=torch.bool).tril()
    att = att.masked_fill(~causal, float("-inf"))
    att = torch.softmax(att, dim=-1)
    y = att @ v  # [B,NH,T,HS]
    y = y.transpose(1, 2).contiguous().view(Bx, Tx, C)  # re-merge the heads
    return linear(y, p["attn.c_proj.weight"], p["attn.c_proj.bias"])


def mlp(x, p):
    h = gelu_tanh(linear(x, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"]))
    return linear(h, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])


def block_params(params, i):
    prefix = f"transformer.h.{i}."
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def forward(params, tokens, targets):
    """Return (logits [B,T,V], mean cross-entropy loss)."""
    Bx, Tx = tokens.shape
    wte = params["transformer.wte.weight"]
    x = wte[tokens] + params["transformer.wpe.weight"][:Tx]
    for i in range(L):
        p = block_params(params, i)
        x = x + attention(layernorm(x, p["ln_1.weight"], p["ln_1.bias"]), p)
        x = x + mlp(layernorm(x, p["ln_2.weight"], p["ln_2.bias"]), p)
    x = layernorm(x, params["transformer.ln_f.weight"], params["transformer.ln_f.bias"])
    # Output projection is tied to the token embedding (no bias), so wte's
    # gradient collects both the embedding and the projection contribution.
    logits = linear(x, wte)
    loss = F.cross_entropy(logits.view(-1, V), targets.view(-1))  # mean over B*T
    return logits, loss


# ---------------------------------------------------------------------------
# Self-checks.

def check_building_blocks():
    """The hand-written pieces must match torch's own implementations; this
    catches a typo in a formula before it ends up in the reference file."""
    g = torch.Generator().manual_seed(0)  # private generator: keeps the main stream untouched
    x = torch.randn(3, 5, C, dtype=torch.float64, generator=g) * 3
    w = torch.randn(C, dtype=torch.float64, generator=g)
    b = torch.randn(C, dtype=torch.float64, generator=g)
    err_ln = (layernorm(x, w, b) - F.layer_norm(x, (C,), w, b, LN_EPS)).abs().max().item()
    err_gelu = (gelu_tanh(x) - F.gelu(x, approximate="tanh")).abs().max().item()
    print(f"self-check: layernorm vs F.layer_norm max abs diff {err_ln:.3e}")
    print(f"self-check: gelu_tanh vs F.gelu(tanh) max abs diff {err_gelu:.3e}")
    return max(err_ln, err_gelu) < 1e-12


def finite_difference_check(params, tokens, targets, grads):
    """Compare autograd gradients with central differences of the loss.

    For each parameter tensor we probe its largest-magnitude gradient entry
    plus two entries chosen at random among those whose gradient is at least
    10% of that maximum. Entries with a near-zero gradient are skipped on
    purpose: relative error there measures finite-difference round-off, not
    the gradient. For wte the probes also include a row of a token that is
    in the batch (embedding + projection path) and one that is not
    (projection path only), so both halves of the tied weight are covered.

    Returns the maximum relative error |fd - autograd| / |autograd|.
    """
    # Fourth-order central difference
    #   f'(x) ~ [8(f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))] / 12h
    # with a fairly large h: its O(h^4) truncation error is negligible at
    # h = 1e-3, and the large h keeps the O(eps*|loss|/h) round-off small
    # next to the smallest probed gradients (LayerNorm, a few 1e-5). Plain
    # second-order differences with h = 1e-5 were tried first and reached
    # ~6e-6 relative error on small LayerNorm gradients, all of it round-off,
    # so they could not back a 1e-6 limit.
    h = 1e-3
    rng = np.random.RandomState(0)  # independent of torch's stream
    probe = {k: v.detach().clone() for k, v in params.items()}

    def loss_at(name, idx, delta):
        old = probe[name][idx].item()
        probe[name][idx] = old + delta
        with torch.no_grad():
            _, loss = forward(probe, tokens, targets)
        probe[name][idx] = old
        return loss.item()

    picks = []
    for name, g in grads.items():
        ga = g.abs()
        flat_max = int(ga.argmax())
        picks.append((name, np.unravel_index(flat_max, g.shape)))
        big = np.flatnonzero(ga.numpy().ravel() >= 0.1 * ga.max().item())
        for j in rng.choice(big, size=min(2, len(big)), replace=False):
            picks.append((name, np.unravel_index(int(j), g.shape)))
    wte_g = grads["transformer.wte.weight"]
    in_batch = sorted(set(tokens.flatten().tolist()))
    not_in_batch = [t for t in range(V) if t not in set(in_batch)]
    for row in (in_batch[0], not_in_batch[0]):
        col = int(wte_g[row].abs().argmax())
        picks.append(("transformer.wte.weight", (row, col)))

    worst, worst_at = -1.0, None
    for name, idx in picks:
        idx = tuple(int(i) for i in idx)
        d1 = loss_at(name, idx, h) - loss_at(name, idx, -h)
        d2 = loss_at(name, idx, 2 * h) - loss_at(name, idx, -2 * h)
        fd = (8 * d1 - d2) / (12 * h)
        ag = grads[name][idx].item()
        rel = abs(fd - ag) / abs(ag)
        if not rel <= worst:  # `not <=` so a NaN becomes the worst
            worst, worst_at = rel, (name, idx, ag, fd)
    print(f"self-check: finite differences on {len(picks)} entries, "
          f"max relative error {worst:.3e} (tolerance {FD_TOLERANCE:.0e})")
    name, idx, ag, fd = worst_at
    print(f"            worst: {name}{list(idx)} autograd {ag:.12e} fd {fd:.12e}")
    return worst


# ---------------------------------------------------------------------------

def run_adamw(params, tokens, targets):
    """10 AdamW steps on the fixed batch; returns (losses, grad_norms).

    Uses torch's own AdamW and clip_grad_norm_ so the reference is the
    library's behaviour, not our reading of it. Decay goes only to tensors
    with >= 2 dims (embeddings and Linear weights), as in nanoGPT.
    """
    live = OrderedDict((k, v.clone().requires_grad_(True)) for k, v in params.items())
    decay = [p for p in live.values() if p.dim() >= 2]
    no_decay = [p for p in live.values() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS, foreach=False)
    losses, norms = [], []
    for _ in range(ADAM_STEPS):
        opt.zero_grad(set_to_none=True)
        _, loss = forward(live, tokens, targets)
        losses.append(loss.item())  # loss BEFORE this step's update
        loss.backward()
        # Returns the global L2 norm before clipping; scales grads by
        # max_norm / (norm + 1e-6) only when that factor is < 1.
        norm = torch.nn.utils.clip_grad_norm_(list(live.values()), GRAD_CLIP)
        norms.append(norm.item())
        opt.step()
    return losses, norms


def main():
    global V, T, L, NH, C, B, HS
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--long", action="store_true",
                    help="the long-context case (V=384, T=300, L=1, NH=2, C=16, B=1): its "
                         "attention spans five query blocks and two key blocks of cllm's "
                         "tiled kernels; default output gpt_reference_long.bin")
    ap.add_argument("--out", default=None,
                    help="output path (default: gpt_reference.bin, or gpt_reference_long.bin "
                         "with --long, beside this script)")
    args = ap.parse_args()
    if args.long:
        V, T, L, NH, C, B = 384, 300, 1, 2, 16, 1
        HS = C // NH
    if args.out is None:
        args.out = os.path.join(here, "gpt_reference_long.bin" if args.long else "gpt_reference.bin")

    # One thread: BLAS reductions may be split differently with other thread
    # counts, and the file must be byte-identical on every machine we can.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)

    params = init_params()
    # Same generator, drawn after the weights.
    tokens = torch.randint(0, V, (B, T), dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), dtype=torch.int64)

    # Forward + backward at the initial weights.
    leaves = OrderedDict((k, v.clone().requires_grad_(True)) for k, v in params.items())
    logits, loss = forward(leaves, tokens, targets)
    loss.backward()
    grads = OrderedDict((k, v.grad.detach().clone()) for k, v in leaves.items())
    logits = logits.detach()
    print(f"loss {loss.item():.10f}  (ln V = {math.log(V):.10f})")

    ok = check_building_blocks()
    fd_err = finite_difference_check(params, tokens, targets, grads)
    if not ok or not fd_err <= FD_TOLERANCE:  # `not <=` also catches NaN
        print("self-check FAILED: not writing the reference file", file=sys.stderr)
        return 1

    losses, norms = run_adamw(params, tokens, targets)
    # Both paths start from the same weights and batch, so step 0 must see
    # the same loss (up to float64 summation order, which is identical).
    assert abs(losses[0] - loss.item()) <= 1e-12 * abs(loss.item()), (losses[0], loss.item())
    for k, (l, n) in enumerate(zip(losses, norms)):
        print(f"adamw step {k}: loss {l:.10f}  grad_norm {n:.10f}")

    f32 = lambda t: np.asarray(t, dtype=np.float64).astype(np.float32)  # noqa: E731
    i32 = lambda t: np.asarray(t, dtype=np.int64).astype(np.int32)  # noqa: E731
    records = [
        ("config", np.array([V, T, L, NH, C, B], dtype=np.int32)),
        ("tokens", i32(tokens.numpy())),
        ("targets", i32(targets.numpy())),
    ]
    records += [(f"param/{k}", f32(v.numpy())) for k, v in params.items()]
    records += [
        ("loss", f32([loss.item()])),
        ("logits", f32(logits.numpy())),
    ]
    records += [(f"grad/{k}", f32(v.numpy())) for k, v in grads.items()]
    records += [
        ("adamw/hparams", f32([LR, BETA1, BETA2, ADAM_EPS, WEIGHT_DECAY, GRAD_CLIP])),
        ("adamw/losses", f32(losses)),
        ("adamw/grad_norms", f32(norms)),
    ]
    # The stored weights must be exactly the ones the reference used.
    for k, v in params.items():
        assert np.array_equal(f32(v.numpy()).astype(np.float64), v.numpy()), k

    blob = tensorfile.encode(records)
    # Round-trip through the reader so a writer/reader mismatch shows up here
    # rather than as a confusing C++ test failure.
    back = tensorfile.decode(blob)
    assert list(back) == [n for n, _ in records]
    assert all(np.array_equal(back[n], a) and back[n].dtype == a.dtype for n, a in records)
    with open(args.out, "wb") as f:
        f.write(blob)
    print(f"wrote {args.out}: {len(records)} records, {len(blob)} bytes, "
          f"sha256 {hashlib.sha256(blob).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
