"""Byte progress for long transfers: one updating line on a terminal, periodic lines otherwise.

Each line shows bytes done, percent, speed and the estimated time left (``ETA``, from the
average speed so far); the final line shows the time taken instead.

Used by the downloader (:mod:`fat_tf.data.fetch.transfer`), the archive extractor
(:mod:`fat_tf.data.fetch.extract`) and the unpacking of an inner zip
(:mod:`fat_tf.data.fetch.archives`); the settings come from any object with a ``stream``
and a ``progress_interval`` (:class:`~fat_tf.data.fetch.transfer.DownloadOptions` is one).
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

    def line(self, now: float, *, final: bool = False) -> str:
        """The progress text: bytes, percent, speed and the time left (``ETA``), or on
        the final line the time taken.

        Args:
            now: ``time.monotonic()``.
            final: the transfer has ended.
        """
        pct = 100.0 * self.done / self.total if self.total else 100.0
        elapsed = max(now - self._start, 1e-6)
        speed = (self.done - self._start_done) / elapsed  # bytes per second
        text = (
            f"{self.label}: {self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB "
            f"({pct:.0f}%) {speed / 1e6:.1f} MB/s"
        )
        if final:
            return f"{text}, took {format_duration(elapsed)}"
        left = max(self.total - self.done, 0)
        eta = format_duration(left / speed) if speed > 0 else "unknown"
        return f"{text}, ETA {eta}"

    def _show(self, now: float, *, final: bool) -> None:
        text = self.line(now, final=final)
        if self._tty:
            self._out.write("\r" + text.ljust(self._width) + ("\n" if final else ""))
            self._width = len(text)
        else:
            self._out.write(text + "\n")
        self._out.flush()


def format_duration(seconds: float) -> str:
    """A short duration: ``42s``, ``3m05s``, ``2h07m``.

    Args:
        seconds: non-negative seconds (rounded to the nearest second).
    """
    total = int(round(max(seconds, 0.0)))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
