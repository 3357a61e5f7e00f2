"""Lay out your own labelled audio as a FAT2019 dataset folder: ``python -m fat_tf.data layout``.

Two kinds of input::

    --from-folders SRC                    SRC/<class>/*.wav, one folder per class (files in
                                          sub-folders of a class folder count too)
    --from-csv FILE --audio-dir AUDIO     a CSV with a ``fname`` column (a path relative to
                                          AUDIO) and a ``labels`` (or ``label``) column;
                                          several labels are comma-joined: "Bark,Slam"

Output (see :class:`~fat_tf.data.manifest.DatasetLayout`): ``train_curated.csv`` +
``train_curated/``, ``test/`` + ``sample_submission.csv`` + ``test_post_competition.csv``
(the test labels), and with ``--noisy-csv`` a ``train_noisy.csv`` + ``train_noisy/``.

Decisions:
    - The test set is ``--test-fraction`` of the clips of each label set (stratified; a label
      set with two or more clips keeps at least one clip on each side), drawn from
      ``--seed``. Clips are split one by one: when several files come from one recording,
      split your data yourself and give the two parts as separate inputs.
    - File names are kept readable and unique: a file's path relative to its input root with
      ``/`` replaced by ``__`` (``dog/001.wav`` -> ``dog__001.wav``).
    - Audio files are copied as they are (or hard-linked with ``--link``), in any format
      fat_tf reads (:func:`fat_tf.data.audio_io.probe_audio`: WAV of any sample format, FLAC,
      Ogg, MP3...; training converts what is not 16-bit PCM mono WAV at the model's rate).
      A file that cannot be read stops the command with a one-line error naming it, before
      anything is written. Files that are not audio are ignored.
    - Class names are the folder names or the CSV's labels; they may not contain a comma
      (the label separator) or start or end with a space. Columns of
      ``sample_submission.csv`` are in Python ``sorted()`` order.
    - The folder is written into a temporary sibling and renamed to ``--out`` when complete;
      an existing non-empty ``--out`` is refused.

The writer functions here (:func:`write_labels_csv`, :func:`write_sample_submission`,
:func:`write_test_labels_csv`, :func:`staged_folder`, :func:`write_wav`) are the one place
that writes the layout's files; ``tools/build_devbench.py`` uses them too.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fat_tf.data.audio_io import AUDIO_EXTENSIONS, probe_audio
from fat_tf.data.demo import _write_csv, write_wav
from fat_tf.errors import AudioFormatError, DataError
from fat_tf.files import non_empty_dir, swap_folder_into_place

__all__ = [
    "LayoutClip",
    "LayoutError",
    "clips_from_csv",
    "clips_from_folders",
    "split_test",
    "staged_folder",
    "validate_class_names",
    "write_labels_csv",
    "write_layout",
    "write_sample_submission",
    "write_test_labels_csv",
    "write_wav",
]

DEFAULT_TEST_FRACTION = 0.2
_EXTRA_AUDIO = (".aif", ".aiff", ".m4a", ".aac", ".opus", ".wma", ".webm", ".wave")
_AUDIO_SUFFIXES = frozenset(AUDIO_EXTENSIONS + _EXTRA_AUDIO)


class LayoutError(DataError):
    """The input cannot be laid out; the message (one line) names the file and the problem."""


@dataclass(frozen=True)
class LayoutClip:
    """One clip to write.

    Args:
        source: the audio file to copy.
        fname: its name in the output folder.
        labels: its labels (class names), in the order given.
    """

    source: Path
    fname: str
    labels: tuple[str, ...]


# ------------------------------------------------------------------------------ writers


def validate_class_names(names: Iterable[str]) -> tuple[str, ...]:
    """Check class names for the FAT2019 CSVs and return them sorted (the column order).

    Args:
        names: class names (duplicates are merged).

    Raises:
        LayoutError: a name is empty, is ``fname``, has a comma or a double quote, or
            starts or ends with whitespace.
    """
    out = tuple(sorted(set(names)))
    for name in out:
        if not name or name != name.strip() or "," in name or '"' in name or name == "fname":
            raise LayoutError(
                f"class name {name!r} cannot be used: class names must be non-empty, not "
                "'fname', without commas or double quotes, and without leading or trailing "
                "spaces"
            )
    if not out:
        raise LayoutError("no classes found")
    return out


def write_labels_csv(path: str | os.PathLike, rows: Iterable[tuple[str, Sequence[str]]]) -> None:
    """Write a ``fname,labels`` CSV (``train_curated.csv``, ``train_noisy.csv``), sorted by fname.

    Args:
        path: the CSV to write.
        rows: ``(fname, labels)`` pairs; labels are joined with ``,`` in the order given.
    """
    body = sorted((fname, ",".join(labels)) for fname, labels in rows)
    _write_csv(Path(path), ("fname", "labels"), body)


def write_sample_submission(
    path: str | os.PathLike, fnames: Iterable[str], class_names: Sequence[str]
) -> None:
    """Write ``sample_submission.csv``: ``fname`` plus one all-zero column per class.

    Args:
        path: the CSV to write.
        fnames: the test clips (written sorted).
        class_names: the classes, already sorted (see :func:`validate_class_names`).
    """
    zeros = ("0",) * len(class_names)
    _write_csv(Path(path), ("fname", *class_names), [(f, *zeros) for f in sorted(fnames)])


def write_test_labels_csv(
    path: str | os.PathLike, rows: Iterable[tuple[str, Sequence[str]]], usage: str = "Private"
) -> None:
    """Write ``test_post_competition.csv`` (``fname,labels,usage``), sorted by fname.

    Args:
        path: the CSV to write.
        rows: ``(fname, labels)`` pairs.
        usage: the ``usage`` value of every row (FAT2019 has ``Public``/``Private``).
    """
    body = sorted((fname, ",".join(labels), usage) for fname, labels in rows)
    _write_csv(Path(path), ("fname", "labels", "usage"), body)


def _check_out(out: Path, replaceable: Callable[[Path], bool] | None) -> None:
    if out.exists() and not out.is_dir():
        raise LayoutError(f"{out}: exists and is not a folder")
    if non_empty_dir(out) and not (replaceable is not None and replaceable(out)):
        raise LayoutError(f"{out}: folder exists and is not empty; choose a new --out")


@contextmanager
def staged_folder(
    out: str | os.PathLike, *, replaceable: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Write a folder atomically: yield a temporary sibling, rename it to ``out`` at the end.

    On an exception the temporary folder is removed and ``out`` is left as it was.

    Args:
        out: the destination folder. It may be missing or empty; a non-empty one is refused
            unless ``replaceable(out)`` is true, in which case it is replaced (moved aside,
            then deleted) once the new folder is complete. ``replaceable`` must only accept
            folders whose every file the caller created.

    Raises:
        LayoutError: ``out`` is a file, or a non-empty folder that may not be replaced.
    """
    out = Path(out)
    _check_out(out, replaceable)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        _check_out(out, replaceable)  # again: another process may have written it meanwhile
        swap_folder_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------- inputs


