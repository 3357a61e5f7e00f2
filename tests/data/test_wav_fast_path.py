"""The pipeline's direct decoding of plain WAV files equals tf.audio.decode_wav's."""

import wave

import numpy as np
import tensorflow as tf

from fat_tf.data import decode

RATE = 8000


def plain_wav(path, samples, rate=RATE):
    """Write int16 samples with Python's ``wave`` (the plain 44-byte header)."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.asarray(samples, "<i2").tobytes())
    return str(path)


def reference(path):
    audio, _ = tf.audio.decode_wav(tf.io.read_file(path))
    return audio[:, 0].numpy()


def test_plain_files_take_the_fast_path_with_identical_values(tmp_path):
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 1001):
        samples = rng.integers(-32768, 32768, n)
        path = plain_wav(tmp_path / f"{n}.wav", samples)
        contents = tf.io.read_file(path)
        assert bool(decode._is_plain_wav(contents, RATE))
        assert not bool(decode._is_plain_wav(contents, 44100))  # other rate: checked path
        out = decode.decode_wav(tf.constant(path), RATE).numpy()
        assert out.dtype == np.float32 and out.shape == (n,)
        np.testing.assert_array_equal(out, reference(path))


def test_other_files_go_through_decode_wav(tmp_path):
    path = plain_wav(tmp_path / "a.wav", np.arange(-50, 50) * 300)
    raw = open(path, "rb").read()
    extra = b"LIST" + np.array([4], "<u4").tobytes() + b"INFO"  # a chunk after the data
    riff = np.array([len(raw) - 8 + len(extra)], "<u4").tobytes()
    listed = tmp_path / "listed.wav"
    listed.write_bytes(raw[:4] + riff + raw[8:] + extra)
    assert not bool(decode._is_plain_wav(tf.constant(listed.read_bytes()), RATE))
    np.testing.assert_array_equal(
        decode.decode_wav(tf.constant(str(listed)), RATE).numpy(), reference(path))
    for short in (b"", b"RIFF", raw[:43]):
        assert not bool(decode._is_plain_wav(tf.constant(short), RATE))
