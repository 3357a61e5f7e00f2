"""Tests of the tf.data pipeline: decoding, crops, windows, determinism, streams."""

import os
import wave

import numpy as np
import pytest
import tensorflow as tf

from fat_tf.data import decode, pipeline
from fat_tf.data.split import stratified_split, subsample

RATE = 8000


def write_wav(path, samples, rate=RATE, channels=1):
    """Write int16 samples (``[n]`` or ``[n, channels]``) as a PCM WAV file."""
    data = np.asarray(samples, np.int16)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(data.tobytes())
    return str(path)


@pytest.fixture
def clips(tmp_path):
    """Five clips whose samples encode (clip id, sample index) so crops can be traced."""
    lengths = [100, 250, 400, 37, 1000]
    paths = []
    for i, n in enumerate(lengths):
        paths.append(write_wav(tmp_path / f"c{i}.wav", (i + 1) * 1000 + np.arange(n) % 997))
    labels = np.eye(5, dtype=np.float32)
    return paths, labels, lengths


def test_decode_wav_values_and_errors(tmp_path):
    path = write_wav(tmp_path / "a.wav", [0, 16384, -32768])
    out = decode.decode_wav(tf.constant(path), RATE).numpy()
    np.testing.assert_allclose(out, [0.0, 0.5, -1.0])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        decode.decode_wav(tf.constant(path), 44100)
    assert decode.pipeline_error(error.value) == (
        f"{path}: sample rate is 8000 Hz but 44100 Hz is expected; resample the file"
    )
    stereo = write_wav(tmp_path / "s.wav", np.zeros((10, 2)), channels=2)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        decode.decode_wav(tf.constant(stereo), RATE)
    assert decode.pipeline_error(error.value) == (
        f"{stereo}: has 2 channels but mono audio is expected"
    )


def test_random_crop_or_pad_shapes_and_content():
    wave_ = tf.range(10, dtype=tf.float32) + 1
    for s in range(20):
        out = pipeline.random_crop_or_pad(wave_, 4, tf.constant([s, 7])).numpy()
        assert out.shape == (4,)
        assert np.all(np.diff(out) == 1)  # a contiguous slice of the clip
        padded = pipeline.random_crop_or_pad(wave_, 15, tf.constant([s, 7])).numpy()
        nz = np.flatnonzero(padded)
        np.testing.assert_array_equal(padded[nz], np.arange(1, 11))  # whole clip, in order
        assert len(nz) == 10 and np.all(np.diff(nz) == 1)


@pytest.mark.parametrize("n", [1, 50, 100, 101, 149, 150, 151, 1000, 10000])
def test_sliding_windows_cover_whole_clip(n):
    length, hop, cap = 100, 50, 1000
    wave_ = tf.range(1, n + 1, dtype=tf.float32)
    windows = pipeline.sliding_windows(wave_, length, hop, cap).numpy()
    starts = pipeline.window_starts(tf.constant(n), length, hop, cap).numpy()
    assert windows.shape == (len(starts), length)
    assert starts[0] == 0
    assert starts[-1] == max(n - length, 0)
    assert np.all(np.diff(starts) <= hop) and np.all(np.diff(starts) > 0)
    covered = np.unique(windows[windows > 0])
    np.testing.assert_array_equal(covered, np.arange(1, n + 1))


def test_window_cap_spreads_windows():
    starts = pipeline.window_starts(tf.constant(10_000), 100, 10, 5).numpy()
    assert len(starts) == 5 and starts[0] == 0 and starts[-1] == 9900


def _batches(ds):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds]