def _output_name(relative: str) -> str:
    """``dog/001.wav`` -> ``dog__001.wav`` (a plain file name for the output folder)."""
    return relative.replace("\\", "/").strip("/").replace("/", "__")


def _is_audio(name: str) -> bool:
    return Path(name).suffix.lower() in _AUDIO_SUFFIXES


def clips_from_folders(src: str | os.PathLike) -> tuple[list[LayoutClip], int]:
    """List ``src/<class>/**`` audio files as single-label clips.

    Hidden files and folders are skipped; files that are not audio are ignored.

    Args:
        src: the folder holding one sub-folder per class.

    Returns:
        The clips (sorted by class, then path) and the number of ignored files.

    Raises:
        LayoutError: ``src`` is not a folder or holds no audio in class folders.
    """
    root = Path(src)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder (--from-folders needs SRC/<class>/*.wav)")
    clips: list[LayoutClip] = []
    ignored = 0
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored += 1
            continue
        for dirpath, dirnames, filenames in os.walk(entry):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if name.startswith(".") or not _is_audio(name):
                    ignored += not name.startswith(".")
                    continue
                rel = path.relative_to(root).as_posix()
                clips.append(LayoutClip(path, _output_name(rel), (entry.name,)))
    if not clips:
        raise LayoutError(f"{root}: no audio files in class folders (expected SRC/<class>/*.wav)")
    return clips, ignored


def clips_from_csv(csv_path: str | os.PathLike, audio_dir: str | os.PathLike) -> list[LayoutClip]:
    """Read a ``fname,labels`` (or ``fname,label``) CSV of clips under ``audio_dir``.

    Labels are comma-separated inside one cell; spaces around each label are removed.

    Args:
        csv_path: the CSV (UTF-8; other columns are ignored).
        audio_dir: the folder ``fname`` is relative to.

    Returns:
        The clips, in CSV order.

    Raises:
        LayoutError: a missing file or column, an empty label list, a repeated fname.
    """
    path = Path(csv_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LayoutError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: cannot be read as a UTF-8 CSV ({e})") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise LayoutError(f"{path}: empty file, expected a header with fname and labels")
    header = [h.strip() for h in header]
    label_col = "labels" if "labels" in header else "label"
    if "fname" not in header or label_col not in header:
        raise LayoutError(
            f"{path} line 1: need columns 'fname' and 'labels' (or 'label'), found "
            f"{', '.join(map(repr, header))}"
        )
    i_fname, i_labels = header.index("fname"), header.index(label_col)
    clips: list[LayoutClip] = []
    seen: dict[str, int] = {}
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) <= max(i_fname, i_labels):
            raise LayoutError(
                f"{path} line {line}: expected {len(header)} columns, found {len(cells)} "
                '(a multi-label cell must be double-quoted: "Bark,Slam")'
            )
        fname = cells[i_fname].strip()
        labels = tuple(label.strip() for label in cells[i_labels].split(","))
        if not fname:
            raise LayoutError(f"{path} line {line}: empty fname")
        if not all(labels):
            raise LayoutError(f"{path} line {line} ({fname}): empty label in {cells[i_labels]!r}")
        if len(set(labels)) != len(labels):
            raise LayoutError(f"{path} line {line} ({fname}): a label is listed twice")
        name = _output_name(fname)
        if name in seen:
            raise LayoutError(
                f"{path} line {line}: {fname!r} gives the same output name {name!r} as line "
                f"{seen[name]}"
            )
        seen[name] = line
        clips.append(LayoutClip(Path(audio_dir) / fname, name, labels))
    if not clips:
        raise LayoutError(f"{path}: no rows after the header")
    return clips


def split_test(
    clips: Sequence[LayoutClip], test_fraction: float, seed: int
) -> tuple[list[LayoutClip], list[LayoutClip]]:
    """Split clips into (curated, test), stratified by label set, deterministic from ``seed``.

    Each label set with ``n >= 2`` clips sends ``round(test_fraction * n)`` of them, clamped
    to ``[1, n - 1]``, to test; a label set with one clip stays in curated.

    Args:
        clips: the labelled clips.
        test_fraction: fraction in (0, 1).
        seed: non-negative integer.
    """
    if not 0.0 < test_fraction < 1.0:
        raise LayoutError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if seed < 0:
        raise LayoutError(f"--seed must be a non-negative integer, got {seed}")
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(tuple(sorted(clip.labels)), []).append(i)
    test_idx: set[int] = set()
    for key in sorted(groups):
        members = groups[key]
        n = len(members)
        k = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
        test_idx.update(members[j] for j in rng.permutation(n)[:k].tolist())
    curated = [c for i, c in enumerate(clips) if i not in test_idx]
    test = [c for i, c in enumerate(clips) if i in test_idx]
    return curated, test


# ------------------------------------------------------------------------------ writing


def _check_audio(clips: Iterable[LayoutClip], sample_rate: int) -> None:
    """Check every source file before writing anything (one-line error naming the file)."""
    for clip in clips:
        try:
            probe_audio(clip.source, sample_rate)
        except AudioFormatError as e:
            raise LayoutError(" ".join(str(e).split())) from None


def _place(source: Path, dest: Path, link: bool) -> None:
    if not link:
        shutil.copyfile(source, dest)
        return
    try:
        os.link(source, dest)
    except OSError as e:
        raise LayoutError(
            f"{source}: cannot hard-link it into {dest.parent} ({e.strerror or e}); "
            "drop --link to copy the files"
        ) from None


def write_layout(
    out: str | os.PathLike,
    curated: Sequence[LayoutClip],
    test: Sequence[LayoutClip],
    noisy: Sequence[LayoutClip] = (),
    *,
    link: bool = False,
    sample_rate: int = 44100,
) -> tuple[str, ...]:
    """Write a FAT2019 folder from lists of clips (atomically, see :func:`staged_folder`).

    The classes are the labels of the curated and test clips; a noisy clip's labels must
    be among them.

    Args:
        out: the destination folder (missing or empty).
        curated: the clean training clips.
        test: the test clips (labels go to ``test_post_competition.csv``).
        noisy: optional noisy training clips.
        link: hard-link the files instead of copying them.
        sample_rate: the model's sample rate (clips at other rates are resampled when read).

    Returns:
        The class names (sorted).

    Raises:
        LayoutError: a bad class name, an unknown noisy label, duplicate output names or an
            unusable audio file.
    """
    class_names = validate_class_names(label for c in (*curated, *test) for label in c.labels)
    known = set(class_names)
    for clip in noisy:
        unknown = [label for label in clip.labels if label not in known]
        if unknown:
            raise LayoutError(
                f"{clip.source}: noisy label {unknown[0]!r} is not one of the "
                f"{len(class_names)} classes of the curated and test clips"
            )
    for split in (list(curated) + list(test), noisy):
        names: dict[str, Path] = {}
        for clip in split:
            if clip.fname in names:
                raise LayoutError(
                    f"{clip.source} and {names[clip.fname]} get the same output name "
                    f"{clip.fname!r}; rename one of them"
                )
            names[clip.fname] = clip.source
    _check_audio((*curated, *test, *noisy), sample_rate)
    with staged_folder(out) as root:
        splits = [("train_curated", curated), ("test", test)]
        if noisy:
            splits.append(("train_noisy", noisy))
        for folder, clips in splits:
            (root / folder).mkdir()
            for clip in clips:
                _place(clip.source, root / folder / clip.fname, link)
        write_labels_csv(root / "train_curated.csv", [(c.fname, c.labels) for c in curated])
        if noisy:
            write_labels_csv(root / "train_noisy.csv", [(c.fname, c.labels) for c in noisy])
        write_sample_submission(
            root / "sample_submission.csv", [c.fname for c in test], class_names
        )
        write_test_labels_csv(
            root / "test_post_competition.csv", [(c.fname, c.labels) for c in test]
        )
    return class_names


# ---------------------------------------------------------------------------------- CLI

DESCRIPTION = (
    "Lay out your own labelled audio as a FAT2019 dataset folder for fat_tf: "
    "train_curated.csv + train_curated/, test/ + sample_submission.csv + "
    "test_post_competition.csv (test labels), and optionally train_noisy.csv + "
    "train_noisy/. Files are copied (or hard-linked) under readable names "
    "('dog/001.wav' becomes 'dog__001.wav'), in any format fat_tf reads (WAV of any sample "
    "format, FLAC, Ogg Vorbis/Opus, MP3...; training converts them to mono at the model's "
    "rate). A file that cannot be read is named in a one-line error before anything is "
    "written."
)
EPILOG = (
    "Examples: python -m fat_tf.data layout --from-folders my_sounds --out data/mine ; "
    "python -m fat_tf.data layout --from-csv labels.csv --audio-dir audio --out data/mine "
    "--noisy-csv web.csv --noisy-audio-dir web_audio. The test split is stratified by label "
    "set and made clip by clip: split by recording yourself when several files come from one."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``layout`` options to ``parser``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-folders",
        metavar="SRC",
        type=Path,
        help="folder with one sub-folder of audio files per class (SRC/<class>/*.wav)",
    )
    source.add_argument(
        "--from-csv",
        metavar="FILE",
        type=Path,
        help="CSV with columns fname (path relative to --audio-dir) and labels (or label; "
        'several labels comma-joined and quoted: "Bark,Slam")',
    )
    parser.add_argument(
        "--audio-dir",
        metavar="AUDIO",
        type=Path,
        help="folder the --from-csv fnames are relative to (default: the CSV's folder)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="the dataset folder to write (must not exist or be empty)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULT_TEST_FRACTION,
        metavar="F",
        help="fraction of each label set's clips that go to test/ (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the test split (default: %(default)s)"
    )
    parser.add_argument(
        "--noisy-csv",
        metavar="FILE",
        type=Path,
        help="optional fname,labels CSV of extra clips with unreliable labels (train_noisy)",
    )
    parser.add_argument(
        "--noisy-audio-dir",
        metavar="DIR",
        type=Path,
        help="folder the --noisy-csv fnames are relative to (default: that CSV's folder)",
    )
    parser.add_argument(
        "--link",
        action="store_true",
        help="hard-link the files instead of copying them (same file system)",
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=44100,
        metavar="N",
        help="the model's sample rate in Hz; clips at other rates are resampled when "
        "read (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``layout`` command from parsed arguments; returns the exit status (0 or 2)."""
    started = time.perf_counter()
    try:
        ignored = 0
        if args.from_folders is not None:
            if args.audio_dir is not None:
                raise LayoutError("--audio-dir goes with --from-csv, not --from-folders")
            clips, ignored = clips_from_folders(args.from_folders)
        else:
            audio_dir = args.audio_dir or args.from_csv.parent
            clips = clips_from_csv(args.from_csv, audio_dir)
        noisy: list[LayoutClip] = []
        if args.noisy_csv is not None:
            noisy = clips_from_csv(args.noisy_csv, args.noisy_audio_dir or args.noisy_csv.parent)
        elif args.noisy_audio_dir is not None:
            raise LayoutError("--noisy-audio-dir needs --noisy-csv")
        curated, test = split_test(clips, args.test_fraction, args.seed)
        classes = write_layout(
            args.out, curated, test, noisy, link=args.link, sample_rate=args.sample_rate
        )
    except (DataError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    how = "linked" if args.link else "copied"
    noisy_part = f", noisy {len(noisy)}" if noisy else ""
    skipped = f"; ignored {ignored} non-audio file(s)" if ignored else ""
    print(
        f"wrote {args.out}: {len(classes)} classes, curated {len(curated)} clips, test "
        f"{len(test)} clips{noisy_part} ({how}) in {time.perf_counter() - started:.1f} s"
        f"{skipped}"
    )
    print(f"check it with: python -m fat_tf.data check {args.out}")
    return 0


def error_line(error: Exception) -> str:
    """The one line a command prints for a data or file-system error (``error: ...``;
    an ``OSError`` names its file).

    Args:
        error: a ``DataError`` or ``OSError``.
    """
    message = str(error)
    if isinstance(error, OSError) and not isinstance(error, DataError) and error.filename:
        message = f"{error.filename}: {error.strerror or error}"
    return f"error: {' '.join(message.split())}"


def main(argv: Sequence[str] | None = None, prog: str = "python -m fat_tf.data layout") -> int:
    """Command line of ``python -m fat_tf.data layout``; returns the exit status."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
