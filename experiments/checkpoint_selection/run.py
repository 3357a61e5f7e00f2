"""Which checkpoint to keep: the best-validation one or the last, judged on validation alone.

Reads runs trained with ``train.save_validation_predictions`` (e.g. by
``experiments/ssl_comparison/run.py --save-validation-predictions``) and compares the two
selection rules with :func:`fat_tf.selection.held_out_selection_scores`: the validation
clips are split at random into ``--folds`` parts (halves by default), each rule picks a
checkpoint on all parts but one and is scored on the one left out (each part in turn,
``--splits`` random splits per run). Test labels play no part in the
comparison; each run's test lwlrap of both models is listed beside it only as the final
score the study reports anyway.

Writes ``results.csv`` (one row per run) and ``results.md`` (per dataset and setting, and
over every run of a dataset) into ``--out``.

Usage::

    python experiments/checkpoint_selection/run.py --out experiments/checkpoint_selection \\
        --results k20=RUNS/sup_k20_s0/results.csv k20_shifted=RUNS/sup_sh_s0/results.csv ...
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402

from fat_tf.selection import candidates_from_predictions, held_out_selection_scores  # noqa: E402

HERE = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", nargs="+", required=True, metavar="DATASET=CSV",
                        help="results.csv files of ssl_comparison runs with saved "
                             "validation predictions, each labelled with its dataset")
    parser.add_argument("--pool", default=str(common.RUN_POOL),
                        help="folder holding the run folders named in the CSVs")
    parser.add_argument("--out", default=str(HERE), help="where results are written")
    parser.add_argument("--splits", type=int, default=200,
                        help="random splits of the validation clips per run")
    parser.add_argument("--folds", type=int, default=2,
                        help="parts per split: each rule picks on all but one and is "
                             "scored on the one left out (2: halves)")
    return parser


def run_rows(results: list[str], pool: Path, splits: int, folds: int) -> list[dict]:
    """One row per run: held-out validation lwlrap of each rule (mean over splits) and
    the run's test figures from its CSV.

    Args:
        results: ``DATASET=CSV`` entries.
        pool: the run pool.
        splits: random splits per run.
        folds: parts per split.
    """
    rows = []
    for entry in results:
        dataset, _, path = entry.partition("=")
        if not path:
            raise SystemExit(f"--results {entry}: expected DATASET=CSV")
        with open(path, newline="") as f:
            for run in csv.DictReader(f):
                predictions = pool / run["run"] / "validation_predictions.npz"
                candidates, final, steps, labels = candidates_from_predictions(predictions)
                scores = held_out_selection_scores(candidates, final, labels,
                                                   splits=splits, seed=int(run["seed"]),
                                                   folds=folds)
                rows.append({
                    "dataset": dataset, "setting": run["setting"], "seed": int(run["seed"]),
                    "validation_clips": len(labels), "checkpoints": len(candidates),
                    "heldout_val_best": float(scores["best"].mean()),
                    "heldout_val_final": float(scores["final"].mean()),
                    "final_minus_best": float((scores["final"] - scores["best"]).mean()),
                    "final_better": float((scores["final"] > scores["best"]).mean()),
                    "final_worse": float((scores["final"] < scores["best"]).mean()),
                    "median_picked_step": float(np.median(steps[scores["picked_index"]])),
                    "test_lwlrap_best": float(run["test_lwlrap_best"]),
                    "test_lwlrap_final": float(run["test_lwlrap_final"]),
                    "run": run["run"],
                })
    return rows


def table(rows: list[dict]) -> str:
    """Markdown summary: per dataset and setting, then every run of a dataset."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["setting"]), []).append(row)
        groups.setdefault((row["dataset"], "all runs"), []).append(row)
    lines = [
        "| dataset | setting | runs | held-out val, best rule | held-out val, final rule "
        "| final − best (val) | splits final better / worse | median picked step "
        "| test, best ckpt | test, final |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, setting), group in sorted(groups.items(),
                                            key=lambda g: (g[0][0], g[0][1] == "all runs")):
        def column(key, group=group):
            return common.mean_std(r[key] for r in group)

        lines.append(
            f"| {dataset} | {setting} | {len(group)} | {column('heldout_val_best')} "
            f"| {column('heldout_val_final')} | {column('final_minus_best')} "
            f"| {np.mean([r['final_better'] for r in group]):.0%} / "
            f"{np.mean([r['final_worse'] for r in group]):.0%} "
            f"| {np.median([r['median_picked_step'] for r in group]):.0f} "
            f"| {column('test_lwlrap_best')} | {column('test_lwlrap_final')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run_rows(args.results, Path(args.pool), args.splits, args.folds)
    if not rows:
        raise SystemExit("no runs in the given CSVs")
    notes = (f"Validation clips split at random into {args.folds} parts, {args.splits} "
             "times per run; each rule picks on all parts but one and is scored on the one "
             "left out, each part in turn; mean ± std over runs. The columns marked val decide; "
             "test is the final score only.")
    common.write_results(out, rows, table(rows),
                         common.command_line("checkpoint_selection/run.py", argv),
                         started, notes)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
