#!/usr/bin/env python3
"""scripts/plot.py plots a real run's metrics.jsonl.

Run with Debian's interpreter, which has matplotlib:

    /usr/bin/python3 tests/python/test_plot.py --cllm build/release/cllm --source-dir .

A short `cllm train` on a tiny model writes metrics.jsonl (30 steps, a record
every 5, a validation loss every 10). scripts/plot.py, run with this
interpreter, must draw it to RUN_DIR/loss.png: a PNG of plausible size. It
must also draw a sweep folder (lr-*/metrics.jsonl, as jobs/sweep.sbatch
writes), a file whose last line is cut mid-write (no newline), and records
with null values and keys it does not know; and it must refuse a complete
line that is not a record with exit 1 and one stderr line naming the file
and line.

Exit status: 0 pass, 1 fail (with a FAIL: line saying why), 77 skipped
because matplotlib cannot be imported (ctest reports it as skipped).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

SKIP = 77

try:
    import matplotlib  # noqa: F401  (scripts/plot.py needs it, in this interpreter)
except ImportError as e:  # pragma: no cover - depends on the interpreter
    print(f"SKIP: {e} (run with an interpreter that has matplotlib, "
          f"e.g. /usr/bin/python3); this interpreter is {sys.executable}")
    sys.exit(SKIP)

TRAIN_ARGS = ["--layers", "1", "--heads", "2", "--embd", "32", "--seq-len", "32",
              "--micro-batch", "2", "--global-batch", "4", "--steps", "30",
              "--log-every", "5", "--eval-every", "10", "--eval-batches", "1",
              "--checkpoint-every", "0", "--sample-tokens", "0", "--threads", "1"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Checker:
    def __init__(self, plot_script, cwd):
        self.plot_script, self.cwd, self.failures = plot_script, cwd, []

    def plot(self, *args):
        cmd = [sys.executable, self.plot_script, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", cwd=self.cwd)
        print(f"{' '.join(cmd[1:])}: exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
        return r

    def fail(self, what):
        self.failures.append(what)

    def plots(self, what, png, *args):
        """plot.py ARGS exits 0 and writes png, a PNG over 10 KB."""
        if os.path.exists(png):
            os.remove(png)
        r = self.plot(*args)
        if r.returncode != 0:
            return self.fail(f"{what}: exit {r.returncode}: {r.stderr.strip()}")
        if png not in r.stdout and os.path.relpath(png, self.cwd) not in r.stdout:
            self.fail(f"{what}: stdout does not say it wrote {png}: {r.stdout.strip()}")
        if not os.path.isfile(png):
            return self.fail(f"{what}: {png} not written")
        with open(png, "rb") as f:
            head = f.read(len(PNG_SIGNATURE))
        size = os.path.getsize(png)
        if head != PNG_SIGNATURE or size <= 10_000:
            self.fail(f"{what}: {png} is not a plausible PNG ({size} bytes, starts {head!r})")

    def refuses(self, what, where, *args):
        """plot.py ARGS exits 1 with one stderr line naming where."""
        r = self.plot(*args)
        err = r.stderr.strip()
        if r.returncode != 1 or len(err.splitlines()) != 1 or where not in err:
            self.fail(f"{what}: wanted exit 1 and one stderr line naming {where}, "
                      f"got exit {r.returncode}: {err!r}")


def copy_run(metrics, folder, extra=""):
    os.makedirs(folder)
    path = os.path.join(folder, "metrics.jsonl")
    shutil.copyfile(metrics, path)
    with open(path, "a") as f:
        f.write(extra)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cllm", required=True, help="the cllm executable")
    parser.add_argument("--source-dir", required=True, help="the repository")
    args = parser.parse_args()
    plot_script = os.path.join(args.source_dir, "scripts", "plot.py")
    with tempfile.TemporaryDirectory(prefix="cllm-plot-") as tmp:
        check = Checker(plot_script, tmp)
        run = os.path.join(tmp, "run")
        cmd = [args.cllm, "train", "--data", os.path.join(args.source_dir, "data", "austen.txt"),
               "--out", run] + TRAIN_ARGS
        r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        print(f"{' '.join(cmd)}: exit {r.returncode}")
        metrics = os.path.join(run, "metrics.jsonl")
        if r.returncode != 0 or not os.path.isfile(metrics):
            print(f"FAIL: {' '.join(cmd)} exited {r.returncode} without {metrics}: "
                  f"{r.stderr.strip()}")
            return 1
        with open(metrics) as f:
            lines = f.read().splitlines()
        print(f"{metrics}: {len(lines)} records, {sum('val_loss' in l for l in lines)} "
              f"with a val_loss")
        if len(lines) < 5 or not any("val_loss" in l for l in lines):
            check.fail(f"{metrics}: wanted a record every 5 steps, some with a val_loss, "
                       f"got:\n" + "\n".join(lines))

        check.plots("the run", os.path.join(run, "loss.png"), run)

        sweep = os.path.join(tmp, "cllm-sweep")
        for rate in ("1e-3", "3e-4"):
            copy_run(metrics, os.path.join(sweep, f"lr-{rate}"))
        check.plots("a sweep folder", os.path.join(sweep, "loss.png"), sweep)
        check.plots("a sweep and the run", os.path.join(tmp, "plot.png"), sweep, run)

        partial = os.path.join(tmp, "partial")
        copy_run(metrics, partial, '{"step": 35, "loss": 2.1, "tokens_')
        check.plots("a last line cut mid-write", os.path.join(tmp, "partial.png"),
                    partial, "--out", os.path.join(tmp, "partial.png"))

        odd = os.path.join(tmp, "odd-values")
        copy_run(metrics, odd, '{"step": 35, "loss": null, "val_loss": null, "tokens_per_s": '
                 '1000.0, "comm_wait_s": 0.25, "not_a_key_of_cllm": [1, {"x": 2}]}\n')
        check.plots("null values and unknown keys", os.path.join(odd, "loss.png"), odd)

        huge = os.path.join(tmp, "huge-values")
        copy_run(metrics, huge, '{"step": 35, "loss": 1.7e308, "val_loss": -1.79e308, '
                 '"tokens_per_s": 1' + "0" * 400 + '}\n')
        check.plots("values near float's limit", os.path.join(huge, "loss.png"), huge)
        for name, extra in (("deep", '{"step": 35, "x": ' + "[" * 100000 + "]" * 100000 + "}\n"),
                            ("long-step", '{"step": 1' + "0" * 4300 + ', "loss": 2.0}\n')):
            bad = copy_run(metrics, os.path.join(tmp, name), extra)
            check.refuses(f"a {name} record", f"metrics.jsonl:{len(lines) + 1}", os.path.dirname(bad))
        check.refuses("an --out format matplotlib lacks", "x.xyz", run, "--out",
                      os.path.join(tmp, "x.xyz"))

        n = 3  # a line in the middle, then one at the end, each complete
        bad = copy_run(metrics, os.path.join(tmp, "not-json"))
        with open(bad, "w") as f:
            f.write("\n".join(lines[:n - 1] + ['{"step": 15, "loss": 2.'] + lines[n - 1:]) + "\n")
        check.refuses(f"a line {n} that is not JSON", f"metrics.jsonl:{n}", os.path.dirname(bad))
        bad = copy_run(metrics, os.path.join(tmp, "no-step"), '{"loss": 2.0}\n')
        check.refuses(f"a line {len(lines) + 1} without a step",
                      f"metrics.jsonl:{len(lines) + 1}", os.path.dirname(bad))
        check.refuses("a folder without metrics", os.path.join(tmp, "nothing"),
                      os.path.join(tmp, "nothing"))
    for f in check.failures:
        print(f"FAIL: {f}")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
