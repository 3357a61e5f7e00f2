"""Download FSDKaggle2019 from Zenodo, or unpack the Kaggle zip, into the Kaggle FAT2019 layout.

Command line::

    python -m fat_tf.data.download --dest DIR [--subset curated,noisy,test]
        [--fix-labels drop|relabel|keep] [--test-clips all|private]
        [--kaggle-zip PATH] [--record-url URL] [--archive-dir DIR] [--remove-archives]
        [--dry-run]

The result is what :func:`fat_tf.data.load_dataset` and ``python -m fat_tf.data check``
accept::

    DIR/train_curated.csv  DIR/train_curated/   FSDKaggle2019.audio_train_curated.zip
    DIR/train_noisy.csv    DIR/train_noisy/     FSDKaggle2019.audio_train_noisy.z01 ... .zip
    DIR/sample_submission.csv  DIR/test/        FSDKaggle2019.audio_test.zip
    DIR/test_post_competition.csv               test labels (Zenodo only), copied as is
    DIR/train_curated_excluded/                 WAVs of curated clips left out by --fix-labels
    DIR/downloads/                              the verified Zenodo archives (--archive-dir)

How it works:
    - :data:`FSDKAGGLE2019` is the one table of the record id and the file names of each
      subset. Sizes, MD5 checksums and download URLs are read at run time from the record
      API JSON (``https://zenodo.org/api/records/3612637``; ``--record-url`` points
      elsewhere, e.g. at a test server). Only the standard library is used.
    - Downloads (:mod:`fat_tf.data.http_download`) go to ``NAME.part`` and resume with an
      HTTP ``Range`` request; every file's size and MD5 are checked before it is renamed
      into place; a corrupt file is removed and the error names it with both checksums.
      Transient errors are retried with exponential backoff.
    - Archives (:mod:`fat_tf.data.archives`): the noisy set is a *split* zip (``.z01`` ...
      ``.z06`` plus ``.zip``) whose members are extracted straight from the parts,
      CRC-checked, without writing a joined 20+ GB copy first. Extraction checks every
      member name before writing anything, writes into ``DIR/.FOLDER.partial`` and renames
      that to ``DIR/FOLDER`` only when complete. A single top-level folder in an archive
      (``FSDKaggle2019.audio_test/``) is stripped.
    - Idempotent: verified archives are remembered in ``downloads/verified.json`` (name,
      size, mtime, MD5) and not hashed again; an existing target folder is skipped (delete
      it to extract again); CSVs are regenerated from the metadata on every run and only
      rewritten when their content changes, so re-running with another ``--fix-labels``
      just updates them. The record API is only contacted when a file must be fetched.
    - ``--dry-run`` (:func:`plan_zenodo_download`, :func:`plan_kaggle_zip`) lists the
      files a run would need, with size, MD5 and whether they are already there, and the
      total to download; it reads only the record JSON and writes nothing. Progress
      lines (:mod:`fat_tf.data.progress`) show the speed and the time left.
Decisions:
    - ``train_curated.csv`` / ``train_noisy.csv`` are ``fname,labels`` from the
      ``*_post_competition.csv`` files, sorted by fname, LF line endings and minimal quoting:
      with ``--fix-labels keep`` this is Kaggle's file byte for byte.
    - ``sample_submission.csv`` has the header ``fname`` + the 80 ``vocabulary.csv`` labels
      in file order and all-zero rows, sorted by fname. ``--test-clips all`` (the default)
      lists all 4481 test clips: Zenodo's test zip holds all of them, all are labelled in
      ``test_post_competition.csv``, the DCASE paper and baseline report on the full set,
      and every WAV in ``test/`` is then listed (no "unlisted files" warnings).
      ``--test-clips private`` lists the 3361 ``usage == "Private"`` clips only, which is
      Kaggle's current file byte for byte (the loader then warns that the 1120 public WAVs
      in ``test/`` are ignored).
    - ``--fix-labels`` handles the six officially mislabelled / corrupted curated clips
      (:data:`MISLABELLED_CURATED`): ``drop`` (default) leaves the six rows out,
      ``relabel`` applies the 1st-place solution's relabels (3 clips) and drops the other 3,
      ``keep`` changes nothing. WAVs of dropped clips are moved to
      ``train_curated_excluded/`` (and moved back by a later ``keep``/``relabel`` run), so
      the loader does not warn about unlisted files.
    - ``--kaggle-zip`` lays out the Kaggle competition zip the same way: its inner
      ``train_curated.zip``, ``train_noisy.zip`` and ``test.zip`` (or ``train_curated/``...
      folders) are extracted, ``train_noisy.csv`` and ``sample_submission.csv`` copied as
      is, ``train_curated.csv`` copied or, with ``drop``/``relabel``, rewritten. It has no
      test labels. A stored (uncompressed) inner zip is read in place; a compressed one is
      unpacked to a temporary file in the archive folder first.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from fat_tf.config import atomic_write_text
from fat_tf.data.archives import (
    ArchiveError,
    ArchiveMember,
    ConcatFile,
    SplitZipArchive,
    ZipArchive,
    check_member_name,
    extract_archive,
    open_archive,
    open_inner_zip,
    plan_extraction,
)
from fat_tf.data.http_download import (
    ChecksumError,
    DownloadError,
    DownloadOptions,
    RemoteFile,
    check_free_space,
    download_file,
    fetch_record,
    file_md5,
    parse_record,
    verify_file,
)
from fat_tf.data.manifest import DataWarning, load_dataset
from fat_tf.data.progress import Progress
from fat_tf.errors import DataError, FatTfError

__all__ = [
    # the FAT2019 table, CSV mapping, preparation and command line (this module)
    "CURATED_META_CSV",
    "DEFAULT_SUBSETS",
    "EXCLUDED_FOLDER",
    "FIX_LABELS_MODES",
    "FSDKAGGLE2019",
    "MISLABELLED_CURATED",
    "NOISY_META_CSV",
    "RECORD_API_URL",
    "TEST_CLIPS_MODES",
    "TEST_META_CSV",
    "VOCABULARY_CSV",
    "PlannedFile",
    "SubsetSpec",
    "ZenodoFiles",
    "ZenodoRecord",
    "apply_label_fixes",
    "build_parser",
    "dry_run_text",
    "kaggle_labels_csv",
    "main",
    "plan_kaggle_zip",
    "plan_zenodo_download",
    "prepare_from_kaggle_zip",
    "prepare_from_zenodo",
    "read_labelled_rows",
    "read_vocabulary",
    "sample_submission_csv",
    "summarize_dataset",
    # re-exported from fat_tf.data.archives
    "ArchiveError",
    "ArchiveMember",
    "ConcatFile",
    "SplitZipArchive",
    "ZipArchive",
    "check_member_name",
    "extract_archive",
    "open_archive",
    "open_inner_zip",
    "plan_extraction",
    # re-exported from fat_tf.data.http_download
    "ChecksumError",
    "DownloadError",
    "DownloadOptions",
    "RemoteFile",
    "check_free_space",
    "download_file",
    "fetch_record",
    "file_md5",
    "parse_record",
    "verify_file",
    # re-exported from fat_tf.data.progress
    "Progress",
]


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class SubsetSpec:
    """Where one subset comes from and where it goes.

    Args:
        archives: Zenodo file names, in part order (several for a split zip).
        folder: the folder in the dataset directory.
        kaggle_archives: inner zip names accepted in the Kaggle competition zip.
    """

    archives: tuple[str, ...]
    folder: str
    kaggle_archives: tuple[str, ...] = ()


@dataclass(frozen=True)
class ZenodoRecord:
    """A Zenodo record and the files of each subset.

    Args:
        record_id: the Zenodo record id.
        meta: the metadata zip (always downloaded).
        subsets: subset name to :class:`SubsetSpec`.
    """

    record_id: int
    meta: str
    subsets: Mapping[str, SubsetSpec]

    @property
    def api_url(self) -> str:
        """The record API URL whose JSON lists each file's size, checksum and link."""
        return f"https://zenodo.org/api/records/{self.record_id}"


