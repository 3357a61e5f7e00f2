"""An exponential moving average of the weights that guesses labels for unlabelled clips,
shared by the methods that guess (MixMatch, pseudo-labelling)."""

from __future__ import annotations

import keras

from fat_tf.callbacks.ema import ExponentialMovingAverage
from fat_tf.methods.base import averaged_copy


class GuessingTeacher:
    """Mixin for a :class:`~fat_tf.methods.base.Method`: guess with a mean-teacher-style
    average of the trained weights (BatchNorm statistics included) instead of the
    current ones, so the guesses change slowly and one step's swing is not fed back at
    once.

    The average is the run's ``evaluation_ema`` model when that is on, else a
    ``teacher`` of its own, updated after every optimiser step like mean teacher's
    (``ema_decay`` capped by ``ema_horizon_fraction``). Call
    :meth:`add_guessing_teacher` in ``__init__``.
    """

    def add_guessing_teacher(self, enabled: bool) -> None:
        """Make the teacher (when ``enabled`` and no evaluation average exists).

        Args:
            enabled: guess with the average (True) or with the current weights (False).
        """
        self.guesses_with_teacher = bool(enabled)
        self.teacher = None
        if self.guesses_with_teacher and self.averaged is None:
            self.teacher = averaged_copy(self.tagger, "teacher")

    def extra_callbacks(self) -> list[keras.callbacks.Callback]:
        callbacks = super().extra_callbacks()
        if self.teacher is not None:
            callbacks.append(
                ExponentialMovingAverage(self.tagger, self.teacher, self.run_ema_decay))
        return callbacks

    @property
    def guessing_classifier(self) -> keras.layers.Layer:
        """The classifier that makes the guesses: the current one, or the averaged
        model's when guessing with the teacher."""
        if not self.guesses_with_teacher:
            return self.classifier
        averaged = self.teacher if self.teacher is not None else self.averaged
        return averaged.get_layer("classifier")