def test_training_dataset_deterministic_and_reshuffled(clips):
    paths, labels, _ = clips
    kw = dict(sample_rate=RATE, crop_samples=64, batch_size=2, seed=3, drop_remainder=False)
    ds = pipeline.training_dataset(paths, labels, **kw)
    epoch1, epoch2 = _batches(ds), _batches(ds)
    again = _batches(pipeline.training_dataset(paths, labels, **kw))
    for a, b in zip(epoch1, again):
        np.testing.assert_array_equal(a[0]["audio"], b[0]["audio"])
    first = np.concatenate([b[0]["audio"] for b in epoch1])
    second = np.concatenate([b[0]["audio"] for b in epoch2])
    assert first.shape == (5, 64)
    assert not np.array_equal(first, second)  # new order/crops each epoch
    # every crop comes from the clip its label says
    for batch in epoch1:
        audio, lab = batch
        for row, y in zip(audio["audio"], lab):
            clip_id = int(np.argmax(y)) + 1
            values = np.round(row[row != 0] * 32768).astype(int)
            assert np.all(values // 1000 == clip_id)
    other = _batches(pipeline.training_dataset(paths, labels, **{**kw, "seed": 4}))
    assert not np.array_equal(first, np.concatenate([b[0]["audio"] for b in other]))


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_training_dataset_cache(clips, tmp_path, cache):
    paths, labels, _ = clips
    cache_arg = str(tmp_path / "cache") if cache == "disk" else cache
    ds = pipeline.training_dataset(
        paths, labels, sample_rate=RATE, crop_samples=32, batch_size=5, seed=0, cache=cache_arg
    )
    (x1, y1), (x2, y2) = _batches(ds)[0], _batches(ds)[0]
    assert x1["audio"].shape == x2["audio"].shape == (5, 32) and y1.shape == (5, 5)
    np.testing.assert_array_equal(np.sort(np.argmax(y2, 1)), np.arange(5))


def test_semi_supervised_zip_ratio(clips):
    paths, labels, _ = clips
    lab = pipeline.training_dataset(
        paths, labels, sample_rate=RATE, crop_samples=32, batch_size=2, seed=0
    )
    unl = pipeline.unlabelled_dataset(
        paths, sample_rate=RATE, crop_samples=32, batch_size=6, seed=1
    )
    batches = _batches(pipeline.semi_supervised_dataset(lab, unl))
    assert len(batches) == 2  # epoch length set by the labelled stream (5 // 2)
    x, y = batches[0]
    assert x["audio"].shape == (2, 32) and x["unlabelled"].shape == (6, 32)
    assert y.shape == (2, 5)


def test_evaluation_dataset_windows_and_mask(clips):
    paths, labels, lengths = clips
    ds = pipeline.evaluation_dataset(
        paths, labels, sample_rate=RATE, window_samples=100, hop_samples=50,
        max_windows=100, batch_size=2,
    )
    batches = _batches(ds)
    masks = np.concatenate(
        [np.pad(b[0]["window_mask"], [[0, 0], [0, 30 - b[0]["window_mask"].shape[1]]])
         for b in batches]
    )
    expected = [1 + -(-max(n - 100, 0) // 50) for n in lengths]
    np.testing.assert_array_equal(masks.sum(1), expected)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
    unlabelled = pipeline.evaluation_dataset(
        paths, None, sample_rate=RATE, window_samples=100, hop_samples=50,
        max_windows=4, batch_size=5,
    )
    (only,) = _batches(unlabelled)
    assert isinstance(only, dict) and only["windows"].shape == (5, 4, 100)


def test_stratified_split_is_stratified_and_deterministic():
    rng = np.random.default_rng(0)
    labels = np.zeros((400, 8), np.float32)
    labels[np.arange(400), rng.integers(0, 8, 400)] = 1
    train, held = stratified_split(labels, 0.25, seed=1)
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == 400
    assert 80 <= len(held) <= 120
    per_class = labels[held].sum(0) / labels.sum(0)
    assert np.all(np.abs(per_class - 0.25) < 0.1)
    again = stratified_split(labels, 0.25, seed=1)
    np.testing.assert_array_equal(held, again[1])
    kept = subsample(train, 0.1, labels, seed=0)
    assert np.all(labels[kept].sum(0) >= 1) and len(kept) < 0.2 * len(train)


def test_cache_file_is_keyed_by_settings_and_files(clips, tmp_path):
    paths, _, _ = clips
    folder = str(tmp_path / "cache")
    key = pipeline.cache_file(folder, paths, {"n_mels": 64})
    assert key == pipeline.cache_file(folder, paths, {"n_mels": 64})
    assert key != pipeline.cache_file(folder, paths, {"n_mels": 32})  # front end changed
    assert key != pipeline.cache_file(folder, paths[:-1], {"n_mels": 64})  # other files
    write_wav(paths[0], np.arange(10))  # a file changed on disk
    changed = pipeline.cache_file(folder, paths, {"n_mels": 64})
    assert changed != key
    (tmp_path / "cache" / (os.path.basename(changed) + "_0.lockfile")).write_text("")
    pipeline.cache_file(folder, paths, {"n_mels": 64})  # stale lock of a killed run
    assert not list((tmp_path / "cache").glob("*.lockfile"))


def test_feature_stream_crops_whole_clip_logmel(clips, tmp_path):
    from fat_tf.layers import LogMel

    paths, labels, _ = clips
    logmel = LogMel(sample_rate=RATE, n_fft=64, hop_length=16, n_mels=8, fmax=None)
    ds = pipeline.training_dataset(
        paths, labels, sample_rate=RATE, crop_samples=10, batch_size=5, seed=0,
        cache=str(tmp_path / "features"), logmel=logmel,
    )
    (x, y), = _batches(ds)
    assert set(x) == {"logmel"} and x["logmel"].shape == (5, 10, 8)
    for row, label in zip(x["logmel"], y):
        clip = int(np.argmax(label))
        full = logmel(tf.constant(decode.decode_wav(tf.constant(paths[clip]), RATE))[None])
        full = np.pad(full.numpy()[0], [[0, max(0, 10 - full.shape[1])], [0, 0]])
        matches = [np.allclose(row, full[s:s + 10], atol=1e-5)
                   for s in range(len(full) - 9)]
        # a crop of the clip's own log-mel (or the short clip padded at some offset)
        assert any(matches) or len(full) <= 10
    again, = _batches(ds)  # second epoch reads the cache
    assert again[0]["logmel"].shape == (5, 10, 8)
    assert len(list((tmp_path / "features").glob("*.index"))) == 1
