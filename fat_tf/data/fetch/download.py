"""Download FSDKaggle2019 from Zenodo, or unpack the Kaggle zip, into the Kaggle FAT2019 layout.

Command line::

    python -m fat_tf.data.fetch.download --dest DIR [--subset curated,noisy,test]
        [--fix-labels drop|relabel|keep] [--test-clips all|private]
        [--kaggle-zip PATH] [--record-url URL] [--archive-dir DIR] [--remove-archives]
        [--dry-run]

The result is what :func:`fat_tf.data.load_dataset` and ``python -m fat_tf.data check``
accept; :mod:`fat_tf.data.fetch` describes how it is made. ``python -m fat_tf.data
download`` (``fat-tf data download``) forwards here.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from fat_tf.data.fetch.kaggle_zip import prepare_from_kaggle_zip
from fat_tf.data.fetch.plan import dry_run_text, plan_kaggle_zip, plan_zenodo_download
from fat_tf.data.fetch.record import (
    DEFAULT_SUBSETS,
    EXCLUDED_FOLDER,
    FIX_LABELS_MODES,
    FSDKAGGLE2019,
    RECORD_API_URL,
    TEST_CLIPS_MODES,
)
from fat_tf.data.fetch.transfer import DownloadOptions
from fat_tf.data.fetch.zenodo import prepare_from_zenodo
from fat_tf.data.manifest import DataWarning, load_dataset
from fat_tf.errors import FatTfError


def summarize_dataset(dest: str | os.PathLike) -> tuple[bool, str]:
    """Load the result with ``load_dataset(dest, check_audio=False)`` and describe it.

    Args:
        dest: the dataset folder.

    Returns:
        ``(ok, text)``: whether the folder loads, and the summary or the error.
    """
    dest = os.fspath(dest)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            dataset = load_dataset(dest, check_audio=False)
    except FatTfError as e:
        return False, f"error: {dest} does not load: {e}"
    lines = [f"FAT2019 dataset ready: {dest}", f"classes: {len(dataset.class_names)}"]
    for name, manifest in dataset.sets().items():
        labels = "labelled" if manifest.labels is not None else "unlabelled"
        lines.append(f"  {name:<8} {len(manifest):>6} clips ({labels})")
    lines += [f"warning: {w.message}" for w in caught if issubclass(w.category, DataWarning)]
    lines.append(f"to check every WAV header: python -m fat_tf.data check {dest}")
    return True, "\n".join(lines)


def _check_dest(dest: str) -> None:
    """Refuse a ``--dest`` that is, or lies under, something other than a folder.

    Args:
        dest: the absolute ``--dest`` path.
    """
    path = dest
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        what = "is a file" if path == dest else f"lies under {path}, which is a file"
        raise FatTfError(f"{dest}: cannot be the --dest folder: it {what}, not a folder; "
                         "choose a folder (it is created if missing)")


def _missing_parts(dest: str) -> list[str]:
    """Required folders the loader needs that are not there yet.

    Args:
        dest: the dataset folder.
    """
    need = [FSDKAGGLE2019.subsets[k].folder for k in ("curated", "test")]
    return [f for f in need if not os.path.isdir(os.path.join(dest, f))]


def _parse_subsets(text: str) -> tuple[str, ...]:
    """The ``--subset`` list: comma-separated names of the record's subsets.

    Args:
        text: the option's value.
    """
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in FSDKAGGLE2019.subsets]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a comma-separated list of {', '.join(FSDKAGGLE2019.subsets)}"
        )
    return names


def build_parser(prog: str = "python -m fat_tf.data.fetch.download") -> argparse.ArgumentParser:
    """The argument parser of ``python -m fat_tf.data.fetch.download``.

    Args:
        prog: the program name shown in usage and error messages.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Download FSDKaggle2019 (FAT2019) from Zenodo record "
            f"{FSDKAGGLE2019.record_id}, verify every file's size and MD5, resume "
            "interrupted downloads, join the split noisy archive, extract safely and lay "
            "the data out as Kaggle did (the layout 'python -m fat_tf.data check' "
            "accepts). Or lay out the Kaggle competition zip already on disk "
            "(--kaggle-zip). Re-running skips verified files and finished steps."
        ),
        epilog=(
            "Result: DIR/train_curated.csv + train_curated/, train_noisy.csv + "
            "train_noisy/, sample_submission.csv + test/, test_post_competition.csv "
            "(Zenodo only); archives in DIR/downloads/. Full download about 27 GB; "
            "the extracted audio needs about as much again (use --remove-archives)."
        ),
    )
    parser.add_argument("--dest", required=True, metavar="DIR", help="the dataset folder")
    parser.add_argument(
        "--subset",
        type=_parse_subsets,
        default=DEFAULT_SUBSETS,
        metavar="LIST",
        help="comma-separated subsets among curated, noisy, test, doc "
        "(default: curated,noisy,test; doc = README and licence)",
    )
    parser.add_argument(
        "--fix-labels",
        choices=FIX_LABELS_MODES,
        default="drop",
        help="the 6 officially mislabelled/corrupted curated clips: drop their rows "
        "(default), relabel the 3 the 1st-place solution relabelled and drop the rest, or "
        f"keep them; WAVs of dropped clips go to {EXCLUDED_FOLDER}/",
    )
    parser.add_argument(
        "--test-clips",
        choices=TEST_CLIPS_MODES,
        default="all",
        help="rows of sample_submission.csv: all 4481 test clips (default) or the 3361 "
        "private ones (Kaggle's current file); Zenodo only",
    )
    parser.add_argument(
        "--kaggle-zip",
        metavar="PATH",
        help="lay out this Kaggle competition zip instead of downloading from Zenodo",
    )
    parser.add_argument(
        "--record-url",
        default=RECORD_API_URL,
        metavar="URL",
        help="Zenodo record API URL listing sizes, MD5s and links (default: %(default)s)",
    )
    parser.add_argument(
        "--archive-dir", metavar="DIR", help="where archives are kept (default: DEST/downloads)"
    )
    parser.add_argument(
        "--remove-archives",
        action="store_true",
        help="delete each subset's archives once it is extracted (saves ~27 GB)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the files a run would need (name, size, MD5, whether already there) "
        "and the total to download, then stop: nothing is downloaded or written (only "
        "the record's file list is read)",
    )
    parser.add_argument(
        "--retries", type=int, default=5, metavar="N", help="retries per file (default: 5)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="network timeout in seconds (default: 60)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 error, 130 interrupted).

    Args:
        argv: arguments without the program name (``sys.argv[1:]`` by default).
        prog: the program name in usage and error messages (``python -m
            fat_tf.data.fetch.download`` by default; ``python -m fat_tf.data download``
            forwards).
    """
    args = (build_parser(prog) if prog else build_parser()).parse_args(argv)
    options = DownloadOptions(retries=args.retries, timeout=args.timeout)
    dest = os.path.abspath(args.dest)
    try:
        _check_dest(dest)
        if args.dry_run:
            archive_dir = os.path.abspath(args.archive_dir or os.path.join(dest, "downloads"))
            if args.kaggle_zip:
                files, notes = plan_kaggle_zip(dest, args.kaggle_zip, subsets=args.subset)
                source = os.path.abspath(args.kaggle_zip)
            else:
                files, notes = plan_zenodo_download(
                    dest, subsets=args.subset, record_url=args.record_url,
                    archive_dir=archive_dir, options=options,
                )
                source = args.record_url
            print(dry_run_text(files, notes, source, archive_dir))
            return 0
        if args.kaggle_zip:
            prepare_from_kaggle_zip(
                dest,
                args.kaggle_zip,
                subsets=args.subset,
                fix_labels=args.fix_labels,
                archive_dir=args.archive_dir,
                options=options,
            )
        else:
            prepare_from_zenodo(
                dest,
                subsets=args.subset,
                fix_labels=args.fix_labels,
                test_clips=args.test_clips,
                record_url=args.record_url,
                archive_dir=args.archive_dir,
                remove_archives=args.remove_archives,
                options=options,
            )
    except FatTfError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system refused: permissions, read-only, /proc, full
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}; check that --dest ({dest}) and "
              "--archive-dir are folders you can write to, with room to spare",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    missing = _missing_parts(dest)
    if missing:
        print(
            f"{dest}: done; not loadable yet: {', '.join(m + '/' for m in missing)} missing "
            "(add the subsets curated and test)"
        )
        return 0
    ok, text = summarize_dataset(dest)
    print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
