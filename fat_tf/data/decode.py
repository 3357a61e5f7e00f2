"""Decoding audio files inside ``tf.data``: in-graph WAV, host conversion, readable errors.

Each file's way in is decided when a stream is built (:func:`converted_on_host`, from
:func:`fat_tf.data.audio_io.probe_audio`, headers only): 16-bit PCM mono WAV at the
stream's rate is decoded in-graph (:func:`decode_wav`); any other file (another format,
sample format, channel count or rate) is decoded, downmixed and resampled on the host
(:func:`decode_converted`, through ``tf.numpy_function``). A file that cannot be read
raises ``InvalidArgumentError`` whose message (:func:`pipeline_error`) names the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from fat_tf.data import audio_io
from fat_tf.errors import AudioFormatError


def decode_wav(path: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """Read and decode one mono 16-bit WAV file in-graph.

    A file with the plain 44-byte header (PCM, mono, 16-bit, ``sample_rate``, the data
    chunk running to the end of the file: what Python's ``wave`` module and
    ``soundfile`` write) is converted straight from its bytes, which takes about a
    quarter of ``tf.audio.decode_wav``'s CPU time (see ``benchmarks/README.md``) and gives
    the same values; any other file goes through ``tf.audio.decode_wav`` and its checks.

    Args:
        path: scalar string tensor, the file path.
        sample_rate: the rate the file must have; anything else is an error.

    Returns:
        float32 tensor ``[samples]`` in [-1, 1).
    """
    contents = tf.io.read_file(path)
    return tf.cond(
        _is_plain_wav(contents, sample_rate),
        lambda: _decode_plain_wav(contents),
        lambda: _decode_wav_checked(path, contents, sample_rate),
    )


PLAIN_WAV_HEADER = 44


def _plain_wav_fields(sample_rate: int) -> bytes:
    """Bytes 8-40 of a plain 44-byte PCM 16-bit mono WAV header at ``sample_rate``."""
    fmt = np.array([1, 1], "<u2").tobytes()  # PCM, mono
    rates = np.array([sample_rate, 2 * sample_rate], "<u4").tobytes()  # rate, bytes/s
    return b"WAVEfmt " + np.array([16], "<u4").tobytes() + fmt + rates + \
        np.array([2, 16], "<u2").tobytes() + b"data"


def _is_plain_wav(contents: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """Whether ``contents`` is a plain 44-byte-header PCM 16-bit mono WAV at
    ``sample_rate`` whose RIFF and data sizes match the file's length exactly."""
    size = tf.strings.length(contents)
    head = tf.strings.substr(contents, 0, PLAIN_WAV_HEADER)  # shorter for a short file
    head = tf.strings.substr(tf.strings.join([head, b"\0" * PLAIN_WAV_HEADER]),
                             0, PLAIN_WAV_HEADER)
    sizes = tf.io.decode_raw(tf.strings.join([tf.strings.substr(head, 4, 4),
                                              tf.strings.substr(head, 40, 4)]), tf.int32)
    return tf.reduce_all(tf.stack([
        size >= PLAIN_WAV_HEADER,
        tf.equal(tf.strings.substr(head, 0, 4), b"RIFF"),
        tf.equal(tf.strings.substr(head, 8, 32), _plain_wav_fields(sample_rate)),
        tf.equal(sizes[0], size - 8),
        tf.equal(sizes[1], size - PLAIN_WAV_HEADER),
        tf.equal(size % 2, 0),
    ]))


def _decode_plain_wav(contents: tf.Tensor) -> tf.Tensor:
    """Samples of a file :func:`_is_plain_wav` accepted, scaled as ``tf.audio.decode_wav``."""
    data = tf.strings.substr(contents, PLAIN_WAV_HEADER, -1)
    return tf.cast(tf.io.decode_raw(data, tf.int16, little_endian=True), tf.float32) * (
        1.0 / 32768.0)


def _decode_wav_checked(path: tf.Tensor, contents: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """``tf.audio.decode_wav`` with the sample-rate and channel checks (readable errors)."""
    audio, rate = tf.audio.decode_wav(contents)
    channels = tf.shape(audio)[1]
    checks = [
        _assert(tf.equal(rate, sample_rate), [
            path, ": sample rate is ", _str(rate), " Hz but ", str(sample_rate),
            " Hz is expected; resample the file"]),
        _assert(tf.equal(channels, 1), [
            path, ": has ", _str(channels), " channels but mono audio is expected"]),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(audio[:, 0])


def decode_converted(path: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """Decode any audio file on the host (:func:`fat_tf.data.audio_io.decode_audio`): mono at
    ``sample_rate``, whatever the file's format, channels and rate.

    Args:
        path: scalar string tensor, the file path.
        sample_rate: the rate to resample to.

    Returns:
        float32 tensor ``[samples]``; a bad file raises ``InvalidArgumentError`` whose
        :func:`pipeline_error` is one line naming the file.
    """
    wave = tf.numpy_function(_decode_on_host, [path, np.int32(sample_rate)], tf.float32,
                             stateful=False)
    wave.set_shape([None])
    return wave


def _decode_on_host(name: bytes, sample_rate: np.ndarray) -> np.ndarray:
    """:func:`decode_converted`'s Python side (module level: autograph leaves it alone)."""
    try:
        return audio_io.decode_audio(os.fsdecode(name), int(sample_rate))
    except AudioFormatError as e:  # a ValueError: InvalidArgumentError in the graph
        raise AudioFormatError(f"{MESSAGE_MARK}{e}{MESSAGE_MARK}") from None


def converted_on_host(paths: Sequence[str], sample_rate: int) -> np.ndarray:
    """Which files are decoded on the host rather than in-graph (headers only).

    A file that cannot be probed goes to the host too, whose decoder then reports it
    as one line naming the file.

    Args:
        paths: the files.
        sample_rate: the stream's rate.

    Returns:
        bool ``[N]``.
    """
    flags = []
    for path in paths:
        try:
            flags.append(not audio_io.probe_audio(path, sample_rate).fast)
        except AudioFormatError:
            flags.append(True)
    return np.array(flags, bool)


def _str(value: tf.Tensor) -> tf.Tensor:
    return tf.strings.as_string(value)


def _assert(condition: tf.Tensor, parts: list) -> tf.Operation:
    """In-graph check whose error message is one readable line (see :func:`pipeline_error`)."""
    message = tf.strings.join([MESSAGE_MARK] + parts + [MESSAGE_MARK])
    return tf.debugging.Assert(condition, [message])


MESSAGE_MARK = "@@"


def pipeline_error(error: tf.errors.OpError) -> str:
    """The readable message of a failed in-graph check, or TensorFlow's own message.

    Args:
        error: the error raised while iterating a dataset of :mod:`fat_tf.data.pipeline`.

    Returns:
        one line naming the file and the problem.
    """
    text = error.message
    start = text.find(MESSAGE_MARK)
    end = text.find(MESSAGE_MARK, start + len(MESSAGE_MARK))
    if start >= 0 and end > start:
        return text[start + len(MESSAGE_MARK) : end]
    start = text.find(ASSERT_MARK)  # a tf.debugging.Assert's message (e.g. export checks)
    if start >= 0:
        line = text[start + len(ASSERT_MARK):].split("\n", 1)[0].rstrip()
        return line[:-1] if line.endswith("]") else line
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


#: How TensorFlow starts the data of a failed ``tf.debugging.Assert``.
ASSERT_MARK = "assertion failed: ["
