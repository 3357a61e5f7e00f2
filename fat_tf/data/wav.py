"""Fast WAV header reading and the pre-flight format check of every clip.

:func:`read_wav_info` parses the RIFF/WAVE chunk headers with :mod:`struct` and seeks over
the audio, so checking a whole FAT2019 folder (29k clips) takes seconds. It follows the RIFF
rules: odd-sized chunks carry a pad byte, any chunk (``LIST``, ``fact``, ``JUNK``...) may
come before or after ``data``, and ``WAVE_FORMAT_EXTENSIBLE`` headers are resolved to their
sub-format.

:func:`check_wav` is the pre-flight check run before the tf.data pipeline decodes the clips
with ``tf.audio.decode_wav``. It rejects exactly what ``decode_wav`` rejects, plus, on
purpose, what the pipeline cannot use (no samples, more than one channel, another sample
rate). What ``tf.audio.decode_wav`` accepts (TF 2.21, ``tensorflow/core/lib/wav/wav_io.cc``;
every point is tested in ``tests/data/test_wav.py``):

- ``RIFF`` <size> ``WAVE``; the RIFF size field itself is ignored.
- Before ``fmt `` only ``JUNK bext iXML qlty mext levl link axml`` chunks may appear
  (a ``LIST`` chunk before ``fmt `` is rejected).
- A 16- or 18-byte ``fmt `` chunk: format code 1 (integer PCM), 16 bits per sample,
  at least one channel, block align ``2 * channels`` and byte rate ``block align * rate``.
  So 8-, 24- and 32-bit PCM, 32-bit float and ``WAVE_FORMAT_EXTENSIBLE`` (a 40-byte
  ``fmt `` chunk, even when it holds 16-bit PCM) are all rejected.
- Any channel count and any sample rate decode (stereo gives a ``[frames, 2]`` tensor),
  and a data chunk of zero samples decodes to a ``[0, channels]`` tensor.
- After ``fmt ``, chunks are skipped by their declared size *without* the RIFF pad byte:
  an odd-sized chunk before ``data`` (correctly padded) throws the walk off and the file
  is rejected, while one written without its pad byte is read.
- Exactly one ``data`` chunk, all of whose samples must be in the file. After the samples
  the walk goes on: an odd-sized data chunk, or 1-7 stray bytes after the last chunk, is
  rejected (they are read as a truncated chunk header); a later chunk whose declared size
  runs past the end of the file is ignored.

:func:`decode_wav_problem` replays that header walk without reading the samples.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from fat_tf.errors import AudioFormatError
from fat_tf.files import NotRegularFileError, open_regular

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

_FORMAT_NAMES = {
    0x0001: "pcm",
    0x0002: "adpcm",
    0x0003: "float",
    0x0006: "alaw",
    0x0007: "mulaw",
    0x0011: "ima-adpcm",
    0x0055: "mp3",
}
# Bytes 2..16 of every KSDATAFORMAT_SUBTYPE_* GUID; bytes 0..2 hold the format code.
_KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
# Chunks tf.audio.decode_wav skips when they come before "fmt ".
_TF_CHUNKS_BEFORE_FMT = (b"JUNK", b"bext", b"iXML", b"qlty", b"mext", b"levl", b"link", b"axml")
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class WavInfo:
    """What the header of a WAV file says about its audio.

    Args:
        path: the file.
        sample_rate: samples per second per channel.
        channels: number of interleaved channels.
        bits_per_sample: bits of one sample of one channel.
        format: ``"pcm"`` (integer PCM), ``"float"`` (IEEE float), another known name
            (``"alaw"``, ``"mulaw"``, ``"adpcm"``...) or ``"0x...."`` for an unknown code.
            For ``WAVE_FORMAT_EXTENSIBLE`` files this is the sub-format.
        num_frames: samples per channel in the data chunk.
        duration: ``num_frames / sample_rate`` in seconds (0 when the rate is 0).
        extensible: the header is ``WAVE_FORMAT_EXTENSIBLE``.
        data_offset: byte offset of the first sample.
        data_size: declared size of the data chunk in bytes.
        block_align: bytes per frame (all channels) as declared in the header.
    """

    path: str
    sample_rate: int
    channels: int
    bits_per_sample: int
    format: str
    num_frames: int
    duration: float
    extensible: bool = False
    data_offset: int = 0
    data_size: int = 0
    block_align: int = 0

    @property
    def description(self) -> str:
        """Human-readable format, e.g. ``16-bit PCM, mono, 44100 Hz``."""
        kind = {"pcm": "PCM", "float": "float"}.get(self.format, f"format {self.format}")
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        ext = " (WAVE_FORMAT_EXTENSIBLE)" if self.extensible else ""
        return f"{self.bits_per_sample}-bit {kind}{ext}, {layout}, {self.sample_rate} Hz"


def read_wav_info(path: str | os.PathLike) -> WavInfo:
    """Read the format and length of a WAV file from its header chunks only.

    Args:
        path: the WAV file.

    Returns:
        The header's :class:`WavInfo`.

    Raises:
        AudioFormatError: the file is missing, a directory, unreadable, empty, not
            RIFF/WAVE, has a truncated or corrupt header, lacks a ``fmt `` or ``data``
            chunk, or its data chunk runs past the end of the file. The message starts
            with the path.
    """
    path = os.fspath(path)
    with open_audio_file(path) as f:
        return _parse(f, _file_size(f, path), path)


def check_wav(path: str | os.PathLike, sample_rate: int = 44100) -> WavInfo:
    """Check that a WAV file is 16-bit PCM mono at ``sample_rate`` and decodable.

    Reads headers only. Accepts exactly what ``tf.audio.decode_wav`` decodes (see the
    module docstring) that also has one channel, the expected rate and at least one sample.

    Args:
        path: the WAV file.
        sample_rate: the sample rate the pipeline expects, in Hz.

    Returns:
        The header's :class:`WavInfo`.

    Raises:
        AudioFormatError: naming the file and every problem found, with a hint on how
            to convert the file.
    """
    path = os.fspath(path)
    with open_audio_file(path) as f:
        size = _file_size(f, path)
        info = _parse(f, size, path)
        problems = _usage_problems(info, sample_rate)
        if problems:
            raise AudioFormatError(
                f"{path}: {info.description}: " + "; ".join(problems) + f"; {_hint(sample_rate)}"
            )
        if info.num_frames == 0:
            raise AudioFormatError(f"{path}: no audio: the data chunk holds zero samples")
        problem = _tf_walk(f, size)
    if problem:
        raise AudioFormatError(
            f"{path}: tf.audio.decode_wav cannot read this file: {problem}; rewrite it as a "
            f"plain 16-bit PCM WAV, {_hint(sample_rate)}"
        )
    return info


def decode_wav_problem(path: str | os.PathLike) -> str | None:
    """Say why ``tf.audio.decode_wav`` (TF 2.21) would reject a file, reading headers only.

    Args:
        path: the WAV file.

    Returns:
        ``None`` when ``decode_wav`` decodes the file, else a short reason.

    Raises:
        AudioFormatError: the file cannot be opened or is empty.
    """
    path = os.fspath(path)
    with open_audio_file(path) as f:
        return _tf_walk(f, _file_size(f, path))


def _hint(sample_rate: int) -> str:
    return (
        f"convert it, e.g. `sox IN.wav -b 16 -e signed-integer -c 1 -r {sample_rate} OUT.wav` "
        f"or `ffmpeg -i IN.wav -c:a pcm_s16le -ac 1 -ar {sample_rate} OUT.wav`"
    )


def _usage_problems(info: WavInfo, sample_rate: int) -> list[str]:
    """Everything about the format that the pipeline cannot use, in plain words."""
    problems = []
    if info.format != "pcm" or info.bits_per_sample != 16:
        problems.append("only 16-bit PCM WAV is decoded natively (tf.audio.decode_wav)")
    if info.channels != 1:
        problems.append(f"{info.channels} channels found, mono (1 channel) expected")
    if info.sample_rate != sample_rate:
        problems.append(
            f"sample rate {info.sample_rate} Hz found, {sample_rate} Hz expected (resample it)"
        )
    return problems


def open_audio_file(path: str, what: str = "a WAV file") -> BinaryIO:
    """Open ``path`` for binary reading, turning OS errors into one-line
    AudioFormatErrors (a FIFO is refused at once: reading it would block forever).

    Args:
        path: the file.
        what: what the file should be, for the messages (``a WAV file``).
    """
    try:
        return open_regular(path)
    except NotRegularFileError as e:
        raise AudioFormatError(f"{path}: {e.strerror}; expected {what}") from None
    except FileNotFoundError:
        if os.path.islink(path):
            raise AudioFormatError(f"{path}: broken symbolic link") from None
        raise AudioFormatError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise AudioFormatError(f"{path}: is a directory, not {what}") from None
    except PermissionError:
        raise AudioFormatError(f"{path}: cannot be read (permission denied)") from None
    except OSError as e:
        raise AudioFormatError(f"{path}: cannot be opened ({e.strerror or e})") from None


def _file_size(f: BinaryIO, path: str) -> int:
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise AudioFormatError(f"{path}: empty file (0 bytes)")
    return size


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    try:
        return f.read(n)
    except OSError as e:
        raise AudioFormatError(f"{f.name}: read error ({e.strerror or e})") from None


def _is_chunk_id(cid: bytes) -> bool:
    return len(cid) == 4 and all(32 <= b < 127 for b in cid)


def _check_riff(head: bytes, path: str, size: int) -> None:
    """Raise unless ``head`` (the first 12 bytes) starts a RIFF/WAVE file."""
    if head[:4] != b"RIFF":
        if len(head) < 4 and b"RIFF".startswith(head):
            raise AudioFormatError(f"{path}: truncated header ({size} bytes)")
        raise AudioFormatError(
            f"{path}: not a RIFF/WAVE file (starts with {head[:4]!r}, expected b'RIFF')"
        )
    if len(head) < 12:
        raise AudioFormatError(f"{path}: truncated header ({size} bytes)")
    if head[8:12] != b"WAVE":
        raise AudioFormatError(
            f"{path}: not a RIFF/WAVE file (RIFF form type {head[8:12]!r}, expected b'WAVE')"
        )


def _walk(f: BinaryIO, size: int, path: str) -> tuple[bytes, int, int]:
    """Find the ``fmt `` and ``data`` chunks; return (fmt body, data offset, data size)."""
    fmt = None
    data = None
    pos = 12
    overrun = None
    while pos + 8 <= size and (fmt is None or data is None):
        cid, csize = struct.unpack("<4sI", _read_at(f, pos, 8))
        if not _is_chunk_id(cid):
            raise AudioFormatError(
                f"{path}: corrupt header: bytes {cid!r} at offset {pos} are not a chunk id"
            )
        body = pos + 8
        if cid == b"fmt ":
            if fmt is not None:
                raise AudioFormatError(f"{path}: corrupt header: two 'fmt ' chunks")
            if csize < 16 or body + csize > size:
                raise AudioFormatError(
                    f"{path}: truncated header: 'fmt ' chunk of {csize} bytes at offset {pos} "
                    f"(needs at least 16, file has {size - body} left)"
                )
            fmt = _read_at(f, body, min(csize, 40))
        elif cid == b"data":
            data = (body, csize)
        elif body + csize > size:
            overrun = f"chunk {cid.decode()!r} at offset {pos} declares {csize} bytes"
        pos = _next_chunk(f, body + csize)
    if fmt is None or data is None:
        missing = "'fmt '" if fmt is None else "'data'"
        if overrun:
            raise AudioFormatError(
                f"{path}: truncated file: {overrun} but only {size} bytes are in the file, "
                f"and no {missing} chunk was found"
            )
        if 12 < pos < size:
            raise AudioFormatError(
                f"{path}: truncated header: chunk header at offset {pos} cut off"
            )
        raise AudioFormatError(f"{path}: corrupt WAV: no {missing} chunk")
    offset, data_size = data
    if offset + data_size > size:
        raise AudioFormatError(
            f"{path}: data chunk truncated: the header declares {data_size} bytes of audio but "
            f"the file holds only {max(size - offset, 0)} (the file was cut short?)"
        )
    return fmt, offset, data_size


def _next_chunk(f: BinaryIO, end: int) -> int:
    """Offset of the chunk after one ending at ``end``: past the pad byte if ``end`` is odd.

    A writer that forgot the pad byte leaves a non-zero byte there; when the unpadded
    position then holds a chunk id, it is taken instead (as tf.audio.decode_wav does).
    """
    if not end & 1:
        return end
    head = _read_at(f, end, 5)
    if len(head) == 5 and head[0] != 0 and _is_chunk_id(head[:4]):
        return end
    return end + 1


def _parse(f: BinaryIO, size: int, path: str) -> WavInfo:
    """Parse the header chunks of an open WAV file of ``size`` bytes."""
    _check_riff(_read_at(f, 0, 12), path, size)
    fmt, data_offset, data_size = _walk(f, size, path)
    code, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    extensible = code == WAVE_FORMAT_EXTENSIBLE
    if extensible:
        if len(fmt) < 40 or fmt[26:40] != _KSDATAFORMAT_TAIL:
            raise AudioFormatError(
                f"{path}: WAVE_FORMAT_EXTENSIBLE header with an unknown sub-format GUID"
            )
        code = struct.unpack_from("<H", fmt, 24)[0]
    name = _FORMAT_NAMES.get(code, f"0x{code:04x}")
    frame_bytes = block_align or channels * ((bits + 7) // 8)
    frames = data_size // frame_bytes if frame_bytes else 0
    return WavInfo(
        path=path,
        sample_rate=rate,
        channels=channels,
        bits_per_sample=bits,
        format=name,
        num_frames=frames,
        duration=frames / rate if rate else 0.0,
        extensible=extensible,
        data_offset=data_offset,
        data_size=data_size,
        block_align=block_align,
    )


def _tf_walk(f: BinaryIO, size: int) -> str | None:
    """Replay the header walk of ``tf.audio.decode_wav``; return why it fails, or None."""
    head = _read_at(f, 0, 12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return "no RIFF/WAVE header"
    problem, pos = _tf_skip_to_fmt(f, size)
    if problem:
        return problem
    problem, pos, channels, block_align = _tf_read_fmt(f, size, pos)
    if problem:
        return problem
    return _tf_find_data(f, size, pos, channels, block_align)


def _tf_skip_to_fmt(f: BinaryIO, size: int) -> tuple[str | None, int]:
    pos = 12
    while True:
        if pos + 4 > size:
            return "the header ends before a 'fmt ' chunk", pos
        cid = _read_at(f, pos, 4)
        if cid == b"fmt ":
            return None, pos + 4
        if cid not in _TF_CHUNKS_BEFORE_FMT:
            return (
                f"a {cid!r} chunk comes before the 'fmt ' chunk (only "
                + ", ".join(c.decode() for c in _TF_CHUNKS_BEFORE_FMT)
                + " chunks may)"
            ), pos
        if pos + 8 > size:
            return "the header ends before a 'fmt ' chunk", pos
        (csize,) = struct.unpack("<I", _read_at(f, pos + 4, 4))
        pos += 8 + csize
        if pos > size:
            return f"chunk {cid!r} before 'fmt ' runs past the end of the file", pos


def _tf_read_fmt(f: BinaryIO, size: int, pos: int) -> tuple[str | None, int, int, int]:
    if pos + 20 > size:
        return "the 'fmt ' chunk is cut off", pos, 0, 0
    fsize, code, channels, rate, byte_rate, block_align, bits = struct.unpack(
        "<IHHIIHH", _read_at(f, pos, 20)
    )
    problem = None
    if fsize not in (16, 18):
        problem = (
            f"its 'fmt ' chunk is {fsize} bytes ("
            + ("WAVE_FORMAT_EXTENSIBLE" if code == WAVE_FORMAT_EXTENSIBLE else "extended")
            + " header); decode_wav reads only the plain 16- or 18-byte PCM header"
        )
    elif code != WAVE_FORMAT_PCM:
        problem = f"format code {code} is not 1 (PCM)"
    elif channels < 1:
        problem = "the header declares 0 channels"
    elif bits != 16:
        problem = f"{bits}-bit samples (only 16-bit)"
    elif block_align != 2 * channels:
        problem = f"block align {block_align} in the header, {2 * channels} expected"
    elif byte_rate != (block_align * rate) & 0xFFFFFFFF:
        problem = f"byte rate {byte_rate} in the header, {block_align * rate} expected"
    pos += 20 + (2 if fsize == 18 else 0)
    return problem, pos, channels, block_align


def _tf_find_data(f: BinaryIO, size: int, pos: int, channels: int, block_align: int) -> str | None:
    found = False
    while pos < size:
        if pos + 8 > size:
            return (
                f"{size - pos} stray byte(s) at offset {pos} after the last chunk, which "
                "decode_wav reads as a cut-off chunk header (odd-sized data chunk or trailing "
                "junk?)"
            )
        cid, csize = struct.unpack("<4sI", _read_at(f, pos, 8))
        pos += 8
        if csize > _INT32_MAX:
            return f"chunk {cid!r} declares {csize} bytes (more than 2**31 - 1)"
        if cid != b"data":
            pos += csize
            continue
        if found:
            return "more than one data chunk"
        found = True
        pos += (csize // block_align) * channels * 2
        if pos > size:
            return "the data chunk runs past the end of the file"
    if not found:
        return (
            "it finds no data chunk (an odd-sized chunk before the data chunk? decode_wav "
            "ignores RIFF pad bytes)"
        )
    return None
