"""Window pooling at evaluation, compared on the same trained weights.

Pooling only decides how a clip's window logits become clip logits, so it is compared by
scoring each run's best-validation checkpoint twice (mean, max) instead of training again.
Settings are chosen on validation; test is reported beside it.

Usage::

    python experiments/recipe/pooling.py RUN_DIR [RUN_DIR ...] \\
        --out experiments/recipe/k20_pooling.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

from fat_tf.config import WINDOW_POOLINGS as POOLINGS  # noqa: E402  (the study compares all)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--out", type=Path, required=True, help="Markdown table to write")
    args = parser.parse_args(argv)
    from fat_tf.files import atomic_write_text
    from fat_tf.inference.scoring import score_run

    scores = {(p, split): [] for p in POOLINGS for split in ("validation", "test")}
    for run in args.runs:
        for pooling in POOLINGS:
            for split in ("validation", "test"):
                value = score_run(run, split, model="best", pooling=pooling).lwlrap
                scores[(pooling, split)].append(value)
                common.timed(f"{run.name}: {pooling} pooling, {split} lwlrap {value:.3f}")
    lines = [f"Command: `{common.command_line('recipe/pooling.py', argv)}`  ",
             f"Runs: {', '.join(r.name for r in args.runs)} (best checkpoints)", "",
             "| pooling | validation lwlrap | test lwlrap |", "|---|---|---|"]
    for pooling in POOLINGS:
        lines.append(f"| {pooling} | {common.mean_std(scores[(pooling, 'validation')])} | "
                     f"{common.mean_std(scores[(pooling, 'test')])} |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
