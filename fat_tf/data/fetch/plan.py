"""``--dry-run``: what a download would fetch or extract, without writing anything."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from fat_tf.data.fetch.archives import ZipArchive
from fat_tf.data.fetch.kaggle_zip import kaggle_folder, kaggle_index
from fat_tf.data.fetch.record import (
    DEFAULT_SUBSETS,
    FSDKAGGLE2019,
    RECORD_API_URL,
    ZenodoRecord,
    selected_subsets,
)
from fat_tf.data.fetch.transfer import DownloadError, DownloadOptions, RemoteFile, fetch_record
from fat_tf.data.fetch.zenodo import VerifiedFiles
from fat_tf.errors import DataError


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
    """What :func:`~fat_tf.data.fetch.zenodo.prepare_from_zenodo` would fetch, writing nothing.

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
    stamps = VerifiedFiles(folder)  # reads verified.json; writes nothing
    needed, notes = [("meta", record.meta)], []
    for key in selected_subsets(subsets, record):
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
    """What :func:`~fat_tf.data.fetch.kaggle_zip.prepare_from_kaggle_zip` would extract.

    Nothing is written.

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
        index = kaggle_index(outer)
        for key in selected_subsets(subsets, FSDKAGGLE2019):
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
            prefix = kaggle_folder(outer, spec.folder)
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
