"""FAT2019 manifests: read and validate the CSVs and audio folders of a dataset.

A :class:`Manifest` is one set of clips (curated, noisy or test): file names, a multi-hot
label matrix in class order and, when the audio was checked, clip durations read from the
file headers and what each file needs converted (:func:`fat_tf.audio_io.probe_audio`:
any format and rate libsndfile reads is accepted and converted when read).
:func:`load_dataset` reads a whole folder in the Kaggle FAT2019 layout
(:class:`DatasetLayout`).

Every problem is reported as a :class:`~fat_tf.errors.DataError` (or
:class:`~fat_tf.errors.AudioFormatError`) naming the file, the line (1-based, the header is
line 1) and the offending value, plus how many more problems the file has. With
``skip_bad=True`` bad rows and clips are left out instead, and one :class:`DataWarning` per
file gives their count and the first few. Tolerated oddities that lose nothing (WAV files
not listed in the CSV) also give a :class:`DataWarning`; warnings go through
:func:`warnings.warn` only.

Decisions:
    - Labels are split on ``,`` and kept as a set (their order in a cell means nothing).
      A label with stray spaces (``"Bark, Hiss"``) is an error, not silently stripped: the
      real data has none, so spaces mean the CSV was written by something else and may
      hide other changes. Empty label lists, empty labels (``"Bark,"``) and a label
      repeated in one cell are errors too.
    - A UTF-8 BOM, CRLF line endings, blank lines and extra columns (``freesound_id``,
      ``license``, ``usage``...) are accepted.
    - A duplicated fname is an error naming both lines; with ``skip_bad`` every row of
      that fname is left out (which of its label sets is right is unknown).
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import warnings
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fat_tf.errors import AudioFormatError, DataError
from fat_tf.files import NotRegularFileError, open_regular

if TYPE_CHECKING:
    from fat_tf.audio_io import AudioInfo

_SHOW = 3  # problems or names quoted in one message


class DataWarning(UserWarning):
    """A dataset problem that was tolerated (unlisted audio files, rows skipped on request)."""


# --------------------------------------------------------------------------- class names


def read_class_names(sample_submission_csv: str | os.PathLike) -> tuple[str, ...]:
    """Read the class names from the header of ``sample_submission.csv``.

    Args:
        sample_submission_csv: a CSV whose header is ``fname`` then one column per class,
            in Python ``sorted()`` order (the submission column order).

    Returns:
        The class names in column order.

    Raises:
        DataError: the first column is not ``fname``, there are no classes, a name is
            empty, repeated or has stray spaces, or the names are not sorted.
    """
    path = os.fspath(sample_submission_csv)
    header, _ = _read_csv(path, header_only=True)
    if not header or header[0] != "fname":
        found = repr(header[0]) if header else "nothing"
        raise DataError(f"{path} line 1: the first column must be 'fname', found {found}")
    names = tuple(header[1:])
    if not names:
        raise DataError(f"{path} line 1: no class columns after 'fname'")
    for i, name in enumerate(names):
        if not name or name != name.strip():
            raise DataError(
                f"{path} line 1: class name {name!r} (column {i + 2}) is empty or has stray spaces"
            )
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(
                f"{path} line 1: class {name!r} appears twice (columns "
                f"{seen[name] + 2} and {i + 2})"
            )
        seen[name] = i
    for i in range(1, len(names)):
        if names[i - 1] > names[i]:
            raise DataError(
                f"{path} line 1: class columns are not in alphabetical (Python sorted) order: "
                f"{names[i - 1]!r} (column {i + 1}) comes before {names[i]!r} (column {i + 2})"
            )
    return names


def parse_labels(text: str, class_names: Collection[str]) -> frozenset[str]:
    """Parse one ``labels`` cell (comma-joined class names) into a set.

    Args:
        text: the cell, e.g. ``"Walk_and_footsteps,Slam"``.
        class_names: the known classes (a set is fastest).

    Returns:
        The set of labels.

    Raises:
        DataError: the cell is empty, has an empty item, a label with stray spaces, a
            repeated label or an unknown label (with close matches). The message does not
            name a file; callers add it.
    """
    if not text.strip():
        raise DataError(f"empty label list {text!r}")
    known = class_names if isinstance(class_names, (set, frozenset, dict)) else set(class_names)
    labels: set[str] = set()
    for item in text.split(","):
        if not item:
            raise DataError(f"empty label in {text!r} (stray comma)")
        if item != item.strip():
            raise DataError(
                f"label {item!r} has stray spaces in {text!r} (labels are joined by ',' with "
                "no spaces)"
            )
        if item not in known:
            raise DataError(_unknown_label(item, class_names))
        if item in labels:
            raise DataError(f"label {item!r} is listed twice in {text!r}")
        labels.add(item)
    return frozenset(labels)


def _unknown_label(label: str, class_names: Iterable[str]) -> str:
    names = list(class_names)
    close = difflib.get_close_matches(label, names, n=_SHOW, cutoff=0.6)
    folded = [n for n in names if n.lower() == label.lower() and n not in close]
    close = folded + close
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown label {label!r}, not one of the {len(names)} classes{hint}"


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True, eq=False)
class Manifest:
    """One set of clips: names, labels and (if checked) durations and conversions.

    Args:
        csv_path: the CSV the clips were listed in.
        audio_dir: the folder holding the audio files.
        fnames: file names inside ``audio_dir``, in CSV order.
        labels: ``[N, C]`` float32 multi-hot labels in ``class_names`` order, or ``None``
            for an unlabelled set.
        class_names: the C class names.
        durations: ``[N]`` float64 clip durations in seconds from the file headers, or
            ``None`` when the audio was not checked.
        conversions: per clip, why it is converted when read (format, channels, rate;
            see :func:`fat_tf.audio_io.probe_audio`), ``()`` for a clip read as it is;
            ``None`` when the audio was not checked.
    """

    csv_path: str
    audio_dir: str
    fnames: tuple[str, ...]
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    durations: np.ndarray | None = None
    conversions: tuple[tuple[str, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.fnames)

    @property
    def paths(self) -> list[str]:
        """Full paths of the audio files, as strings."""
        return [os.path.join(self.audio_dir, f) for f in self.fnames]

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.class_names)

    def label_sets(self) -> list[frozenset[str]]:
        """Each clip's labels as a set of class names (raises if unlabelled)."""
        if self.labels is None:
            raise DataError(f"{self.csv_path}: this set has no labels")
        names = np.asarray(self.class_names, dtype=object)
        return [frozenset(names[row > 0.5]) for row in self.labels]

    def subset(self, indices: Sequence[int] | np.ndarray) -> Manifest:
        """Return the clips at ``indices`` (integer positions or a boolean mask).

        Args:
            indices: positions into this manifest, or a boolean mask of length N.
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask of shape {idx.shape}, expected ({len(self)},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        return replace(
            self,
            fnames=tuple(self.fnames[i] for i in idx),
            labels=None if self.labels is None else self.labels[idx],
            durations=None if self.durations is None else self.durations[idx],
            conversions=None if self.conversions is None
            else tuple(self.conversions[i] for i in idx),
        )


@dataclass
class _Entry:
    line: int
    fname: str
    labels: frozenset[str] | None


@dataclass
class _Problem:
    path: str
    line: int
    message: str
    fname: str | None = None
    error: type[DataError] = DataError

    def __str__(self) -> str:
        name = f" ({self.fname})" if self.fname else ""
        return f"{self.path} line {self.line}{name}: {self.message}"


def read_manifest(
    csv_path: str | os.PathLike,
    audio_dir: str | os.PathLike,
    class_names: Sequence[str],
    *,
    skip_bad: bool = False,
    check_audio: bool = True,
    sample_rate: int = 44100,
) -> Manifest:
    """Read and validate a labelled ``fname,labels`` CSV and its audio folder.

    Args:
        csv_path: the CSV (``train_curated.csv``...). Columns other than ``fname`` and
            ``labels`` are allowed and ignored.
        audio_dir: the folder holding the listed audio files.
        class_names: the classes, in label-matrix column order.
        skip_bad: leave out bad rows and clips (one :class:`DataWarning` with the count)
            instead of raising.
        check_audio: run :func:`~fat_tf.audio_io.probe_audio` on every listed file
            (headers only) and record durations and conversions; without it only the
            files' presence is checked.
        sample_rate: the model's sample rate (clips at other rates are resampled).

    Returns:
        The :class:`Manifest`, rows in CSV order.

    Raises:
        DataError: the CSV is missing or malformed, or a row is bad; the message names
            the CSV, the line and the value, and counts further problems.
        AudioFormatError: a listed audio file is missing or unusable (unless ``skip_bad``).
    """
    csv_path, audio_dir = os.fspath(csv_path), os.fspath(audio_dir)
    class_names = tuple(class_names)
    entries, problems, n_rows = _read_labelled(csv_path, class_names)
    return _finish(
        csv_path,
        audio_dir,
        class_names,
        entries,
        problems,
        n_rows,
        skip_bad=skip_bad,
        check_audio=check_audio,
        sample_rate=sample_rate,
    )


def read_test_manifest(
    sample_submission_csv: str | os.PathLike,
    audio_dir: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    *,
    labels_csv: str | os.PathLike | None = None,
    skip_bad: bool = False,
    check_audio: bool = True,
    sample_rate: int = 44100,
) -> Manifest:
    """Read the test set: the clips listed in ``sample_submission.csv``, labels optional.

    Args:
        sample_submission_csv: ``fname`` plus one column per class; its rows list the
            test clips (their values are ignored).
        audio_dir: the test folder.
        class_names: the classes; ``None`` reads them from ``sample_submission_csv``
            (when given they must match its header).
        labels_csv: ``test_post_competition.csv`` (``fname,labels,usage,...``) giving the
            test labels, or ``None`` for an unlabelled test set. It may list more clips
            than the submission (e.g. the public part of the test set).
        skip_bad: leave out bad rows and clips with one :class:`DataWarning` instead of
            raising.
        check_audio: check every audio file's header (see :func:`read_manifest`).
        sample_rate: the model's sample rate (clips at other rates are resampled).

    Returns:
        The test :class:`Manifest` (``labels`` is ``None`` without ``labels_csv``).

    Raises:
        DataError: as :func:`read_manifest`, also when a submission clip has no label row.
    """
    sub_path, audio_dir = os.fspath(sample_submission_csv), os.fspath(audio_dir)
    header_names = read_class_names(sub_path)
    class_names = header_names if class_names is None else tuple(class_names)
    if header_names != class_names:
        raise DataError(
            f"{sub_path} line 1: its class columns differ from the "
            f"{len(class_names)} classes expected"
        )
    entries, problems, n_rows = _read_submission_rows(sub_path, len(class_names) + 1)
    if labels_csv is not None:
        _attach_test_labels(sub_path, os.fspath(labels_csv), class_names, entries, problems)
    return _finish(
        sub_path,
        audio_dir,
        class_names,
        entries,
        problems,
        n_rows,
        skip_bad=skip_bad,
        check_audio=check_audio,
        sample_rate=sample_rate,
        labelled=labels_csv is not None,
    )


def _attach_test_labels(
    sub_path: str,
    labels_path: str,
    class_names: tuple[str, ...],
    entries: list[_Entry],
    problems: list[_Problem],
) -> None:
    """Give each submission entry its labels from ``labels_path``; report clips without."""
    labelled, label_problems, _ = _read_labelled(labels_path, class_names)
    problems += label_problems
    bad = {p.fname for p in label_problems}
    found = {e.fname: e.labels for e in labelled}
    for e in entries:
        e.labels = found.get(e.fname)
        if e.labels is None and e.fname not in bad:
            problems.append(
                _Problem(sub_path, e.line, f"test clip has no row in {labels_path}", e.fname)
            )


# --------------------------------------------------------------------------- CSV reading


def _read_csv(
    path: str, *, header_only: bool = False
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a CSV into its header cells and ``(line number, cells)`` rows."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if cells and not header:
                if start != 1:
                    raise DataError(f"{path} line {start}: blank line(s) before the header")
                header = cells
                if header_only:
                    break
            elif cells:
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(
            f"{path} line {start}: malformed CSV ({e}); look for an unterminated or stray "
            "double quote"
        ) from None
    if not header:
        raise DataError(f"{path}: empty file, expected a header line")
    return header, rows


def _read_text(path: str) -> str:
    try:
        with open_regular(path) as f:
            raw = f.read()
    except NotRegularFileError as e:  # a FIFO would block the reader forever
        raise DataError(f"{path}: {e.strerror}; expected a CSV file") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a CSV file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path} line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
        ) from None


def _column_index(path: str, header: list[str], required: Sequence[str]) -> dict[str, int]:
    """Map required column names to their positions, or raise naming what is wrong."""
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise DataError(f"{path} line 1: column {name!r} appears twice in the header")
        seen[name] = i
    missing = [c for c in required if c not in seen]
    if not missing:
        return {c: seen[c] for c in required}
    if header[0].lower().endswith(".wav"):
        raise DataError(
            f"{path} line 1: missing header: the file starts with a data row "
            f"({','.join(header)!r}); the first line must be the header "
            f"{','.join(required)!r}"
        )
    spaced = [h for h in header if h.strip() in missing]
    hint = f" (column {spaced[0]!r} has stray spaces)" if spaced else ""
    raise DataError(
        f"{path} line 1: header lacks column(s) {', '.join(map(repr, missing))}{hint}; "
        f"found {', '.join(map(repr, header))}, need {', '.join(map(repr, required))}"
    )


def _fname_problem(fname: str) -> str | None:
    if not fname:
        return "empty fname"
    if fname != fname.strip():
        return f"fname {fname!r} has stray spaces"
    if "/" in fname or "\\" in fname or fname in (".", ".."):
        return f"fname {fname!r} must be a file name, not a path"
    return None


def _width_problem(path: str, line: int, cells: list[str], width: int) -> _Problem | None:
    if len(cells) == width:
        return None
    hint = ' (a multi-label cell must be double-quoted: "Bark,Slam")' if len(cells) > width else ""
    return _Problem(
        path, line, f"expected {width} columns as in the header, found {len(cells)}{hint}"
    )


def _read_labelled(
    path: str, class_names: tuple[str, ...]
) -> tuple[list[_Entry], list[_Problem], int]:
    """Parse a CSV with ``fname`` and ``labels`` columns into entries, problems, row count.

    Rows with a problem (duplicates included) are not in the entries.
    """
    header, rows = _read_csv(path)
    cols = _column_index(path, header, ("fname", "labels"))
    known = frozenset(class_names)
    entries: list[_Entry] = []
    problems: list[_Problem] = []
    for line, cells in rows:
        problem = _width_problem(path, line, cells, len(header))
        if cells == header:
            problem = _Problem(path, line, "the header line is repeated (CSV files joined?)")
        if problem is None:
            fname = cells[cols["fname"]]
            message = _fname_problem(fname)
            if message is None:
                try:
                    labels = parse_labels(cells[cols["labels"]], known)
                    entries.append(_Entry(line, fname, labels))
                    continue
                except DataError as e:
                    message = str(e)
            problem = _Problem(path, line, message, fname.strip() or None)
        problems.append(problem)
    return _drop_duplicates(path, entries, problems), problems, len(rows)


def _read_submission_rows(path: str, width: int) -> tuple[list[_Entry], list[_Problem], int]:
    """Parse the rows of ``sample_submission.csv`` into unlabelled entries."""
    _, rows = _read_csv(path)
    entries: list[_Entry] = []
    problems: list[_Problem] = []
    for line, cells in rows:
        problem = _width_problem(path, line, cells, width)
        if problem is None and (message := _fname_problem(cells[0])):
            problem = _Problem(path, line, message)
        if problem:
            problems.append(problem)
        else:
            entries.append(_Entry(line, cells[0], None))
    return _drop_duplicates(path, entries, problems), problems, len(rows)


def _drop_duplicates(path: str, entries: list[_Entry], problems: list[_Problem]) -> list[_Entry]:
    """Report every fname listed more than once and drop all of its rows."""
    lines: dict[str, list[int]] = {}
    for e in entries:
        lines.setdefault(e.fname, []).append(e.line)
    dups = {name: ls for name, ls in lines.items() if len(ls) > 1}
    for name, ls in dups.items():
        at = ", ".join(map(str, ls[:-1])) + f" and {ls[-1]}"
        problems.append(
            _Problem(path, ls[1], f"duplicate fname {name!r}: listed at lines {at}", name)
        )
    return [e for e in entries if e.fname not in dups]


# --------------------------------------------------------------------------- audio + result


def _list_audio_dir(audio_dir: str, csv_path: str) -> set[str]:
    try:
        return set(os.listdir(audio_dir))
    except FileNotFoundError:
        raise DataError(f"{audio_dir}: audio folder not found (needed by {csv_path})") from None
    except NotADirectoryError:
        raise DataError(f"{audio_dir}: not a folder (needed by {csv_path})") from None
    except OSError as e:
        raise DataError(f"{audio_dir}: cannot be listed ({e.strerror or e})") from None


def _check_files(
    csv_path: str,
    audio_dir: str,
    entries: list[_Entry],
    problems: list[_Problem],
    *,
    check_audio: bool,
    sample_rate: int,
) -> dict[str, AudioInfo]:
    """Check presence (and headers) of each entry's file; return the good ones' info."""
    from fat_tf.audio_io import probe_audio  # here: fat_tf.audio_io imports this package

    names = _list_audio_dir(audio_dir, csv_path)
    found: dict[str, AudioInfo] = {}
    for e in entries:
        path = os.path.join(audio_dir, e.fname)
        if e.fname not in names:
            problems.append(
                _Problem(csv_path, e.line, f"audio file {path} not found", error=AudioFormatError)
            )
        elif check_audio:
            try:
                found[e.fname] = probe_audio(path, sample_rate)
            except AudioFormatError as err:
                problems.append(_Problem(csv_path, e.line, str(err), error=AudioFormatError))
    listed = {e.fname for e in entries} | {p.fname for p in problems if p.fname}
    _warn_unlisted(csv_path, audio_dir, names, listed)
    return found


def _warn_unlisted(csv_path: str, audio_dir: str, names: set[str], listed: set[str]) -> None:
    """Warn once about audio files in ``audio_dir`` that the CSV does not list."""
    from fat_tf.audio_io import is_audio_file

    extra = sorted(n for n in names if is_audio_file(n) and n not in listed)
    if extra:
        shown = ", ".join(extra[:_SHOW]) + (", ..." if len(extra) > _SHOW else "")
        warnings.warn(
            f"{audio_dir}: {len(extra)} audio file(s) not listed in {csv_path} are ignored: "
            f"{shown}",
            DataWarning,
            stacklevel=2,
        )


def _raise_first(csv_path: str, problems: list[_Problem]) -> None:
    """Raise the first problem (this CSV's rows first, in line order) with the count."""
    first = min(problems, key=lambda p: (p.path != csv_path, p.line))
    more = len(problems) - 1
    tail = (
        f" ({more} more problem(s); skip_bad=True or --skip-bad leaves bad rows out)"
        if more
        else ""
    )
    raise first.error(f"{first}{tail}")


def _warn_skipped(csv_path: str, n_rows: int, n_kept: int, problems: list[_Problem]) -> None:
    """One DataWarning: how many rows were left out and the first few problems."""
    problems = sorted(problems, key=lambda p: (p.path != csv_path, p.line))
    shown = "; ".join(str(p) for p in problems[:_SHOW])
    more = f"; and {len(problems) - _SHOW} more" if len(problems) > _SHOW else ""
    warnings.warn(
        f"{csv_path}: skipped {n_rows - n_kept} of {n_rows} row(s) with problems: {shown}{more}",
        DataWarning,
        stacklevel=2,
    )


def _finish(
    csv_path: str,
    audio_dir: str,
    class_names: tuple[str, ...],
    entries: list[_Entry],
    problems: list[_Problem],
    n_rows: int,
    *,
    skip_bad: bool,
    check_audio: bool,
    sample_rate: int,
    labelled: bool = True,
) -> Manifest:
    """Check the audio, raise on or skip the problems, and build the Manifest."""
    if problems and not skip_bad:
        _raise_first(csv_path, problems)  # CSV problems: fail before reading any audio
    if labelled:
        entries = [e for e in entries if e.labels is not None]
    info = _check_files(
        csv_path, audio_dir, entries, problems, check_audio=check_audio, sample_rate=sample_rate
    )
    if problems and not skip_bad:
        _raise_first(csv_path, problems)
    bad = {p.line for p in problems if p.path == csv_path}
    entries = [e for e in entries if e.line not in bad]
    if problems:
        _warn_skipped(csv_path, n_rows, len(entries), problems)
    labels = _multi_hot(entries, class_names) if labelled else None
    return Manifest(
        csv_path=csv_path,
        audio_dir=audio_dir,
        fnames=tuple(e.fname for e in entries),
        labels=labels,
        class_names=class_names,
        durations=np.array([info[e.fname].duration for e in entries]) if check_audio else None,
        conversions=tuple(info[e.fname].conversion for e in entries) if check_audio else None,
    )


def _multi_hot(entries: list[_Entry], class_names: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.zeros((len(entries), len(class_names)), np.float32)
    for row, e in enumerate(entries):
        labels[row, [index[n] for n in e.labels]] = 1.0
    return labels


# --------------------------------------------------------------------------- dataset folder

_LAYOUT_HELP = """\
A FAT2019 dataset folder (Kaggle layout) holds:
  sample_submission.csv      header fname,<class names in sorted order>; rows list test clips
  train_curated.csv          header fname,labels (multi-label cells quoted: "Bark,Slam")
  train_curated/             the curated audio files (WAV, FLAC, Ogg, MP3...; 16-bit PCM
                             mono WAV at the model's rate is read as it is, the rest
                             converted when read)
  test/                      the test audio files listed in sample_submission.csv
and optionally:
  train_noisy.csv + train_noisy/   the noisy training set
  test_post_competition.csv  test labels (fname,labels,usage,...)"""


@dataclass(frozen=True)
class DatasetLayout:
    """Where the files of a FAT2019 folder are (Kaggle layout).

    Args:
        root: the dataset folder.
    """

    root: str

    @property
    def sample_submission_csv(self) -> str:
        """``sample_submission.csv``: class names and the test clip list."""
        return os.path.join(self.root, "sample_submission.csv")

    @property
    def curated_csv(self) -> str:
        """``train_curated.csv``."""
        return os.path.join(self.root, "train_curated.csv")

    @property
    def curated_dir(self) -> str:
        """``train_curated/``."""
        return os.path.join(self.root, "train_curated")

    @property
    def noisy_csv(self) -> str:
        """``train_noisy.csv``."""
        return os.path.join(self.root, "train_noisy.csv")

    @property
    def noisy_dir(self) -> str:
        """``train_noisy/``."""
        return os.path.join(self.root, "train_noisy")

    @property
    def test_dir(self) -> str:
        """``test/``."""
        return os.path.join(self.root, "test")

    @property
    def test_labels_csv(self) -> str:
        """``test_post_competition.csv`` (optional test labels)."""
        return os.path.join(self.root, "test_post_competition.csv")

    @property
    def has_noisy(self) -> bool:
        """Whether the noisy set is present."""
        return os.path.exists(self.noisy_csv) or os.path.exists(self.noisy_dir)

    @property
    def has_test_labels(self) -> bool:
        """Whether ``test_post_competition.csv`` is present."""
        return os.path.exists(self.test_labels_csv)

    def validate(self) -> DatasetLayout:
        """Check that every required file and folder exists.

        Returns:
            ``self``.

        Raises:
            DataError: listing what is missing and what the folder must contain.
        """
        if not os.path.isdir(self.root):
            what = "is not a folder" if os.path.exists(self.root) else "not found"
            raise DataError(f"{self.root}: dataset folder {what}.\n{_LAYOUT_HELP}")
        need = [
            (self.sample_submission_csv, False),
            (self.curated_csv, False),
            (self.curated_dir, True),
            (self.test_dir, True),
        ]
        if self.has_noisy:
            need += [(self.noisy_csv, False), (self.noisy_dir, True)]
        missing = [
            os.path.basename(p) + ("/" if is_dir else "")
            for p, is_dir in need
            if not (os.path.isdir(p) if is_dir else os.path.isfile(p))
        ]
        if missing:
            raise DataError(
                f"{self.root}: not a FAT2019 dataset folder, missing "
                f"{', '.join(missing)}.\n{_LAYOUT_HELP}"
            )
        return self


@dataclass(frozen=True, eq=False)
class FatDataset:
    """A loaded FAT2019 folder.

    Args:
        layout: where the files are.
        class_names: the classes, from ``sample_submission.csv``.
        curated: the curated training set.
        noisy: the noisy training set, or ``None`` if absent.
        test: the test set (labels ``None`` without ``test_post_competition.csv``).
    """

    layout: DatasetLayout
    class_names: tuple[str, ...]
    curated: Manifest
    noisy: Manifest | None
    test: Manifest

    @property
    def root(self) -> str:
        """The dataset folder."""
        return self.layout.root

    def sets(self) -> dict[str, Manifest]:
        """The present sets by name (``curated``, ``noisy``, ``test``)."""
        found = {"curated": self.curated, "noisy": self.noisy, "test": self.test}
        return {k: v for k, v in found.items() if v is not None}


def load_dataset(
    root: str | os.PathLike,
    *,
    skip_bad: bool = False,
    check_audio: bool = True,
    sample_rate: int = 44100,
) -> FatDataset:
    """Read and validate a FAT2019 folder in the Kaggle layout.

    Args:
        root: the dataset folder (see :class:`DatasetLayout`).
        skip_bad: leave out bad rows and clips with one :class:`DataWarning` per file.
        check_audio: check every audio file's header (see :func:`read_manifest`).
        sample_rate: the model's sample rate (clips at other rates are resampled).

    Returns:
        The :class:`FatDataset`.

    Raises:
        DataError: the folder or a required file is missing, any set is invalid, or
            there are no curated clips.
    """
    layout = DatasetLayout(os.fspath(root)).validate()
    class_names = read_class_names(layout.sample_submission_csv)
    kwargs = dict(skip_bad=skip_bad, check_audio=check_audio, sample_rate=sample_rate)
    curated = read_manifest(layout.curated_csv, layout.curated_dir, class_names, **kwargs)
    if not len(curated):
        why = "it lists none" + (", or every listed clip was left out as bad" if skip_bad else "")
        raise DataError(
            f"{layout.curated_csv}: no curated clips ({why}); training and validation need "
            f"labelled curated clips: list them as fname,labels rows, with their audio files "
            f"in {layout.curated_dir}"
        )
    noisy = None
    if layout.has_noisy:
        noisy = read_manifest(layout.noisy_csv, layout.noisy_dir, class_names, **kwargs)
    test = read_test_manifest(
        layout.sample_submission_csv,
        layout.test_dir,
        class_names,
        labels_csv=layout.test_labels_csv if layout.has_test_labels else None,
        **kwargs,
    )
    return FatDataset(layout, class_names, curated, noisy, test)
