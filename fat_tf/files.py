"""Small file helpers shared by the run-folder readers and writers.

* :func:`read_json_object` — read a JSON object, failing with one line that names the
  file and what to do when it is missing, not a regular file, not UTF-8, truncated or
  not an object (:func:`parse_json_object` for bytes already read);
* :func:`keras_file_problem` — why a ``.keras`` file cannot be a complete model archive
  (empty, truncated, not a zip, a damaged member), checked before Keras opens it;
* :func:`open_regular` — open a file for reading, refusing a FIFO, socket or device
  (reading a FIFO named ``x.wav`` would wait forever for a writer) without blocking;
* :func:`honour_umask` — give a file created by ``tempfile.mkstemp``/``mkdtemp`` (mode
  ``0600``/``0700``) the permissions any other new file gets under the process umask;
* :func:`atomic_write_text` — write a text file through a temporary file and a rename,
  so readers see the old content or the new, never half of it;
* :func:`swap_folder_into_place` — rename a finished temporary folder over its
  destination, replacing a previous one (the callers check first that they may).

Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from fat_tf.errors import FatTfError


def read_json_object(path: str | os.PathLike, advice: str = "") -> dict:
    """Read a file holding one JSON object.

    Args:
        path: the file.
        advice: what the user can do when the file is bad, appended to the message.

    Raises:
        FatTfError: the file cannot be read (missing, a folder, a FIFO or device), is
            empty, not UTF-8 text, truncated or otherwise not valid JSON, or holds
            something other than an object; one line naming the file.
    """
    path = os.fspath(path)
    tail = f"; {advice}" if advice else ""
    try:
        with open_regular(path) as f:
            raw = f.read()
    except OSError as e:
        raise FatTfError(f"{path}: cannot be read ({e.strerror or e}){tail}") from None
    return parse_json_object(raw, path, advice)


def parse_json_object(raw: bytes, path: str | os.PathLike, advice: str = "") -> dict:
    """The JSON object in ``raw``, the bytes of the file ``path``.

    Args:
        raw: the file's content.
        path: the file, for the message.
        advice: what the user can do when the file is bad, appended to the message.

    Raises:
        FatTfError: ``raw`` is empty, not UTF-8 text, not valid JSON, or holds something
            other than an object; one line naming the file.
    """
    path = os.fspath(path)
    tail = f"; {advice}" if advice else ""
    if not raw.strip():
        raise FatTfError(f"{path}: empty file (truncated?){tail}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FatTfError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                         f"{e.start}), so not a JSON file fat_tf wrote: it is corrupt"
                         f"{tail}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        what = e if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise FatTfError(f"{path}: not valid JSON, the file is truncated or corrupt "
                         f"({what}){tail}") from None
    if not isinstance(data, dict):
        raise FatTfError(f"{path}: expected a JSON object, found {type(data).__name__}{tail}")
    return data


def keras_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a complete ``.keras`` archive, or None when it looks whole.

    Reads the zip directory and every member (checking their CRCs), not the weights.

    Args:
        path: a ``.keras`` file.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return f"not a complete .keras (zip) archive ({st.st_size} bytes; truncated?)"
    except (OSError, EOFError, zlib.error, NotImplementedError, ValueError) as e:
        return f"damaged .keras (zip) archive ({e})"
    if bad is not None:
        return f"damaged .keras (zip) archive (member {bad} fails its CRC check)"
    return None


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def honour_umask(target: int | str | os.PathLike, folder: bool = False) -> None:
    """Set the mode a file (``0666``) or folder (``0777``) gets under the umask.

    ``tempfile.mkstemp`` and ``mkdtemp`` create ``0600`` files and ``0700`` folders, so a
    file written through one and renamed would stay private to its owner; call this
    before the rename.

    Args:
        target: an open file descriptor or a path.
        folder: ``target`` is a folder.
    """
    mode = (0o777 if folder else 0o666) & ~current_umask()
    if isinstance(target, int):
        os.fchmod(target, mode)
    else:
        os.chmod(target, mode)


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words (``a FIFO (named pipe)``, ``a regular file``...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    return next((name for test, name in _KINDS if test(mode)), "a special file")


class NotRegularFileError(OSError):
    """The path is a FIFO, socket or device, not a regular file."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for binary reading, refusing anything else at once.

    The file is opened non-blocking (opening a FIFO for reading otherwise waits for a
    writer, forever), checked with ``fstat`` (no race with a rename), then switched back
    to blocking reads.

    Args:
        path: the file.

    Raises:
        NotRegularFileError: a FIFO, socket or device (``strerror`` says which);
        IsADirectoryError: a folder; OSError: as ``open`` (missing, permissions...).
    """
    path = os.fspath(path)
    nonblocking = getattr(os, "O_NONBLOCK", 0)
    f = open(path, "rb", opener=lambda name, flags: os.open(name, flags | nonblocking))
    try:
        mode = os.fstat(f.fileno()).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"is {file_kind(mode)}, not a regular "
                                      "file", path)
        os.set_blocking(f.fileno(), True)
        return f
    except BaseException:
        f.close()
        raise


def non_empty_dir(path: Path) -> bool:
    """Whether ``path`` is a folder with at least one entry."""
    return path.is_dir() and any(path.iterdir())


def swap_folder_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out``.

    An empty ``out`` folder is removed first; a non-empty one is renamed aside, the new
    folder renamed into place and the old one deleted, so ``out`` is never half-written.
    The caller must have checked that ``out`` may be replaced.

    Args:
        tmp: the finished folder, beside ``out``.
        out: the destination.
    """
    if out.is_dir() and not non_empty_dir(out):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    old = tmp.with_name(tmp.name + "-old")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename.

    Readers never see a half-written file: either the old content or the new one.

    Args:
        path: destination file.
        text: content to write (UTF-8).
    """
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    Readers never see a half-written file: either the old content or the new one.

    Args:
        path: destination file.
        data: content to write.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            honour_umask(f.fileno())  # the mode any new file gets, not mkstemp's 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
