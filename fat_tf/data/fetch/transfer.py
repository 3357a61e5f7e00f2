"""HTTP downloads that resume, retry and verify: the transfer layer of :mod:`fat_tf.data.fetch`.

- :func:`download_file` writes to ``NAME.part`` and resumes with an HTTP ``Range`` request;
  a server that answers ``200`` instead of ``206`` is restarted from byte 0. The file's
  size and MD5 are checked (:func:`verify_file`) before it is renamed into place; a
  corrupt file is removed and the error names it with both checksums.
- Transient errors (timeouts, dropped connections, HTTP 408/425/429/5xx) are retried with
  exponential backoff; the retry count restarts when an attempt added at least 1 MiB (or
  the rest of the file). No more than the declared size is ever written.
- :func:`fetch_record` / :func:`parse_record` read a Zenodo record API JSON: each file's
  size, MD5 checksum and download URL (:class:`RemoteFile`).

Only the standard library is used.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import quote, urljoin

from fat_tf.data.fetch.progress import Progress
from fat_tf.errors import FatTfError

# --------------------------------------------------------------------------- errors


class DownloadError(FatTfError):
    """A file could not be downloaded (network, HTTP status, record JSON)."""


class ChecksumError(DownloadError):
    """A downloaded file has the wrong size or MD5; the corrupt file was removed."""


class _Retryable(DownloadError):
    """A transfer problem worth retrying (connection closed early, odd Content-Range)."""


_USER_AGENT = "fat_tf-download/0.1 (+python urllib)"
_CHUNK = 1 << 20
#: Bytes an attempt must add (or the rest of the file) to restart the failure count.
_MIN_PROGRESS = 1 << 20
_MAX_BACKOFF = 60.0
_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- options


@dataclass
class DownloadOptions:
    """Network and reporting settings.

    Args:
        retries: attempts after a transient failure before giving up (the count restarts
            whenever an attempt transferred at least 1 MiB, or the rest of the file).
        timeout: socket timeout in seconds for connecting and for each read.
        backoff: first retry delay in seconds, doubled on each further failure (max 60).
        out: where progress and step messages go (``sys.stderr`` when ``None``).
        progress_interval: seconds between progress lines when ``out`` is not a terminal.
    """

    retries: int = 5
    timeout: float = 60.0
    backoff: float = 1.0
    out: TextIO | None = None
    progress_interval: float = 30.0

    @property
    def stream(self) -> TextIO:
        """The stream messages go to."""
        return self.out if self.out is not None else sys.stderr

    def say(self, message: str) -> None:
        """Print one status line.

        Args:
            message: the text.
        """
        print(message, file=self.stream, flush=True)


# --------------------------------------------------------------------------- record JSON


@dataclass(frozen=True)
class RemoteFile:
    """One file of the record.

    Args:
        key: the file name.
        size: size in bytes.
        md5: lower-case hex MD5.
        url: where to download it.
    """

    key: str
    size: int
    md5: str
    url: str


def parse_record(data: object, record_url: str) -> dict[str, RemoteFile]:
    """Read the files of a Zenodo record API answer.

    Args:
        data: the decoded JSON. ``files`` is a list of ``{"key", "size", "checksum":
            "md5:<hex>", "links": {"self" or "content": URL}}`` (InvenioRDM's
            ``{"entries": {...}}`` form is accepted too).
        record_url: the URL it came from (relative links are resolved against it).

    Returns:
        File name to :class:`RemoteFile`.

    Raises:
        DownloadError: no file list, or an entry without a name, size or MD5 checksum.
    """
    files = data.get("files") if isinstance(data, dict) else None
    if isinstance(files, dict):
        files = files.get("entries")
    if isinstance(files, dict):
        files = list(files.values())
    if not isinstance(files, list) or not files:
        raise DownloadError(f"{record_url}: the record JSON has no 'files' list")
    remote = [_parse_file_entry(entry, record_url) for entry in files]
    return {r.key: r for r in remote}


def _parse_file_entry(entry: object, record_url: str) -> RemoteFile:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise DownloadError(f"{record_url}: a file entry has no 'key': {str(entry)[:200]}")
    key, size, checksum = entry["key"], entry.get("size"), entry.get("checksum")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DownloadError(f"{record_url}: file {key}: bad or missing 'size' {size!r}")
    algo, _, digest = checksum.partition(":") if isinstance(checksum, str) else ("", "", "")
    if algo.lower() != "md5" or not re.fullmatch(r"[0-9a-fA-F]{32}", digest):
        raise DownloadError(
            f"{record_url}: file {key}: checksum {checksum!r} is not 'md5:<32 hex digits>'"
        )
    links = entry.get("links") if isinstance(entry.get("links"), dict) else {}
    link = links.get("content") or links.get("self")
    if not isinstance(link, str) or not link:
        link = f"{record_url.rstrip('/')}/files/{quote(key)}/content"
    return RemoteFile(key, size, digest.lower(), urljoin(record_url, link))


def fetch_record(record_url: str, options: DownloadOptions) -> dict[str, RemoteFile]:
    """Download and parse a record API JSON (with retries).

    Args:
        record_url: e.g. :data:`fat_tf.data.fetch.record.RECORD_API_URL`.
        options: network settings.

    Returns:
        File name to :class:`RemoteFile`.

    Raises:
        DownloadError: the record cannot be fetched or parsed.
    """

    def get() -> bytes:
        with _urlopen(record_url, options) as resp:
            return resp.read()

    raw = _retry(get, f"record {record_url}", options)
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise DownloadError(f"{record_url}: the answer is not JSON ({e})") from None
    return parse_record(data, record_url)


# --------------------------------------------------------------------------- HTTP


def _urlopen(url: str, options: DownloadOptions, headers: Mapping[str, str] | None = None):
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(request, timeout=options.timeout)


def _is_transient(error: BaseException) -> bool:
    """Whether an error is worth retrying (network trouble, not a wrong URL)."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code in _TRANSIENT_HTTP
    if isinstance(error, _Retryable):
        return True
    return isinstance(error, (urllib.error.URLError, OSError, http.client.HTTPException))


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot connect ({error.reason})"
    if isinstance(error, DownloadError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _retry(
    action: Callable[[], object],
    what: str,
    options: DownloadOptions,
    progressed: Callable[[], bool] = lambda: False,
):
    """Run ``action``; retry transient failures with exponential backoff.

    Args:
        action: the attempt.
        what: names the operation in messages.
        options: retry count and backoff.
        progressed: called after a failure; ``True`` restarts the failure count.

    Returns:
        What ``action`` returned.

    Raises:
        DownloadError: a permanent HTTP error, or still failing after the retries.
    """
    failures = 0
    while True:
        try:
            return action()
        except Exception as e:
            if isinstance(e, urllib.error.HTTPError) and not _is_transient(e):
                e.close()
                raise DownloadError(f"{what}: {_describe(e)} from {e.filename}") from None
            if not _is_transient(e):
                raise
            failures = 1 if progressed() else failures + 1
            if failures > options.retries:
                raise DownloadError(
                    f"{what}: failed after {failures} attempt(s): {_describe(e)}"
                ) from e
            delay = min(options.backoff * 2 ** (failures - 1), _MAX_BACKOFF)
            options.say(
                f"{what}: {_describe(e)}; retry {failures}/{options.retries} in {delay:.0f} s"
            )
            time.sleep(delay)


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def download_file(remote: RemoteFile, path: str | os.PathLike, options: DownloadOptions) -> str:
    """Download one file, resuming ``PATH.part``, then verify its size and MD5.

    Args:
        remote: the file's URL, size and MD5.
        path: where the verified file goes.
        options: network settings.

    Returns:
        ``path`` as a string.

    Raises:
        DownloadError: the transfer failed (the ``.part`` file is kept for resuming).
        ChecksumError: the finished file is corrupt (it is removed).
    """
    path = os.fspath(path)
    part = path + ".part"
    have = _file_size(part)
    resumed = f", resuming at {have / 1e6:.1f} MB" if 0 < have <= remote.size else ""
    options.say(f"downloading {remote.key} ({remote.size / 1e6:.1f} MB{resumed})")
    last = [have]

    def progressed() -> bool:
        # only real progress restarts the failure count: a server trickling a few bytes
        # per connection must not keep the download retrying forever
        now, before = _file_size(part), last[0]
        last[0] = now
        return now > before and now - before >= min(_MIN_PROGRESS, remote.size - before)

    check_free_space(
        os.path.dirname(os.path.abspath(path)), remote.size - min(have, remote.size), remote.key
    )
    _retry(lambda: _fetch_part(remote, part, options), remote.key, options, progressed)
    verify_file(part, remote.size, remote.md5, name=remote.key, options=options)
    os.replace(part, path)
    return path


def check_free_space(folder: str, need: int, what: str) -> None:
    """Fail early, naming both amounts, when ``folder`` has less than ``need`` bytes free.

    Args:
        folder: where the bytes will be written.
        need: bytes needed.
        what: names the file or archive in the message.

    Raises:
        DownloadError: not enough free space.
    """
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DownloadError(
            f"{what}: not enough disk space in {folder}: {need / 1e9:.2f} GB needed, "
            f"{free / 1e9:.2f} GB free"
        )


def _fetch_part(remote: RemoteFile, part: str, options: DownloadOptions) -> None:
    """One attempt: request the missing bytes of ``part`` and append them."""
    have = _file_size(part)
    if have > remote.size:
        os.remove(part)
        have = 0
    if have == remote.size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = _urlopen(remote.url, options, headers)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: start over
            e.close()
            os.remove(part)
            raise _Retryable(f"the server refused the range from byte {have}") from None
        raise
    with resp:
        start = _response_start(resp, have, remote)
        if have and not start:
            options.say(f"{remote.key}: the server ignored the Range request; restarting")
        with open(part, "ab" if start else "wb") as f:
            _copy_response(resp, f, Progress(remote.key, remote.size, options, start), part,
                           remote.size - start)
    got = _file_size(part)
    if got < remote.size:
        raise _Retryable(f"connection closed after {got} of {remote.size} bytes")


def _response_start(resp, have: int, remote: RemoteFile) -> int:
    """The byte offset the response body starts at (0 for a plain 200)."""
    if resp.status == 200:
        return 0
    if resp.status != 206:
        raise DownloadError(f"{remote.url}: unexpected HTTP status {resp.status}")
    content_range = resp.headers.get("Content-Range", "")
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)$", content_range.strip())
    if not m or int(m.group(1)) != have:
        raise _Retryable(f"unexpected Content-Range {content_range!r} for bytes={have}-")
    return have


