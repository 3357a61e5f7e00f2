"""Ablations of the reference recipe on the demo data: one change at a time, several seeds.

Every variant is the supervised reference CNN (small preset) trained on all curated
training clips for the same number of optimiser steps, with one setting changed: skip
connections, learning-rate schedule, loss, crop length. Test-time augmentation (average
with the time-reversed clip) needs no training: it is scored on the baseline's models.
Scores are whole-clip lwlrap of the final model on the labelled test set.

Writes into ``--out`` (default: this folder): ``results.csv`` (one row per run and
scoring), ``results.md`` (mean ± std per variant and the paired difference to the
baseline), ``ablations.png`` (test lwlrap per variant, learning curves) and
``lr_schedules.png``. Run folders go to the shared pool ``experiments/runs/``.

Usage::

    python experiments/ablations/run.py                 # the committed results
    python experiments/ablations/run.py --seeds 0 --epochs 2 --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent

#: variant -> (settings changed from the baseline, what it tests)
VARIANTS = {
    "baseline": ({}, "reference CNN, cosine annealing, BCE, 128-frame crops, no TTA"),
    "skip": ({"model.backbone": "cnn_skip"}, "skip connections (block input concatenated)"),
    "cosine_restarts": ({"optim.lr_schedule": "cosine_restarts"},
                        "Keras CosineDecayRestarts (per step) instead of per-epoch cosine"),
    "constant_lr": ({"optim.lr_schedule": "constant"}, "constant learning rate 3e-3"),
    "hinge": ({"train.loss": "hinge"}, "multi-label hinge loss instead of BCE"),
    "crop_64": ({"data.crop_frames": "64"}, "64-frame (~1 s) crops and evaluation windows"),
    "crop_256": ({"data.crop_frames": "256"}, "256-frame (~4 s) crops and evaluation windows"),
    "tta": ({}, "baseline models, scored with time-reversal TTA (no retraining)"),
}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: demo dataset)")
    parser.add_argument("--out", default=str(HERE), help="where results are written")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=common.EPOCHS)
    return parser


def summarise(rows: list[dict], variants: list[str]) -> str:
    """Markdown table: mean ± std per variant and the paired difference to the baseline."""
    base = [r for r in rows if r["variant"] == "baseline"]
    lines = ["| variant | change | test lwlrap (mean ± std) | Δ test vs baseline (paired) "
             "| validation lwlrap (final) | seeds | train s/run |",
             "|---|---|---|---|---|---|---|"]
    for v in variants:
        sel = [r for r in rows if r["variant"] == v]
        if not sel:
            continue
        diffs = common.paired_differences(sel, base, "test_lwlrap")
        delta = common.mean_std(diffs) if diffs.size and v != "baseline" else "—"
        lines.append(
            f"| {v} | {VARIANTS[v][1]} | {common.mean_std(r['test_lwlrap'] for r in sel)} | "
            f"{delta} | {common.mean_std(r['val_lwlrap'] for r in sel)} | {len(sel)} | "
            f"{np.mean([r['train_seconds'] for r in sel]):.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], curves: dict, lrs: dict, variants: list[str], out: Path) -> None:
    """Test lwlrap per variant (bars = mean, dots = seeds) and mean validation curves."""
    plt = common.pyplot()
    present = [v for v in variants if any(r["variant"] == v for r in rows)]
    fig, (bars, lines) = plt.subplots(1, 2, figsize=(13, 4.5))
    for i, v in enumerate(present):
        scores = [r["test_lwlrap"] for r in rows if r["variant"] == v]
        bars.bar(i, np.mean(scores), color="tab:orange" if v == "baseline" else "tab:blue")
        bars.plot([i] * len(scores), scores, "k.", markersize=8)
    bars.set_xticks(range(len(present)), present, rotation=30, ha="right")
    bars.axhline(rows[0]["chance_lwlrap"], color="gray", linestyle=":", label="chance (val)")
    bars.set_ylabel("test lwlrap (final model)")
    bars.set_ylim(0, 1)
    bars.legend(loc="upper right")
    for v in present:
        if curves.get(v):
            curve = np.mean(np.array(curves[v]), axis=0)
            lines.plot(np.arange(1, len(curve) + 1), curve, label=v)
    lines.set_xlabel("epoch")
    lines.set_ylabel("validation lwlrap (mean over seeds)")
    lines.legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(fig, out / "ablations.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for v in ("baseline", "cosine_restarts", "constant_lr"):
        if v in lrs:
            ax.plot(np.arange(1, len(lrs[v]) + 1), lrs[v], label=v, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate (end of epoch)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    common.save_figure(fig, out / "lr_schedules.png")
    plt.close(fig)


def main(argv=None) -> int:
    """Run the study and write its results."""
    args = build_parser().parse_args(argv)
    variants = args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out, data_dir, command, started = common.start_study(args, "ablations/run.py", argv)
    rows, curves, lrs = [], {v: [] for v in variants}, {}
    for seed in seeds:
        for v in variants:
            trained = "baseline" if v == "tta" else v
            settings = common.settings_list(**{k.replace(".", "__"): val
                                               for k, val in VARIANTS[trained][0].items()})
            common.timed(f"{v} seed {seed}")
            run_dir = common.train_run("supervised", seed, args.epochs, settings, data_dir)
            rows.append({"variant": v, "seed": seed,
                         **common.run_row(run_dir, tta=(v == "tta"))})
            curves[v].append(common.learning_curve(run_dir))
            lrs.setdefault(v, common.learning_curve(run_dir, "learning_rate"))
            print(rows[-1], flush=True)
            notes = (f"Supervised, small preset, {rows[0]['train_clips']} labelled clips, "
                     f"{args.epochs} epochs x 10 steps; chance lwlrap (validation) "
                     f"{rows[0]['chance_lwlrap']:.3f}")
            common.write_results(out, rows, summarise(rows, variants), command, started, notes)
            plot(rows, curves, lrs, variants, out)
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
