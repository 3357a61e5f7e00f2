"""Tests for fat_tf.metrics: numpy lwlrap, TF batch stats and the streaming Keras metric."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import label_ranking_average_precision_score

from fat_tf.metrics import Lwlrap, lwlrap, lwlrap_batch_stats, per_class_lwlrap


def _random_case(n, c, seed, max_labels=3, tied=False):
    """Random multi-label targets (every row has >= 1 label) and scores."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, c), dtype=np.float32)
    for i in range(n):
        k = rng.integers(1, min(max_labels, c) + 1)
        y[i, rng.choice(c, size=k, replace=False)] = 1.0
    if tied:
        scores = rng.integers(0, 4, size=(n, c)).astype(np.float32)
    else:
        scores = rng.normal(size=(n, c))
    return y, scores


def _sklearn_lwlrap(y, scores, sample_weight=None):
    """The sklearn form: LRAP weighted by labels per clip, label-less rows removed first."""
    y = np.asarray(y) > 0.5
    keep = y.sum(1) > 0
    w = y.sum(1).astype(np.float64)
    if sample_weight is not None:
        w = w * np.asarray(sample_weight, dtype=np.float64)
    return label_ranking_average_precision_score(y[keep], scores[keep], sample_weight=w[keep])


def _index_order_precision(scores, k):
    """Precision of the single true class k as the colab ranks it (argsort, reversed)."""
    order = np.argsort(scores)[::-1]
    return 1.0 / (int(np.where(order == k)[0][0]) + 1)


# ------------------------------------------------------------------------------- numpy vs sklearn


@pytest.mark.parametrize("shape,seed", [((200, 80), 0), ((7, 3), 1), ((50, 10), 2), ((1, 5), 3)])
def test_matches_sklearn_untied(shape, seed):
    y, s = _random_case(*shape, seed=seed)
    assert lwlrap(y, s) == pytest.approx(_sklearn_lwlrap(y, s), abs=1e-12)


@pytest.mark.parametrize("shape,seed", [((200, 80), 4), ((30, 6), 5)])
def test_matches_sklearn_with_many_ties(shape, seed):
    # sklearn's rankdata("max") rule is our documented tie rule, so heavy ties must agree too.
    y, s = _random_case(*shape, seed=seed, tied=True)
    assert lwlrap(y, s) == pytest.approx(_sklearn_lwlrap(y, s), abs=1e-12)


def test_matches_sklearn_with_sample_weight():
    y, s = _random_case(60, 12, seed=6)
    w = np.random.default_rng(6).uniform(0.0, 3.0, size=60)
    assert lwlrap(y, s, sample_weight=w) == pytest.approx(_sklearn_lwlrap(y, s, w), abs=1e-12)


def test_sample_weight_integer_repeats_and_zero_drops():
    y, s = _random_case(20, 8, seed=7)
    w = np.array([0, 1, 2, 3] * 5)
    rep = np.repeat(np.arange(20), w)
    assert lwlrap(y, s, sample_weight=w) == pytest.approx(lwlrap(y[rep], s[rep]), abs=1e-12)
    pc_w, cw_w = per_class_lwlrap(y, s, sample_weight=w)
    pc_r, cw_r = per_class_lwlrap(y[rep], s[rep])
    np.testing.assert_allclose(pc_w, pc_r, atol=1e-12)
    np.testing.assert_allclose(cw_w, cw_r, atol=1e-12)


def test_accepts_any_float_dtype_and_lists():
    y, s = _random_case(40, 10, seed=8)
    ref = lwlrap(y, s)
    assert lwlrap(y.astype(bool), s.astype(np.float32)) == pytest.approx(
        lwlrap(y, s.astype(np.float32).astype(np.float64)), abs=1e-15
    )
    assert lwlrap(y.astype(np.int64).tolist(), s.tolist()) == pytest.approx(ref, abs=1e-15)
    # float16 scores: ranked as given (ties included), computed in float64.
    s16 = s.astype(np.float16)
    assert lwlrap(y, s16) == pytest.approx(_sklearn_lwlrap(y, s16.astype(np.float64)), abs=1e-12)


def test_soft_labels_are_binarised_at_half():
    y, s = _random_case(30, 9, seed=9)
    smoothed = np.where(y > 0.5, 0.9, 0.05)
    assert lwlrap(smoothed, s) == lwlrap(y, s)


