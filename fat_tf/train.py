"""Train a FAT2019 audio tagger: ``python -m fat_tf.train [options]``.

With no options it trains the supervised reference CNN (small preset) on the synthetic
demo dataset, generated on first use into a cache folder, and prints validation lwlrap.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fat_tf.cli import add_config_arguments, add_strategy_argument, config_from_args, run_cli


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m fat_tf.train``."""
    parser = argparse.ArgumentParser(
        prog="python -m fat_tf.train",
        description=(
            "Train a multi-label audio tagger (log-mel CNN) on a FAT2019-layout dataset "
            "with a supervised or semi-supervised method. The run folder receives the "
            "resolved config, metrics.csv, TensorBoard logs, a resumable backup, the best "
            "and final .keras models and summary.json. Rerun the same command to resume "
            "an interrupted run."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data", default=None,
        help="dataset folder in the FAT2019 layout (train_curated.csv, train_curated/, ...); "
             "default: the synthetic demo dataset, generated on first use",
    )
    parser.add_argument("--out", default=None,
                        help="run folder (default: runs/<method>-<time>)")
    add_config_arguments(parser)
    add_strategy_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        from fat_tf.training import train

        config = config_from_args(args)
        data_dir = args.data
        if data_dir is None:
            from fat_tf.data.demo import default_demo_dir

            data_dir = default_demo_dir()
            print(f"using the demo dataset in {data_dir}")
        out = args.out or f"runs/{config.train.method}-{time.strftime('%Y%m%d-%H%M%S')}"
        summary = train(config, data_dir, out, strategy=args.strategy)
        print(json.dumps(summary, indent=2))
        print(
            f"validation lwlrap {summary['val_lwlrap']:.4f} "
            f"(best {summary['best_val_lwlrap'] or float('nan'):.4f}, "
            f"chance {summary['chance_lwlrap']:.4f}); run folder: {Path(out).resolve()}"
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
