"""Byte progress for long transfers: one updating line on a terminal, periodic lines otherwise.

Used by the downloader (:mod:`fat_tf.data.http_download`) and the archive extractor
(:mod:`fat_tf.data.archives`); the settings come from any object with a ``stream`` and a
``progress_interval`` (:class:`~fat_tf.data.http_download.DownloadOptions` is one).
"""

from __future__ import annotations

import time
from typing import Protocol, TextIO


class ProgressSettings(Protocol):
    """Where progress lines go and how often (off a terminal)."""

    @property
    def stream(self) -> TextIO:
        """The stream progress lines are written to."""
        ...

    @property
    def progress_interval(self) -> float:
        """Seconds between progress lines when ``stream`` is not a terminal."""
        ...


class Progress:
    """Byte progress: one updating line on a terminal, periodic lines otherwise.

    Args:
        label: what is being transferred (a file name).
        total: expected bytes.
        options: gives the stream and the interval between lines off a terminal.
        done: bytes already there (a resumed download).
    """

    def __init__(self, label: str, total: int, options: ProgressSettings, done: int = 0) -> None:
        self.label, self.total, self.done = label, total, done
        self._out = options.stream
        self._tty = _isatty(self._out)
        self._interval = 0.2 if self._tty else options.progress_interval
        self._start = self._last = time.monotonic()
        self._start_done = done
        self._width = 0

    def update(self, n: int) -> None:
        """Count ``n`` more bytes and show the line when the interval has passed.

        Args:
            n: bytes just transferred.
        """
        self.done += n
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._show(now, final=False)

    def close(self) -> None:
        """Show the final line (and end the updating line on a terminal)."""
        self._show(time.monotonic(), final=True)

    def line(self, now: float) -> str:
        """The progress text: bytes, percent and speed."""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = (self.done - self._start_done) / max(now - self._start, 1e-6) / 1e6
        return (
            f"{self.label}: {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB "
            f"({pct:.0f}%) {rate:.1f} MB/s"
        )

    def _show(self, now: float, *, final: bool) -> None:
        text = self.line(now)
        if self._tty:
            self._out.write("\r" + text.ljust(self._width) + ("\n" if final else ""))
            self._width = len(text)
        else:
            self._out.write(text + "\n")
        self._out.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