# ------------------------------------------------------------------------------------------ ties


@pytest.mark.parametrize("k", [0, 1, 40, 79])
def test_all_tied_single_label_is_one_over_c(k):
    # 80 tied scores, one true class k: every label ties with k, so rank = 80, hits = 1.
    y = np.zeros((1, 80))
    y[0, k] = 1
    s = np.zeros((1, 80))
    assert lwlrap(y, s) == pytest.approx(1 / 80, abs=1e-15)
    assert _sklearn_lwlrap(y, s) == pytest.approx(1 / 80, abs=1e-15)


def test_index_order_reference_differs_on_ties():
    # The colab's argsort ranking depends on the index of the tied class; ours does not.
    s = np.zeros(80)
    assert _index_order_precision(s, 79) == 1.0
    assert _index_order_precision(s, 0) == pytest.approx(1 / 80)
    y = np.zeros((1, 80))
    y[0, 79] = 1
    assert lwlrap(y, s[None]) == pytest.approx(1 / 80)


def test_hand_worked_partial_ties():
    # Row A: scores [0.9, 0.5, 0.5, 0.1], true {2, 3}.
    #   label 2: labels with score >= 0.5 are {0, 1, 2} -> rank 3; true among them {2} -> 1/3.
    #            (index-order argsort would put 2 before 1: rank 2, precision 1/2.)
    #   label 3: rank 4 (everything >= 0.1); true among them {2, 3} -> 2/4 = 1/2.
    # Row B: scores [0.3, 0.3, 0.3, 0.8], true {0}.
    #   label 0: {0, 1, 2, 3} all >= 0.3 -> rank 4, hits 1 -> 1/4.
    # lwlrap = (1/3 + 1/2 + 1/4) / 3 true labels = 13/36.
    # Per class: c0 = 1/4, c1 = 0 (no positives), c2 = 1/3, c3 = 1/2; weights 1/3, 0, 1/3, 1/3.
    y = np.array([[0, 0, 1, 1], [1, 0, 0, 0]])
    s = np.array([[0.9, 0.5, 0.5, 0.1], [0.3, 0.3, 0.3, 0.8]])
    assert lwlrap(y, s) == pytest.approx(13 / 36, abs=1e-15)
    assert _sklearn_lwlrap(y, s) == pytest.approx(13 / 36, abs=1e-15)
    per_class, weights = per_class_lwlrap(y, s)
    np.testing.assert_allclose(per_class, [1 / 4, 0.0, 1 / 3, 1 / 2], atol=1e-15)
    np.testing.assert_allclose(weights, [1 / 3, 0.0, 1 / 3, 1 / 3], atol=1e-15)


def test_tied_true_labels_count_each_other():
    # scores [0.9, 0.5, 0.5, 0.1], true {1, 2}: each has rank 3 and 2 true labels at or above.
    y = np.array([[0, 1, 1, 0]])
    s = np.array([[0.9, 0.5, 0.5, 0.1]])
    assert lwlrap(y, s) == pytest.approx(2 / 3, abs=1e-15)


def test_all_tied_multi_label_row():
    # 10 tied scores, 3 true labels: each has rank 10 and 3 true at or above -> 3/10.
    y = np.zeros((1, 10))
    y[0, [1, 4, 9]] = 1
    s = np.full((1, 10), 0.7)
    assert lwlrap(y, s) == pytest.approx(0.3, abs=1e-15)
    assert _sklearn_lwlrap(y, s) == pytest.approx(0.3, abs=1e-15)


def test_infinite_scores_are_ordinary_values():
    y = np.array([[1, 0, 1]])
    s = np.array([[np.inf, -np.inf, np.inf]])
    assert lwlrap(y, s) == 1.0


# ------------------------------------------------------------------------------- empty / weights


def test_clips_without_labels_are_dropped():
    y, s = _random_case(30, 8, seed=10)
    rng = np.random.default_rng(10)
    y_more = np.concatenate([y, np.zeros((12, 8), dtype=y.dtype)])
    s_more = np.concatenate([s, rng.normal(size=(12, 8))])
    assert lwlrap(y_more, s_more) == pytest.approx(lwlrap(y, s), abs=1e-15)
    pc_a, w_a = per_class_lwlrap(y_more, s_more)
    pc_b, w_b = per_class_lwlrap(y, s)
    np.testing.assert_allclose(pc_a, pc_b, atol=1e-15)
    np.testing.assert_allclose(w_a, w_b, atol=1e-15)