_NOISY = "FSDKaggle2019.audio_train_noisy"

#: The one table of what to fetch: record id and file names per subset.
FSDKAGGLE2019 = ZenodoRecord(
    record_id=3612637,
    meta="FSDKaggle2019.meta.zip",
    subsets={
        "curated": SubsetSpec(
            ("FSDKaggle2019.audio_train_curated.zip",),
            "train_curated",
            ("train_curated.zip", "audio_curated.zip"),
        ),
        "test": SubsetSpec(("FSDKaggle2019.audio_test.zip",), "test", ("test.zip",)),
        "noisy": SubsetSpec(
            tuple(f"{_NOISY}.z{i:02d}" for i in range(1, 7)) + (f"{_NOISY}.zip",),
            "train_noisy",
            ("train_noisy.zip", "audio_noisy.zip"),
        ),
        "doc": SubsetSpec(("FSDKaggle2019.doc.zip",), "doc"),
    },
)
RECORD_API_URL = FSDKAGGLE2019.api_url
DEFAULT_SUBSETS = ("curated", "noisy", "test")
FIX_LABELS_MODES = ("drop", "relabel", "keep")
TEST_CLIPS_MODES = ("all", "private")

CURATED_META_CSV = "train_curated_post_competition.csv"
NOISY_META_CSV = "train_noisy_post_competition.csv"
TEST_META_CSV = "test_post_competition.csv"
VOCABULARY_CSV = "vocabulary.csv"
EXCLUDED_FOLDER = "train_curated_excluded"

