"""Train a FAT2019 audio tagger: ``fat-tf train [options]`` (or ``python -m fat_tf.train``).

With no options it trains the supervised reference CNN (small preset) on the synthetic
demo dataset, generated on first use into a cache folder, and prints validation lwlrap.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fat_tf.cli import (
    HelpFormatter,
    add_config_arguments,
    add_strategy_argument,
    check_settings,
    prog,
    run_cli,
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``fat-tf train``."""
    parser = argparse.ArgumentParser(
        prog=prog("train"),
        description=(
            "Train a multi-label audio tagger (log-mel CNN) on a FAT2019-layout dataset "
            "with a supervised or semi-supervised method. The run folder receives the "
            "resolved config, metrics.csv, TensorBoard logs, a resumable backup, the best "
            "and final .keras models and summary.json. Rerun the same command to resume "
            "an interrupted run."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--data", default=None,
        help="dataset folder in the FAT2019 layout (train_curated.csv, train_curated/, ...); "
             "default: the synthetic demo dataset, generated on first use",
    )
    parser.add_argument("--out", default=None,
                        help="run folder (default: runs/<method>-<time>)")
    parser.add_argument("--verbose", type=int, default=None, choices=[0, 1, 2],
                        help="Keras fit output: 0 silent, 1 progress bar, 2 one plain line "
                             "per validation interval (default: 1 when stdout is a "
                             "terminal, 2 when it is redirected to a file or pipe)")
    add_config_arguments(parser)
    add_strategy_argument(parser)
    return parser


def default_verbose(stream=None) -> int:
    """Keras ``verbose`` for output to ``stream`` (default stdout): a progress bar on a
    terminal, one plain line per epoch otherwise (a redirected progress bar is backspaces
    and ANSI codes)."""
    stream = sys.stdout if stream is None else stream
    try:
        return 1 if stream.isatty() else 2
    except (AttributeError, ValueError):  # no stream, or a closed one
        return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    config = check_settings(args)  # before TensorFlow: a bad setting is one quick line
    if isinstance(config, int):
        return config
    verbose = default_verbose() if args.verbose is None else args.verbose

    def run() -> int:
        from fat_tf.training import train

        data_dir = args.data
        if data_dir is None:
            from fat_tf.data.demo import default_demo_dir

            data_dir = default_demo_dir()
            print(f"using the demo dataset in {data_dir}")
        out = args.out or f"runs/{config.train.method}-{time.strftime('%Y%m%d-%H%M%S')}"
        summary = train(config, data_dir, out, strategy=args.strategy, verbose=verbose)
        print(json.dumps(summary, indent=2))
        final_step, best_step = summary.get("total_steps"), summary.get("best_step")
        print(  # each figure names its model; model.keras (final) is what evaluate, predict
            # and export use by default (run_folder.DEFAULT_MODEL)
            f"validation lwlrap {summary['val_lwlrap']:.4f} (final model"
            f"{f', step {final_step}' if final_step is not None else ''}); best checkpoint "
            f"{summary['best_val_lwlrap'] or float('nan'):.4f}"
            f"{f' (step {best_step})' if best_step is not None else ''}; "
            f"chance {summary['chance_lwlrap']:.4f}; run folder: {Path(out).resolve()}"
        )
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
