"""Reading audio files of any common format and rate as mono at the model's sample rate.

Every file reaches the model as a mono float32 waveform at the model's sample rate, in
[-1, 1], by one of two ways:

* **as it is**: a WAV file that :func:`fat_tf.data.wav.check_wav` accepts (16-bit PCM,
  mono, at the model's rate, a header ``tf.audio.decode_wav`` reads: the FAT2019 files
  and everything fat_tf writes) is decoded in-graph by
  :func:`fat_tf.data.decode.decode_wav`;
* **converted**: anything else that libsndfile reads (through ``soundfile``) — WAV of any
  sample format (8/24/32-bit PCM, float, A-law...), any channel count and rate, FLAC, Ogg
  Vorbis, Ogg Opus, MP3, AIFF... — is decoded on the host, its channels averaged to mono
  and its rate converted with ``soxr`` (high quality) to the model's rate
  (:func:`decode_audio`). Integer samples are scaled by ``2**(bits - 1)``, as
  ``tf.audio.decode_wav`` scales 16-bit ones.

:func:`probe_audio` says which way a file goes and why (reading headers only, except for
float sample formats, whose samples are checked for NaN and infinities), and reports a
file that cannot be used with one line naming it. Training, evaluation, ``data check``
and ``predict`` all use it, so a dataset or a folder may mix formats and rates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fat_tf.data.wav import decode_wav_problem, open_audio_file, read_wav_info
from fat_tf.errors import AudioFormatError

#: File extensions taken as audio when a folder is listed (lower case).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")
#: How converted files are decoded, downmixed and resampled (part of cache keys).
CONVERSION = "soundfile decode, mean of channels, soxr HQ resample"
#: The conversion reason of a WAV header that tf.audio.decode_wav cannot walk.
WAV_HEADER_REASON = "WAV header tf.audio.decode_wav cannot read"

_SOXR_QUALITY = "HQ"
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_CHECK_BLOCK = 1 << 20  # frames read at a time when checking float samples


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of the :data:`AUDIO_EXTENSIONS` (case-insensitive).

    Args:
        path: a file name or path.
    """
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds and how it reaches the model.

    Args:
        path: the file.
        format: e.g. ``16-bit PCM WAV``, ``FLAC``, ``Ogg Vorbis``, ``MP3``.
        sample_rate: the file's rate in Hz.
        channels: the file's channel count.
        frames: samples per channel.
        conversion: why the file is converted on the host (format, channels, rate...);
            empty when it is decoded in-graph as it is.
    """

    path: str
    format: str
    sample_rate: int
    channels: int
    frames: int
    conversion: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def fast(self) -> bool:
        """Whether the file is decoded in-graph as it is (no conversion)."""
        return not self.conversion

    @property
    def description(self) -> str:
        """Human-readable format, e.g. ``FLAC, stereo, 48000 Hz``."""
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{self.format}, {layout}, {self.sample_rate} Hz"


# path, model rate -> (size, mtime_ns, info): the dataset check and the input pipeline
# probe the same files; the second look costs one stat.
_PROBED: dict[tuple[str, int], tuple[int, int, AudioInfo]] = {}


def probe_audio(path: str | os.PathLike, sample_rate: int) -> AudioInfo:
    """Say what an audio file holds and whether it is converted, or why it is unusable.

    Reads headers only, except for float sample formats, whose samples are read and
    checked for NaN and infinities. Results are remembered per path while the file's
    size and modification time stay the same.

    Args:
        path: the file (any format libsndfile reads).
        sample_rate: the model's sample rate in Hz.

    Returns:
        The file's :class:`AudioInfo`.

    Raises:
        AudioFormatError: one line naming the file and the problem: missing, not a
            regular file, unreadable, empty, a corrupt or truncated WAV, a format
            libsndfile cannot read, no samples, or NaN/infinite samples.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    key = (path, int(sample_rate))
    if st is not None:
        known = _PROBED.get(key)
        if known and known[:2] == (st.st_size, st.st_mtime_ns):
            return known[2]
    info = _probe(path, int(sample_rate))
    if st is not None:
        _PROBED[key] = (st.st_size, st.st_mtime_ns, info)
    return info


def _probe(path: str, sample_rate: int) -> AudioInfo:
    with _open(path) as f:
        head = f.read(4)
        if not head:
            raise AudioFormatError(f"{path}: empty file (0 bytes)")
        if head == b"RIFF":
            return _probe_wav(path, sample_rate)
        info, subtype = _soundfile_info(f, path, "")
    if info.frames == 0:
        raise AudioFormatError(f"{path}: {info.description}: no audio: the file holds zero "
                               "samples")
    if subtype in _FLOAT_SUBTYPES:
        _check_finite(path, info.description)
    return _with_reasons(info, [info.format], sample_rate)


def _probe_wav(path: str, sample_rate: int) -> AudioInfo:
    """A RIFF file: our own header reader first (its errors name the problem precisely)."""
    wav = read_wav_info(path)
    kind = {"pcm": "PCM", "float": "float"}.get(wav.format, f"format {wav.format}")
    info = AudioInfo(path, f"{wav.bits_per_sample}-bit {kind} WAV", wav.sample_rate,
                     wav.channels, wav.num_frames)
    if wav.num_frames == 0:
        raise AudioFormatError(f"{path}: no audio: the data chunk holds zero samples")
    reasons = [] if (wav.format, wav.bits_per_sample) == ("pcm", 16) else [info.format]
    info = _with_reasons(info, reasons, sample_rate)
    if info.fast:
        problem = decode_wav_problem(path)
        if problem is None:
            return info
        info = _with_reasons(info, [WAV_HEADER_REASON], sample_rate)
    with _open(path) as f:  # libsndfile must read what we will convert
        sf_info, subtype = _soundfile_info(f, path, f"{info.description}: ")
    if subtype in _FLOAT_SUBTYPES:
        _check_finite(path, info.description)
    return AudioInfo(path, info.format, sf_info.sample_rate, sf_info.channels, sf_info.frames,
                     info.conversion)


