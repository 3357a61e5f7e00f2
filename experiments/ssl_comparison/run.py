"""Compare every training method on the demo data with the same budget and several seeds.

The labelled set is deliberately small (``--labelled-fraction`` of the curated training
clips, stratified); train_noisy is the unlabelled pool for the semi-supervised methods.
Every method runs the same number of optimiser steps with the same labelled batch size.
Each run is scored on its held-out curated clips (validation) and on the labelled test
set, both with whole-clip sliding windows, using the final model.

Writes into ``--out`` (default: this folder): ``results.csv`` (one row per run),
``results.md`` (mean ± std per method), ``ssl_comparison.png`` (test lwlrap per method and
validation learning curves) and keeps every run folder under ``runs/`` (ignored by git).

Usage::

    python experiments/ssl_comparison/run.py                # the committed results
    python experiments/ssl_comparison/run.py --seeds 0 --epochs 2 --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METHODS = ("supervised", "mixup", "vat", "meanteacher", "mixmatch")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: demo dataset)")
    parser.add_argument("--out", default=str(HERE), help="where results are written")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--labelled-fraction", type=float, default=0.25)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra config overrides applied to every run")
    return parser


def train_one(method: str, seed: int, args, data_dir: str, run_dir: Path) -> dict:
    """Train one method/seed in a fresh process (clean Keras state) and score it."""
    settings = [
        f"train.steps_per_epoch={args.steps_per_epoch}",
        f"data.labelled_fraction={args.labelled_fraction}",
        *args.overrides,
    ]
    cmd = [sys.executable, "-m", "fat_tf.train", "--data", data_dir, "--out", str(run_dir),
           "--method", method, "--seed", str(seed), "--epochs", str(args.epochs)]
    for s in settings:
        cmd += ["--set", s]
    started = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.time() - started
    test = subprocess.run(
        [sys.executable, "-m", "fat_tf.evaluate", str(run_dir), "--split", "test",
         "--model", "final"], check=True, capture_output=True, text=True,
    ).stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "method": method, "seed": seed,
        "val_lwlrap": summary["val_lwlrap"],
        "test_lwlrap": json.loads(test[test.rindex("{\n"):])["lwlrap"],
        "chance_lwlrap": summary["chance_lwlrap"],
        "train_clips": summary["train_clips"],
        "seconds": round(seconds, 1),
    }


def learning_curve(run_dir: Path) -> list[float]:
    """Validation lwlrap per epoch of one run."""
    with open(run_dir / "metrics.csv", newline="") as f:
        return [float(r["val_lwlrap"]) for r in csv.DictReader(f)]


def summarise(rows: list[dict], methods: list[str]) -> str:
    """Markdown table: mean ± std of test and validation lwlrap per method."""
    out = io.StringIO()
    out.write("| method | test lwlrap (mean ± std) | validation lwlrap | runs | s/run |\n")
    out.write("|---|---|---|---|---|\n")
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        t = np.array([r["test_lwlrap"] for r in sel])
        v = np.array([r["val_lwlrap"] for r in sel])
        s = np.mean([r["seconds"] for r in sel])
        out.write(f"| {m} | {t.mean():.4f} ± {t.std(ddof=1) if len(t) > 1 else 0:.4f} | "
                  f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f} | {len(sel)} | "
                  f"{s:.0f} |\n")
    return out.getvalue()


def plot(rows: list[dict], curves: dict, methods: list[str], path: Path) -> None:
    """Bar chart of test lwlrap per method and mean validation learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, lines) = plt.subplots(1, 2, figsize=(11, 4))
    means = [np.mean([r["test_lwlrap"] for r in rows if r["method"] == m]) for m in methods]
    stds = [np.std([r["test_lwlrap"] for r in rows if r["method"] == m]) for m in methods]
    bars.bar(methods, means, yerr=stds, capsize=4, color="tab:blue")
    bars.axhline(rows[0]["chance_lwlrap"], color="gray", linestyle=":", label="chance (val)")
    bars.set_ylabel("test lwlrap (final model)")
    bars.set_ylim(0, 1)
    bars.legend()
    for m in methods:
        curve = np.mean(np.array(curves[m]), axis=0)
        lines.plot(np.arange(1, len(curve) + 1), curve, label=m)
    lines.set_xlabel("epoch")
    lines.set_ylabel("validation lwlrap (mean over seeds)")
    lines.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    """Run the study and write its results."""
    args = build_parser().parse_args(argv)
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    data_dir = args.data
    if data_dir is None:
        from fat_tf.data.demo import default_demo_dir

        data_dir = str(default_demo_dir())
    rows, curves = [], {m: [] for m in methods}
    started = time.time()
    for seed in seeds:
        for method in methods:
            run_dir = out / "runs" / f"{method}-seed{seed}"
            row = train_one(method, seed, args, data_dir, run_dir)
            rows.append(row)
            curves[method].append(learning_curve(run_dir))
            print(json.dumps(row), flush=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    command = "python experiments/ssl_comparison/run.py " + " ".join(argv or sys.argv[1:])
    header = (f"Command: `{command.strip()}`  \nMachine: {platform.machine()}, "
              f"{platform.processor() or 'CPU'}, wall time {time.time() - started:.0f} s  \n"
              f"Labelled clips per run: {rows[0]['train_clips']}; chance lwlrap "
              f"(validation): {rows[0]['chance_lwlrap']:.3f}\n\n")
    (out / "results.md").write_text(header + summarise(rows, methods))
    plot(rows, curves, methods, out / "ssl_comparison.png")
    print(header + summarise(rows, methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