def test_no_labels_at_all_is_zero():
    s = np.random.default_rng(11).normal(size=(5, 4))
    assert lwlrap(np.zeros((5, 4)), s) == 0.0
    per_class, weights = per_class_lwlrap(np.zeros((5, 4)), s)
    np.testing.assert_array_equal(per_class, np.zeros(4))
    np.testing.assert_array_equal(weights, np.zeros(4))
    assert lwlrap(np.zeros((0, 4)), np.zeros((0, 4))) == 0.0


def test_per_class_weights_sum_to_one_and_recombine():
    y, s = _random_case(200, 80, seed=12)
    per_class, weights = per_class_lwlrap(y, s)
    assert per_class.shape == weights.shape == (80,)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(weights, y.sum(0) / y.sum(), atol=1e-15)
    assert np.sum(per_class * weights) == pytest.approx(lwlrap(y, s), abs=1e-12)
    assert ((per_class >= 0) & (per_class <= 1)).all()


def test_per_class_zero_for_class_without_positives():
    y, s = _random_case(40, 6, seed=13)
    y[:, 2] = 0
    per_class, weights = per_class_lwlrap(y, s)
    assert per_class[2] == 0.0 and weights[2] == 0.0
    assert np.sum(per_class * weights) == pytest.approx(lwlrap(y, s), abs=1e-12)


def test_perfect_ranking_is_one():
    y, _ = _random_case(50, 20, seed=14)
    s = y + 0.01 * np.random.default_rng(14).uniform(size=y.shape)  # every true above every false
    assert lwlrap(y, s) == 1.0
    per_class, weights = per_class_lwlrap(y, s)
    np.testing.assert_array_equal(per_class[weights > 0], 1.0)


