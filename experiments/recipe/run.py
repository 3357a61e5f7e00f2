"""The supervised recipe: how long to train, and the old against the new defaults.

Supervised training on curated clips only (``data.noisy_usage=none``), small preset,
every setting a list of seeds. Two parts, both scored on the labelled test set (whole
clips) with the checkpoint that ``predict`` and ``export`` use by default (best
validation lwlrap) and with the final model:

* ``budget``: the new defaults with ``train.steps`` = each of ``--budgets``, for a plot of
  test lwlrap against optimiser steps;
* ``old``: the defaults before run lengths were given in steps: 30 epochs (passes over
  the labelled clips), cosine annealing in three cycles of 10 epochs (the old per-epoch
  schedule restarted instead of rising back up), ramp-ups irrelevant (supervised);
* ``variants`` (``--variants``): settings compared at one budget (``--variant-steps``),
  chosen on VALIDATION lwlrap; test figures are shown beside them only for the record.

Trivial references (random scores; logistic regression on log-mel statistics) come from
``tools/baselines.py``'s JSON (``--baselines``) and are drawn beside the curve.

Each run is one folder in ``experiments/runs/`` named by its settings and the code
version; a rerun skips finished runs and resumes unfinished ones, so the study can be
stopped and continued. Writes ``results.csv``, ``results.md`` and ``recipe.png`` into
``--out``.

Usage::

    python experiments/recipe/run.py --data /path/to/devbench --out experiments/recipe/k20 \\
        --baselines /path/to/baselines.json --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent

#: Settings of every run: curated clips only.
BASE = ["data.noisy_usage=none"]

#: The old defaults, as settings of the new code (see the module docstring).
OLD = ["optim.lr_schedule=cosine_restarts", "optim.cosine_cycles=3"]
OLD_EPOCHS = 30

#: Named variants of the new defaults compared at one budget.
SPEC = ["augment.time_masks=2", "augment.freq_masks=2"]
SHIFT = ["augment.time_shift_frames=32"]
VARIANTS = {
    "default": [],
    "crop 4 s": ["data.crop_frames=256"],
    "max pooling": ["data.window_pooling=max"],
    "specaugment": SPEC,
    "time shift": SHIFT,
    "specaugment + time shift": SPEC + SHIFT,
    "mixup + specaugment + time shift": ["train.method=mixup", *SPEC, *SHIFT],
    "no time flip": ["augment.time_flip=false"],
}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: demo dataset)")
    parser.add_argument("--out", default=str(HERE), help="where results are written")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budgets", type=int, nargs="*", default=[250, 500, 1000, 2000],
                        help="train.steps of the budget curve")
    parser.add_argument("--no-old", action="store_true", help="skip the old-defaults runs")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS),
                        help="variants to compare at --variant-steps")
    parser.add_argument("--variant-steps", type=int, default=1000)
    parser.add_argument("--baselines", default=None,
                        help="JSON written by tools/baselines.py for the same dataset")
    return parser


def plan(args) -> list[tuple[str, str, int | None, list[str]]]:
    """``(part, setting, epochs, settings)`` of every run of the study (one per seed)."""
    runs = []
    if not args.no_old:
        runs.append(("old", f"old defaults ({OLD_EPOCHS} epochs)", OLD_EPOCHS, OLD))
    for steps in args.budgets:
        runs.append(("budget", f"{steps} steps", None, [f"train.steps={steps}"]))
    for name in args.variants:
        runs.append(("variant", name, None,
                     [f"train.steps={args.variant_steps}", *VARIANTS[name]]))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, data_dir, command, started = common.start_study(args, "recipe/run.py", argv)
    rows = []
    for seed in args.seeds:  # all settings of one seed first: a partial study is balanced
        for part, name, epochs, settings in plan(args):
            common.timed(f"{part}: {name}, seed {seed}")
            run_dir = common.train_run("supervised", seed, epochs, sorted(BASE + settings),
                                       data_dir)
            rows.append({"part": part, "setting": name, "seed": seed, **common.scored_run(run_dir)})
            write(out, rows, args, command, started)
    return 0


def write(out: Path, rows: list[dict], args, command: str, started: float) -> None:
    """Tables and plot of the runs so far."""
    baselines = json.loads(Path(args.baselines).read_text()) if args.baselines else None
    lines = ["| part | setting | steps | seeds | val lwlrap (best) | test lwlrap (best ckpt) "
             "| test lwlrap (final) | final train loss |", "|---|---|---|---|---|---|---|---|"]
    for (part, name), group in _groups(rows).items():
        lines.append(
            f"| {part} | {name} | {group[0]['total_steps']} | {len(group)} | "
            f"{common.mean_std(r['val_lwlrap_best'] for r in group)} | "
            f"{common.mean_std(r['test_lwlrap_best'] for r in group)} | "
            f"{common.mean_std(r['test_lwlrap_final'] for r in group)} | "
            f"{common.mean_std(r['final_train_loss'] for r in group)} |")
    if baselines:
        lines += ["", "References on the test set (tools/baselines.py):", ""]
        lines += [f"- {k}: {v}" for k, v in common.reference_scores(baselines).items()]
    notes = ("Supervised, curated clips only, small preset, labelled batch 32; mean ± std "
             "over seeds. 'best ckpt' = the best-validation checkpoint that predict and "
             "export use.")
    common.write_results(out, rows, "\n".join(lines) + "\n", command, started, notes)
    plot(out / "recipe.png", rows, baselines)


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["part"], r["setting"]), []).append(r)
    return groups


def plot(path: Path, rows: list[dict], baselines: dict | None) -> None:
    """Test lwlrap (best checkpoint) against optimiser steps, mean ± std over seeds."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = _groups(rows)
    budget = sorted((g[0]["total_steps"], g) for (part, _), g in groups.items()
                    if part == "budget")
    if budget:
        steps = np.array([s for s, _ in budget], float)
        for key, label, marker in (("test_lwlrap_best", "new defaults, best checkpoint", "o"),
                                   ("test_lwlrap_final", "new defaults, final model", "s")):
            values = [np.array([r[key] for r in g]) for _, g in budget]
            mean = np.array([v.mean() for v in values])
            std = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in values])
            ax.errorbar(steps, mean, yerr=std, marker=marker, capsize=3, label=label)
    for (part, name), g in groups.items():
        if part == "old":
            v = np.array([r["test_lwlrap_best"] for r in g])
            ax.errorbar([g[0]["total_steps"]], [v.mean()],
                        yerr=[v.std(ddof=1) if len(v) > 1 else 0.0], marker="x", color="red",
                        capsize=3, linestyle="none", label=name)
    if baselines:
        for i, (name, text) in enumerate(common.reference_scores(baselines).items()):
            ax.axhline(float(text.split(" ± ")[0]), color=f"C{i + 3}", linestyle=":",
                       label=name)
    ax.set(xscale="log", xlabel="optimiser steps (log)", ylabel="test lwlrap",
           title="supervised, curated only: test lwlrap against run length")
    ax.legend(fontsize=7)
    fig.tight_layout()
    common.save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