def _copy_response(resp, f, progress: Progress, part: str, limit: int) -> None:
    """Append the response body to ``f``, at most ``limit`` bytes (the rest of the
    declared size): a server sending more is cut off there, and the checksum decides."""
    try:
        while limit > 0 and (chunk := resp.read(min(_CHUNK, limit))):
            try:
                f.write(chunk)
            except OSError as e:
                raise DownloadError(f"{part}: cannot write ({e.strerror or e})") from None
            limit -= len(chunk)
            progress.update(len(chunk))
    finally:
        progress.close()


def file_md5(
    path: str | os.PathLike, options: DownloadOptions | None = None, label: str | None = None
) -> str:
    """The hex MD5 of a file, read in 1 MiB chunks.

    Args:
        path: the file.
        options: when given, progress is shown on its stream.
        label: the name shown in the progress line (the file name by default).
    """
    path = os.fspath(path)
    digest = hashlib.md5()
    progress = None
    if options is not None:
        label = label or os.path.basename(path)
        progress = Progress(f"verifying {label}", _file_size(path), options)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            if progress:
                progress.update(len(chunk))
    if progress:
        progress.close()
    return digest.hexdigest()


def verify_file(
    path: str | os.PathLike,
    size: int,
    md5: str,
    *,
    name: str | None = None,
    options: DownloadOptions | None = None,
) -> None:
    """Check a file's size and MD5; remove it and raise if either is wrong.

    Args:
        path: the file.
        size: expected size in bytes.
        md5: expected hex MD5.
        name: the name used in messages (the file name by default).
        options: when given, hashing progress is shown.

    Raises:
        ChecksumError: naming the file, the expected and the actual value.
    """
    path = os.fspath(path)
    name = name or os.path.basename(path)
    actual_size = os.path.getsize(path)
    if actual_size != size:
        os.remove(path)
        raise ChecksumError(
            f"{name}: size mismatch: expected {size} bytes, got {actual_size}; removed the "
            f"corrupt file {path}; run again to download it afresh"
        )
    actual = file_md5(path, options, name)
    if actual != md5.lower():
        os.remove(path)
        raise ChecksumError(
            f"{name}: MD5 checksum mismatch: expected {md5.lower()}, got {actual}; removed "
            f"the corrupt file {path}; run again to download it afresh"
        )
