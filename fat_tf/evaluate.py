"""Score a trained run on labelled clips: ``python -m fat_tf.evaluate RUN_DIR``.

Prints clip-level lwlrap and a per-class table (lwlrap, average precision, positives)
and writes the table to ``RUN_DIR/eval-<split>.csv``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np

from fat_tf.cli import run_cli


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of one class ranked over clips (NaN without positives).

    Ties are broken pessimistically like lwlrap: a positive tied with others counts as
    ranked below all of them.

    Args:
        truth: ``[N]`` booleans.
        scores: ``[N]`` scores.
    """
    truth = np.asarray(truth) > 0.5
    if not truth.any():
        return float("nan")
    scores = np.asarray(scores, np.float64)
    precisions = []
    for s in scores[truth]:
        above = scores >= s
        precisions.append(truth[above].sum() / above.sum())
    return float(np.mean(precisions))


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m fat_tf.evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m fat_tf.evaluate",
        description="Compute clip-level lwlrap and per-class average precision of a trained "
                    "run on a labelled split, scoring every clip with sliding windows.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="run folder written by python -m fat_tf.train")
    parser.add_argument("--data", default=None,
                        help="dataset folder (default: the one the run was trained on)")
    parser.add_argument("--split", default="validation",
                        choices=["validation", "test", "curated", "noisy"],
                        help="validation: the run's held-out curated clips; test: test/ with "
                             "labels from test_post_competition.csv; curated/noisy: whole sets")
    parser.add_argument("--model", default="best", choices=["best", "final"],
                        help="which saved model of the run to score")
    parser.add_argument("--pooling", default=None, choices=["mean", "max"],
                        help="window pooling (default: the run's config)")
    parser.add_argument("--tta", action="store_true",
                        help="average with the time-reversed clips")
    return parser


def split_manifest(dataset, split: str, validation_fnames):
    """The labelled manifest of ``split`` in a loaded dataset."""
    from fat_tf.errors import FatTfError

    if split == "validation":
        index = {f: i for i, f in enumerate(dataset.curated.fnames)}
        missing = [f for f in validation_fnames if f not in index]
        if missing:
            raise FatTfError(f"{dataset.curated.csv_path}: validation clips of the run are "
                             f"missing, e.g. {missing[0]}; is this the run's dataset?")
        return dataset.curated.subset(np.array([index[f] for f in validation_fnames]))
    manifest = {"test": dataset.test, "curated": dataset.curated, "noisy": dataset.noisy}[split]
    if manifest is None or manifest.labels is None:
        raise FatTfError(f"the dataset has no labelled {split} set")
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        from fat_tf.config import atomic_write_text
        from fat_tf.data.manifest import load_dataset
        from fat_tf.inference import load_run, score_clips
        from fat_tf.metrics import lwlrap, per_class_lwlrap

        trained = load_run(args.run_dir)
        data_dir = args.data or trained.data_dir
        dataset = load_dataset(data_dir, sample_rate=trained.config.frontend.sample_rate)
        manifest = split_manifest(dataset, args.split, trained.validation_fnames)
        model = trained.load_model(args.model)
        logits = score_clips(model, manifest.paths, trained.config, args.pooling, args.tta)
        labels = manifest.labels
        per_class, weights = per_class_lwlrap(labels, logits)
        lines = io.StringIO()
        lines.write("class,lwlrap,average_precision,positives\n")
        for c, name in enumerate(trained.class_names):
            ap = average_precision(labels[:, c], logits[:, c])
            lines.write(f"{name},{per_class[c]:.6f},{ap:.6f},{int(labels[:, c].sum())}\n")
        table = lines.getvalue()
        out = trained.run_dir / f"eval-{args.split}.csv"
        atomic_write_text(out, table)
        print(table, end="")
        score = lwlrap(labels, logits)
        result = {"split": args.split, "clips": len(manifest), "lwlrap": score,
                  "model": args.model, "table": str(out)}
        print(json.dumps(result, indent=2))
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
