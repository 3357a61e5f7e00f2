"""What to do with the noisy set: ignore it, use its labels, or use it as unlabelled audio.

All curated training clips are labelled in every run. train_noisy (1,200 clips on the
demo data, 35% of them with a wrong or missing label, and from a shifted domain) is
either not used ("curated only"), added to the labelled set with its noisy labels
("+ noisy as labelled"), or given to a semi-supervised method as unlabelled audio
("+ noisy as unlabelled"). Supervised training and mixup can do the first two; VAT, mean
teacher and MixMatch need unlabelled audio, so they do the third. Every run: the same
number of optimiser steps and labelled batch size. Scores are whole-clip lwlrap of the
final model on the labelled test set.

Writes into ``--out`` (default: this folder): ``results.csv``, ``results.md`` (mean ± std
per method and use of the noisy set) and ``noisy_labels.png``. Run folders go to the
shared pool ``experiments/runs/``.

Usage::

    python experiments/noisy_labels/run.py              # the committed results
    python experiments/noisy_labels/run.py --seeds 0,1 --ssl-seeds 0,1   # more seeds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent

#: (method, use of train_noisy, data.noisy_usage). Supervised and mixup never read the
#: unlabelled stream, so with the default noisy_usage=unlabelled they train on curated only.
SETTINGS = (
    ("supervised", "curated only", "unlabelled"),
    ("supervised", "+ noisy as labelled", "labelled"),
    ("mixup", "curated only", "unlabelled"),
    ("mixup", "+ noisy as labelled", "labelled"),
    ("vat", "+ noisy as unlabelled", "unlabelled"),
    ("meanteacher", "+ noisy as unlabelled", "unlabelled"),
    ("mixmatch", "+ noisy as unlabelled", "unlabelled"),
)
USES = ("curated only", "+ noisy as labelled", "+ noisy as unlabelled")
#: The methods given train_noisy as unlabelled audio (trained with --ssl-seeds).
SSL = tuple(dict.fromkeys(m for m, use, _ in SETTINGS if use == "+ noisy as unlabelled"))


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: demo dataset)")
    parser.add_argument("--out", default=str(HERE), help="where results are written")
    parser.add_argument("--seeds", default="0",
                        help="seeds of the supervised and mixup runs")
    parser.add_argument("--ssl-seeds", default="0",
                        help="seeds of the VAT, mean-teacher and MixMatch runs (2-3x dearer)")
    parser.add_argument("--epochs", type=int, default=common.EPOCHS)
    return parser


def summarise(rows: list[dict]) -> str:
    """Markdown table: test lwlrap (mean ± std, seeds) per method and use of the noisy set."""
    lines = ["| method | " + " | ".join(USES) + " |", "|---|" + "---|" * len(USES)]
    for method in dict.fromkeys(m for m, _, _ in SETTINGS):
        cells = []
        for use in USES:
            sel = [r["test_lwlrap"] for r in rows if r["method"] == method and r["use"] == use]
            cells.append(f"{common.mean_std(sel)} (n={len(sel)})" if sel else "—")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Validation lwlrap (held-out curated clips, final model):", "",
              "| method | " + " | ".join(USES) + " |", "|---|" + "---|" * len(USES)]
    for method in dict.fromkeys(m for m, _, _ in SETTINGS):
        cells = []
        for use in USES:
            sel = [r["val_lwlrap"] for r in rows if r["method"] == method and r["use"] == use]
            cells.append(common.mean_std(sel) if sel else "—")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], curves: dict, path: Path) -> None:
    """Test lwlrap per method and noisy-set use (dots = seeds) and validation curves."""
    plt = common.pyplot()
    fig, (bars, lines) = plt.subplots(1, 2, figsize=(13, 4.5))
    colours = dict(zip(USES, ("tab:blue", "tab:orange", "tab:green")))
    labels, done = [], set()
    for i, (method, use, _) in enumerate(SETTINGS):
        scores = [r["test_lwlrap"] for r in rows if r["method"] == method and r["use"] == use]
        labels.append(f"{method}\n{use}")
        if not scores:
            continue
        bars.bar(i, np.mean(scores), color=colours[use],
                 label=None if use in done else use)
        done.add(use)
        bars.plot([i] * len(scores), scores, "k.", markersize=8)
        curve = np.mean(np.array(curves[(method, use)]), axis=0)
        lines.plot(np.arange(1, len(curve) + 1), curve, label=f"{method} {use}",
                   linestyle="-" if use != "+ noisy as labelled" else "--")
    bars.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    bars.axhline(rows[0]["chance_lwlrap"], color="gray", linestyle=":")
    bars.set_ylabel("test lwlrap (final model)")
    bars.set_ylim(0, 1)
    bars.legend(fontsize=8, loc="upper right")
    lines.set_xlabel("epoch")
    lines.set_ylabel("validation lwlrap (mean over seeds)")
    lines.legend(fontsize=7)
    fig.tight_layout()
    common.save_figure(fig, path)
    plt.close(fig)


def main(argv=None) -> int:
    """Run the study and write its results."""
    args = build_parser().parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    ssl_seeds = [int(s) for s in args.ssl_seeds.split(",")]
    out, data_dir, command, started = common.start_study(args, "noisy_labels/run.py", argv)
    rows, curves = [], {}
    plan = [(seed, s) for seed in sorted(set(seeds) | set(ssl_seeds)) for s in SETTINGS
            if seed in (ssl_seeds if s[0] in SSL else seeds)]
    for seed, (method, use, usage) in plan:
        common.timed(f"{method} {use} seed {seed}")
        settings = common.settings_list(data__noisy_usage=usage)
        run_dir = common.train_run(method, seed, args.epochs, settings, data_dir)
        rows.append({"method": method, "use": use, "noisy_usage": usage, "seed": seed,
                     **common.run_row(run_dir)})
        curves.setdefault((method, use), []).append(common.learning_curve(run_dir))
        print(rows[-1], flush=True)
        notes = (f"Small preset, {args.epochs} epochs x 10 steps, labelled batch 32; "
                 f"chance lwlrap (validation) {rows[0]['chance_lwlrap']:.3f}")
        common.write_results(out, rows, summarise(rows), command, started, notes)
        plot(rows, curves, out / "noisy_labels.png")
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
