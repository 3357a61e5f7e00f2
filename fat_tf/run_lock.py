"""One writer per run folder: an exclusive lock on ``RUN/.lock``.

:func:`fat_tf.training.train` holds the lock of its run folder (a non-chief multi-worker
process: of its own ``workers/<name>`` folder) from before it touches anything there until
it returns or raises. The lock is a non-blocking exclusive ``flock`` on the file
:data:`LOCK_NAME`, which holds the holder's PID as text. The operating system releases it
when its holder exits, SIGKILL included, so a lock file left behind by a killed run never
blocks the rerun that resumes it; the file itself stays in the folder.

A second process (or a second, concurrent call in the same process) that asks for a held
lock is refused at once with an error naming the folder and the holder's PID.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import os
import warnings
from pathlib import Path

from fat_tf.errors import FatTfError

#: The lock file's name inside the locked folder.
LOCK_NAME = ".lock"


class RunLockedError(FatTfError):
    """The folder is locked by another process (or by another call in this one)."""


class RunLock:
    """Exclusive, non-blocking lock on a folder; a context manager.

    ``acquire`` raises at once if someone holds the lock; ``release`` (or leaving the
    ``with`` block) gives it back. Locks are per acquisition, not per process: a second
    ``RunLock`` on the same folder in the same process is refused while the first is held.

    Args:
        folder: the folder to lock (it must exist).
        error: the exception class raised when the lock is held elsewhere (called with
            one message line).
    """

    def __init__(self, folder: str | os.PathLike, error: type[Exception] = RunLockedError):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.error = error
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock and write this process's PID into the lock file.

        Raises:
            ``error``: another process (or another acquisition in this one) holds it; the
                message names the folder and the holder's PID.
            OSError: the lock file cannot be opened (e.g. an unwritable folder).
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = ("another call in this process" if holder == os.getpid()
                   else "another process")
            raise self.error(
                f"{self.folder} is in use by {who} (PID {holder or 'unknown'}, holding "
                f"{LOCK_NAME}): only one process may write a run folder; wait for it to "
                "finish or stop it, or choose another --out folder"
            ) from None
        except OSError as e:  # a file system without flock: run, but say so
            warnings.warn(f"{self.path}: cannot lock the run folder ({e.strerror}); "
                          "make sure no other process writes to it", stacklevel=2)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (closing the file releases it); a no-op if not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):  # being written, or not a PID
        return None


_scope: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar(
    "fat_tf_run_lock_scope", default=None)


def scoped(fn):
    """Decorator: every lock taken with :func:`hold` during a call of ``fn`` is released
    when that call returns or raises.

    Args:
        fn: the function (here :func:`fat_tf.training.train`).
    """

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            token = _scope.set(stack)
            try:
                return fn(*args, **kwargs)
            finally:
                _scope.reset(token)

    return call


def hold(folder: str | os.PathLike, error: type[Exception] = RunLockedError) -> RunLock:
    """Lock ``folder`` until the enclosing :func:`scoped` call returns or raises.

    Args:
        folder: the folder to lock (it must exist).
        error: the exception class raised when the lock is held elsewhere.

    Raises:
        RuntimeError: when called outside a :func:`scoped` call (use :class:`RunLock`
            as a context manager there).
    """
    stack = _scope.get()
    if stack is None:
        raise RuntimeError("run_lock.hold() needs an enclosing @run_lock.scoped call; use "
                           "`with RunLock(folder):` elsewhere")
    return stack.enter_context(RunLock(folder, error))
