#!/usr/bin/python3
"""Side-by-side throughput of `cllm bench` and the PyTorch baseline
(bench/pytorch_train.py) on this machine, in one run: small and medium
presets, 1 and 2 threads, micro-batches of 8 sequences (cllm: one per
thread; PyTorch: the same global batch in one step), --repeats interleaved
rounds with the median of each case. Prints a table and writes the figures
as JSON (--json-out).

--precision fp32|bf16 and --matmul onednn|openblas go to `cllm bench` and to
cllm_gemm_ceiling (so the ceiling is measured on the same engine and
precision); PyTorch gets --precision only: fp32 runs its products on
OpenBLAS, bf16 runs forward and loss under torch.autocast (bfloat16), whose
products go to oneDNN. The table's first line and every JSON row name the
precision and the engines.

  /usr/bin/python3 bench/compare.py [--cllm build/release/cllm] [--steps 10]
  /usr/bin/python3 bench/compare.py --precision bf16   # cllm bf16 vs PyTorch autocast bf16
  /usr/bin/python3 bench/compare.py --layouts 1x2,2x1,2x2 --no-torch   # MPI layouts
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OPENBLAS_OPENMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cllm", default=os.path.join(HERE, "..", "build", "release", "cllm"))
    ap.add_argument("--presets", default="small,medium")
    ap.add_argument("--layouts", default="1x1,1x2",
                    help="RANKSxTHREADS list; ranks > 1 run through jobs/local.sh (mpirun), "
                         "PyTorch runs for one-rank layouts only")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds over all cases; each figure is the median of its rounds")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="inputs of the matrix products (cllm and its GEMM ceiling: --precision; "
                         "PyTorch: bf16 runs forward and loss under torch.autocast)")
    ap.add_argument("--matmul", choices=("onednn", "openblas"), default="onednn",
                    help="cllm's matrix engine (cllm and its GEMM ceiling); openblas is fp32 only")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args()
    if args.precision == "bf16" and args.matmul == "openblas":
        ap.error("--precision bf16 needs --matmul onednn: OpenBLAS has no bf16 product")
    engine_args = ["--matmul", args.matmul, "--precision", args.precision]

    env = dict(os.environ, OMP_PROC_BIND="close", OMP_PLACES="cores")
    # The machine's GEMM ceiling at the models' shapes: a training pass's
    # products on one matrix engine per thread, same engine and precision.
    ceiling_bin = os.path.join(os.path.dirname(args.cllm), "cllm_gemm_ceiling")
    threads_used = sorted({l.split("x")[1] for l in args.layouts.split(",")})
    ceiling_run = (run_json([ceiling_bin, "--threads", ",".join(threads_used)] + engine_args, env)
                   if os.path.exists(ceiling_bin) else {})
    ceiling = ceiling_run.get("gemm_ceiling_gflops", {})
    # PyTorch at its best here: OpenBLAS's OpenMP build (not the pthread build
    # or the reference BLAS that Debian's alternatives may select).
    torch_env = dict(env, LD_LIBRARY_PATH=OPENBLAS_OPENMP)
    # ... and its AVX-512 kernels where the CPU has them (PLATFORM.md: +5-15%).
    with open("/proc/cpuinfo") as f:
        if " avx512f" in f.read():
            torch_env["ATEN_CPU_CAPABILITY"] = "avx512"
    # Rounds interleave the cases, so a noisy minute on a shared machine
    # lands on every case instead of on one; each figure is a median.
    cases = [(p, tuple(map(int, l.split("x"))))
             for p in args.presets.split(",") for l in args.layouts.split(",")]
    runs = {case: {"cllm": [], "pytorch": []} for case in cases}
    for round_ in range(args.repeats):
        for preset, (ranks, t) in cases:
            env["OMP_NUM_THREADS"] = torch_env["OMP_NUM_THREADS"] = str(t)
            launcher = ([os.path.join(HERE, "..", "jobs", "local.sh"), "-n", str(ranks), "-t",
                         str(t), "--"] if ranks > 1 else [args.cllm])
            runs[(preset, (ranks, t))]["cllm"].append(run_json(
                launcher + ["bench", "--preset", preset, "--threads", str(t), "--micro-batch",
                            str(args.micro_batch), "--steps", str(args.steps), "--json"]
                + engine_args,
                dict(env, CLLM_BINARY=args.cllm)))
            if not args.no_torch and ranks == 1:
                runs[(preset, (ranks, t))]["pytorch"].append(run_json(
                    [sys.executable, os.path.join(HERE, "pytorch_train.py"), "--preset", preset,
                     "--threads", str(t), "--batch", str(args.micro_batch * t),
                     "--steps", str(args.steps), "--precision", args.precision], torch_env))
            print(f"round {round_ + 1}: measured {preset} {ranks}x{t}", file=sys.stderr)

    def median_run(results):
        if not results:
            return None
        ordered = sorted(results, key=lambda r: r["tokens_per_s"])
        chosen = dict(ordered[len(ordered) // 2])
        chosen["all_tokens_per_s"] = [r["tokens_per_s"] for r in results]
        return chosen

    rows = []
    for preset, (ranks, t) in cases:
        row = {"preset": preset, "ranks": ranks, "threads": t, "precision": args.precision,
               "cllm": median_run(runs[(preset, (ranks, t))]["cllm"])}
        row["matmul"] = row["cllm"].get("matmul")  # cllm's engine, as cllm bench names it
        if not args.no_torch and ranks == 1:
            row["pytorch"] = median_run(runs[(preset, (ranks, t))]["pytorch"])
        rows.append(row)

    base = {r["preset"]: r["cllm"]["tokens_per_s"]
            for r in rows if r["ranks"] == 1 and r["threads"] == 1}
    torch_rows = [r for r in rows if r.get("pytorch")]
    torch_matmul = (f", PyTorch {torch_rows[0]['pytorch'].get('matmul')}"
                    + (" under autocast" if args.precision == "bf16" else "")) if torch_rows else ""
    print(f"precision {args.precision}; matmul: cllm {rows[0]['matmul']}{torch_matmul}")
    print(f"{'preset':8} {'layout':>6} {'cllm tok/s':>11} {'GFLOP/s':>8} {'of GEMM':>7} "
          f"{'speed-up':>8} {'effic.':>6} {'CPU %':>5} {'steal %':>7} {'comm %':>6} {'ctx MiB':>8} {'torch tok/s':>11} "
          f"{'cllm/torch':>10}")
    for r in rows:
        c = r["cllm"]
        tt = (r.get("pytorch") or {}).get("tokens_per_s")
        r["speedup_vs_1x1"] = c["tokens_per_s"] / base[r["preset"]] if r["preset"] in base else None
        r["ratio_to_pytorch"] = c["tokens_per_s"] / tt if tt else None
        # Parallel efficiency: speed-up over the cores the layout uses.
        cores = r["ranks"] * r["threads"]
        r["efficiency"] = r["speedup_vs_1x1"] / cores if r["speedup_vs_1x1"] else None
        comm = 100 * c["time_split"]["allreduce"]
        # The ceiling of as many cores as the layout uses, when measured.
        gemm = ceiling.get(r["preset"], {}).get(str(cores))
        r["gemm_ceiling_gflops"] = gemm
        r["fraction_of_gemm_ceiling"] = c["gflops"] / gemm if gemm else None
        torch_cell = f"{tt:.0f}" if tt else "-"
        ratio_cell = f"{r['ratio_to_pytorch']:.2f}" if tt else "-"
        print(f"{r['preset']:8} {str(r['ranks']) + 'x' + str(r['threads']):>6} "
              f"{c['tokens_per_s']:>11.0f} {c['gflops']:>8.1f} "
              f"{r['fraction_of_gemm_ceiling'] or 0:>7.2f} {r['speedup_vs_1x1'] or 0:>8.2f} "
              f"{r['efficiency'] or 0:>6.2f} {100 * c.get('cpu_busy', 0):>5.0f} "
              f"{100 * c.get('cpu_steal', 0):>7.0f} {comm:>6.1f} "
              f"{c['thread_context_bytes'] / 2**20:>8.1f} {torch_cell:>11} {ratio_cell:>10}")
    # Where each step goes (cllm bench's time split, % of the step).
    split_keys = {"matmul": "matmul", "attention": "attention", "waiting": "waiting",
                  "other_forward_backward": "other", "thread_reduce": "reduce",
                  "allreduce": "allreduce", "optimizer": "optimizer", "data": "data"}
    print(f"{'time split %':15}" + "".join(f"{label:>10}" for label in split_keys.values()))
    for r in rows:
        split = r["cllm"]["time_split"]
        print(f"{r['preset']:8} {str(r['ranks']) + 'x' + str(r['threads']):>6}"
              + "".join(f"{100 * split.get(k, 0):>10.1f}" for k in split_keys))
    if ceiling:
        print(f"GEMM ceiling (GFLOP/s, {ceiling_run.get('matmul')} {ceiling_run.get('precision')}, "
              "one engine per thread):", json.dumps(ceiling))
    print("cllm matmul:", rows[0]["matmul"], rows[0]["cllm"].get("precision"))
    if torch_rows:
        t = torch_rows[0]["pytorch"]
        print("PyTorch BLAS:", ", ".join(t["blas"]), f"({t.get('openblas_kernels')} kernels)",
              "| ATEN_CPU_CAPABILITY:", t.get("aten_cpu_capability"))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
