"""Ramp-ups and decay warm-ups as tiny pure functions (after CuriousAI's ``ramps.py``).

Each takes the current position (a float tensor or number, e.g. epochs done) and the
ramp length in the same unit, and returns a multiplier in [0, 1].
"""

from __future__ import annotations

import tensorflow as tf


def sigmoid_rampup(position, length) -> tf.Tensor:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(position / length, 0, 1)``; 1 if length is 0.

    Args:
        position: progress (e.g. epochs done).
        length: ramp length in the same unit.
    """
    if length == 0:
        return tf.constant(1.0)
    t = tf.clip_by_value(tf.cast(position, tf.float32) / float(length), 0.0, 1.0)
    return tf.exp(-5.0 * tf.square(1.0 - t))


def linear_rampup(position, length) -> tf.Tensor:
    """``clip(position / length, 0, 1)``; 1 if length is 0.

    Args:
        position: progress (e.g. epochs done).
        length: ramp length in the same unit.
    """
    if length == 0:
        return tf.constant(1.0)
    return tf.clip_by_value(tf.cast(position, tf.float32) / float(length), 0.0, 1.0)


def ema_decay(step, decay: float) -> tf.Tensor:
    """Mean-teacher EMA coefficient ``min(1 - 1/(step + 1), decay)``.

    At step 0 it is 0 (the teacher becomes a copy of the student), so early teachers are
    true averages of the student so far instead of being dominated by the random init.

    Args:
        step: number of the optimiser step just taken, counting from 0.
        decay: the long-run decay.
    """
    step = tf.cast(step, tf.float32)
    return tf.minimum(1.0 - 1.0 / (step + 1.0), decay)
