"""Reading audio files for prediction: WAV natively, other formats through tensorflow-io.

:func:`load_audio` returns a mono float32 waveform at the model's sample rate:

* a WAV file that :func:`fat_tf.data.wav.check_wav` accepts (16-bit PCM, mono, at the
  model's rate) is decoded with ``tf.audio.decode_wav``, exactly as the training and
  evaluation pipeline decodes it;
* anything else — FLAC, Ogg Vorbis, MP3, WAV at another rate, stereo or 24-bit WAV — needs
  the optional extra ``pip install "fat_tf[io]"`` (tensorflow-io): the file is decoded
  with ``tfio.audio.AudioIOTensor``, integer samples are scaled to [-1, 1), channels are
  averaged to mono, and the rate is converted with ``tfio.audio.resample``. Without the
  extra, such a file is reported with a message naming the extra.

tensorflow-io publishes wheels for one TensorFlow minor version each: 0.37.1 (the version
the extra pins) works with TensorFlow 2.17.x only. A file that is corrupt (not a WAV
file the header reader understands, truncated...) is reported as such; the extra would
not help.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fat_tf.data.wav import check_wav, read_wav_info
from fat_tf.errors import AudioFormatError

#: File extensions taken as audio when a folder is listed (lower case).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
#: How to get tensorflow-io, for messages.
IO_EXTRA = 'pip install "fat_tf[io]" (tensorflow-io 0.37.1, which needs TensorFlow 2.17.x)'


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of the :data:`AUDIO_EXTENSIONS` (case-insensitive).

    Args:
        path: a file name or path.
    """
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def tfio_module():
    """The ``tensorflow_io`` module, or ``None`` when it is not installed or cannot load.

    tensorflow-io built for another TensorFlow version fails at import (missing symbols
    in its shared libraries); that counts as not installed.
    """
    try:
        import tensorflow_io
    except Exception:  # ImportError, or NotFoundError/OSError from a mismatched build
        return None
    return tensorflow_io


def require_tfio(path: str | os.PathLike, why: str):
    """``tensorflow_io``, or an :class:`AudioFormatError` naming the file and the extra.

    Args:
        path: the file that needs it.
        why: what about the file needs it (``"FLAC files are decoded by tensorflow-io"``).
    """
    tfio = tfio_module()
    if tfio is None:
        raise AudioFormatError(f"{os.fspath(path)}: {why}, which is not installed; {IO_EXTRA}")
    return tfio


def load_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    Args:
        path: WAV (native) or any format tensorflow-io reads (FLAC, OGG, MP3...).
        sample_rate: the model's sample rate in Hz.

    Returns:
        float32 ``[samples]`` in [-1, 1].

    Raises:
        AudioFormatError: naming the file and the problem (corrupt file, empty audio, or
            a format that needs the ``fat_tf[io]`` extra when it is not installed).
    """
    path = os.fspath(path)
    if Path(path).suffix.lower() == ".wav":
        try:
            check_wav(path, sample_rate)
        except AudioFormatError as problem:
            try:
                info = read_wav_info(path)  # raises when the file itself is broken
            except AudioFormatError:
                raise problem from None
            if info.num_frames == 0:
                raise
            if tfio_module() is None:
                raise AudioFormatError(
                    f"{problem}; or install the extra that decodes and resamples it: {IO_EXTRA}"
                ) from None
            return decode_with_tfio(path, sample_rate)
        return decode_wav_file(path)
    if not os.path.isfile(path):
        raise AudioFormatError(f"{path}: file not found" if not os.path.exists(path)
                               else f"{path}: not a file")
    kind = Path(path).suffix.lower().lstrip(".").upper() or "extension-less"
    require_tfio(path, f"{kind} files are decoded by tensorflow-io")
    return decode_with_tfio(path, sample_rate)


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


def decode_with_tfio(path: str, sample_rate: int) -> np.ndarray:
    """Decode any format tensorflow-io reads, downmix to mono, resample to ``sample_rate``.

    Args:
        path: the audio file.
        sample_rate: target rate in Hz.

    Returns:
        float32 ``[samples]``.

    Raises:
        AudioFormatError: tensorflow-io is missing or cannot decode the file.
    """
    import tensorflow as tf

    tfio = require_tfio(path, "decoding this file needs tensorflow-io")
    try:
        audio = tfio.audio.AudioIOTensor(path)
        rate = int(audio.rate.numpy())
        samples = audio.to_tensor()
        dtype = samples.dtype
        samples = tf.cast(samples, tf.float32)
        if dtype.is_integer:
            samples = samples / float(2 ** (dtype.size * 8 - 1))
        if samples.shape.rank == 2:
            samples = tf.reduce_mean(samples, axis=1)
        if rate != sample_rate:
            samples = tfio.audio.resample(samples[:, None], rate_in=rate, rate_out=sample_rate)
            samples = samples[:, 0]
        wave = np.asarray(samples.numpy(), np.float32).reshape(-1)
    except AudioFormatError:
        raise
    except Exception as e:  # tensorflow-io raises assorted TF and Python errors
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AudioFormatError(f"{path}: tensorflow-io cannot decode it ({message})") from None
    if wave.size == 0:
        raise AudioFormatError(f"{path}: no audio: the file decodes to zero samples")
    if not np.all(np.isfinite(wave)):
        raise AudioFormatError(f"{path}: the audio holds NaN or infinite samples")
    return wave