def _with_reasons(info: AudioInfo, reasons: list[str], sample_rate: int) -> AudioInfo:
    """``info`` with its conversion reasons: the given ones plus channels and rate."""
    reasons = list(reasons)
    if info.channels != 1:
        layout = "stereo" if info.channels == 2 else f"{info.channels} channels"
        reasons.append(f"{layout} -> mono")
    if info.sample_rate != sample_rate:
        reasons.append(f"{info.sample_rate} Hz -> {sample_rate} Hz")
    return AudioInfo(info.path, info.format, info.sample_rate, info.channels, info.frames,
                     tuple(reasons))


def _soundfile_info(f: BinaryIO, path: str, what: str) -> tuple[AudioInfo, str]:
    """The format of an open file as libsndfile reads it, and its subtype."""
    import soundfile

    f.seek(0)
    try:
        with soundfile.SoundFile(f) as sf:
            rate, channels, frames = sf.samplerate, sf.channels, sf.frames
            fmt, subtype, subtype_info = sf.format, sf.subtype, sf.subtype_info
            format_info = sf.format_info
    except Exception as e:  # LibsndfileError, RuntimeError, TypeError from odd headers
        raise AudioFormatError(f"{path}: {what}unreadable audio (libsndfile: "
                               f"{_libsndfile_message(e)})") from None
    if rate <= 0 or channels <= 0:
        raise AudioFormatError(f"{path}: {what}the header declares {channels} channel(s) at "
                               f"{rate} Hz")
    if fmt == "OGG":
        name = f"Ogg {subtype_info}"
    elif fmt == "MP3":
        name = "MP3"
    else:
        name = format_info.split(" (")[0]
    return AudioInfo(path, name, rate, channels, max(int(frames), 0)), subtype


def _libsndfile_message(error: Exception) -> str:
    text = getattr(error, "error_string", None) or str(error) or type(error).__name__
    return " ".join(str(text).split()).rstrip(".")


def _check_finite(path: str, description: str) -> None:
    """Raise when a float file holds NaN or infinite samples (read block by block)."""
    import soundfile

    with _open(path) as f, soundfile.SoundFile(f) as sf:
        for block in sf.blocks(_CHECK_BLOCK, dtype="float32", always_2d=True):
            if not np.isfinite(block).all():
                raise AudioFormatError(
                    f"{path}: {description}: the audio holds NaN or infinite samples")


def _open(path: str) -> BinaryIO:
    """Open ``path`` for binary reading; OS errors become one-line AudioFormatErrors."""
    return open_audio_file(path, "an audio file")


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Convert a mono waveform's sample rate with soxr (high quality).

    Args:
        wave: float32 ``[samples]``.
        rate_in: its rate in Hz.
        rate_out: the wanted rate in Hz.

    Returns:
        float32 ``[about samples * rate_out / rate_in]``.
    """
    if rate_in == rate_out:
        return np.asarray(wave, np.float32)
    import soxr

    out = soxr.resample(np.asarray(wave, np.float32), rate_in, rate_out, quality=_SOXR_QUALITY)
    return np.ascontiguousarray(out, np.float32)


def decode_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Decode any file libsndfile reads on the host: mono (mean of the channels), at
    ``sample_rate`` (soxr).

    Args:
        path: the audio file.
        sample_rate: the model's sample rate in Hz.

    Returns:
        float32 ``[samples]``.

    Raises:
        AudioFormatError: one line naming the file and the problem (see
            :func:`probe_audio`).
    """
    import soundfile

    path = os.fspath(path)
    info = probe_audio(path, sample_rate)
    with _open(path) as f:
        try:
            data, rate = soundfile.read(f, dtype="float32", always_2d=True)
        except Exception as e:
            raise AudioFormatError(f"{path}: {info.description}: unreadable audio "
                                   f"(libsndfile: {_libsndfile_message(e)})") from None
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    wave = resample(wave, rate, sample_rate)
    if wave.size == 0:
        raise AudioFormatError(f"{path}: no audio: the file decodes to zero samples")
    if not np.isfinite(wave).all():
        raise AudioFormatError(f"{path}: {info.description}: the audio holds NaN or infinite "
                               "samples")
    return wave


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    A file :func:`probe_audio` finds usable as it is is decoded with
    ``tf.audio.decode_wav``, exactly as the training and evaluation pipeline decodes it;
    any other is converted (:func:`decode_audio`).

    Args:
        path: any file libsndfile reads (WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF...).
        sample_rate: the model's sample rate in Hz.

    Returns:
        float32 ``[samples]``.

    Raises:
        AudioFormatError: naming the file and the problem.
    """
    path = os.fspath(path)
    if probe_audio(path, sample_rate).fast:
        return decode_wav_file(path)
    return decode_audio(path, sample_rate)


def decode_wav_file(path: str) -> np.ndarray:
    """Decode a checked 16-bit mono WAV with ``tf.audio.decode_wav`` (as the pipeline).

    Args:
        path: a file :func:`~fat_tf.data.wav.check_wav` accepted.

    Returns:
        float32 ``[samples]``.
    """
    import tensorflow as tf

    audio, _ = tf.audio.decode_wav(tf.io.read_file(path))
    return audio.numpy()[:, 0]
