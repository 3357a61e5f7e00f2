"""Lay out FSDKaggle2019 from its Zenodo record: download, verify, extract, write the CSVs.

:func:`prepare_from_zenodo` is idempotent: verified archives are remembered in
``downloads/verified.json`` (:class:`VerifiedFiles`) and not hashed again, an existing
target folder is skipped, and the CSVs are rewritten only when their content changes.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence

from fat_tf.data.fetch.archives import ArchiveError, ZipArchive, open_archive
from fat_tf.data.fetch.extract import extract_archive
from fat_tf.data.fetch.label_csvs import (
    apply_label_fixes,
    kaggle_labels_csv,
    read_labelled_rows,
    read_vocabulary,
    sample_submission_csv,
    write_curated_csv,
    write_if_changed,
)
from fat_tf.data.fetch.record import (
    CURATED_META_CSV,
    DEFAULT_SUBSETS,
    FSDKAGGLE2019,
    NOISY_META_CSV,
    RECORD_API_URL,
    TEST_CLIPS_MODES,
    TEST_META_CSV,
    VOCABULARY_CSV,
    SubsetSpec,
    ZenodoRecord,
    selected_subsets,
)
from fat_tf.data.fetch.transfer import (
    ChecksumError,
    DownloadError,
    DownloadOptions,
    RemoteFile,
    download_file,
    fetch_record,
    verify_file,
)
from fat_tf.errors import DataError
from fat_tf.files import atomic_write_text


class VerifiedFiles:
    """``verified.json``: files already verified (name, size, mtime, MD5), not hashed again.

    Args:
        folder: the archive folder holding ``verified.json`` (read now; written on change).
    """

    def __init__(self, folder: str) -> None:
        self._path = os.path.join(folder, "verified.json")
        try:
            with open(self._path, encoding="utf-8") as f:
                self._data = json.load(f)
        except (FileNotFoundError, ValueError):
            self._data = {}

    def ok(self, name: str, path: str) -> bool:
        """Whether ``path`` is the file verified as ``name`` (same size and mtime).

        Args:
            name: the record's file name.
            path: its local copy.
        """
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
        """What was recorded for ``name`` (``size``, ``mtime_ns``, ``md5``), or ``{}``.

        Args:
            name: the record's file name.
        """
        return self._data.get(name, {})

    def add(self, name: str, path: str, md5: str) -> None:
        """Record ``path`` as the verified copy of ``name``.

        Args:
            name: the record's file name.
            path: its local copy, just verified.
            md5: its checksum.
        """
        st = os.stat(path)
        self._data[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": md5}
        self._save()

    def drop(self, name: str) -> None:
        """Forget ``name`` (its copy was removed).

        Args:
            name: the record's file name.
        """
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
        self._stamps = VerifiedFiles(folder)
        self._record: dict[str, RemoteFile] | None = None

    def remote(self, name: str) -> RemoteFile:
        """The record's entry for ``name`` (fetches the record once).

        Args:
            name: a file name of the record.
        """
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
        """Delete the local copy of ``name`` (``--remove-archives``).

        Args:
            name: a file name of the record.
        """
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.folder, name))
        self._stamps.drop(name)


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
        write_curated_csv(
            dest, meta[CURATED_META_CSV], CURATED_META_CSV, fix_labels, classes, options
        )
    elif key == "noisy":
        rows = read_labelled_rows(meta[NOISY_META_CSV], NOISY_META_CSV)
        write_if_changed(os.path.join(dest, "train_noisy.csv"), kaggle_labels_csv(rows), options)
    elif key == "test":
        test_text = meta[TEST_META_CSV]
        write_if_changed(os.path.join(dest, TEST_META_CSV), test_text, options)
        sub = sample_submission_csv(classes, test_text, test_clips)
        rows = sub.count("\n") - 1
        write_if_changed(
            os.path.join(dest, "sample_submission.csv"),
            sub,
            options,
            f" ({rows} {'private ' if test_clips == 'private' else ''}test clips)",
        )


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
        fix_labels: ``drop``, ``relabel`` or ``keep``
            (see :func:`~fat_tf.data.fetch.label_csvs.apply_label_fixes`).
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
    for key in selected_subsets(subsets, record):
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
