"""MixMatch (Berthelot et al., 2019) with per-class (sigmoid) label guessing."""

from __future__ import annotations

import keras
import tensorflow as tf

from fat_tf.methods.alignment import ClassFrequencyAlignment
from fat_tf.methods.base import Method, frozen_batchnorm_statistics
from fat_tf.methods.guessing_teacher import GuessingTeacher
from fat_tf.ops import sampling
from fat_tf.ops.ramps import linear_rampup
from fat_tf.ops.ssl import mix, sharpen, sharpen_around


class MixMatch(GuessingTeacher, ClassFrequencyAlignment, Method):
    """Guess sharpened labels for unlabelled clips, mix everything, train on the mix.

    1. ``K = mixmatch_k`` augmentation draws of each unlabelled log-mel; the guess is the
       mean of the K per-class sigmoid probabilities, sharpened per class in logit space
       ``p^(1/T) / (p^(1/T) + (1-p)^(1/T))`` with ``T = mixmatch_temperature`` (never
       ``sigmoid(T * p)``, which pins targets near 0.5). With ``mixmatch_alignment``
       the mean is first aligned to the labelled class frequencies (each class scaled by
       its frequency over the model's running mean guess, clipped to [0, 1]) and then
       sharpened around the class frequency instead of 0.5 (multi-label clips have
       ~1.2 classes on of C: around 0.5 an early model's guesses all sharpen to 0).
       The K passes run in training mode (dropout on, BatchNorm on the views' batch
       statistics, moving statistics left as they were), or with ``mixmatch_teacher``
       through an exponential moving average of the weights in inference mode, as
       interpolation consistency training (Verma et al., 2019) guesses
       (:class:`~fat_tf.methods.guessing_teacher.GuessingTeacher`).
    2. ``W`` = labelled and unlabelled views with their targets, shuffled; each example
       is mixed with one of ``W`` using ``lambda' = max(lambda, 1 - lambda)``,
       ``lambda ~ Beta(alpha, alpha)`` per example (``alpha = mixmatch_alpha``), so it
       stays closer to itself.
    3. Mixed labelled and unlabelled examples go through the classifier (in one batch,
       or BatchNorm's moving statistics from the labelled part only, see
       ``batchnorm_statistics``). Loss: BCE on the labelled part (noisy labels weighted
       as in :meth:`~fat_tf.methods.base.Method.supervised_loss`; a guess counts as a
       curated target) plus ``mixmatch_weight`` times a linear ramp after
       ``unlabelled_start`` times the squared error of the unlabelled part's
       probabilities against its mixed guesses.
    4. With ``evaluation_ema`` at its default (``auto``) validation scores, and the run
       saves and exports, an exponential moving average of the weights, as the
       reference implementation evaluates.

    Args: see :class:`fat_tf.methods.base.Method`.
    """

    name_in_registry = "mixmatch"
    loss_terms = ("supervised", "unlabelled")
    uses_unlabelled = True
    # evaluation_ema=auto: validate, save and export an EMA of the weights, as the
    # reference implementation evaluates
    evaluation_ema_by_default = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_alignment_state()
        self.add_guessing_teacher(self.hparams.mixmatch_teacher)

    def guess_labels(self, unlabelled_mel: tf.Tensor, labels: tf.Tensor | None = None
                     ) -> tuple[list[tf.Tensor], tf.Tensor]:
        """K augmented views of the unlabelled log-mel and their sharpened guesses.

        Args:
            unlabelled_mel: ``[B_u, T, F]`` log-mel.
            labels: the labelled batch's targets, folded into the class frequencies when
                ``mixmatch_alignment`` is on.

        Returns:
            the K views and the ``[B_u, C]`` guessed targets (constant).
        """
        views = [self.augmented(unlabelled_mel) for _ in range(self.hparams.mixmatch_k)]
        if self.guesses_with_teacher:
            logits = [self.guessing_classifier(v, training=False) for v in views]
        else:
            with frozen_batchnorm_statistics(self.classifier):
                logits = [self.classifier(v, training=True) for v in views]
        probabilities = [tf.sigmoid(tf.cast(view_logits, tf.float32)) for view_logits in logits]
        mean = tf.add_n(probabilities) / len(probabilities)
        if not self.hparams.mixmatch_alignment:
            return views, tf.stop_gradient(sharpen(mean, self.hparams.mixmatch_temperature))
        aligned, prior = self.aligned_guesses(mean, labels)
        guess = sharpen_around(aligned, prior, self.hparams.mixmatch_temperature)
        return views, tf.stop_gradient(guess)

    def compute_losses(self, mel, labels, unlabelled, tape):
        k = self.hparams.mixmatch_k
        labelled_view = self.augmented(mel)
        batch = tf.shape(labelled_view)[0]
        views, guess = self.guess_labels(unlabelled, labels[:, :self.num_classes])
        if labels.shape[-1] == self.num_classes + 1:  # noisy-label flag: guesses get 0
            guess = tf.pad(guess, [[0, 0], [0, 1]])
        inputs = tf.concat([labelled_view, *views], axis=0)
        targets = tf.concat([tf.cast(labels, tf.float32)] + [guess] * k, axis=0)
        total = tf.shape(inputs)[0]
        partner = tf.argsort(keras.random.uniform((total,), seed=self.seed_generator))
        alpha = self.hparams.mixmatch_alpha
        lam = sampling.beta((total,), alpha, alpha, seed=self.seed_generator)
        lam = tf.maximum(lam, 1.0 - lam)
        mixed = mix(inputs, tf.gather(inputs, partner), lam)
        mixed_targets = mix(targets, tf.gather(targets, partner), lam)
        logits = self.classify_training(mixed, batch)
        supervised = self.supervised_loss(mixed_targets[:batch], logits[:batch])
        unlabelled_loss = tf.reduce_mean(tf.square(
            tf.sigmoid(tf.cast(logits[batch:], tf.float32))
            - mixed_targets[batch:, :self.num_classes]))
        weight = self.hparams.mixmatch_weight * self.unlabelled_rampup(linear_rampup)
        return {"supervised": (supervised, 1.0), "unlabelled": (unlabelled_loss, weight)}
