"""Multi-label losses on logits. Every class is its own Bernoulli (sigmoid, not softmax).

Each function returns one loss per example (``[batch]``, float32) so callers choose the
reduction; :func:`get_loss` maps the config names to them.
"""

from __future__ import annotations

import tensorflow as tf

from fat_tf.config import LOSS_NAMES


def sigmoid_bce(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy from logits, averaged over classes (PyTorch's BCEWithLogits).

    Labels may be soft (in [0, 1]), as mixup and MixMatch produce.

    Args:
        labels: ``[batch, C]`` targets in [0, 1].
        logits: ``[batch, C]`` logits.

    Returns:
        ``[batch]`` float32 losses.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.float32)
    per_class = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_mean(per_class, axis=-1)


def multilabel_margin(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Multi-label hinge loss with PyTorch ``MultiLabelMarginLoss`` semantics.

    For each example: ``sum over positive j, negative i of max(0, 1 - (x_j - x_i)) / C``.
    Labels are multi-hot (values above 0.5 count as positive); an example with no
    positive (or no negative) class has loss 0.

    Args:
        labels: ``[batch, C]`` multi-hot targets.
        logits: ``[batch, C]`` scores.

    Returns:
        ``[batch]`` float32 losses.
    """
    logits = tf.cast(logits, tf.float32)
    positive = tf.cast(labels > 0.5, tf.float32)
    # margin[b, j, i] = relu(1 - x_j + x_i) for positive j and negative i
    margin = tf.nn.relu(1.0 - logits[:, :, None] + logits[:, None, :])
    pairs = positive[:, :, None] * (1.0 - positive)[:, None, :]
    num_classes = tf.cast(tf.shape(logits)[-1], tf.float32)
    return tf.reduce_sum(margin * pairs, axis=[1, 2]) / num_classes


LOSSES = {"bce": sigmoid_bce, "hinge": multilabel_margin}
if tuple(LOSSES) != LOSS_NAMES:  # the names' one home is fat_tf.config
    raise ImportError(f"fat_tf.config.LOSS_NAMES {LOSS_NAMES} differ from {tuple(LOSSES)}")


def get_loss(name: str):
    """The per-example loss function called ``name`` (``bce`` or ``hinge``)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}") from None
