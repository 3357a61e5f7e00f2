"""Write a Kaggle submission for a dataset's test clips: ``python -m fat_tf.predict RUN_DIR``.

Every test clip listed in ``sample_submission.csv`` is scored whole (sliding windows,
mean or max pooled, optional time-reversal TTA) and written as probabilities, one
column per class in ``sample_submission.csv`` order.
"""

from __future__ import annotations

import argparse
import io
import sys

import numpy as np

from fat_tf.cli import run_cli


def submission_csv(fnames, class_names, probabilities: np.ndarray) -> str:
    """The text of a submission: ``fname`` then one probability column per class.

    Args:
        fnames: clip file names, in row order.
        class_names: column names after ``fname``.
        probabilities: ``[N, C]`` probabilities.
    """
    out = io.StringIO()
    out.write(",".join(["fname", *class_names]) + "\n")
    for fname, row in zip(fnames, probabilities):
        out.write(fname + "," + ",".join(f"{p:.6g}" for p in row) + "\n")
    return out.getvalue()


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m fat_tf.predict``."""
    parser = argparse.ArgumentParser(
        prog="python -m fat_tf.predict",
        description="Score every test clip of a FAT2019-layout dataset with a trained run "
                    "and write a Kaggle-valid submission CSV (fname + one probability "
                    "column per class, in sample_submission.csv order).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="run folder written by python -m fat_tf.train")
    parser.add_argument("--data", default=None,
                        help="dataset folder with test/ and sample_submission.csv "
                             "(default: the one the run was trained on)")
    parser.add_argument("--out", default="submission.csv", help="submission file to write")
    parser.add_argument("--model", default="best", choices=["best", "final"],
                        help="which saved model of the run to use")
    parser.add_argument("--pooling", default=None, choices=["mean", "max"],
                        help="window pooling (default: the run's config)")
    parser.add_argument("--tta", action="store_true",
                        help="average with the time-reversed clips")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        from fat_tf.config import atomic_write_text
        from fat_tf.data.manifest import load_dataset
        from fat_tf.errors import FatTfError
        from fat_tf.inference import load_run, score_clips

        trained = load_run(args.run_dir)
        dataset = load_dataset(args.data or trained.data_dir,
                               sample_rate=trained.config.frontend.sample_rate)
        if tuple(dataset.class_names) != trained.class_names:
            raise FatTfError("the dataset's classes (sample_submission.csv) differ from the "
                             "classes the run was trained on")
        test = dataset.test
        model = trained.load_model(args.model)
        logits = score_clips(model, test.paths, trained.config, args.pooling, args.tta)
        probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        atomic_write_text(args.out, submission_csv(test.fnames, dataset.class_names,
                                                   probabilities))
        print(f"wrote {len(test)} rows x {len(dataset.class_names)} classes to {args.out}")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
