"""Pooling of window scores into clip scores."""

from __future__ import annotations

import tensorflow as tf

from fat_tf.config import WINDOW_POOLINGS  # their one home


def pool_windows(logits: tf.Tensor, mask: tf.Tensor, mode: str = "mean") -> tf.Tensor:
    """Clip logits from the logits of its windows, ignoring padded windows.

    Pooling is done on logits, not probabilities: ``max`` is the same either way, and
    ``mean`` of logits keeps ranks free of the ties that saturated float32 sigmoids make.

    Args:
        logits: ``[batch, windows, C]`` window logits.
        mask: ``[batch, windows]``, 1 for real windows and 0 for padding (each clip has
            at least one real window).
        mode: ``mean`` or ``max``.

    Returns:
        ``[batch, C]`` clip logits (float32).
    """
    logits = tf.cast(logits, tf.float32)
    mask = tf.expand_dims(tf.cast(mask, tf.float32), -1)  # (a slice would not convert to TFLite)
    if mode == "mean":
        total = tf.reduce_sum(logits * mask, axis=1)
        return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    if mode == "max":
        return tf.reduce_max(tf.where(mask > 0, logits, tf.float32.min), axis=1)
    raise ValueError(f"unknown window pooling {mode!r}; choose from {WINDOW_POOLINGS}")


def clip_logits(model, windows: tf.Tensor, mask: tf.Tensor, mode: str = "mean") -> tf.Tensor:
    """Score every window of a batch of clips with ``model`` and pool per clip.

    Args:
        model: tagger, waveform ``[N, L]`` -> logits ``[N, C]`` (called with training=False).
        windows: ``[batch, windows, L]`` waveform windows.
        mask: ``[batch, windows]`` real-window mask.
        mode: ``mean`` or ``max``.

    Returns:
        ``[batch, C]`` clip logits.
    """
    shape = tf.shape(windows)
    flat = tf.reshape(windows, [shape[0] * shape[1], shape[2]])
    logits = tf.reshape(model(flat, training=False), [shape[0], shape[1], -1])
    return pool_windows(logits, mask, mode)
