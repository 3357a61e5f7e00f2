"""Semi-supervised methods vs supervised as the labelled set shrinks, unlabelled pool fixed.

Each method trains on a stratified fraction of the curated training clips (10%, 25%,
50%, 100% by default) with train_noisy as the unlabelled pool (the same 1,200 clips at
every fraction; only VAT, mean teacher and MixMatch read it). Every run: the same number
of optimiser steps and labelled batch size (the ssl_comparison budget). Scores are
whole-clip lwlrap of the final model on the labelled test set; learning curves are the
per-epoch validation lwlrap.

Writes into ``--out`` (default: this folder): ``results.csv``, ``results.md`` (test
lwlrap per method and fraction, and the gain over supervised), ``label_fraction.png``
(test lwlrap vs labelled fraction) and ``learning_curves.png`` (one panel per fraction).
Run folders go to the shared pool ``experiments/runs/``. Fractions run in the order
given, so an interrupted study has its first fractions complete.

Usage::

    python experiments/label_fraction/run.py            # the committed results
    python experiments/label_fraction/run.py --fractions 0.5 --epochs 2 --out /tmp/smoke
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fat_tf.config import METHOD_NAMES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
#: The study's methods: a deliberate subset of fat_tf.config.METHOD_NAMES, the ones its
#: published results compare (pseudolabel came later; add it with --methods).
METHODS = ("supervised", "mixup", "vat", "meanteacher", "mixmatch")
if not set(METHODS) <= set(METHOD_NAMES):
    raise ImportError(f"study methods {METHODS} are not fat_tf's {METHOD_NAMES}")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: demo dataset)")
    parser.add_argument("--out", default=str(HERE), help="where results are written")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--fractions", default="1.0,0.1,0.25,0.5",
                        help="labelled fractions of the curated training clips, in run order")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=common.EPOCHS)
    return parser


def grid(rows: list[dict], methods: list[str], fractions: list[float], key: str,
         cell) -> list[str]:
    """Markdown rows ``| method | cell(values at fraction) | ...`` ("—" where none)."""
    lines = []
    for m in methods:
        cells = []
        for f in fractions:
            sel = [r for r in rows if r["method"] == m and r["fraction"] == f]
            cells.append(cell([r[key] for r in sel], sel) if sel else "—")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def summarise(rows: list[dict], methods: list[str], fractions: list[float]) -> str:
    """Markdown tables: test lwlrap per method and fraction, and the gain over supervised."""
    fractions = sorted(f for f in fractions if any(r["fraction"] == f for r in rows))
    clips = {f: next(r["train_clips"] for r in rows if r["fraction"] == f)
             for f in fractions}
    head = ("| method | " + " | ".join(f"{f:.0%} ({clips[f]} clips)" for f in fractions)
            + " |\n|---|" + "---|" * len(fractions))
    sup = {(r["fraction"], r["seed"]): r["test_lwlrap"] for r in rows
           if r["method"] == "supervised"}

    def gain(values, sel):
        d = [r["test_lwlrap"] - sup[(r["fraction"], r["seed"])] for r in sel
             if (r["fraction"], r["seed"]) in sup]
        return f"{np.mean(d):+.3f}" if d else "—"

    def spread(values, sel):
        return common.mean_std(values)

    others = [m for m in methods if m != "supervised"]
    lines = ["Test lwlrap (final model):", "", head,
             *grid(rows, methods, fractions, "test_lwlrap", spread),
             "", "Gain over supervised (test lwlrap, same seed; negative = worse):", "", head,
             *grid(rows, others, fractions, "test_lwlrap", gain),
             "", "Validation lwlrap (final model):", "", head,
             *grid(rows, methods, fractions, "val_lwlrap", spread)]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], curves: dict, methods: list[str], fractions: list[float],
         out: Path) -> None:
    """Test lwlrap vs labelled fraction per method, and learning curves per fraction."""
    plt = common.pyplot()
    done = sorted(f for f in fractions if any(r["fraction"] == f for r in rows))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m in methods:
        xs = [f for f in done if any(r["method"] == m and r["fraction"] == f for r in rows)]
        ys = [np.mean([r["test_lwlrap"] for r in rows
                       if r["method"] == m and r["fraction"] == f]) for f in xs]
        ax.plot(xs, ys, marker="o", label=m, linewidth=2.5 if m == "supervised" else 1.5)
    ax.set_xscale("log")
    ax.set_xticks(done, [f"{f:.0%}" for f in done])
    ax.minorticks_off()
    ax.axhline(rows[0]["chance_lwlrap"], color="gray", linestyle=":", label="chance (val)")
    ax.set_xlabel("labelled fraction of the curated training clips")
    ax.set_ylabel("test lwlrap (final model)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(fig, out / "label_fraction.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(done), figsize=(4 * len(done), 3.6), sharey=True,
                             squeeze=False)
    for ax, f in zip(axes[0], done):
        for m in methods:
            if curves.get((m, f)):
                curve = np.mean(np.array(curves[(m, f)]), axis=0)
                ax.plot(np.arange(1, len(curve) + 1), curve, label=m)
        ax.set_title(f"{f:.0%} labelled")
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("validation lwlrap")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    common.save_figure(fig, out / "learning_curves.png")
    plt.close(fig)


def main(argv=None) -> int:
    """Run the study and write its results."""
    args = build_parser().parse_args(argv)
    methods = args.methods.split(",")
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out, data_dir, command, started = common.start_study(args, "label_fraction/run.py", argv)
    rows, curves = [], {}
    for fraction in fractions:
        for seed in seeds:
            for method in methods:
                common.timed(f"{method} {fraction:.0%} seed {seed}")
                settings = common.settings_list(data__labelled_fraction=str(fraction))
                run_dir = common.train_run(method, seed, args.epochs, settings, data_dir)
                rows.append({"method": method, "fraction": fraction, "seed": seed,
                             **common.run_row(run_dir)})
                curves.setdefault((method, fraction), []).append(
                    common.learning_curve(run_dir))
                print(rows[-1], flush=True)
                notes = (f"Small preset, {args.epochs} epochs x 10 steps, labelled batch 32, "
                         f"1,200 unlabelled clips; chance lwlrap (validation) "
                         f"{rows[0]['chance_lwlrap']:.3f}")
                common.write_results(out, rows, summarise(rows, methods, fractions), command,
                                     started, notes)
                plot(rows, curves, methods, fractions, out)
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
