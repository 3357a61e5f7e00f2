"""Zip archives read safely: normal zips, split ("spanned") zips, zips stored inside zips.

- The FSDKaggle2019 noisy set is a *split* zip: ``.z01`` ... ``.z06`` plus ``.zip``. Each
  central-directory entry records the part ("disk") its local header starts on and the
  offset inside that part, so :class:`SplitZipArchive` reads the central directory from
  the last part (Zip64 included) and maps (disk, offset) to a position in a virtual
  concatenation of the parts (:class:`ConcatFile`): the members are extracted straight
  from the parts, CRC-checked, without writing a joined 20+ GB copy first.
- :func:`open_inner_zip` opens a zip stored inside another zip: in place when it is stored
  uncompressed, else via a temporary file.

Writing the members out safely is :mod:`fat_tf.data.fetch.extract`.
"""

from __future__ import annotations

import abc
import bisect
import contextlib
import io
import itertools
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from fat_tf.data.fetch.progress import Progress, ProgressSettings
from fat_tf.data.fetch.transfer import check_free_space
from fat_tf.errors import DataError


class ArchiveError(DataError):
    """An archive is unreadable, corrupt or unsafe (names the archive and the member)."""


_CHUNK = 1 << 20

# --------------------------------------------------------------------------- archives


class ConcatFile(io.RawIOBase):
    """A read-only, seekable view of byte ranges of files, one after the other.

    Used for the parts of a split zip (whole files) and for a zip stored inside a zip
    (one range of the outer file).

    Args:
        segments: ``(path, offset, length)`` triples, in order.
    """

    def __init__(self, segments: Sequence[tuple[str, int, int]]) -> None:
        super().__init__()
        self._segments = [(os.fspath(p), int(o), int(n)) for p, o, n in segments]
        self._starts = list(itertools.accumulate((n for _, _, n in self._segments), initial=0))
        self._pos = 0
        self._files: dict[str, io.BufferedReader] = {}

    @property
    def size(self) -> int:
        """Total length in bytes."""
        return self._starts[-1]

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable."""
        return True

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` relative to ``whence`` (start, current or end).

        Args:
            offset: the byte offset.
            whence: ``io.SEEK_SET``, ``io.SEEK_CUR`` or ``io.SEEK_END``.
        """
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        """Read into ``buffer`` (at most up to the end of the current segment).

        Args:
            buffer: a writable bytes-like object.
        """
        if self._pos >= self.size or not len(buffer):
            return 0
        i = bisect.bisect_right(self._starts, self._pos) - 1
        path, offset, length = self._segments[i]
        within = self._pos - self._starts[i]
        want = min(len(buffer), length - within)
        f = self._file(path)
        f.seek(offset + within)
        got = f.readinto(memoryview(buffer)[:want])
        if not got:
            raise ArchiveError(f"{path}: shorter than expected (did it change while reading?)")
        self._pos += got
        return got

    def close(self) -> None:
        """Close the underlying files."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        super().close()

    def _file(self, path: str) -> io.BufferedReader:
        if path not in self._files:
            self._files[path] = open(path, "rb")  # closed in close()
        return self._files[path]


@dataclass(frozen=True)
class ArchiveMember:
    """One entry of an archive.

    Args:
        name: the stored name.
        size: uncompressed size in bytes.
        mode: Unix mode bits (file type included), 0 when the archive does not say.
        is_dir: whether it is a directory entry.
        ref: the reader's own record of the entry.
    """

    name: str
    size: int
    mode: int
    is_dir: bool
    ref: object = field(repr=False, compare=False)


class _Archive(abc.ABC):
    """What every archive reader shares: reading a whole member from its chunks and
    closing as a context manager. Subclasses define ``members``, ``chunks`` and
    ``close``."""

    @abc.abstractmethod
    def chunks(self, member: ArchiveMember) -> Iterator[bytes]:
        """The member's bytes in chunks."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the archive's files."""

    def read(self, member: ArchiveMember) -> bytes:
        """The member's whole content.

        Args:
            member: an entry from ``members()``.
        """
        return b"".join(self.chunks(member))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ZipArchive(_Archive):
    """A normal (single-file) zip read with :mod:`zipfile`.

    Args:
        path: the zip file, or a name for messages when ``fileobj`` is given.
        fileobj: a seekable binary file to read instead of ``path``.
    """

    def __init__(self, path: str | os.PathLike, fileobj=None) -> None:
        self.path = os.fspath(path)
        self.name = os.path.basename(self.path)
        try:
            self._zip = zipfile.ZipFile(fileobj if fileobj is not None else self.path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ArchiveError(f"{self.path}: not a readable zip archive ({e})") from None

    def members(self) -> list[ArchiveMember]:
        """Every entry, in archive order."""
        return [
            ArchiveMember(i.filename, i.file_size, _unix_mode(i), i.is_dir(), i)
            for i in self._zip.infolist()
        ]

    def chunks(self, member: ArchiveMember) -> Iterator[bytes]:
        """The member's bytes in chunks (CRC checked by :mod:`zipfile`).

        Args:
            member: an entry from :meth:`members`.
        """
        try:
            with self._zip.open(member.ref) as f:
                while chunk := f.read(_CHUNK):
                    yield chunk
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as e:
            raise ArchiveError(f"{self.path}: member {member.name!r}: {e}") from None

    def close(self) -> None:
        """Close the zip."""
        self._zip.close()


def _unix_mode(info: zipfile.ZipInfo) -> int:
    return info.external_attr >> 16 if info.create_system == 3 else 0


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s2B4HL2L2H")


@dataclass(frozen=True)
class _SplitEntry:
    flags: int
    method: int
    crc: int
    compressed_size: int
    disk: int
    offset: int


class SplitZipArchive(_Archive):
    """A split ("spanned") zip (``x.z01``, ``x.z02``, ..., ``x.zip``) read from its parts.

    The central directory is read from the end of the last part (Zip64 records included).
    Each entry gives the part ("disk") its local header starts on and the offset inside
    that part; that maps to a position in the concatenation of the parts, from which the
    member is read across part boundaries. Stored and deflated members are supported and
    every member's CRC-32 and size are checked.

    Args:
        parts: the part files in order, the ``.zip`` last.
    """

    def __init__(self, parts: Sequence[str | os.PathLike]) -> None:
        self.parts = [os.fspath(p) for p in parts]
        self.path = self.parts[-1]
        self.name = os.path.basename(self.path)
        sizes = [os.path.getsize(p) for p in self.parts]
        self._starts = list(itertools.accumulate(sizes, initial=0))
        self._view = ConcatFile([(p, 0, n) for p, n in zip(self.parts, sizes)])
        try:
            self._members = self._read_central_directory()
        except BaseException:
            self._view.close()
            raise

    def members(self) -> list[ArchiveMember]:
        """Every entry, in central-directory order."""
        return list(self._members)

    def chunks(self, member: ArchiveMember) -> Iterator[bytes]:
        """The member's bytes in chunks; raises :class:`ArchiveError` on a bad CRC or size.

        Args:
            member: an entry from :meth:`members`.
        """
        entry: _SplitEntry = member.ref
        where = f"{self.name}: member {member.name!r}"
        if entry.flags & 0x1:
            raise ArchiveError(f"{where}: encrypted members are not supported")
        if entry.method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveError(f"{where}: compression method {entry.method} is not supported")
        pos = self._data_start(entry, where)
        inflater = zlib.decompressobj(-15) if entry.method == zipfile.ZIP_DEFLATED else None
        crc = size = 0
        remaining = entry.compressed_size
        # At most _CHUNK bytes are inflated at a time (memory stays bounded whatever the
        # compression ratio) and never more than the declared size (the free-space check
        # counted that; a member that inflates past it is cut off as corrupt).
        too_big = (f"{where}: inflates to more than the {member.size} bytes the central "
                   "directory declares (corrupt or hostile archive); nothing more is written")
        try:
            while remaining or (inflater and inflater.unconsumed_tail):
                if inflater and inflater.unconsumed_tail:
                    data = inflater.unconsumed_tail
                else:
                    data = self._read_at(pos, min(_CHUNK, remaining), where)
                    pos, remaining = pos + len(data), remaining - len(data)
                out = inflater.decompress(data, _CHUNK) if inflater else data
                size += len(out)
                if size > member.size:
                    raise ArchiveError(too_big)
                crc = zlib.crc32(out, crc)
                if out:
                    yield out
                if inflater and inflater.eof:
                    break
            if inflater:
                out = inflater.flush()
                size += len(out)
                if size > member.size:
                    raise ArchiveError(too_big)
                crc = zlib.crc32(out, crc)
                if out:
                    yield out
                if not inflater.eof:
                    raise ArchiveError(f"{where}: the deflate stream is truncated")
        except zlib.error as e:
            raise ArchiveError(f"{where}: corrupt data ({e})") from None
        if size != member.size or crc != entry.crc:
            raise ArchiveError(
                f"{where}: corrupt data (CRC-32 {crc:08x}, {size} bytes; the central "
                f"directory says {entry.crc:08x}, {member.size} bytes)"
            )

    def close(self) -> None:
        """Close the part files."""
        self._view.close()

    # -- reading the structure

    def _position(self, disk: int, offset: int, what: str) -> int:
        if not 0 <= disk < len(self.parts):
            raise ArchiveError(
                f"{self.name}: {what} is on part {disk + 1}, but only {len(self.parts)} "
                "part(s) were given"
            )
        return self._starts[disk] + offset

    def _read_at(self, pos: int, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes at ``pos`` of the joined parts (reads across part ends)."""
        self._view.seek(pos)
        buf = bytearray()
        while len(buf) < n and (data := self._view.read(n - len(buf))):
            buf += data
        if len(buf) != n:
            raise ArchiveError(f"{self.name}: {what}: unexpected end of the archive")
        return bytes(buf)

    def _read_central_directory(self) -> list[ArchiveMember]:
        disk, cd_disk, count, cd_size, cd_offset = self._end_record()
        if disk + 1 != len(self.parts):
            raise ArchiveError(
                f"{self.name}: the archive has {disk + 1} part(s) but {len(self.parts)} were "
                "given (all parts .z01, .z02, ... and the .zip are needed, in order)"
            )
        start = self._position(cd_disk, cd_offset, "the central directory")
        data = self._read_at(start, cd_size, "central directory")
        members, pos = [], 0
        for i in range(count):
            member, pos = self._parse_central_entry(data, pos, i)
            members.append(member)
        return members

    def _end_record(self) -> tuple[int, int, int, int, int]:
        """(this disk, CD disk, entry count, CD size, CD offset), Zip64 values preferred."""
        last = self.parts[-1]
        size = os.path.getsize(last)
        with open(last, "rb") as f:
            f.seek(max(0, size - _EOCD.size - 0xFFFF))
            tail = f.read()
        eocd_at = _find_end_record(tail)
        if eocd_at < 0:
            raise ArchiveError(
                f"{last}: no zip end-of-central-directory record (not the last part of a "
                "split zip, or truncated)"
            )
        _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, eocd_at)
        loc_at = eocd_at - _ZIP64_LOCATOR.size
        if loc_at >= 0 and tail[loc_at : loc_at + 4] == b"PK\x06\x07":
            _, z_disk, z_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, loc_at)
            z_pos = self._position(z_disk, z_offset, "the Zip64 end record")
            rec = _ZIP64_EOCD.unpack(self._read_at(z_pos, _ZIP64_EOCD.size, "Zip64 end record"))
            if rec[0] != b"PK\x06\x06":
                raise ArchiveError(f"{self.name}: corrupt Zip64 end-of-central-directory record")
            disk, cd_disk, count, cd_size, cd_offset = rec[4], rec[5], rec[7], rec[8], rec[9]
        return disk, cd_disk, count, cd_size, cd_offset

    def _parse_central_entry(self, data: bytes, pos: int, i: int) -> tuple[ArchiveMember, int]:
        if len(data) < pos + _CENTRAL.size or data[pos : pos + 4] != b"PK\x01\x02":
            raise ArchiveError(f"{self.name}: corrupt central directory at entry {i + 1}")
        f = _CENTRAL.unpack_from(data, pos)
        system, flags, method, crc, csize, usize = f[2], f[5], f[6], f[9], f[10], f[11]
        name_len, extra_len, comment_len, disk, attr, offset = (
            f[12],
            f[13],
            f[14],
            f[15],
            f[17],
            f[18],
        )
        name_at = pos + _CENTRAL.size
        raw_name = data[name_at : name_at + name_len]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        extra = data[name_at + name_len : name_at + name_len + extra_len]
        usize, csize, offset, disk = _apply_zip64_extra(extra, usize, csize, offset, disk)
        entry = _SplitEntry(flags, method, crc, csize, disk, offset)
        mode = attr >> 16 if system == 3 else 0
        member = ArchiveMember(name, usize, mode, name.endswith("/"), entry)
        return member, name_at + name_len + extra_len + comment_len

    def _data_start(self, entry: _SplitEntry, where: str) -> int:
        pos = self._position(entry.disk, entry.offset, where)
        header = self._read_at(pos, _LOCAL.size, where)
        if header[:4] != b"PK\x03\x04":
            raise ArchiveError(f"{where}: no local file header where the central directory says")
        name_len, extra_len = struct.unpack_from("<HH", header, 26)
        return pos + _LOCAL.size + name_len + extra_len


