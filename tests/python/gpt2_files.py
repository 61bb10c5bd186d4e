#!/usr/bin/env python3
"""GPT-2 in the files other tools write, for cllm's import and export tests.

Run with Debian's /usr/bin/python3 (python3-torch, numpy). transformers and
the safetensors package are not in Debian 12, so this writes the formats
from their specifications: Hugging Face's GPT2LMHeadModel folder
(config.json; model.safetensors: 8-byte little-endian header length, JSON
header, data; Conv1D weights stored (in, out); the attn.bias causal-mask
buffers save_pretrained keeps) and llm.c's model file (train_gpt2.py's
write_model: 256 int32 header, tensors of a kind for all layers together,
(out, in) weights, vocabulary padded with zero rows).

    gpt2_files.py make OUT --layers L --heads H --embd C --positions T --vocab V
                      [--seed S] [--dtype F32|BF16|F16] [--no-prefix] [--lm-head]
                      [--ref-positions R] [--no-llmc]
        OUT/hf/{config.json,model.safetensors}, OUT/gpt2.bin (llm.c v3),
        OUT/gpt2_bf16.bin (v5), OUT/reference.tns: tokens (1, T) int32,
        logits (R, V) of the first R positions (default all T) with the
        fp32 weights and logits_bf16 with the weights rounded to bf16, in
        float64 arithmetic stored as float32.
    gpt2_files.py logits FOLDER TOKENS_TNS OUT_TNS
        reads a Hugging Face folder (cllm export's) with this file's own
        reader and PyTorch model, writes the logits of the tokens.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import tensorfile  # noqa: E402

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
LN_EPS = 1e-5


def hf_shapes(L, C, T, V):
    """HF GPT2LMHeadModel's state_dict names (without "transformer.") and shapes."""
    shapes = {"wte.weight": (V, C), "wpe.weight": (T, C)}
    for i in range(L):
        p = f"h.{i}."
        shapes.update({
            p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
            p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
            p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
            p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
            p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
            p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    shapes.update({"ln_f.weight": (C,), "ln_f.bias": (C,)})
    return shapes


def forward(params, tokens, L, H):
    """HF GPT-2's forward (Conv1D: x @ W + b) in float64; logits (T, V)."""
    p = {k: torch.from_numpy(v).double() for k, v in params.items()}
    T = tokens.shape[0]
    C = p["wte.weight"].shape[1]
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))

    def ln(x, name):
        return torch.nn.functional.layer_norm(x, (C,), p[name + ".weight"], p[name + ".bias"], LN_EPS)

    for i in range(L):
        h = f"h.{i}."
        qkv = ln(x, h + "ln_1") @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]
        q, k, v = (t.view(T, H, C // H).transpose(0, 1) for t in qkv.split(C, dim=1))
        att = (q @ k.transpose(1, 2)) / math.sqrt(C // H)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(0, 1).reshape(T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        m = ln(x, h + "ln_2") @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"]
        m = torch.nn.functional.gelu(m, approximate="tanh")
        x = x + m @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    return ln(x, "ln_f") @ p["wte.weight"].T


def to_bf16(a):
    """Rounds float32 to bf16 (nearest even), returned as uint16 bits."""
    bits = a.astype("<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def from_bf16(bits):
    return (bits.astype("<u4") << 16).view("<f4")


def write_safetensors(path, tensors, metadata):
    header, data = {"__metadata__": metadata}, []
    at = 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + len(raw)]}
        data.append(raw)
        at += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for raw in data:
            f.write(raw)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", t
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"]).copy()
    return out, header.get("__metadata__")


def write_llmc(path, params, L, H, T, V, bf16):
    C = params["wte.weight"].shape[1]
    Vp = (V + 127) // 128 * 128
    header = np.zeros(256, dtype="<i4")
    header[:8] = [20240326, 5 if bf16 else 3, T, V, L, H, C, Vp]
    wte = np.concatenate([params["wte.weight"], np.zeros((Vp - V, C), dtype=np.float32)])
    kinds = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
             "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
             "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]
    pieces = [wte, params["wpe.weight"]]
    for kind in kinds:
        for i in range(L):
            w = params[f"h.{i}.{kind}"]
            pieces.append(w.T if kind in CONV1D else w)  # llm.c's weights are (out, in)
    pieces += [params["ln_f.weight"], params["ln_f.bias"]]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for piece in pieces:
            a = np.ascontiguousarray(piece, dtype="<f4")
            f.write(to_bf16(a).tobytes() if bf16 else a.tobytes())


def make(args):
    L, H, C, T, V = args.layers, args.heads, args.embd, args.positions, args.vocab
    rng = np.random.default_rng(args.seed)
    params = {}
    for name, shape in hf_shapes(L, C, T, V).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            params[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif name.endswith(".bias"):
            params[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
        else:
            params[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    # BF16 and F16 files hold weights those types represent exactly.
    if args.dtype == "BF16":
        params = {k: from_bf16(to_bf16(v)).reshape(v.shape) for k, v in params.items()}
    elif args.dtype == "F16":
        params = {k: v.astype(np.float16).astype(np.float32) for k, v in params.items()}

    hf = os.path.join(args.out, "hf")
    os.makedirs(hf, exist_ok=True)
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V,
              "n_positions": T, "n_ctx": T, "n_embd": C, "n_layer": L, "n_head": H,
              "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "n_inner": None,
              "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "torch_dtype": "float32"}
    with open(os.path.join(hf, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    prefix = "" if args.no_prefix else "transformer."
    tensors = {}
    np_dtype = {"F32": "<f4", "F16": "<f2"}
    for name, v in params.items():
        raw = to_bf16(v).tobytes() if args.dtype == "BF16" else v.astype(np_dtype[args.dtype]).tobytes()
        tensors[prefix + name] = (args.dtype, v.shape, raw)
        if name.endswith("ln_1.bias"):  # the causal mask buffer save_pretrained keeps
            i = name.split(".")[1]
            mask = np.tril(np.ones((T, T), dtype=np.float32)).reshape(1, 1, T, T)
            tensors[f"{prefix}h.{i}.attn.bias"] = ("F32", mask.shape, mask.astype("<f4").tobytes())
    if args.lm_head:
        tensors["lm_head.weight"] = tensors[prefix + "wte.weight"]
    write_safetensors(os.path.join(hf, "model.safetensors"), tensors, {"format": "pt"})

    tokens = rng.integers(0, V, size=T).astype(np.int32)
    # Attention is causal: the first R positions' logits need only R tokens.
    R = args.ref_positions or T
    first = torch.from_numpy(tokens[:R]).long()
    records = [("tokens", tokens.reshape(1, T))]
    with torch.no_grad():
        records.append(("logits", forward(params, first, L, H).numpy().astype(np.float32)))
    if not args.no_llmc:
        write_llmc(os.path.join(args.out, "gpt2.bin"), params, L, H, T, V, bf16=False)
        write_llmc(os.path.join(args.out, "gpt2_bf16.bin"), params, L, H, T, V, bf16=True)
        bf16 = {k: from_bf16(to_bf16(v)).reshape(v.shape) for k, v in params.items()}
        with torch.no_grad():
            records.append(("logits_bf16", forward(bf16, first, L, H).numpy().astype(np.float32)))
    tensorfile.write(os.path.join(args.out, "reference.tns"), records)


def logits(args):
    with open(os.path.join(args.folder, "config.json")) as f:
        config = json.load(f)
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"], config
    for field in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "layer_norm_epsilon",
                  "activation_function"):
        assert field in config, f"config.json lacks {field}"
    assert config["activation_function"] == "gelu_new" and config["layer_norm_epsilon"] == 1e-5, config
    tensors, metadata = read_safetensors(os.path.join(args.folder, "model.safetensors"))
    assert metadata == {"format": "pt"}, metadata  # transformers refuses other metadata
    params = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in tensors.items()}
    expected = hf_shapes(config["n_layer"], config["n_embd"], config["n_positions"], config["vocab_size"])
    assert {k: tuple(v.shape) for k, v in params.items()} == expected, "names or shapes differ from HF's"
    tokens = tensorfile.read(args.tokens)["tokens"].reshape(-1)
    tokens = tokens[:args.positions] if args.positions else tokens
    with torch.no_grad():
        out = forward(params, torch.from_numpy(tokens).long(), config["n_layer"], config["n_head"])
    tensorfile.write(args.out, [("logits", out.numpy().astype(np.float32))])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    for name in ("layers", "heads", "embd", "positions", "vocab"):
        m.add_argument("--" + name, type=int, required=True)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--dtype", choices=["F32", "BF16", "F16"], default="F32")
    m.add_argument("--no-prefix", action="store_true", help="names without 'transformer.'")
    m.add_argument("--lm-head", action="store_true", help="also store lm_head.weight (= wte)")
    m.add_argument("--ref-positions", type=int, default=0, help="logits of the first N positions only")
    m.add_argument("--no-llmc", action="store_true", help="no llm.c files")
    g = sub.add_parser("logits")
    g.add_argument("folder")
    g.add_argument("tokens")
    g.add_argument("out")
    g.add_argument("--positions", type=int, default=0, help="logits of the first N positions only")
    args = parser.parse_args()
    make(args) if args.command == "make" else logits(args)


if __name__ == "__main__":
    main()
