"""FAT2019 manifests: read and validate the CSVs and audio folders of a dataset.

A :class:`Manifest` is one set of clips (curated, noisy or test): file names, a multi-hot
label matrix in class order and, when the audio was checked, clip durations read from the
file headers and what each file needs converted (:func:`fat_tf.data.audio_io.probe_audio`:
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

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fat_tf.data.manifest_csv import (
    MAX_QUOTED,
    Entry,
    Problem,
    read_class_names,
    read_labelled,
    read_submission_rows,
)
from fat_tf.errors import AudioFormatError, DataError

if TYPE_CHECKING:
    from fat_tf.data.audio_io import AudioInfo


class DataWarning(UserWarning):
    """A dataset problem that was tolerated (unlisted audio files, rows skipped on request)."""


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
            see :func:`fat_tf.data.audio_io.probe_audio`), ``()`` for a clip read as it is;
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
        check_audio: run :func:`~fat_tf.data.audio_io.probe_audio` on every listed file
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
    entries, problems, n_rows = read_labelled(csv_path, class_names)
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
    entries, problems, n_rows = read_submission_rows(sub_path, len(class_names) + 1)
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
    entries: list[Entry],
    problems: list[Problem],
) -> None:
    """Give each submission entry its labels from ``labels_path``; report clips without."""
    labelled, label_problems, _ = read_labelled(labels_path, class_names)
    problems += label_problems
    bad = {p.fname for p in label_problems}
    found = {e.fname: e.labels for e in labelled}
    for e in entries:
        e.labels = found.get(e.fname)
        if e.labels is None and e.fname not in bad:
            problems.append(
                Problem(sub_path, e.line, f"test clip has no row in {labels_path}", e.fname)
            )


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
    entries: list[Entry],
    problems: list[Problem],
    *,
    check_audio: bool,
    sample_rate: int,
) -> dict[str, AudioInfo]:
    """Check presence (and headers) of each entry's file; return the good ones' info."""
    from fat_tf.data.audio_io import probe_audio  # here: audio_io imports fat_tf.data

    names = _list_audio_dir(audio_dir, csv_path)
    found: dict[str, AudioInfo] = {}
    for e in entries:
        path = os.path.join(audio_dir, e.fname)
        if e.fname not in names:
            problems.append(
                Problem(csv_path, e.line, f"audio file {path} not found", error=AudioFormatError)
            )
        elif check_audio:
            try:
                found[e.fname] = probe_audio(path, sample_rate)
            except AudioFormatError as err:
                problems.append(Problem(csv_path, e.line, str(err), error=AudioFormatError))
    listed = {e.fname for e in entries} | {p.fname for p in problems if p.fname}
    _warn_unlisted(csv_path, audio_dir, names, listed)
    return found


def _warn_unlisted(csv_path: str, audio_dir: str, names: set[str], listed: set[str]) -> None:
    """Warn once about audio files in ``audio_dir`` that the CSV does not list."""
    from fat_tf.data.audio_io import is_audio_file

    extra = sorted(n for n in names if is_audio_file(n) and n not in listed)
    if extra:
        shown = ", ".join(extra[:MAX_QUOTED]) + (", ..." if len(extra) > MAX_QUOTED else "")
        warnings.warn(
            f"{audio_dir}: {len(extra)} audio file(s) not listed in {csv_path} are ignored: "
            f"{shown}",
            DataWarning,
            stacklevel=2,
        )


def _raise_first(csv_path: str, problems: list[Problem]) -> None:
    """Raise the first problem (this CSV's rows first, in line order) with the count."""
    first = min(problems, key=lambda p: (p.path != csv_path, p.line))
    more = len(problems) - 1
    tail = (
        f" ({more} more problem(s); skip_bad=True or --skip-bad leaves bad rows out)"
        if more
        else ""
    )
    raise first.error(f"{first}{tail}")


def _warn_skipped(csv_path: str, n_rows: int, n_kept: int, problems: list[Problem]) -> None:
    """One DataWarning: how many rows were left out and the first few problems."""
    problems = sorted(problems, key=lambda p: (p.path != csv_path, p.line))
    shown = "; ".join(str(p) for p in problems[:MAX_QUOTED])
    more = f"; and {len(problems) - MAX_QUOTED} more" if len(problems) > MAX_QUOTED else ""
    warnings.warn(
        f"{csv_path}: skipped {n_rows - n_kept} of {n_rows} row(s) with problems: {shown}{more}",
        DataWarning,
        stacklevel=2,
    )


def _finish(
    csv_path: str,
    audio_dir: str,
    class_names: tuple[str, ...],
    entries: list[Entry],
    problems: list[Problem],
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


def _multi_hot(entries: list[Entry], class_names: tuple[str, ...]) -> np.ndarray:
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