#: The officially mislabelled or corrupted curated clips (Zenodo README, Kaggle data page),
#: with the 1st-place solution's relabel (``None``: it removes the clip).
MISLABELLED_CURATED: dict[str, str | None] = {
    "f76181c4.wav": "Bass_drum",
    "77b925c2.wav": None,
    "6a1f682a.wav": None,
    "c7db12aa.wav": "Marimba_and_xylophone",
    "7752cc8a.wav": "Dishes_and_pots_and_pans,Chink_and_clink",
    "1d44b0bd.wav": None,  # contains no signal
}

# --------------------------------------------------------------------------- local archive cache


class _Stamps:
    """``verified.json``: files already verified (name, size, mtime, MD5), not hashed again."""

    def __init__(self, folder: str) -> None:
        self._path = os.path.join(folder, "verified.json")
        try:
            with open(self._path, encoding="utf-8") as f:
                self._data = json.load(f)
        except (FileNotFoundError, ValueError):
            self._data = {}

    def ok(self, name: str, path: str) -> bool:
        entry = self._data.get(name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        return (
            isinstance(entry, dict)
            and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
        )

    def entry(self, name: str) -> dict:
        return self._data.get(name, {})

    def add(self, name: str, path: str, md5: str) -> None:
        st = os.stat(path)
        self._data[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": md5}
        self._save()

    def drop(self, name: str) -> None:
        if self._data.pop(name, None) is not None:
            self._save()

    def _save(self) -> None:
        atomic_write_text(self._path, json.dumps(self._data, indent=1, sort_keys=True) + "\n")


class ZenodoFiles:
    """The local copies of a record's files: download and verify on demand.

    Args:
        record_url: the record API URL (fetched only when a file is missing or unverified).
        folder: where the archives are kept.
        options: network settings.
    """

    def __init__(self, record_url: str, folder: str, options: DownloadOptions) -> None:
        self.record_url, self.folder, self.options = record_url, folder, options
        os.makedirs(folder, exist_ok=True)
        self._stamps = _Stamps(folder)
        self._record: dict[str, RemoteFile] | None = None

    def remote(self, name: str) -> RemoteFile:
        """The record's entry for ``name`` (fetches the record once)."""
        if self._record is None:
            self.options.say(f"reading the file list of {self.record_url}")
            self._record = fetch_record(self.record_url, self.options)
        if name not in self._record:
            listed = ", ".join(sorted(self._record))
            raise DownloadError(f"{self.record_url}: the record has no file {name!r}: {listed}")
        return self._record[name]

    def ensure(self, name: str) -> str:
        """Return the path of a verified local copy of ``name``, downloading if needed.

        Args:
            name: a file name of the record.
        """
        path = os.path.join(self.folder, name)
        if self._stamps.ok(name, path):
            self.options.say(f"{name}: already downloaded and verified")
            return path
        remote = self.remote(name)
        if os.path.exists(path):
            try:
                verify_file(path, remote.size, remote.md5, name=name, options=self.options)
            except ChecksumError as e:
                self.options.say(f"{e}")
            else:
                self._stamps.add(name, path, remote.md5)
                return path
        download_file(remote, path, self.options)
        self._stamps.add(name, path, remote.md5)
        return path

    def remove(self, name: str) -> None:
        """Delete the local copy of ``name`` (``--remove-archives``)."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.folder, name))
        self._stamps.drop(name)


# --------------------------------------------------------------------------- CSVs


def read_labelled_rows(text: str, source: str) -> list[tuple[str, str]]:
    """The ``(fname, labels)`` pairs of a CSV with those columns (others ignored).

    Args:
        text: the CSV text (CRLF or LF).
        source: the file name, for messages.

    Raises:
        DataError: no header, no ``fname``/``labels`` columns or a short row.
    """
    header, rows = _csv_rows(text, source)
    if "fname" not in header or "labels" not in header:
        raise DataError(f"{source} line 1: expected columns 'fname' and 'labels', found {header}")
    fi, li = header.index("fname"), header.index("labels")
    return [(cells[fi], cells[li]) for cells in _wide_enough(rows, max(fi, li) + 1, source)]


def _csv_rows(text: str, source: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for cells in reader:
            if cells:
                rows.append((reader.line_num, cells))
    except csv.Error as e:
        raise DataError(f"{source} line {reader.line_num}: malformed CSV ({e})") from None
    if not rows:
        raise DataError(f"{source}: empty file, expected a header line")
    return rows[0][1], rows[1:]


def _wide_enough(rows, width: int, source: str) -> Iterator[list[str]]:
    for line, cells in rows:
        if len(cells) < width:
            raise DataError(f"{source} line {line}: expected at least {width} columns")
        yield cells


def kaggle_labels_csv(rows: Sequence[tuple[str, str]]) -> str:
    """Kaggle's ``fname,labels`` CSV text: sorted by fname, LF, minimal quoting.

    Args:
        rows: ``(fname, labels)`` pairs; labels comma-joined.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["fname", "labels"])
    writer.writerows(sorted(rows, key=lambda r: r[0]))
    return buf.getvalue()


def read_vocabulary(text: str, source: str = VOCABULARY_CSV) -> tuple[str, ...]:
    """The class names of ``vocabulary.csv`` (no header, ``idx,label`` lines) in file order.

    Args:
        text: the file text.
        source: the file name, for messages.

    Raises:
        DataError: a malformed line, or names not in sorted order (the loader needs the
            submission columns sorted).
    """
    names = []
    for line, cells in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not cells:
            continue
        if len(cells) != 2 or not cells[0].strip().isdigit() or not cells[1]:
            raise DataError(f"{source} line {line}: expected 'idx,label', found {cells}")
        names.append(cells[1])
    if not names:
        raise DataError(f"{source}: no class names")
    if list(names) != sorted(names) or len(set(names)) != len(names):
        raise DataError(f"{source}: class names are not unique and in sorted order")
    return tuple(names)


def sample_submission_csv(
    class_names: Sequence[str], test_csv_text: str, clips: str = "all", source: str = TEST_META_CSV
) -> str:
    """``sample_submission.csv`` text: ``fname`` + classes, all-zero rows sorted by fname.

    Args:
        class_names: the columns, in order.
        test_csv_text: ``test_post_competition.csv`` (``fname,labels,usage,...``).
        clips: ``"all"`` test clips, or only the ``"private"`` ones (``usage == Private``,
            Kaggle's current file).
        source: the test CSV's name, for messages.
    """
    header, rows = _csv_rows(test_csv_text, source)
    need = ["fname"] + (["usage"] if clips == "private" else [])
    missing = [c for c in need if c not in header]
    if missing:
        raise DataError(f"{source} line 1: no {', '.join(missing)} column, found {header}")
    fi = header.index("fname")
    ui = header.index("usage") if clips == "private" else fi
    cells = list(_wide_enough(rows, max(fi, ui) + 1, source))
    fnames = sorted(c[fi] for c in cells if clips == "all" or c[ui] == "Private")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["fname", *class_names])
    zeros = ["0"] * len(class_names)
    writer.writerows([f, *zeros] for f in fnames)
    return buf.getvalue()