def test_input_validation():
    with pytest.raises(ValueError, match="does not match"):
        lwlrap(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="2-D"):
        lwlrap(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        lwlrap(np.ones((1, 2)), np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="one weight per clip"):
        lwlrap(np.ones((3, 2)), np.zeros((3, 2)), sample_weight=np.ones((3, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        lwlrap(np.ones((2, 2)), np.zeros((2, 2)), sample_weight=[1.0, -1.0])


# ---------------------------------------------------------------------------- saturation demo


def test_saturated_sigmoids_tie_logits_do_not():
    # Each clip's true class has the top logit (30); three false classes follow at 25, 20, 18.
    # All four saturate to exactly 1.0 as float32 sigmoids, so the true class ties with three
    # false ones: precision 1/4 instead of 1.
    rng = np.random.default_rng(15)
    n, c = 200, 80
    logits = rng.normal(-3.0, 1.0, size=(n, c)).astype(np.float32)
    y = np.zeros((n, c), dtype=np.float32)
    for i in range(n):
        true_k, *false_k = rng.choice(c, size=4, replace=False)
        y[i, true_k] = 1
        logits[i, true_k] = 30.0
        logits[i, false_k] = [25.0, 20.0, 18.0]
    probs32 = tf.sigmoid(tf.constant(logits)).numpy()
    assert probs32.dtype == np.float32 and (probs32 == 1.0).sum() == 4 * n
    assert lwlrap(y, logits) == 1.0
    assert lwlrap(y, probs32) == pytest.approx(0.25, abs=1e-12)
    # float64 sigmoids keep the order here (sigmoid is monotonic; float64 saturates much later).
    assert lwlrap(y, 1 / (1 + np.exp(-logits.astype(np.float64)))) == 1.0


def test_saturation_on_random_confident_logits():
    # Random confident logits: many true and false labels above 17 tie as float32 sigmoids.
    rng = np.random.default_rng(16)
    y, _ = _random_case(200, 80, seed=16)
    logits = (rng.normal(size=y.shape) * 12 + 20 * y).astype(np.float32)
    probs32 = tf.sigmoid(tf.constant(logits)).numpy()
    on_logits, on_probs = lwlrap(y, logits), lwlrap(y, probs32)
    assert on_logits == pytest.approx(_sklearn_lwlrap(y, logits), abs=1e-12)
    assert abs(on_logits - on_probs) > 0.01


# ---------------------------------------------------------------------------------- TF stats


def _stats_numpy(y, s, w=None):
    """Per-class (precision sums, positives) from the numpy per-class function."""
    per_class, weights = per_class_lwlrap(y, s, sample_weight=w)
    y_bin = (np.asarray(y) > 0.5).astype(np.float64)
    counts = y_bin.sum(0) if w is None else np.asarray(w, np.float64) @ y_bin
    return per_class * counts, counts


@pytest.mark.parametrize("tied", [False, True])
def test_batch_stats_equal_numpy(tied):
    y, s = _random_case(64, 80, seed=17, tied=tied)
    sums, counts = lwlrap_batch_stats(tf.constant(y), tf.constant(s, tf.float32))
    assert sums.dtype == tf.float64 and counts.dtype == tf.float64
    ref_sums, ref_counts = _stats_numpy(y, s.astype(np.float32))
    np.testing.assert_allclose(sums.numpy(), ref_sums, atol=1e-12)
    np.testing.assert_array_equal(counts.numpy(), ref_counts)
    assert sums.numpy().sum() / counts.numpy().sum() == pytest.approx(
        lwlrap(y, s.astype(np.float32)), abs=1e-12
    )


def test_batch_stats_dtypes_and_weights():
    y, s = _random_case(33, 7, seed=18)
    w = np.random.default_rng(18).uniform(0, 2, size=33)
    for score_t in (tf.float16, tf.float32, tf.float64):
        scores = tf.constant(s, score_t)
        sums, counts = lwlrap_batch_stats(tf.constant(y, tf.int32), scores, tf.constant(w))
        ref_sums, ref_counts = _stats_numpy(y, scores.numpy(), w)
        np.testing.assert_allclose(sums.numpy(), ref_sums, atol=1e-12)
        np.testing.assert_allclose(counts.numpy(), ref_counts, atol=1e-12)
    # [B, 1] weights are the same as [B].
    a = lwlrap_batch_stats(y, s, w[:, None])
    b = lwlrap_batch_stats(y, s, w)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    with pytest.raises(ValueError, match="per-label weights"):
        lwlrap_batch_stats(y, s, np.ones_like(y))
    with pytest.raises(ValueError, match="does not match"):
        lwlrap_batch_stats(y, s[:, :3])


def test_batch_stats_nan_score_is_documented_not_raised():
    # XLA cannot raise: a NaN score ranks below everything and a true NaN label scores 0.
    # Label 2 (0.2): only {1, 2} compare >= 0.2 -> rank 2, hits 1 -> 1/2.
    sums, counts = lwlrap_batch_stats(
        np.array([[1.0, 0.0, 1.0]]), np.array([[np.nan, 0.5, 0.2]], np.float32)
    )
    np.testing.assert_array_equal(sums.numpy(), [0.0, 0.0, 0.5])
    np.testing.assert_array_equal(counts.numpy(), [1.0, 0.0, 1.0])


def test_batch_stats_under_xla():
    y, s = _random_case(16, 80, seed=19, tied=True)
    fn = tf.function(lwlrap_batch_stats, jit_compile=True)
    sums, counts = fn(tf.constant(y), tf.constant(s, tf.float32))
    ref_sums, ref_counts = _stats_numpy(y, s)
    np.testing.assert_allclose(sums.numpy(), ref_sums, atol=1e-12)
    np.testing.assert_array_equal(counts.numpy(), ref_counts)


# ------------------------------------------------------------------------------- Keras metric


def test_streaming_uneven_batches_equal_numpy_and_reset():
    y, s = _random_case(120, 80, seed=20)
    y[40:47] = 0  # a run of label-less clips, one batch entirely without labels below
    s = s.astype(np.float32)
    metric = Lwlrap(80)
    assert metric.name == "lwlrap"
    assert metric.result().numpy() == 0.0  # nothing seen yet
    bounds = [0, 5, 40, 47, 48, 90, 120]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        metric.update_state(y[lo:hi], s[lo:hi])
    assert metric.precision_sum.dtype == "float64"
    assert metric.result().numpy() == pytest.approx(lwlrap(y, s), abs=1e-12)
    per_class, weights = per_class_lwlrap(y, s)
    np.testing.assert_allclose(metric.per_class_result().numpy(), per_class, atol=1e-12)
    np.testing.assert_allclose(metric.per_class_weights().numpy(), weights, atol=1e-12)
    metric.reset_state()
    assert metric.result().numpy() == 0.0
    np.testing.assert_array_equal(metric.per_class_result().numpy(), np.zeros(80))
    metric.update_state(y[:30], s[:30])
    assert metric.result().numpy() == pytest.approx(lwlrap(y[:30], s[:30]), abs=1e-12)


def test_streaming_with_sample_weight():
    y, s = _random_case(50, 10, seed=21)
    w = np.random.default_rng(21).integers(0, 3, size=50).astype(np.float32)
    metric = Lwlrap(10)
    metric.update_state(y[:20], s[:20], sample_weight=w[:20])
    metric.update_state(y[20:], s[20:], sample_weight=w[20:, None])
    assert metric.result().numpy() == pytest.approx(lwlrap(y, s, sample_weight=w), abs=1e-12)


def test_metric_rejects_wrong_class_count():
    metric = Lwlrap(5)
    with pytest.raises(ValueError, match="num_classes=5"):
        metric.update_state(np.zeros((2, 4)), np.zeros((2, 4)))


def test_metric_inside_xla_function():
    y, s = _random_case(48, 80, seed=22)
    s = s.astype(np.float32)
    metric = Lwlrap(80)

    @tf.function(jit_compile=True)
    def step(yt, yp):
        metric.update_state(yt, yp)
        return metric.result()

    step(tf.constant(y[:16]), tf.constant(s[:16]))
    step(tf.constant(y[16:32]), tf.constant(s[16:32]))
    out = step(tf.constant(y[32:]), tf.constant(s[32:]))
    assert out.numpy() == pytest.approx(lwlrap(y, s), abs=1e-12)


def test_metric_config_round_trip():
    metric = Lwlrap(12, name="val_lw")
    config = metric.get_config()
    assert config["num_classes"] == 12 and config["name"] == "val_lw"
    clone = Lwlrap.from_config(config)
    assert clone.num_classes == 12 and clone.name == "val_lw" and clone.dtype == "float64"
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(restored, Lwlrap) and restored.num_classes == 12


def _tiny_model(num_features, num_classes, jit_compile, weighted=False):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((num_features,)), keras.layers.Dense(num_classes)]  # logits out
    )
    metrics = {"weighted_metrics" if weighted else "metrics": [Lwlrap(num_classes)]}
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        jit_compile=jit_compile,
        **metrics,
    )
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_keras_evaluate_matches_numpy(jit_compile):
    rng = np.random.default_rng(23)
    n, d, c = 70, 6, 9
    x = rng.normal(size=(n, d)).astype(np.float32)
    y, _ = _random_case(n, c, seed=23)
    model = _tiny_model(d, c, jit_compile)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert all(0.0 <= v <= 1.0 for v in history.history["lwlrap"])
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    logits = model.predict(x, batch_size=16, verbose=0)
    assert logs["lwlrap"] == pytest.approx(lwlrap(y, logits), abs=1e-9)
    # Keras passes sample_weight only to weighted_metrics; plain metrics= ignore it.
    mask = np.r_[np.zeros(10), np.ones(n - 10)]
    logs = model.evaluate(x, y, sample_weight=mask, batch_size=16, verbose=0, return_dict=True)
    assert logs["lwlrap"] == pytest.approx(lwlrap(y, logits), abs=1e-9)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_keras_weighted_metrics_use_sample_weight(jit_compile):
    rng = np.random.default_rng(25)
    n, d, c = 50, 5, 7
    x = rng.normal(size=(n, d)).astype(np.float32)
    y, _ = _random_case(n, c, seed=25)
    model = _tiny_model(d, c, jit_compile, weighted=True)
    mask = np.r_[np.zeros(10), np.ones(n - 10)]
    logs = model.evaluate(x, y, sample_weight=mask, batch_size=16, verbose=0, return_dict=True)
    logits = model.predict(x, batch_size=16, verbose=0)
    assert logs["lwlrap"] == pytest.approx(lwlrap(y[10:], logits[10:]), abs=1e-9)


# model.save warns from Keras's TF backend (np.array on a variable) for any model, not ours.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_keras_model_save_load_keeps_metric(tmp_path):
    rng = np.random.default_rng(24)
    x = rng.normal(size=(20, 4)).astype(np.float32)
    y, _ = _random_case(20, 5, seed=24)
    model = _tiny_model(4, 5, jit_compile=False)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    logs = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["lwlrap"] == pytest.approx(lwlrap(y, loaded.predict(x, verbose=0)), abs=1e-9)