def _find_end_record(tail: bytes) -> int:
    """Offset of the end-of-central-directory record in ``tail`` (-1 if none)."""
    at = len(tail)
    while (at := tail.rfind(b"PK\x05\x06", 0, at)) >= 0:
        if len(tail) - at >= _EOCD.size:
            comment_len = struct.unpack_from("<H", tail, at + 20)[0]
            if at + _EOCD.size + comment_len == len(tail):
                return at
    return -1


def _apply_zip64_extra(
    extra: bytes, usize: int, csize: int, offset: int, disk: int
) -> tuple[int, int, int, int]:
    """Replace the saturated fields with the Zip64 extra field's values (in spec order)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body, pos = extra[pos + 4 : pos + 4 + length], pos + 4 + length
        if tag != 0x0001:
            continue
        values = [usize, csize, offset, disk]
        at = 0
        for k, (limit, fmt) in enumerate(
            ((0xFFFFFFFF, "<Q"), (0xFFFFFFFF, "<Q"), (0xFFFFFFFF, "<Q"), (0xFFFF, "<L"))
        ):
            if values[k] == limit and at + struct.calcsize(fmt) <= len(body):
                values[k] = struct.unpack_from(fmt, body, at)[0]
                at += struct.calcsize(fmt)
        return values[0], values[1], values[2], values[3]
    return usize, csize, offset, disk


def open_archive(paths: Sequence[str | os.PathLike]) -> ZipArchive | SplitZipArchive:
    """Open a zip from its file, or a split zip from its parts in order.

    Args:
        paths: one zip, or the parts of a split zip (``.z01`` first, ``.zip`` last).
    """
    if len(paths) == 1:
        return ZipArchive(paths[0])
    return SplitZipArchive(paths)


@contextlib.contextmanager
def open_inner_zip(
    outer: ZipArchive, member: ArchiveMember, scratch: str, options: ProgressSettings
) -> Iterator[ZipArchive]:
    """Open a zip stored inside another zip: in place if stored, else via a temp file.

    Args:
        outer: the enclosing zip.
        member: the inner zip's entry in ``outer``.
        scratch: folder for the temporary file of a compressed inner zip.
        options: where the unpacking progress goes.

    Yields:
        The inner zip, named ``OUTER/MEMBER`` in messages.
    """
    info: zipfile.ZipInfo = member.ref
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
        start = _member_data_offset(outer.path, info)
        view = io.BufferedReader(ConcatFile([(outer.path, start, info.compress_size)]), _CHUNK)
        archive = ZipArchive(f"{outer.path}/{member.name}", fileobj=view)
        try:
            yield archive
        finally:
            archive.close()
            view.close()
        return
    os.makedirs(scratch, exist_ok=True)
    check_free_space(scratch, member.size, member.name)
    tmp = os.path.join(scratch, f".{os.path.basename(member.name)}.tmp")
    try:
        progress = Progress(f"unpacking {member.name}", member.size, options)
        with open(tmp, "wb") as f:
            for chunk in outer.chunks(member):
                f.write(chunk)
                progress.update(len(chunk))
        progress.close()
        with ZipArchive(tmp) as archive:
            archive.path = f"{outer.path}/{member.name}"
            archive.name = os.path.basename(member.name)
            yield archive
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _member_data_offset(path: str, info: zipfile.ZipInfo) -> int:
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(_LOCAL.size)
    if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
        raise ArchiveError(f"{path}: member {info.filename!r}: bad local header")
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    return info.header_offset + _LOCAL.size + name_len + extra_len
