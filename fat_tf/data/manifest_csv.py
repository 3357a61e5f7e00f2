"""Reading the CSVs of a FAT2019 folder: class names, label cells, rows and their problems.

:func:`read_class_names` reads the header of ``sample_submission.csv``;
:func:`parse_labels` one ``labels`` cell. :func:`read_labelled` and
:func:`read_submission_rows` parse a whole CSV into :class:`Entry` rows and the
:class:`Problem` of every bad row (line number, message), which
:mod:`fat_tf.data.manifest` turns into an error or a warning. The rules (labels as sets,
no stray spaces, a BOM and CRLF accepted, duplicates refused) are in
:mod:`fat_tf.data.manifest`.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from fat_tf.errors import DataError
from fat_tf.files import NotRegularFileError, open_regular

MAX_QUOTED = 3  # problems or names quoted in one message


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
    close = difflib.get_close_matches(label, names, n=MAX_QUOTED, cutoff=0.6)
    folded = [n for n in names if n.lower() == label.lower() and n not in close]
    close = folded + close
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown label {label!r}, not one of the {len(names)} classes{hint}"


@dataclass
class Entry:
    """One good row of a CSV.

    Args:
        line: its line number (1-based; the header is line 1).
        fname: the audio file name.
        labels: its labels, or None (a ``sample_submission.csv`` row, or no label row).
    """

    line: int
    fname: str
    labels: frozenset[str] | None


@dataclass
class Problem:
    """What is wrong with one row (or one listed file).

    Args:
        path: the CSV.
        line: the row's line number.
        message: what is wrong, naming the value.
        fname: the row's file name, when it has one.
        error: the exception class to raise it as.
    """

    path: str
    line: int
    message: str
    fname: str | None = None
    error: type[DataError] = DataError

    def __str__(self) -> str:
        name = f" ({self.fname})" if self.fname else ""
        return f"{self.path} line {self.line}{name}: {self.message}"


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


def _width_problem(path: str, line: int, cells: list[str], width: int) -> Problem | None:
    if len(cells) == width:
        return None
    hint = ' (a multi-label cell must be double-quoted: "Bark,Slam")' if len(cells) > width else ""
    return Problem(
        path, line, f"expected {width} columns as in the header, found {len(cells)}{hint}"
    )


def read_labelled(
    path: str, class_names: tuple[str, ...]
) -> tuple[list[Entry], list[Problem], int]:
    """Parse a CSV with ``fname`` and ``labels`` columns into entries, problems, row count.

    Rows with a problem (duplicates included) are not in the entries.

    Args:
        path: the CSV.
        class_names: the known classes.
    """
    header, rows = _read_csv(path)
    cols = _column_index(path, header, ("fname", "labels"))
    known = frozenset(class_names)
    entries: list[Entry] = []
    problems: list[Problem] = []
    for line, cells in rows:
        problem = _width_problem(path, line, cells, len(header))
        if cells == header:
            problem = Problem(path, line, "the header line is repeated (CSV files joined?)")
        if problem is None:
            fname = cells[cols["fname"]]
            message = _fname_problem(fname)
            if message is None:
                try:
                    labels = parse_labels(cells[cols["labels"]], known)
                    entries.append(Entry(line, fname, labels))
                    continue
                except DataError as e:
                    message = str(e)
            problem = Problem(path, line, message, fname.strip() or None)
        problems.append(problem)
    return _drop_duplicates(path, entries, problems), problems, len(rows)


def read_submission_rows(path: str, width: int) -> tuple[list[Entry], list[Problem], int]:
    """Parse the rows of ``sample_submission.csv`` into unlabelled entries.

    Returns entries, problems and the row count, as :func:`read_labelled`.

    Args:
        path: the CSV.
        width: the columns each row must have (``fname`` plus one per class).
    """
    _, rows = _read_csv(path)
    entries: list[Entry] = []
    problems: list[Problem] = []
    for line, cells in rows:
        problem = _width_problem(path, line, cells, width)
        if problem is None and (message := _fname_problem(cells[0])):
            problem = Problem(path, line, message)
        if problem:
            problems.append(problem)
        else:
            entries.append(Entry(line, cells[0], None))
    return _drop_duplicates(path, entries, problems), problems, len(rows)


def _drop_duplicates(path: str, entries: list[Entry], problems: list[Problem]) -> list[Entry]:
    """Report every fname listed more than once and drop all of its rows."""
    lines: dict[str, list[int]] = {}
    for e in entries:
        lines.setdefault(e.fname, []).append(e.line)
    dups = {name: ls for name, ls in lines.items() if len(ls) > 1}
    for name, ls in dups.items():
        at = ", ".join(map(str, ls[:-1])) + f" and {ls[-1]}"
        problems.append(
            Problem(path, ls[1], f"duplicate fname {name!r}: listed at lines {at}", name)
        )
    return [e for e in entries if e.fname not in dups]
