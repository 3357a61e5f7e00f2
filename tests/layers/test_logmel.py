"""Golden tests of the log-mel front end (fat_tf.layers.LogMel) against librosa.

Tolerances:
    * filterbank: ``max |ours - librosa| <= 1e-6 * max(librosa)`` (both float32 from float64).
    * log-mel vs ``librosa.power_to_db(librosa.feature.melspectrogram(...))``
      (``tools/librosa_reference.py``, also the benchmark's reference): max absolute
      difference < 0.01 dB over every bin within 100 dB of the clip's maximum (with
      ``top_db=80`` that is every bin). Measured: ~2e-4 dB; float32 FFTs differ in the last bits.
    * same layer, different execution (eager / tf.function / XLA / batch vs alone /
      mixed precision policy): 1e-3 dB, or 1e-4 in standardised units.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from fat_tf.config import FrontEndConfig
from fat_tf.layers import LogMel, mel_filterbank
from fat_tf.layers.logmel import hz_to_mel, mel_bands, mel_to_hz, reflect_indices

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from librosa_reference import librosa_logmel  # noqa: E402  (tools/ is not a package)

SR = 44100
FAT = FrontEndConfig()
DB_TOL = 0.01
FLOOR_DB = 100.0


def sine(seconds=0.5, freq=1000.0, amplitude=0.5, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds=0.5, seed=0, scale=0.1, sr=SR):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal(int(seconds * sr))).astype(np.float32)


def logmel_np(layer, x):
    """Run the layer eagerly on a ``[samples]`` or ``[batch, samples]`` numpy array."""
    x = np.asarray(x, np.float32)
    out = np.asarray(layer(x[None] if x.ndim == 1 else x))
    return out[0] if x.ndim == 1 else out


# ----------------------------------------------------------------------------- filterbank
@pytest.mark.parametrize(
    "sr, n_fft, n_mels, fmin, fmax",
    [
        (44100, 2560, 128, 20.0, 22050.0),
        (44100, 2560, 64, 20.0, 22050.0),
        (22050, 1024, 40, 0.0, 8000.0),
        (16000, 512, 64, 125.0, None),
    ],
)
def test_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False, norm="slaney"
    ).T
    assert ours.shape == (n_fft // 2 + 1, n_mels) and ours.dtype == np.float32
    assert np.max(np.abs(ours - ref)) <= 1e-6 * ref.max()


def test_slaney_mel_scale_known_values():
    # Linear below 1 kHz (200/3 Hz per mel), logarithmic above: 6.4x per 27 mels.
    np.testing.assert_allclose(hz_to_mel([0.0, 200.0 / 3, 500.0, 1000.0]), [0, 1, 7.5, 15])
    np.testing.assert_allclose(hz_to_mel(6400.0), 15 + 27, rtol=1e-12)
    f = np.array([0.0, 20.0, 999.0, 1000.0, 1001.0, 8000.0, 22050.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-12, atol=1e-9)


def test_filterbank_peaks_and_area_without_librosa():
    sr, n_fft, n_mels, fmin, fmax = 44100, 2560, 128, 20.0, 22050.0
    w = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    centres = edges[1:-1]
    assert np.all(w >= 0)
    # Each filter peaks at the FFT bin nearest its centre on the mel scale (ties: one bin off).
    peak_bins = np.argmax(w, axis=0)
    nearest = np.round(centres / (sr / n_fft)).astype(int)
    assert np.all(np.abs(peak_bins - nearest) <= 1)
    # Support: strictly inside (lower edge, upper edge); nothing below fmin or above fmax.
    for m in range(n_mels):
        support = freqs[w[:, m] > 0]
        assert support.min() > edges[m] and support.max() < edges[m + 2]
    # Overlapping triangles: every bin is in at most two filters.
    assert np.max(np.sum(w > 0, axis=1)) <= 2
    # Slaney normalisation: area in Hz ~1 for filters spanning many bins.
    wide = (edges[2:] - edges[:-2]) > 40 * sr / n_fft
    area = w.sum(axis=0) * sr / n_fft
    np.testing.assert_allclose(area[wide], 1.0, rtol=0.01)


@pytest.mark.parametrize(
    "sr, n_fft, n_mels, fmin, fmax",
    [(44100, 2560, 128, 20.0, 22050.0), (16000, 512, 64, 125.0, None), (22050, 512, 256, 0, None)],
)
def test_mel_bands_reproduce_dense_projection(sr, n_fft, n_mels, fmin, fmax):
    # The last case has empty (all-zero) filters: too many mels for the FFT resolution.
    w = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    bands = mel_bands(w)
    assert bands[0][2] == 0 and bands[-1][3] == n_mels
    assert all(prev[3] == nxt[2] for prev, nxt in zip(bands, bands[1:]))
    p = np.random.default_rng(0).random((5, w.shape[0])).astype(np.float32)
    banded = np.concatenate([p[:, b0:b1] @ w[b0:b1, m0:m1] for b0, b1, m0, m1 in bands], 1)
    np.testing.assert_allclose(banded, p @ w, rtol=1e-5, atol=1e-12)
    assert sum((b1 - b0) * (m1 - m0) for b0, b1, m0, m1 in bands) < 0.5 * w.size


@pytest.mark.parametrize("length", [1, 2, 3, 10, 1279, 1280, 1281, 3000])
def test_reflect_indices_match_numpy_pad(length):
    x = np.arange(length, dtype=np.float32)
    left, right = reflect_indices(tf.constant(length), 1280)
    ours = np.concatenate([x[left.numpy()], x, x[right.numpy()]])
    np.testing.assert_array_equal(ours, np.pad(x, 1280, mode="reflect"))


# ----------------------------------------------------------------------------- golden log-mel
@pytest.mark.parametrize("signal", ["sine", "noise"])
@pytest.mark.parametrize("top_db", [None, 80.0])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_logmel_matches_librosa(signal, top_db, pad_mode):
    pytest.importorskip("librosa")
    y = sine() if signal == "sine" else noise()
    config = dataclasses.replace(FAT, top_db=top_db, standardize=False)
    ours = logmel_np(LogMel.from_frontend_config(config, pad_mode=pad_mode), y)
    ref = librosa_logmel(y, config, pad_mode=pad_mode)
    assert ours.shape == ref.shape == (FAT.num_frames(len(y)), FAT.n_mels)
    above_floor = ref > ref.max() - FLOOR_DB
    if top_db is not None:
        assert above_floor.all()
    assert np.max(np.abs(ours - ref)[above_floor]) < DB_TOL


@pytest.mark.parametrize("length", [1, 100, 1280, 2559])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_short_clips_match_librosa(length, pad_mode):
    pytest.importorskip("librosa")
    y = noise(seed=length)[:length]
    config = dataclasses.replace(FAT, standardize=False)
    ours = logmel_np(LogMel.from_frontend_config(config, pad_mode=pad_mode), y)
    ref = librosa_logmel(y, config, pad_mode=pad_mode)
    assert np.max(np.abs(ours - ref)) < DB_TOL


def test_small_preset_and_other_parameters_match_librosa():
    pytest.importorskip("librosa")
    config = FrontEndConfig(
        sample_rate=16000,
        n_fft=512,
        hop_length=160,
        n_mels=64,
        fmin=0.0,
        fmax=None,
        power=1.0,
        top_db=60.0,
        standardize=False,
    )
    y = sine(freq=440.0, sr=16000) + noise(sr=16000, scale=0.01)
    ours = logmel_np(LogMel.from_frontend_config(config), y)
    ref = librosa_logmel(y, config, pad_mode=config.pad_mode)
    assert np.max(np.abs(ours - ref)) < DB_TOL


# ----------------------------------------------------------------------------- per example
def test_standardize_gives_zero_mean_unit_std_per_example():
    x = np.stack([sine(), noise(), 1e-3 * noise(seed=1)])
    out = logmel_np(LogMel(), x)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-3)


@pytest.mark.parametrize("standardize", [False, True])
def test_each_example_is_independent_of_the_batch(standardize):
    # quiet: peak ~-4.5 dB, 80 dB range; loud: peak ~35 dB. A batch-wide clamp (batch max - 80)
    # would cut the quiet clip at ~-45 dB.
    quiet, loud = 1e-2 * sine(freq=300.0), sine() + noise(seed=2)
    layer = LogMel(standardize=standardize)
    together = logmel_np(layer, np.stack([quiet, loud]))
    alone = [logmel_np(layer, quiet), logmel_np(layer, loud)]
    atol = 1e-4 if standardize else 1e-3
    np.testing.assert_allclose(together[0], alone[0], atol=atol)
    np.testing.assert_allclose(together[1], alone[1], atol=atol)
    if not standardize:  # the quiet clip kept its own 80 dB range, not the loud clip's
        assert together[0].max() - together[0].min() == pytest.approx(80.0, abs=1e-3)
        assert together[0].min() < together[1].max() - 80 - 30


def test_silence_is_finite():
    out = logmel_np(LogMel(standardize=False), np.zeros((2, 5000), np.float32))
    np.testing.assert_allclose(out, -100.0)  # 10 * log10(amin)
    out = logmel_np(LogMel(), np.zeros((2, 5000), np.float32))
    np.testing.assert_array_equal(out, 0.0)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    "length", [1, 100, 693, 694, 695, 1280, 1281, 2559, 2560, 2561, 88138, 88200]
)
@pytest.mark.parametrize("center", [True, False])
def test_output_shape(length, center):
    layer = LogMel(n_mels=64, center=center)
    out = layer(np.zeros((2, length), np.float32) + 0.1)
    config = dataclasses.replace(FAT, center=center)
    assert (
        tuple(out.shape) == (2, config.num_frames(length), 64) == (2, layer.num_frames(length), 64)
    )
    assert out.dtype == "float32"
    assert layer.compute_output_shape((2, length)) == (2, config.num_frames(length), 64)


def test_fat2019_crop_gives_128_frames():
    out = LogMel()(np.zeros((1, FAT.samples_for_frames(128)), np.float32))
    assert tuple(out.shape) == (1, 128, 128)


def test_functional_model_with_unknown_length():
    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogMel(n_mels=32, name="logmel")(inputs))
    assert tuple(model.output.shape) == (None, None, 32)
    assert tuple(model(np.zeros((3, 2000), np.float32)).shape) == (3, 1 + 2000 // 694, 32)


# ----------------------------------------------------------------------------- config
def test_get_config_round_trip():
    layer = LogMel(
        n_mels=64, fmax=None, top_db=None, standardize=False, pad_mode="reflect", name="fe"
    )
    config = layer.get_config()
    json.dumps(config)
    for field in dataclasses.fields(FrontEndConfig):
        assert field.name in config
    clone = LogMel.from_config(config)
    assert clone.get_config() == config
    x = noise()[None]
    np.testing.assert_array_equal(np.asarray(clone(x)), np.asarray(layer(x)))
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(revived, LogMel) and revived.get_config() == config


def test_from_frontend_config():
    small = FrontEndConfig(n_mels=64, top_db=None)
    layer = LogMel.from_frontend_config(small, name="fe")
    config = layer.get_config()
    assert {k: config[k] for k in dataclasses.asdict(small)} == dataclasses.asdict(small)
    assert config["name"] == "fe"
    assert LogMel().get_config()["n_fft"] == FAT.n_fft


def test_saved_model_file_round_trip(tmp_path):
    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogMel(n_mels=32)(inputs))
    path = tmp_path / "fe.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = noise()[None]
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_exported_saved_model_takes_any_length(tmp_path):
    inputs = keras.Input((None,))
    model = keras.Model(inputs, LogMel(n_mels=32)(inputs))
    model.export(str(tmp_path / "fe"), format="tf_saved_model", verbose=False)
    served = tf.saved_model.load(str(tmp_path / "fe")).serve
    for length in (300, 5000):
        x = noise()[None, :length]
        np.testing.assert_allclose(served(x).numpy(), np.asarray(model(x)), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_fft=2561),
        dict(pad_mode="wrap"),
        dict(amin=0.0),
        dict(top_db=-1.0),
        dict(fmin=30000.0),
    ],
)
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        LogMel(**kwargs)


def test_rank_three_input_is_rejected():
    with pytest.raises(ValueError, match="batch, samples"):
        LogMel()(np.zeros((1, 1000, 1), np.float32))


# ----------------------------------------------------------------------------- execution modes
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_xla_matches_eager(pad_mode):
    layer = LogMel(standardize=False, pad_mode=pad_mode)
    x = np.stack([sine(), noise(), 1e-3 * noise(seed=3)])[:, :20000]
    eager = logmel_np(layer, x)
    graph = tf.function(layer)(tf.constant(x)).numpy()
    xla = tf.function(layer, jit_compile=True)(tf.constant(x)).numpy()
    np.testing.assert_allclose(graph, eager, atol=1e-3)
    np.testing.assert_allclose(xla, eager, atol=1e-3)
    short = tf.function(layer, jit_compile=True)(tf.constant(x[:, :500])).numpy()
    np.testing.assert_allclose(short, logmel_np(layer, x[:, :500]), atol=1e-3)


@pytest.fixture
def mixed_float16_policy():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def test_mixed_precision_policy_computes_in_float32(mixed_float16_policy):
    x = np.stack([sine(), 3.0 * noise()])  # loud enough to overflow a float16 power spectrum
    layer = LogMel(standardize=False)
    assert layer.compute_dtype == "float32"
    out = np.asarray(layer(x))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    keras.config.set_dtype_policy("float32")
    reference = logmel_np(LogMel(standardize=False), x)
    np.testing.assert_allclose(out, reference, atol=1e-3)


def test_explicit_mixed_policy_casts_only_the_output():
    x = np.stack([sine(), 3.0 * noise()])
    out = LogMel(dtype="mixed_float16")(x)
    assert out.dtype == "float16"
    out = np.asarray(out, np.float32)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, logmel_np(LogMel(), x), atol=5e-3)


def test_gradient_is_the_same_with_and_without_xla():
    # Outside XLA the frames are wider than n_fft and rfft_cropped supplies the gradient;
    # under XLA the frames are exactly n_fft wide and TensorFlow's own RFFT gradient is used.
    layer = LogMel(standardize=False, top_db=None)
    x = tf.constant(noise(seconds=0.1)[None])
    weights = tf.constant(np.random.default_rng(1).standard_normal((1, 7, 128)), tf.float32)

    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x) * weights)
        return tape.gradient(y, x)

    eager = grad(x).numpy()
    xla = tf.function(grad, jit_compile=True)(x).numpy()
    assert np.isfinite(eager).all() and np.abs(eager).max() > 0
    np.testing.assert_allclose(xla, eager, atol=1e-4 * np.abs(eager).max())
