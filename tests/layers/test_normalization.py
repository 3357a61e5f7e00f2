"""FusedBatchNormalization against Keras' own BatchNormalization (the reference)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fat_tf.layers.normalization import FusedBatchNormalization

CHANNELS = 5


def _pair(shape, momentum=0.9):
    """A Keras BatchNormalization and a fused one with the same non-trivial weights."""
    rng = np.random.default_rng(1)
    layers = keras.layers.BatchNormalization(momentum=momentum), FusedBatchNormalization(
        momentum=momentum)
    gamma = rng.uniform(0.5, 2.0, CHANNELS).astype("float32")
    beta = rng.normal(size=CHANNELS).astype("float32")
    mean = rng.normal(size=CHANNELS).astype("float32")
    variance = rng.uniform(0.5, 2.0, CHANNELS).astype("float32")
    for layer in layers:
        layer.build(shape)
        layer.set_weights([gamma, beta, mean, variance])
    return layers


@pytest.mark.parametrize("shape", [(8, 10, 6, CHANNELS), (4, 7, CHANNELS), (16, CHANNELS)])
def test_training_pass_matches_keras(shape):
    reference, fused = _pair(shape)
    x = tf.constant(np.random.default_rng(2).normal(3.0, 2.0, shape).astype("float32"))
    weights = tf.range(1.0, CHANNELS + 1.0)
    start_variance = fused.moving_variance.numpy().copy()
    outputs, grads = [], []
    for layer in (reference, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y) * weights)
        outputs.append(y.numpy())
        grads.append([g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta])])
    np.testing.assert_allclose(outputs[1], outputs[0], atol=2e-6)
    for g_fused, g_ref in zip(grads[1], grads[0]):
        np.testing.assert_allclose(g_fused, g_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), reference.moving_mean.numpy(),
                               atol=1e-6)
    # moving variance: PyTorch's rule, the unbiased batch variance (n / (n - 1))
    n = int(np.prod(shape[:-1]))
    batch_var = np.var(x.numpy().reshape(-1, CHANNELS), axis=0)
    expected = 0.9 * start_variance + 0.1 * batch_var * n / (n - 1)
    np.testing.assert_allclose(fused.moving_variance.numpy(), expected, rtol=1e-5)


def test_inference_is_the_parent_affine_map():
    shape = (6, 4, 3, CHANNELS)
    reference, fused = _pair(shape)
    x = tf.constant(np.random.default_rng(3).normal(size=shape).astype("float32"))
    np.testing.assert_array_equal(fused(x, training=False).numpy(),
                                  reference(x, training=False).numpy())
    before = fused.get_weights()
    fused(x, training=False)
    for a, b in zip(before, fused.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_frozen_layer_uses_moving_statistics():
    shape = (6, 4, 3, CHANNELS)
    reference, fused = _pair(shape)
    fused.trainable = False
    reference.trainable = False
    x = tf.constant(np.random.default_rng(4).normal(size=shape).astype("float32"))
    np.testing.assert_array_equal(fused(x, training=True).numpy(),
                                  reference(x, training=True).numpy())


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_float32_statistics(policy):
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        fused = FusedBatchNormalization()
        reference = keras.layers.BatchNormalization()
        x = np.random.default_rng(5).normal(2.0, 3.0, (8, 6, 4, CHANNELS)).astype("float32")
        y = fused(tf.constant(x, fused.compute_dtype), training=True)
        y_ref = reference(tf.constant(x, reference.compute_dtype), training=True)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert y.dtype == tf.as_dtype(policy.split("_")[1])
    assert fused.moving_mean.dtype == "float32"
    tolerance = 2e-2 if policy == "mixed_bfloat16" else 3e-3
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(),
                               tf.cast(y_ref, tf.float32).numpy(), atol=tolerance)
    np.testing.assert_allclose(fused.moving_mean.numpy(), reference.moving_mean.numpy(),
                               atol=tolerance)


def test_xla_training_pass_matches_eager():
    shape = (4, 6, 3, CHANNELS)
    _, fused = _pair(shape)
    _, eager = _pair(shape)
    x = tf.constant(np.random.default_rng(6).normal(size=shape).astype("float32"))
    y_xla = tf.function(lambda v: fused(v, training=True), jit_compile=True)(x)
    np.testing.assert_allclose(y_xla.numpy(), eager(x, training=True).numpy(), atol=2e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), eager.moving_variance.numpy(),
                               rtol=1e-6)


def test_serialises_and_falls_back_where_the_kernel_does_not_apply():
    layer = FusedBatchNormalization(momentum=0.8, epsilon=1e-4, name="bn")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, FusedBatchNormalization)
    assert (clone.momentum, clone.epsilon) == (0.8, 1e-4)
    # a channels-first axis is not the kernel's layout: the parent's code runs
    shape = (4, CHANNELS, 3, 2)
    reference = keras.layers.BatchNormalization(axis=1)
    fused = FusedBatchNormalization(axis=1)
    x = tf.constant(np.random.default_rng(7).normal(size=shape).astype("float32"))
    np.testing.assert_array_equal(fused(x, training=True).numpy(),
                                  reference(x, training=True).numpy())
