"""Score a trained run on labelled clips: ``fat-tf evaluate RUN_DIR`` (or
``python -m fat_tf.evaluate``).

Writes a per-class table (lwlrap, average precision, positives; F1 with ``--threshold``)
to stdout as CSV and to ``RUN_DIR/eval-<split>.csv``, and the overall figures (clip-level
lwlrap, mAP; micro and macro F1 with ``--threshold``) as JSON to stderr, with the
progress bar, so ``fat-tf evaluate RUN > table.csv`` gives a clean CSV. The JSON also
goes to ``RUN_DIR/eval-<split>.json`` and names the model scored (``"checkpoint": "final
model, step 1000"``): by default the final model, as ``predict``, ``export`` and ``report``
use (``--model best`` for the best-validation checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np

from fat_tf.cli import HelpFormatter, probability_threshold, prog, run_cli
from fat_tf.run_folder import DEFAULT_MODEL, MODEL_FILES


def f1_scores(truth: np.ndarray, probabilities: np.ndarray, threshold: float
              ) -> tuple[float, float, np.ndarray]:
    """F1 of the multi-label decisions ``probability >= threshold``.

    Args:
        truth: ``[N, C]`` 0/1 labels.
        probabilities: ``[N, C]`` probabilities.
        threshold: the decision threshold.

    Returns:
        ``(micro, macro, per_class)``: micro F1 pools every clip and class; macro F1 is
        the mean of the per-class F1 over the classes with at least one positive clip
        (NaN when none has one); ``per_class`` is ``[C]``, NaN for a class with no
        positive clip and no positive decision.
    """
    truth = np.asarray(truth) > 0.5
    decided = np.asarray(probabilities) >= threshold
    tp = (truth & decided).sum(axis=0).astype(np.float64)
    fp = (~truth & decided).sum(axis=0)
    fn = (truth & ~decided).sum(axis=0)
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denominator > 0, 2 * tp / denominator, np.nan)
    total = denominator.sum()
    micro = float(2 * tp.sum() / total) if total else float("nan")
    has_positives = truth.any(axis=0)
    macro = float(np.mean(per_class[has_positives])) if has_positives.any() else float("nan")
    return micro, macro, per_class


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``fat-tf evaluate``."""
    from fat_tf.config import WINDOW_POOLINGS

    parser = argparse.ArgumentParser(
        prog=prog("evaluate"),
        description="Compute clip-level lwlrap, mAP and per-class average precision of a "
                    "trained run on a labelled split, scoring every clip with sliding "
                    "windows. The per-class table goes to stdout (CSV) and to "
                    "RUN_DIR/eval-<split>.csv; the overall figures (JSON) and the progress "
                    "bar go to stderr.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("run_dir", help="run folder written by fat-tf train")
    parser.add_argument("--data", default=None,
                        help="dataset folder (default: the one the run was trained on)")
    parser.add_argument("--split", default="validation",
                        choices=["validation", "test", "curated", "noisy"],
                        help="validation: the run's held-out curated clips; test: test/ with "
                             "labels from test_post_competition.csv; curated/noisy: whole sets")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=list(MODEL_FILES),
                        help="which saved model of the run to score: the final model "
                             "(model.keras, as predict, export and report use) or the best "
                             "validation checkpoint (best.keras); the output names it with "
                             "its step")
    parser.add_argument("--pooling", default=None, choices=WINDOW_POOLINGS,
                        help="window pooling (default: the run's config)")
    parser.add_argument("--tta", action="store_true",
                        help="average with the time-reversed clips")
    parser.add_argument("--threshold", type=probability_threshold, default=None,
                        metavar="P",
                        help="also score the multi-label decisions 'probability >= P': "
                             "micro and macro F1 overall (macro over the classes with "
                             "positives) and an f1 column in the table")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        from fat_tf.files import atomic_write_text
        from fat_tf.inference.scoring import score_run, sigmoid
        from fat_tf.metrics import (
            average_precision,
            lwlrap,
            mean_average_precision,
            per_class_lwlrap,
        )
        from fat_tf.run_folder import EVAL_RESULT, EVAL_TABLE, checkpoint_step

        run_dir = Path(args.run_dir)
        # the progress bar goes to stderr (a bar on a terminal, one line otherwise)
        verbose = 1 if sys.stderr.isatty() else 2
        with contextlib.redirect_stdout(sys.stderr):
            scores = score_run(run_dir, args.split, args.model, args.tta, args.pooling,
                               args.data, verbose=verbose)
        labels, logits = scores.labels, scores.logits
        per_class, weights = per_class_lwlrap(labels, logits)
        f1 = None
        if args.threshold is not None:
            micro_f1, macro_f1, f1 = f1_scores(labels, sigmoid(logits), args.threshold)
        lines = io.StringIO()
        lines.write("class,lwlrap,average_precision,positives"
                    + (",f1" if f1 is not None else "") + "\n")
        for c, name in enumerate(scores.class_names):
            ap = average_precision(labels[:, c], logits[:, c])
            lines.write(f"{name},{per_class[c]:.6f},{ap:.6f},{int(labels[:, c].sum())}"
                        + (f",{f1[c]:.6f}" if f1 is not None else "") + "\n")
        table = lines.getvalue()
        out = run_dir / EVAL_TABLE.format(split=args.split)
        atomic_write_text(out, table)
        sys.stdout.write(table)
        checkpoint = scores.checkpoint
        result = {"split": args.split, "clips": len(labels), "model": args.model,
                  "checkpoint": checkpoint,
                  "step": checkpoint_step(run_dir, args.model), "tta": args.tta,
                  "lwlrap": lwlrap(labels, logits),
                  "mAP": mean_average_precision(labels, logits)}
        if f1 is not None:
            result.update(threshold=args.threshold, micro_f1=micro_f1, macro_f1=macro_f1)
        result["table"] = str(out)
        # beside the table, so report can say which model eval-<split>.csv scored
        atomic_write_text(run_dir / EVAL_RESULT.format(split=args.split),
                          json.dumps(result, indent=2) + "\n")
        print(f"{args.split} lwlrap ({checkpoint}{', TTA' if args.tta else ''}): "
              f"{result['lwlrap']:.4f}, mAP {result['mAP']:.4f} over {len(labels)} clips",
              file=sys.stderr)
        print(json.dumps(result, indent=2), file=sys.stderr)
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
