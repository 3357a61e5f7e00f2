"""Running class frequencies for distribution alignment of guessed labels, shared by the
methods that guess labels for unlabelled clips (MixMatch, pseudo-labelling)."""

from __future__ import annotations

import tensorflow as tf

from fat_tf.ops.ssl import align_to_prior

#: Smallest rate of the running class frequencies of distribution alignment.
ALIGNMENT_RATE = 0.01


class ClassFrequencyAlignment:
    """Mixin for a :class:`~fat_tf.methods.base.Method`: the running frequency of each
    class in the labelled targets and the model's running mean guess per class, and
    guesses aligned to the first (:func:`fat_tf.ops.ssl.align_to_prior`).

    The three variables (``label_prior``, ``mean_guess``, ``alignment_updates``) are the
    method's own weights, saved with the run's backup. Call :meth:`add_alignment_state`
    in ``__init__``.
    """

    def add_alignment_state(self) -> None:
        """Create the running means (zeros until the first update)."""
        self.label_prior = self.add_weight(shape=(self.num_classes,), initializer="zeros",
                                           trainable=False, name="label_prior",
                                           aggregation="mean")
        self.mean_guess = self.add_weight(shape=(self.num_classes,), initializer="zeros",
                                          trainable=False, name="mean_guess",
                                          aggregation="mean")
        self.alignment_updates = self.add_weight(shape=(), initializer="zeros",
                                                 trainable=False, name="alignment_updates",
                                                 aggregation="only_first_replica")

    def update_alignment(self, labels: tf.Tensor, probabilities: tf.Tensor) -> None:
        """Fold one batch into the running means (the first batches count equally, then
        an exponential average over about ``1 / ALIGNMENT_RATE`` batches).

        Args:
            labels: ``[B, C]`` labelled targets.
            probabilities: ``[B_u, C]`` unaligned guesses.
        """
        rate = tf.maximum(1.0 / (self.alignment_updates + 1.0), ALIGNMENT_RATE)
        for variable, batch in ((self.label_prior, labels), (self.mean_guess, probabilities)):
            mean = tf.reduce_mean(tf.cast(batch, tf.float32), axis=0)
            variable.assign(variable + rate * (tf.stop_gradient(mean) - variable))
        self.alignment_updates.assign_add(1.0)

    def aligned_guesses(self, probabilities: tf.Tensor, labels: tf.Tensor | None
                        ) -> tuple[tf.Tensor, tf.Tensor]:
        """Fold the batch into the running means (when ``labels`` is given) and align
        ``probabilities`` to the labelled class frequencies.

        Args:
            probabilities: ``[B_u, C]`` guessed probabilities.
            labels: ``[B, C]`` labelled targets of the same step, or None.

        Returns:
            the aligned ``[B_u, C]`` guesses and the ``[C]`` class frequencies (clipped
            to [1e-4, 1 - 1e-4]).
        """
        if labels is not None:
            self.update_alignment(labels, probabilities)
        prior = tf.clip_by_value(self.label_prior, 1e-4, 1.0 - 1e-4)
        return align_to_prior(probabilities, prior, self.mean_guess), prior
