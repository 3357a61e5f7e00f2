"""Exponential moving average of a model's weights, as a reusable Keras callback.

:func:`ema_update` is the one update rule; :class:`ExponentialMovingAverage` applies it
after every optimiser step of any Keras model. The average covers *all* weights of the
source model, trainable or not, so BatchNorm moving means and variances are averaged
too; integer state (such as random-seed counters) is copied, not averaged.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from fat_tf.ops.ramps import ema_decay


def ema_update(target: list, source: list, alpha) -> None:
    """``t = alpha * t + (1 - alpha) * s`` for each floating pair; copy the others.

    Args:
        target: variables of the averaged model.
        source: variables of the trained model, in the same order.
        alpha: weight of the old average (a float or a scalar tensor).
    """
    alpha = tf.cast(alpha, tf.float32)
    for t, s in zip(target, source):
        if keras.backend.is_float_dtype(t.dtype):
            a = tf.cast(alpha, t.dtype)
            t.assign(a * t + (1 - a) * tf.cast(s, t.dtype))
        else:
            t.assign(s)


def paired_weights(source: keras.Model, target: keras.Model) -> tuple[list, list]:
    """The weights of two models of the same architecture, paired in order.

    Args:
        source: the trained model.
        target: the averaged model.

    Returns:
        ``(target weights, source weights)``.

    Raises:
        ValueError: the architectures differ.
    """
    s, t = source.weights, target.weights
    if len(s) != len(t) or any(a.shape != b.shape for a, b in zip(s, t)):
        raise ValueError(
            f"cannot average {source.name} into {target.name}: their weights differ "
            f"({len(s)} vs {len(t)} variables)"
        )
    return t, s


class ExponentialMovingAverage(keras.callbacks.Callback):
    """Keep ``target`` an EMA of ``source`` after every training batch.

    The coefficient after optimiser step ``k`` (counting from 0) is
    ``min(1 - 1/(k + 1), decay)``; the step is read from the optimiser of the model being
    fit, so a resumed run continues the same schedule. The update is a compiled
    ``tf.function`` over all weights.

    Args:
        source: the trained model (e.g. the student).
        target: the averaged model (e.g. the teacher), same architecture.
        decay: long-run decay (e.g. 0.999).
        step_variable: optional step counter to read instead of the fitted model's
            optimiser iterations (which count steps already taken).
    """

    def __init__(self, source: keras.Model, target: keras.Model, decay: float,
                 step_variable=None):
        super().__init__()
        self.source = source
        self.target = target
        self.decay = decay
        self.step_variable = step_variable
        self.target_weights, self.source_weights = paired_weights(source, target)
        self._update = tf.function(self._apply)

    def _apply(self, steps_taken):
        alpha = ema_decay(tf.cast(steps_taken, tf.float32) - 1.0, self.decay)
        ema_update(self.target_weights, self.source_weights, alpha)

    def on_train_batch_end(self, batch, logs=None):
        steps = self.step_variable
        if steps is None:
            steps = self.model.optimizer.iterations
        self._update(steps)
