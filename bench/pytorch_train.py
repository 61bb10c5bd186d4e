#!/usr/bin/python3
"""PyTorch baseline for `cllm bench`: the same GPT-2 model (byte vocabulary,
tied output projection, tanh-GELU), the same batch (8 sequences per thread
step as cllm bench uses: --batch), AdamW with the same hyper-parameters and
gradient clipping, random tokens. Prints one JSON object like
`cllm bench --json`, plus which BLAS library torch actually loaded and which
engine ran the matrix products.

--precision fp32 (the default) trains in fp32, products on torch's BLAS.
--precision bf16 runs forward and loss under torch.autocast("cpu",
dtype=torch.bfloat16), as cllm --precision bf16 rounds the products' inputs:
the products take bf16 inputs (on oneDNN where the CPU has AVX-512, as
torch dispatches them); the weights, their gradients and the optimizer stay
fp32. Backward and optimizer step run outside autocast, as PyTorch
recommends. Unlike cllm's, autocast's products also return bf16.

Run with Debian's python3-torch: /usr/bin/python3 bench/pytorch_train.py
--preset small --threads 2. For its best speed use OpenBLAS's OpenMP build
(LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp, which
bench/compare.py sets) and ATEN_CPU_CAPABILITY=avx512 where the CPU has it
(compare.py sets that too).
"""
import argparse
import contextlib
import ctypes
import json
import math
import os
import re
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"small": (4, 4, 256, 128), "medium": (6, 6, 384, 256)}


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = F.softmax(att.masked_fill(mask[:T, :T] == 0, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, T, L, NH, C):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.h = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.ln_f = nn.LayerNorm(C)
        self.register_buffer("mask", torch.tril(torch.ones(T, T)))

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def loaded_blas():
    with open("/proc/self/maps") as f:
        libs = {m.group(0) for m in re.finditer(r"/\S*(?:blas|lapack)\S*\.so[.\d]*", f.read())}
    return sorted(os.path.realpath(p) for p in libs)


def openblas_kernels(libs):
    """The kernels OpenBLAS chose for this CPU (as cllm bench reports them)."""
    for path in libs:
        if "openblas" in os.path.basename(path):
            lib = ctypes.CDLL(path)  # the copy already loaded: same state
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
    return None


def bf16_matmul_engine():
    """What runs torch's bf16 products on CPU: oneDNN (torch's mkldnn) when
    it is built in and the CPU has AVX-512 BW/VL/DQ, else ATen's own gemm."""
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    if torch.backends.mkldnn.is_available() and all(
            f" {flag}" in flags for flag in ("avx512bw", "avx512vl", "avx512dq")):
        version = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
        return "oneDNN" + (f" {version.group(1)}" if version else "")
    return "ATen bf16 gemm (not oneDNN: no AVX-512)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=PRESETS, default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: forward and loss under torch.autocast (bfloat16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    L, NH, C, T = PRESETS[args.preset]
    V = 256
    model = GPT(V, T, L, NH, C)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    x = torch.randint(0, V, (args.batch, T))
    y = torch.randint(0, V, (args.batch, T))
    times = []
    for s in range(args.warmup_steps + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16"
              else contextlib.nullcontext()):
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s >= args.warmup_steps:
            times.append(time.perf_counter() - t0)
    step_s = sum(times) / len(times)
    tokens_per_s = args.batch * T / step_s
    flops_per_token = 6 * (12 * L * C * C + V * C) + 12 * L * C * T
    blas = loaded_blas()
    kernels = openblas_kernels(blas)
    # fp32 products run on the BLAS torch loaded (OpenBLAS, as compare.py sets it).
    fp32_matmul = (f"OpenBLAS ({kernels} kernels)" if kernels
                   else ", ".join(os.path.basename(p) for p in blas) or "BLAS")
    matmul = bf16_matmul_engine() if args.precision == "bf16" else fp32_matmul
    print(json.dumps({
        "system": "pytorch", "torch": torch.__version__, "preset": args.preset,
        "threads": args.threads, "batch": args.batch, "steps": args.steps,
        "tokens_per_s": round(tokens_per_s, 1), "ms_per_step": round(1000 * step_s, 3),
        "gflops": round(flops_per_token * tokens_per_s / 1e9, 2),
        "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY", "default"),
        "precision": args.precision, "matmul": matmul,
        "blas": blas, "openblas_kernels": kernels}))


if __name__ == "__main__":
    main()
