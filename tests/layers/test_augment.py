"""Augmentation layers: identity at inference, the right transformations in training."""

import numpy as np
import pytest

from fat_tf.layers.augment import RandomTimeCrop, RandomTimeFlip, RandomTimeShift, SpecAugment


def x_batch(batch=64, frames=20, mels=8):
    return np.random.default_rng(0).normal(size=(batch, frames, mels)).astype(np.float32)


@pytest.mark.parametrize("layer", [RandomTimeFlip(seed=1), SpecAugment(seed=1),
                                   RandomTimeCrop(5, seed=1), RandomTimeShift(3, seed=1)])
def test_identity_at_inference(layer):
    x = x_batch()
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_time_flip_flips_about_half():
    x = x_batch()
    out = np.asarray(RandomTimeFlip(seed=3)(x, training=True))
    flipped = np.all(out == x[:, ::-1], axis=(1, 2))
    kept = np.all(out == x, axis=(1, 2))
    assert np.all(flipped | kept)
    assert 16 < flipped.sum() < 48


def test_time_shift_rolls_each_example_within_range():
    x = x_batch(frames=20)
    out = np.asarray(RandomTimeShift(4, seed=5)(x, training=True))
    shifts = []
    for b in range(len(x)):
        matches = [k for k in range(-4, 5) if np.array_equal(out[b], np.roll(x[b], k, axis=0))]
        assert len(matches) == 1, b  # a roll by a whole number of frames within range
        shifts.append(matches[0])
    assert len(set(shifts)) >= 7  # every shift is drawn (9 possible, 64 examples)
    np.testing.assert_array_equal(np.asarray(RandomTimeShift(0, seed=5)(x, training=True)), x)


def test_spec_augment_masks_bands():
    x = x_batch(frames=40, mels=16) + 10.0  # no natural zeros
    out = np.asarray(SpecAugment(1, 6, 1, 4, seed=2)(x, training=True))
    masked = out == 0.0
    np.testing.assert_array_equal(out[~masked], x[~masked])
    for b in range(len(x)):
        rows = np.flatnonzero(masked[b].all(axis=1))  # masked frames (full rows)
        cols = np.flatnonzero(masked[b].all(axis=0))  # masked mel bins (full columns)
        assert len(rows) <= 6 and len(cols) <= 4
        if len(rows):
            assert np.all(np.diff(rows) == 1)  # one contiguous band
        # every masked cell lies in a masked row or column
        assert np.all(masked[b] == (masked[b].all(axis=1)[:, None] | masked[b].all(axis=0)))
    assert masked.any()


def test_random_time_crop_takes_contiguous_frames():
    x = np.tile(np.arange(30, dtype=np.float32)[None, :, None], (16, 1, 3))
    out = np.asarray(RandomTimeCrop(8, seed=0)(x, training=True))
    assert out.shape == (16, 8, 3)
    assert np.all(np.diff(out[:, :, 0], axis=1) == 1)
    assert len(np.unique(out[:, 0, 0])) > 1  # offsets differ per example
    short = np.asarray(RandomTimeCrop(8, seed=0)(x[:, :5], training=True))
    assert short.shape == (16, 8, 3) and np.all(short[:, 5:] == 0)