def apply_label_fixes(
    rows: Sequence[tuple[str, str]], mode: str, class_names: Sequence[str]
) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Handle the officially mislabelled curated clips (:data:`MISLABELLED_CURATED`).

    Args:
        rows: ``(fname, labels)`` pairs of the curated set.
        mode: ``"drop"`` them, ``"relabel"`` (1st-place relabels, drop the rest) or
            ``"keep"``.
        class_names: the known classes (relabel targets must be among them).

    Returns:
        The new rows (order kept), the dropped fnames and the relabelled fnames.

    Raises:
        ValueError: an unknown mode.
        DataError: a relabel target is not a known class.
    """
    if mode not in FIX_LABELS_MODES:
        raise ValueError(f"fix_labels must be one of {FIX_LABELS_MODES}, got {mode!r}")
    out, dropped, relabelled = [], [], []
    for fname, labels in rows:
        if mode == "keep" or fname not in MISLABELLED_CURATED:
            out.append((fname, labels))
            continue
        fix = MISLABELLED_CURATED[fname]
        if mode == "relabel" and fix is not None:
            unknown = [c for c in fix.split(",") if c not in class_names]
            if unknown:
                raise DataError(f"relabel of {fname}: unknown class(es) {', '.join(unknown)}")
            out.append((fname, fix))
            relabelled.append(fname)
        else:
            dropped.append(fname)
    return out, dropped, relabelled


def _write_if_changed(path: str, text: str, options: DownloadOptions, what: str = "") -> None:
    try:
        with open(path, "rb") as f:
            same = f.read() == text.encode("utf-8")
    except FileNotFoundError:
        same = False
    name = os.path.basename(path)
    if same:
        options.say(f"{name}: up to date{what}")
        return
    atomic_write_text(path, text)
    options.say(f"{name}: written{what}")


def _write_curated_csv(
    dest: str, text: str, source: str, mode: str, classes: Sequence[str], options
) -> None:
    """Write ``train_curated.csv`` with ``--fix-labels`` applied; park dropped WAVs."""
    rows, dropped, relabelled = apply_label_fixes(read_labelled_rows(text, source), mode, classes)
    what = f" ({len(rows)} clips"
    what += f"; dropped {', '.join(sorted(dropped))}" if dropped else ""
    what += f"; relabelled {', '.join(sorted(relabelled))}" if relabelled else ""
    _write_if_changed(
        os.path.join(dest, "train_curated.csv"), kaggle_labels_csv(rows), options, what + ")"
    )
    _park_excluded(dest, {f for f, _ in rows}, dropped, options)


def _park_excluded(dest: str, kept: set[str], dropped: Sequence[str], options) -> None:
    """Move WAVs of dropped clips to ``train_curated_excluded/``; bring back kept ones."""
    src, aside = os.path.join(dest, "train_curated"), os.path.join(dest, EXCLUDED_FOLDER)
    if not os.path.isdir(src):
        return
    moved = 0
    for fname in dropped:
        if os.path.isfile(os.path.join(src, fname)):
            os.makedirs(aside, exist_ok=True)
            os.replace(os.path.join(src, fname), os.path.join(aside, fname))
            moved += 1
    if moved:
        options.say(f"moved {moved} dropped clip(s) to {EXCLUDED_FOLDER}/")
    if os.path.isdir(aside):
        for fname in sorted(set(os.listdir(aside)) & kept):
            os.replace(os.path.join(aside, fname), os.path.join(src, fname))
            options.say(f"moved {fname} back to train_curated/")
        if not os.listdir(aside):
            os.rmdir(aside)


# --------------------------------------------------------------------------- Zenodo


def _meta_texts(path: str) -> dict[str, str]:
    """The four metadata CSVs of ``FSDKaggle2019.meta.zip``, by file name."""
    wanted = (CURATED_META_CSV, NOISY_META_CSV, TEST_META_CSV, VOCABULARY_CSV)
    with ZipArchive(path) as archive:
        found = {os.path.basename(m.name): m for m in archive.members() if not m.is_dir}
        missing = [w for w in wanted if w not in found]
        if missing:
            raise ArchiveError(f"{path}: has no {', '.join(missing)}")
        texts = {}
        for name in wanted:
            try:
                texts[name] = archive.read(found[name]).decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}: {name} is not UTF-8 text") from None
        return texts


def _write_zenodo_csvs(
    key: str, dest: str, meta: dict[str, str], fix_labels: str, test_clips: str, options
) -> None:
    """Write the CSVs that go with subset ``key`` (once its folder exists)."""
    classes = read_vocabulary(meta[VOCABULARY_CSV])
    if key == "curated":
        _write_curated_csv(
            dest, meta[CURATED_META_CSV], CURATED_META_CSV, fix_labels, classes, options
        )
    elif key == "noisy":
        rows = read_labelled_rows(meta[NOISY_META_CSV], NOISY_META_CSV)
        _write_if_changed(os.path.join(dest, "train_noisy.csv"), kaggle_labels_csv(rows), options)
    elif key == "test":
        test_text = meta[TEST_META_CSV]
        _write_if_changed(os.path.join(dest, TEST_META_CSV), test_text, options)
        sub = sample_submission_csv(classes, test_text, test_clips)
        rows = sub.count("\n") - 1
        _write_if_changed(
            os.path.join(dest, "sample_submission.csv"),
            sub,
            options,
            f" ({rows} {'private ' if test_clips == 'private' else ''}test clips)",
        )


def _selected(subsets: Sequence[str], record: ZenodoRecord) -> list[str]:
    unknown = [s for s in subsets if s not in record.subsets]
    if unknown:
        raise ValueError(f"unknown subset(s) {unknown}; choose from {list(record.subsets)}")
    return [s for s in record.subsets if s in subsets]  # table order


def prepare_from_zenodo(
    dest: str | os.PathLike,
    *,
    subsets: Sequence[str] = DEFAULT_SUBSETS,
    fix_labels: str = "drop",
    test_clips: str = "all",
    record_url: str = RECORD_API_URL,
    archive_dir: str | os.PathLike | None = None,
    remove_archives: bool = False,
    options: DownloadOptions | None = None,
    record: ZenodoRecord = FSDKAGGLE2019,
) -> None:
    """Download, verify and lay out FSDKaggle2019 in the Kaggle layout (idempotent).

    Args:
        dest: the dataset folder (created).
        subsets: any of ``curated``, ``noisy``, ``test``, ``doc``.
        fix_labels: ``drop``, ``relabel`` or ``keep`` (see :func:`apply_label_fixes`).
        test_clips: ``all`` test clips in ``sample_submission.csv`` or only ``private``.
        record_url: the record API URL.
        archive_dir: where archives are kept (``DEST/downloads`` by default).
        remove_archives: delete a subset's archives once it is extracted.
        options: network and reporting settings.
        record: the file table (tests may pass another).

    Raises:
        DownloadError: a download failed or a file is corrupt.
        DataError: a metadata file or an archive is bad.
    """
    options = options or DownloadOptions()
    if test_clips not in TEST_CLIPS_MODES:
        raise ValueError(f"test_clips must be one of {TEST_CLIPS_MODES}, got {test_clips!r}")
    apply_label_fixes([], fix_labels, ())  # validates the mode early
    dest = os.path.abspath(os.fspath(dest))
    os.makedirs(dest, exist_ok=True)
    files = ZenodoFiles(
        record_url, os.fspath(archive_dir or os.path.join(dest, "downloads")), options
    )
    meta = _meta_texts(files.ensure(record.meta))
    for key in _selected(subsets, record):
        spec = record.subsets[key]
        _install_zenodo_subset(dest, spec, files, options, remove_archives)
        if key != "doc" and os.path.isdir(os.path.join(dest, spec.folder)):
            _write_zenodo_csvs(key, dest, meta, fix_labels, test_clips, options)


def _install_zenodo_subset(
    dest: str, spec: SubsetSpec, files: ZenodoFiles, options, remove_archives: bool
) -> None:
    target = os.path.join(dest, spec.folder)
    if os.path.isdir(target):
        options.say(f"{spec.folder}/: already there, skipped (delete it to extract again)")
        return
    paths = [files.ensure(name) for name in spec.archives]
    with open_archive(paths) as archive:
        n = extract_archive(archive, target, options)
    options.say(f"{spec.folder}/: {n} files extracted")
    if remove_archives:
        for name in spec.archives:
            files.remove(name)


# --------------------------------------------------------------------------- dry run


@dataclass(frozen=True)
class PlannedFile:
    """One file a download would need (``--dry-run``).

    Args:
        name: the file name (a Zenodo file, or an entry of the Kaggle zip).
        subset: ``meta`` or the subset it belongs to.
        size: its size in bytes (the record's, or the uncompressed size in a Kaggle zip).
        md5: the record's MD5 checksum (empty for a Kaggle zip entry).
        status: what a real run would do with it.
        to_fetch: bytes a real run would download.
    """

    name: str
    subset: str
    size: int
    md5: str
    status: str
    to_fetch: int


def plan_zenodo_download(
    dest: str | os.PathLike,
    *,
    subsets: Sequence[str] = DEFAULT_SUBSETS,
    record_url: str = RECORD_API_URL,
    archive_dir: str | os.PathLike | None = None,
    options: DownloadOptions | None = None,
    record: ZenodoRecord = FSDKAGGLE2019,
) -> tuple[list[PlannedFile], list[str]]:
    """What :func:`prepare_from_zenodo` would fetch, without downloading or writing anything.

    Sizes and MD5s come from the record API JSON (the list of expected files), which is
    read only when a needed file has not been verified already; verified files are
    listed from ``verified.json``.

    Args:
        dest: the dataset folder (need not exist).
        subsets: any of ``curated``, ``noisy``, ``test``, ``doc``.
        record_url: the record API URL.
        archive_dir: where archives are kept (``DEST/downloads`` by default).
        options: network settings.
        record: the file table.

    Returns:
        ``(files, notes)``: the files needed, in download order, and one line per
        subset whose folder is already there (its archives are not needed).

    Raises:
        DownloadError: the record cannot be read or lacks a needed file.
    """
    options = options or DownloadOptions()
    dest = os.path.abspath(os.fspath(dest))
    folder = os.fspath(archive_dir or os.path.join(dest, "downloads"))
    stamps = _Stamps(folder)  # reads verified.json; writes nothing
    needed, notes = [("meta", record.meta)], []
    for key in _selected(subsets, record):
        spec = record.subsets[key]
        if os.path.isdir(os.path.join(dest, spec.folder)):
            notes.append(f"{spec.folder}/: already there, skipped (its archives are not needed)")
        else:
            needed += [(key, name) for name in spec.archives]
    remote: dict[str, RemoteFile] | None = None
    files = []
    for key, name in needed:
        path = os.path.join(folder, name)
        if stamps.ok(name, path):
            entry = stamps.entry(name)
            files.append(PlannedFile(name, key, int(entry["size"]), str(entry.get("md5", "")),
                                     "already downloaded and verified", 0))
            continue
        if remote is None:
            options.say(f"reading the file list of {record_url}")
            remote = fetch_record(record_url, options)
        if name not in remote:
            listed = ", ".join(sorted(remote))
            raise DownloadError(f"{record_url}: the record has no file {name!r}: {listed}")
        r = remote[name]
        part = _size_or_none(path + ".part")
        if os.path.exists(path):
            status, fetch = "on disk, to verify (downloaded again if corrupt)", 0
        elif part is not None and 0 < part <= r.size:
            status, fetch = f"partial ({part / 1e6:.1f} MB on disk), resumes", r.size - part
        else:
            status, fetch = "to download", r.size
        files.append(PlannedFile(name, key, r.size, r.md5, status, fetch))
    return files, notes


def plan_kaggle_zip(
    dest: str | os.PathLike,
    kaggle_zip: str | os.PathLike,
    *,
    subsets: Sequence[str] = DEFAULT_SUBSETS,
) -> tuple[list[PlannedFile], list[str]]:
    """What :func:`prepare_from_kaggle_zip` would extract, without writing anything.

    Args:
        dest: the dataset folder (need not exist).
        kaggle_zip: the competition zip.
        subsets: any of ``curated``, ``noisy``, ``test`` (``doc`` is not in the zip).

    Returns:
        ``(files, notes)`` as :func:`plan_zenodo_download` (``to_fetch`` is 0: nothing is
        downloaded; ``size`` is the uncompressed size).

    Raises:
        DataError: the zip lacks a subset's inner zip or folder.
    """
    dest = os.path.abspath(os.fspath(dest))
    files, notes = [], []
    with ZipArchive(kaggle_zip) as outer:
        index = _kaggle_index(outer)
        for key in _selected(subsets, FSDKAGGLE2019):
            spec = FSDKAGGLE2019.subsets[key]
            if key == "doc":
                notes.append("doc: not part of the Kaggle zip, skipped")
                continue
            if os.path.isdir(os.path.join(dest, spec.folder)):
                notes.append(f"{spec.folder}/: already there, skipped")
                continue
            inner = next((index[n] for n in spec.kaggle_archives if n in index), None)
            if inner is not None:
                files.append(PlannedFile(inner.name, key, inner.size, "", "to extract", 0))
                continue
            prefix = _kaggle_folder(outer, spec.folder)
            if prefix is None:
                raise DataError(
                    f"{outer.path}: has neither {' nor '.join(spec.kaggle_archives)} nor a "
                    f"{spec.folder}/ folder"
                )
            members = [m for m in outer.members()
                       if not m.is_dir and m.name.startswith(prefix + "/")]
            files.append(PlannedFile(prefix + "/", key, sum(m.size for m in members), "",
                                     f"to extract ({len(members)} files)", 0))
    return files, notes


def dry_run_text(files: Sequence[PlannedFile], notes: Sequence[str], source: str,
                 archive_dir: str) -> str:
    """The ``--dry-run`` listing: one line per file (size, MD5, status) and the totals.

    Args:
        files: from :func:`plan_zenodo_download` or :func:`plan_kaggle_zip`.
        notes: lines about skipped subsets.
        source: where the files come from (the record URL or the Kaggle zip).
        archive_dir: where downloads would go.
    """
    lines = [f"dry run: nothing is downloaded or written; files from {source}"]
    if files:
        width = max(len(f.name) for f in files)
        lines.append(f"  {'file':<{width}}  {'subset':<7}  {'size':>10}  "
                     f"{'md5':<32}  status")
        for f in files:
            lines.append(f"  {f.name:<{width}}  {f.subset:<7}  {_size_text(f.size):>10}  "
                         f"{f.md5 or '-':<32}  {f.status}")
    lines += [f"  {n}" for n in notes]
    total = sum(f.size for f in files)
    fetch = sum(f.to_fetch for f in files)
    lines.append(f"total: {len(files)} file(s), {_size_text(total)}; to download: "
                 f"{_size_text(fetch)} into {archive_dir}")
    if fetch:
        free = _free_bytes(archive_dir)
        if free is not None:
            verdict = "enough" if free >= fetch else "NOT enough"
            lines.append(f"free on that disk: {_size_text(free)} ({verdict} for the "
                         "download; extracting needs about as much again)")
    return "\n".join(lines)


def _size_text(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _size_or_none(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _free_bytes(folder: str) -> int | None:
    """Free bytes on the disk that holds ``folder`` (or its nearest existing parent)."""
    path = os.path.abspath(folder)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


# --------------------------------------------------------------------------- Kaggle zip


def _kaggle_index(outer: ZipArchive) -> dict[str, ArchiveMember]:
    """Files at the top of the Kaggle zip (or inside one top folder), by file name."""
    index = {}
    for m in outer.members():
        parts = [p for p in m.name.replace("\\", "/").split("/") if p]
        if not m.is_dir and 1 <= len(parts) <= 2:
            index.setdefault(parts[-1], m)
    return index


def _kaggle_folder(outer: ZipArchive, folder: str) -> str | None:
    """The prefix of ``folder/`` in the Kaggle zip (``folder`` or ``top/folder``), if any."""
    for m in outer.members():
        parts = [p for p in m.name.replace("\\", "/").split("/") if p]
        for depth in (0, 1):
            if len(parts) > depth + 1 and parts[depth] == folder:
                return "/".join(parts[: depth + 1])
    return None


def prepare_from_kaggle_zip(
    dest: str | os.PathLike,
    kaggle_zip: str | os.PathLike,
    *,
    subsets: Sequence[str] = DEFAULT_SUBSETS,
    fix_labels: str = "drop",
    archive_dir: str | os.PathLike | None = None,
    options: DownloadOptions | None = None,
) -> None:
    """Lay out the Kaggle competition zip (already on disk) in the Kaggle layout.

    Args:
        dest: the dataset folder (created).
        kaggle_zip: the competition zip holding ``train_curated.csv``, ``train_noisy.csv``,
            ``sample_submission.csv``, ``train_curated.zip``, ``train_noisy.zip``,
            ``test.zip`` (inner zips may also be folders).
        subsets: any of ``curated``, ``noisy``, ``test`` (``doc`` is ignored).
        fix_labels: ``drop``, ``relabel`` or ``keep``.
        archive_dir: scratch folder for a compressed inner zip (``DEST/downloads``).
        options: reporting settings.

    Raises:
        DataError: a file is missing from the zip, or an archive is bad or unsafe.
    """
    options = options or DownloadOptions()
    apply_label_fixes([], fix_labels, ())
    dest = os.path.abspath(os.fspath(dest))
    os.makedirs(dest, exist_ok=True)
    scratch = os.fspath(archive_dir or os.path.join(dest, "downloads"))
    with ZipArchive(kaggle_zip) as outer:
        index = _kaggle_index(outer)
        for key in _selected(subsets, FSDKAGGLE2019):
            if key == "doc":
                options.say("doc: not part of the Kaggle zip, skipped")
                continue
            spec = FSDKAGGLE2019.subsets[key]
            _install_kaggle_subset(dest, outer, index, spec, scratch, options)
            if os.path.isdir(os.path.join(dest, spec.folder)):
                _write_kaggle_csvs(key, dest, outer, index, fix_labels, options)


def _install_kaggle_subset(dest, outer: ZipArchive, index, spec: SubsetSpec, scratch, options):
    target = os.path.join(dest, spec.folder)
    if os.path.isdir(target):
        options.say(f"{spec.folder}/: already there, skipped (delete it to extract again)")
        return
    inner = next((index[n] for n in spec.kaggle_archives if n in index), None)
    if inner is not None:
        with open_inner_zip(outer, inner, scratch, options) as archive:
            n = extract_archive(archive, target, options)
    else:
        prefix = _kaggle_folder(outer, spec.folder)
        if prefix is None:
            raise DataError(
                f"{outer.path}: has neither {' nor '.join(spec.kaggle_archives)} nor a "
                f"{spec.folder}/ folder"
            )
        n = extract_archive(outer, target, options, select=prefix)
    options.say(f"{spec.folder}/: {n} files extracted")


def _kaggle_text(outer: ZipArchive, index, name: str) -> str:
    if name not in index:
        raise DataError(f"{outer.path}: has no {name}")
    try:
        return outer.read(index[name]).decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{outer.path}: {name} is not UTF-8 text") from None


def _write_kaggle_csvs(key: str, dest: str, outer: ZipArchive, index, fix_labels, options) -> None:
    if key == "test":
        text = _kaggle_text(outer, index, "sample_submission.csv")
        _write_if_changed(os.path.join(dest, "sample_submission.csv"), text, options)
    elif key == "noisy":
        text = _kaggle_text(outer, index, "train_noisy.csv")
        _write_if_changed(os.path.join(dest, "train_noisy.csv"), text, options)
    elif key == "curated":
        text = _kaggle_text(outer, index, "train_curated.csv")
        if fix_labels == "keep":
            _write_if_changed(os.path.join(dest, "train_curated.csv"), text, options)
            _park_excluded(
                dest, {f for f, _ in read_labelled_rows(text, "train_curated.csv")}, [], options
            )
            return
        header, _ = _csv_rows(
            _kaggle_text(outer, index, "sample_submission.csv"), "sample_submission.csv"
        )
        _write_curated_csv(dest, text, "train_curated.csv", fix_labels, header[1:], options)


# --------------------------------------------------------------------------- summary + CLI


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
    """Refuse a ``--dest`` that is, or lies under, something other than a folder."""
    path = dest
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        what = "is a file" if path == dest else f"lies under {path}, which is a file"
        raise FatTfError(f"{dest}: cannot be the --dest folder: it {what}, not a folder; "
                         "choose a folder (it is created if missing)")


def _missing_parts(dest: str) -> list[str]:
    """Required folders the loader needs that are not there yet."""
    need = [FSDKAGGLE2019.subsets[k].folder for k in ("curated", "test")]
    return [f for f in need if not os.path.isdir(os.path.join(dest, f))]


def _parse_subsets(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in FSDKAGGLE2019.subsets]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a comma-separated list of {', '.join(FSDKAGGLE2019.subsets)}"
        )
    return names


def build_parser(prog: str = "python -m fat_tf.data.download") -> argparse.ArgumentParser:
    """The argument parser of ``python -m fat_tf.data.download``.

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
            fat_tf.data.download`` by default; ``python -m fat_tf.data download`` forwards).
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
