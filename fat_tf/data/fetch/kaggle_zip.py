"""Lay out the Kaggle competition zip (already on disk) in the FAT2019 layout.

Its inner ``train_curated.zip``, ``train_noisy.zip`` and ``test.zip`` (or
``train_curated/``... folders) are extracted, ``train_noisy.csv`` and
``sample_submission.csv`` copied as is, ``train_curated.csv`` copied or, with
``drop``/``relabel``, rewritten. A stored (uncompressed) inner zip is read in place; a
compressed one is unpacked to a temporary file in the archive folder first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fat_tf.data.fetch.archives import ArchiveMember, ZipArchive, open_inner_zip
from fat_tf.data.fetch.extract import extract_archive
from fat_tf.data.fetch.label_csvs import (
    apply_label_fixes,
    csv_rows,
    park_excluded,
    read_labelled_rows,
    write_curated_csv,
    write_if_changed,
)
from fat_tf.data.fetch.record import DEFAULT_SUBSETS, FSDKAGGLE2019, SubsetSpec, selected_subsets
from fat_tf.data.fetch.transfer import DownloadOptions
from fat_tf.errors import DataError


def kaggle_index(outer: ZipArchive) -> dict[str, ArchiveMember]:
    """Files at the top of the Kaggle zip (or inside one top folder), by file name.

    Args:
        outer: the competition zip.
    """
    index = {}
    for m in outer.members():
        parts = [p for p in m.name.replace("\\", "/").split("/") if p]
        if not m.is_dir and 1 <= len(parts) <= 2:
            index.setdefault(parts[-1], m)
    return index


def kaggle_folder(outer: ZipArchive, folder: str) -> str | None:
    """The prefix of ``folder/`` in the Kaggle zip (``folder`` or ``top/folder``), if any.

    Args:
        outer: the competition zip.
        folder: a subset's folder name (``train_curated``).
    """
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
        index = kaggle_index(outer)
        for key in selected_subsets(subsets, FSDKAGGLE2019):
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
        prefix = kaggle_folder(outer, spec.folder)
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
        write_if_changed(os.path.join(dest, "sample_submission.csv"), text, options)
    elif key == "noisy":
        text = _kaggle_text(outer, index, "train_noisy.csv")
        write_if_changed(os.path.join(dest, "train_noisy.csv"), text, options)
    elif key == "curated":
        text = _kaggle_text(outer, index, "train_curated.csv")
        if fix_labels == "keep":
            write_if_changed(os.path.join(dest, "train_curated.csv"), text, options)
            park_excluded(
                dest, {f for f, _ in read_labelled_rows(text, "train_curated.csv")}, [], options
            )
            return
        header, _ = csv_rows(
            _kaggle_text(outer, index, "sample_submission.csv"), "sample_submission.csv"
        )
        write_curated_csv(dest, text, "train_curated.csv", fix_labels, header[1:], options)
