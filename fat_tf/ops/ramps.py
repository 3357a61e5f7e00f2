"""Ramp-ups and decay warm-ups as tiny pure functions (after CuriousAI's ``ramps.py``).

Each takes the current position (a float tensor or number, e.g. the fraction of the run
done) and the ramp length in the same unit, and returns a multiplier in [0, 1].
"""

from __future__ import annotations

import tensorflow as tf


def sigmoid_rampup(position, length) -> tf.Tensor:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(position / length, 0, 1)``; 1 if length is 0.

    Args:
        position: progress (e.g. the fraction of the run done).
        length: ramp length in the same unit.
    """
    if length == 0:
        return tf.constant(1.0)
    t = tf.clip_by_value(tf.cast(position, tf.float32) / float(length), 0.0, 1.0)
    return tf.exp(-5.0 * tf.square(1.0 - t))


def linear_rampup(position, length) -> tf.Tensor:
    """``clip(position / length, 0, 1)``; 1 if length is 0.

    Args:
        position: progress (e.g. the fraction of the run done).
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


def ema_decay_for_run(decay: float, total_steps: int, horizon_fraction: float) -> float:
    """The long-run EMA decay to use in a run of ``total_steps`` optimiser steps:
    ``min(decay, 1 - 1 / (horizon_fraction * total_steps))``.

    An EMA with decay ``a`` averages over about ``1 / (1 - a)`` recent steps, and with the
    warm-up of :func:`ema_decay` it is the uniform average of *every* iterate, random start
    included, for the first ``1 / (1 - a)`` steps. Capping that horizon at a fraction of the
    run keeps a short run's teacher an average of recent, trained students (0.999 averages
    1,000 steps: longer than a 600-step run), while long runs keep ``decay``.

    Args:
        decay: the configured long-run decay.
        total_steps: optimiser steps of the run.
        horizon_fraction: longest averaging horizon, as a fraction of the run (0 or
            less: no cap).
    """
    if horizon_fraction <= 0:
        return float(decay)
    horizon = max(1.0, horizon_fraction * total_steps)
    return float(min(decay, 1.0 - 1.0 / horizon))
