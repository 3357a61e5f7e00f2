"""The dataset CSVs written from the record's metadata: Kaggle's ``fname,labels`` files,
``sample_submission.csv``, and the ``--fix-labels`` handling of the mislabelled curated clips.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence

from fat_tf.data.fetch.record import (
    EXCLUDED_FOLDER,
    FIX_LABELS_MODES,
    MISLABELLED_CURATED,
    TEST_META_CSV,
    VOCABULARY_CSV,
)
from fat_tf.data.fetch.transfer import DownloadOptions
from fat_tf.errors import DataError
from fat_tf.files import atomic_write_text


def read_labelled_rows(text: str, source: str) -> list[tuple[str, str]]:
    """The ``(fname, labels)`` pairs of a CSV with those columns (others ignored).

    Args:
        text: the CSV text (CRLF or LF).
        source: the file name, for messages.

    Raises:
        DataError: no header, no ``fname``/``labels`` columns or a short row.
    """
    header, rows = csv_rows(text, source)
    if "fname" not in header or "labels" not in header:
        raise DataError(f"{source} line 1: expected columns 'fname' and 'labels', found {header}")
    fi, li = header.index("fname"), header.index("labels")
    return [(cells[fi], cells[li]) for cells in _wide_enough(rows, max(fi, li) + 1, source)]


def csv_rows(text: str, source: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV's header cells and its other non-empty rows as ``(line number, cells)``.

    Args:
        text: the CSV text.
        source: the file name, for messages.

    Raises:
        DataError: malformed CSV, or an empty file.
    """
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
    header, rows = csv_rows(test_csv_text, source)
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
    """Handle the officially mislabelled curated clips.

    Which clips, and the 1st-place relabels: :data:`fat_tf.data.fetch.record.MISLABELLED_CURATED`.

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


def write_if_changed(path: str, text: str, options: DownloadOptions, what: str = "") -> None:
    """Write ``text`` to ``path`` atomically unless the file already holds it; say which.

    Args:
        path: the file.
        text: its content.
        options: where the line saying ``written`` or ``up to date`` goes.
        what: added to that line (e.g. `` (42 clips)``).
    """
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


def write_curated_csv(
    dest: str, text: str, source: str, mode: str, classes: Sequence[str], options
) -> None:
    """Write ``train_curated.csv`` with ``--fix-labels`` applied; park dropped WAVs.

    Args:
        dest: the dataset folder.
        text: the curated metadata CSV (``fname,labels,...``).
        source: its name, for messages.
        mode: ``drop``, ``relabel`` or ``keep`` (see :func:`apply_label_fixes`).
        classes: the known class names.
        options: where progress lines go.
    """
    rows, dropped, relabelled = apply_label_fixes(read_labelled_rows(text, source), mode, classes)
    what = f" ({len(rows)} clips"
    what += f"; dropped {', '.join(sorted(dropped))}" if dropped else ""
    what += f"; relabelled {', '.join(sorted(relabelled))}" if relabelled else ""
    write_if_changed(
        os.path.join(dest, "train_curated.csv"), kaggle_labels_csv(rows), options, what + ")"
    )
    park_excluded(dest, {f for f, _ in rows}, dropped, options)


def park_excluded(dest: str, kept: set[str], dropped: Sequence[str], options) -> None:
    """Move WAVs of dropped clips to ``train_curated_excluded/``; bring back kept ones.

    Args:
        dest: the dataset folder.
        kept: the fnames ``train_curated.csv`` lists.
        dropped: the fnames left out of it.
        options: where progress lines go.
    """
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
