#!/usr/bin/python3
"""Plot training runs' metrics.jsonl: training loss, validation loss, tokens/s.

    scripts/plot.py RUN_DIR [RUN_DIR...] [--out FILE.png]
    scripts/plot.py runs/austen-small                  # -> runs/austen-small/loss.png
    scripts/plot.py runs/a runs/b --out compare.png    # default for several: ./plot.png
    scripts/plot.py runs/cllm-sweep                    # jobs/sweep.sbatch's lr-* runs
                                                       # -> runs/cllm-sweep/loss.png

Each RUN_DIR holds the metrics.jsonl that `cllm train` writes (one JSON object
a line). A RUN_DIR without one but with lr-<rate>/metrics.jsonl subfolders
(jobs/sweep.sbatch's runs/<job name>/lr-<rate>) stands for those runs, in
order of rate, labelled <job name>/lr-<rate>. Other runs are labelled by their
folder's name. The three panels share the step axis; one line per run.

A run still being written may end in a line cut mid-write (no newline): it is
ignored. Values that are JSON null (not finite) or beyond 1e300 in magnitude
are skipped, and keys other
than step, loss, val_loss and tokens_per_s (comm_wait_s, ...) are ignored.
A complete line that is not a JSON object with an integer "step" is an error
(exit 1, one line naming the file and line). A metrics.jsonl with no records
yet is skipped with a warning when other runs have records, else an error.
Needs matplotlib (scripts/setup.sh test installs python3-matplotlib); it draws
with the Agg backend, so no display is needed.
"""

import argparse
import json
import math
import os
import sys

PANELS = [("loss", "training loss"), ("val_loss", "validation loss"),
          ("tokens_per_s", "tokens/s")]


class PlotError(Exception):
    pass


def find_runs(run_dir):
    """[(label, metrics path)] for a run folder or a sweep folder."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.isfile(path):
        return [(os.path.basename(os.path.abspath(run_dir)), path)]
    sweep = []
    if os.path.isdir(run_dir):
        for name in os.listdir(run_dir):
            sub = os.path.join(run_dir, name, "metrics.jsonl")
            if name.startswith("lr-") and os.path.isfile(sub):
                try:
                    rate = float(name[3:])
                except ValueError:
                    rate = math.inf
                sweep.append((rate, name, sub))
    if not sweep:
        raise PlotError(f"{run_dir}: no metrics.jsonl and no lr-*/metrics.jsonl "
                        f"(not a cllm train --out folder or a sweep folder)")
    job = os.path.basename(os.path.abspath(run_dir))
    return [(f"{job}/{name}", sub) for _, name, sub in sorted(sweep)]


# Larger magnitudes are skipped like non-finite ones: matplotlib's axis
# arithmetic overflows near float's limit (1.8e308) and fails.
PLOTTABLE = 1e300


def number(value):
    """value as a float, or None for null, non-numbers and values that are not
    finite or too large to plot."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer past float's range
        return None
    return value if math.isfinite(value) and abs(value) <= PLOTTABLE else None


def read_metrics(path):
    """{key: ([steps], [values])} for the PANELS keys, from complete lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise PlotError(f"{path}: {e.strerror}")
    lines = text.split("\n")[:-1]  # the last piece lacks a newline: cut mid-write, or ""
    series = {key: ([], []) for key, _ in PANELS}
    for lineno, line in enumerate(lines, start=1):
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlotError(f"{where}: not JSON: {e.msg} at column {e.colno}")
        except RecursionError:
            raise PlotError(f"{where}: not a metrics record: nested too deeply")
        except ValueError as e:  # an integer of more digits than Python converts
            raise PlotError(f"{where}: not a metrics record: {e}")
        if not isinstance(record, dict):
            raise PlotError(f"{where}: not a JSON object")
        step = record.get("step")
        if "step" not in record:
            raise PlotError(f"{where}: a record without \"step\"")
        if isinstance(step, bool) or not isinstance(step, int):
            raise PlotError(f"{where}: \"step\" is not an integer: {json.dumps(step)}")
        for key, (steps, values) in series.items():
            value = number(record.get(key))
            if value is not None:
                steps.append(step)
                values.append(value)
    return series, len(lines)


def plot(runs, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("matplotlib is missing: run scripts/setup.sh test "
                        "(installs python3-matplotlib) and use /usr/bin/python3")
    fig, axes = plt.subplots(len(PANELS), 1, sharex=True, figsize=(8, 6), dpi=100)
    for ax, (key, title) in zip(axes, PANELS):
        for label, series in runs:
            steps, values = series[key]
            if steps:
                ax.plot(steps, values, label=label, linewidth=1.2,
                        marker="o" if len(steps) < 20 else None, markersize=3)
        if not ax.lines:
            ax.text(0.5, 0.5, "no values yet", transform=ax.transAxes,
                    ha="center", va="center", color="gray")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small", loc="upper right")
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise PlotError(f"{out}: cannot write: {e.strerror}")
    except ValueError as e:  # a format matplotlib does not write: "x.xyz"
        raise PlotError(f"{out}: {e}")
    finally:
        plt.close(fig)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="default --out: RUN_DIR/loss.png for one RUN_DIR (a sweep folder too), "
               "else ./plot.png")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", metavar="FILE.png")
    args = parser.parse_args()
    try:
        found = [run for d in args.run_dirs for run in find_runs(d)]
        runs = []
        for label, path in found:
            series, records = read_metrics(path)
            if records:
                runs.append((label, series))
            elif len(found) == 1:
                raise PlotError(f"{path}: no records yet")
            else:
                print(f"plot.py: warning: {path}: no records yet, skipped", file=sys.stderr)
        if not runs:
            raise PlotError("no run has records yet: " + ", ".join(p for _, p in found))
        out = args.out
        if out is None:
            single = len(args.run_dirs) == 1
            out = os.path.join(args.run_dirs[0], "loss.png") if single else "plot.png"
        plot(runs, out)
    except PlotError as e:
        print(f"plot.py: {e}", file=sys.stderr)
        return 1
    print(f"plot.py: wrote {out} ({len(runs)} run{'s' if len(runs) != 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
