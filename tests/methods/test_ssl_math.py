"""The math of the semi-supervised building blocks: sharpening, divergences, ramps, EMA."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from fat_tf.callbacks.ema import ExponentialMovingAverage, ema_update
from fat_tf.ops.ramps import ema_decay, ema_decay_for_run, linear_rampup, sigmoid_rampup
from fat_tf.ops.ssl import (
    align_to_prior,
    binary_kl,
    bootstrap_targets,
    confident_pseudo_labels,
    mix,
    normalize_per_example,
    sharpen,
    sharpen_around,
)


def test_sharpen_known_values_and_not_stuck_near_half():
    p = np.array([[0.6, 0.3, 0.9, 0.5, 0.02]], np.float32)
    out = sharpen(p, 0.5).numpy()
    expected = p**2 / (p**2 + (1 - p) ** 2)  # p^(1/T) / (p^(1/T) + (1-p)^(1/T)), T = 0.5
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_allclose(out[0, :3], [0.36 / 0.52, 0.09 / 0.58, 0.81 / 0.82], rtol=1e-5)
    # confident guesses become more confident, in both directions; 0.5 stays put
    assert out[0, 2] > 0.98 and out[0, 4] < 0.001 and out[0, 3] == pytest.approx(0.5)
    # the published bug, sigmoid(T * p), pins every target inside [0.5, 0.62]
    buggy = tf.sigmoid(0.5 * p).numpy()
    assert np.all((buggy >= 0.5) & (buggy <= 0.63))
    assert np.ptp(out) > 0.9 > np.ptp(buggy)


def test_sharpen_temperature_one_is_identity_and_saturation_is_stable():
    p = np.linspace(0.0, 1.0, 11, dtype=np.float32)[None]
    np.testing.assert_allclose(sharpen(p, 1.0).numpy(), np.clip(p, 1e-7, 1 - 1e-7), atol=1e-6)
    assert np.all(np.isfinite(sharpen(p, 0.1).numpy()))


def test_binary_kl_matches_closed_form():
    a = np.array([[0.3, -2.0, 4.0]], np.float32)
    b = np.array([[1.0, -1.0, 0.0]], np.float32)
    p, q = 1 / (1 + np.exp(-a.astype(np.float64))), 1 / (1 + np.exp(-b.astype(np.float64)))
    expected = np.mean(p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q)), axis=1)
    np.testing.assert_allclose(binary_kl(a, b).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(binary_kl(a, a).numpy(), [0.0], atol=1e-6)
    assert binary_kl(a, b).numpy()[0] > 0


def test_normalize_per_example_over_all_non_batch_axes():
    d = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32) * [[[1e-20]], [[1]],
                                                                            [[1e5]]]
    n = normalize_per_example(d).numpy()
    np.testing.assert_allclose(np.sqrt((n**2).sum(axis=(1, 2))), [1, 1, 1], rtol=1e-5)
    np.testing.assert_allclose(n[1], d[1] / np.linalg.norm(d[1]), rtol=1e-5)


def test_mix_per_example():
    a, b = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    np.testing.assert_allclose(mix(a, b, np.array([0.25, 0.9])).numpy(),
                               [[0.25] * 3, [0.9] * 3], rtol=1e-6)


def test_ramps():
    assert float(sigmoid_rampup(0.0, 5)) == pytest.approx(math.exp(-5))
    assert float(sigmoid_rampup(2.5, 5)) == pytest.approx(math.exp(-5 * 0.25))
    assert float(sigmoid_rampup(5.0, 5)) == 1.0 and float(sigmoid_rampup(9.0, 5)) == 1.0
    assert float(sigmoid_rampup(3.0, 0)) == 1.0
    assert float(linear_rampup(1.0, 4)) == 0.25 and float(linear_rampup(7.0, 4)) == 1.0
    assert float(linear_rampup(-1.0, 4)) == 0.0 and float(linear_rampup(2.0, 0)) == 1.0
    assert [float(ema_decay(k, 0.9)) for k in range(4)] == pytest.approx([0.0, 0.5, 2 / 3, 0.75])
    assert float(ema_decay(1000, 0.9)) == pytest.approx(0.9)


def test_ema_decay_is_capped_to_a_fraction_of_the_run():
    # horizon 1/(1 - a) <= 10% of the run: 0.99 for 1,000 steps, the configured 0.999
    # once the run is long enough, no cap when the fraction is 0
    assert ema_decay_for_run(0.999, 1000, 0.1) == pytest.approx(0.99)
    assert ema_decay_for_run(0.999, 600, 0.1) == pytest.approx(1 - 1 / 60)
    assert ema_decay_for_run(0.999, 10_000, 0.1) == pytest.approx(0.999)
    assert ema_decay_for_run(0.999, 100_000, 0.1) == pytest.approx(0.999)
    assert ema_decay_for_run(0.999, 600, 0.0) == pytest.approx(0.999)
    assert ema_decay_for_run(0.999, 5, 0.1) == 0.0  # horizon of one step: the student
    # the same fraction of the run is averaged whatever its length
    for steps in (300, 3000):
        decay = ema_decay_for_run(0.9999, steps, 0.1)
        assert 1 / (1 - decay) == pytest.approx(0.1 * steps)


def closed_form_ema(sources, decay):
    """Teacher after n updates: sum_k s_k (1 - a_k) prod_{j > k} a_j, a_k = min(1-1/(k+1), d)."""
    alphas = [min(1 - 1 / (k + 1), decay) for k in range(len(sources))]
    total = np.zeros_like(sources[0], dtype=np.float64)
    for k, s in enumerate(sources):
        total += s * (1 - alphas[k]) * np.prod(alphas[k + 1:])
    return total


def test_ema_update_equals_closed_form():
    rng = np.random.default_rng(0)
    sources = [rng.normal(size=(3,)) for _ in range(7)]
    target = tf.Variable(rng.normal(size=(3,)).astype(np.float32))
    counter = tf.Variable(np.int64(5))
    source = tf.Variable(np.zeros(3, np.float32))
    for k, s in enumerate(sources):
        source.assign(s.astype(np.float32))
        ema_update([target, counter], [source, tf.Variable(np.int64(k))], ema_decay(k, 0.6))
    np.testing.assert_allclose(target.numpy(), closed_form_ema(sources, 0.6), rtol=1e-5)
    assert int(counter.numpy()) == 6  # integer state is copied, not averaged


def test_ema_callback_averages_every_weight_including_batchnorm_stats():
    keras.utils.set_random_seed(0)

    def model():
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                                 keras.layers.BatchNormalization(), keras.layers.Dense(1)])

    student, teacher = model(), model()
    student.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    ema = ExponentialMovingAverage(student, teacher, decay=0.7)
    history = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            history.append([w.copy() for w in student.get_weights()])

    x = np.random.default_rng(1).normal(size=(48, 4)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    student.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                callbacks=[Record(), ema])
    assert len(history) == 6
    names = [w.path for w in student.weights]
    assert any("moving_mean" in n for n in names) and any("moving_variance" in n for n in names)
    for i, w in enumerate(teacher.get_weights()):
        expected = closed_form_ema([h[i] for h in history], 0.7)
        np.testing.assert_allclose(w, expected, rtol=1e-4, atol=1e-6, err_msg=names[i])


def test_alignment_matches_the_labelled_class_frequencies():
    rng = np.random.default_rng(0)
    guesses = rng.uniform(0.05, 0.4, size=(64, 6)).astype(np.float32)  # ~1.4 classes "on"
    prior = np.array([0.3, 0.2, 0.1, 0.05, 0.05, 0.02], np.float32)
    aligned = align_to_prior(guesses, prior, guesses.mean(0)).numpy()
    np.testing.assert_allclose(aligned.mean(0), prior, rtol=1e-5)  # no clipping here
    np.testing.assert_allclose(aligned, guesses * prior / guesses.mean(0), rtol=1e-5)
    big = align_to_prior(np.full((2, 2), 0.9, np.float32), np.array([0.9, 0.9]),
                         np.array([0.3, 0.3]))
    assert float(np.max(big)) == 1.0  # clipped to a probability


def test_sharpen_around_the_class_frequency():
    centre = np.array([0.5, 0.05, 0.2], np.float32)
    p = np.array([[0.5, 0.05, 0.2], [0.6, 0.1, 0.1]], np.float32)
    out = sharpen_around(p, centre, 0.5).numpy()
    np.testing.assert_allclose(out[0], centre, rtol=1e-5)  # the centre is the fixed point
    logit = lambda x: np.log(x / (1 - x))  # noqa: E731
    expected = 1 / (1 + np.exp(-((logit(p[1]) - logit(centre)) * 2 + logit(centre))))
    np.testing.assert_allclose(out[1], expected, rtol=1e-5)
    assert out[1, 1] > 0.1 and out[1, 2] < 0.1  # above the centre up, below it down
    np.testing.assert_allclose(sharpen_around(p, 0.5, 0.5).numpy(), sharpen(p, 0.5).numpy(),
                               rtol=1e-5)  # around 0.5 it is plain sharpening


def test_bootstrap_targets_move_noisy_targets_towards_the_prediction():
    y = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    p = np.array([[0.2, 0.9, 0.6], [0.5, 0.1, 0.99]], np.float32)
    beta = np.array([0.8, 1.0], np.float32)  # the second clip is trusted: unchanged
    out = bootstrap_targets(y, p, beta).numpy()
    np.testing.assert_allclose(out, beta[:, None] * y + (1 - beta[:, None]) * p, rtol=1e-6)
    np.testing.assert_allclose(out[0], [0.84, 0.18, 0.92], rtol=1e-6)
    np.testing.assert_array_equal(out[1], y[1])
    np.testing.assert_allclose(bootstrap_targets(y, p, 0.5).numpy(), (y + p) / 2, rtol=1e-6)
    # the prediction is a target, not a path for gradients
    p_var = tf.Variable(p)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(bootstrap_targets(y, p_var, 0.5))
    assert tape.gradient(total, p_var) is None


def test_confident_pseudo_labels_decide_each_class_separately():
    p = np.array([[0.95, 0.7, 0.69, 0.05, 0.051, 0.0]], np.float32)
    targets, mask = confident_pseudo_labels(p, positive_threshold=0.7, negative_threshold=0.05)
    np.testing.assert_array_equal(targets.numpy(), [[1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(mask.numpy(), [[1, 1, 0, 1, 0, 1]])
    # against an independent numpy version on random probabilities
    rng = np.random.default_rng(0)
    q = rng.random((16, 10)).astype(np.float32)
    targets, mask = confident_pseudo_labels(q, 0.8, 0.1)
    np.testing.assert_array_equal(targets.numpy(), (q >= 0.8).astype(np.float32))
    np.testing.assert_array_equal(mask.numpy(), ((q >= 0.8) | (q <= 0.1)).astype(np.float32))


def test_negative_threshold_zero_makes_positive_pseudo_labels_only():
    p = np.array([[0.9, 0.5, 1e-3, 0.0]], np.float32)  # 0.0: a sigmoid that underflowed
    targets, mask = confident_pseudo_labels(p, positive_threshold=0.7, negative_threshold=0.0)
    np.testing.assert_array_equal(targets.numpy(), [[1, 0, 0, 0]])
    np.testing.assert_array_equal(mask.numpy(), [[1, 0, 0, 0]])
