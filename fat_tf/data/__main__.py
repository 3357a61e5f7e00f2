"""Command line of the data layer: ``fat-tf data COMMAND ...`` (or ``python -m fat_tf.data``).

Commands:
    check DIR       validate a FAT2019 dataset folder and print a summary (exit code 1 if
                    invalid).
    download ...    download FSDKaggle2019 from Zenodo (or lay out the Kaggle zip) into a
                    dataset folder (:mod:`fat_tf.data.fetch.download`).
    layout ...      lay out your own folder-per-class or ``fname,labels`` data as a FAT2019
                    dataset folder (:mod:`fat_tf.data.layout`).
    demo ...        write the synthetic demo dataset (:mod:`fat_tf.data.demo`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fat_tf.cli import prog
from fat_tf.data import demo, layout
from fat_tf.data.check import run_check
from fat_tf.data.fetch import download


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subcommand per data tool."""
    parser = argparse.ArgumentParser(
        prog=prog("data"),
        description="Tools for FAT2019 dataset folders (Kaggle layout).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check",
        help="validate a dataset folder and print a summary",
        description=(
            "Validate a FAT2019 dataset folder: the CSVs (header, columns, labels against "
            "sample_submission.csv, duplicates, quoting) and every audio file's header "
            "(readable, not truncated, not empty). Prints per set the clip count, "
            "durations, labels per clip and clips per class, and which clips are converted "
            "when read (any format libsndfile reads: WAV of any sample format, FLAC, Ogg, "
            "MP3...; stereo is averaged to mono, other rates resampled), counted by reason. "
            "Exit code 0 if the folder is valid, 1 with the first error otherwise."
        ),
        epilog=(
            "The folder holds sample_submission.csv, train_curated.csv + train_curated/, "
            "test/, and optionally train_noisy.csv + train_noisy/ and "
            "test_post_competition.csv."
        ),
    )
    check.add_argument("dir", metavar="DIR", help="the dataset folder")
    check.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave bad rows and clips out (reported as warnings with a count) instead of failing",
    )
    check.add_argument(
        "--sample-rate",
        type=int,
        default=44100,
        metavar="N",
        help="the model's sample rate in Hz; clips at other rates are resampled "
        "(default: %(default)s)",
    )
    # Its arguments (--help included) are left unparsed here and forwarded to
    # fat_tf.data.fetch.download.main, which owns them.
    commands.add_parser(
        "download",
        add_help=False,
        help="download FSDKaggle2019 into a dataset folder (see 'download --help')",
    )
    commands.add_parser(
        "demo",
        add_help=False,
        help="write the synthetic demo dataset into a folder (see 'demo --help')",
    )
    layout_parser = commands.add_parser(
        "layout",
        help="lay out your own labelled audio (folder per class or a CSV) as a dataset folder",
        description=layout.DESCRIPTION,
        epilog=layout.EPILOG,
    )
    layout.add_arguments(layout_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Args:
        argv: arguments without the program name (``sys.argv[1:]`` by default).
    """
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "download":
        return download.main(rest, prog=f"{prog('data')} download")
    if args.command == "demo":
        return demo.main(rest, prog=f"{prog('data')} demo")
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "check":
        return run_check(args.dir, skip_bad=args.skip_bad, sample_rate=args.sample_rate)
    if args.command == "layout":
        return layout.run(args)
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
