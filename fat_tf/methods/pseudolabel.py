"""Confidence-masked pseudo-labelling for multi-label tagging (FixMatch's scheme with
UPS's per-class pseudo-labels: positive ones, and negative ones when asked)."""

from __future__ import annotations

import tensorflow as tf

from fat_tf.methods.alignment import ClassFrequencyAlignment
from fat_tf.methods.base import Method
from fat_tf.methods.guessing_teacher import GuessingTeacher
from fat_tf.ops.ssl import confident_pseudo_labels


class PseudoLabel(GuessingTeacher, ClassFrequencyAlignment, Method):
    """Train on the model's own confident guesses for unlabelled clips.

    Each step, the model in inference mode (no dropout, BatchNorm moving statistics, no
    augmentation: the weak view) scores the unlabelled log-mel. With
    ``pseudo_label_alignment`` (the default) the probabilities are first aligned to the
    labelled class frequencies, per class, as MixMatch's guesses are
    (:class:`~fat_tf.methods.alignment.ClassFrequencyAlignment`): a class the model
    starts to guess for every clip is scaled down, so each class has its own effective
    threshold ``positive * mean_guess_c / frequency_c``. Without it, the first Kitchen20
    run collapsed: one class after another became confident on most clips, the
    pseudo-labels reinforced them and validation lwlrap fell from 0.47 to 0.21 (random
    is 0.195) by mid-run. Every class of every clip whose (aligned) probability is at
    least ``pseudo_label_positive`` becomes a positive target, with
    ``pseudo_label_negative > 0`` (UPS; off by default) one at most that a negative
    target, and the rest is masked out (:func:`fat_tf.ops.ssl.confident_pseudo_labels`).
    The training pass sees the augmented view (the strong view: the configured
    augmentation) of the labelled and unlabelled clips in one batch (or BatchNorm
    statistics from the labelled part, see ``batchnorm_statistics``). Loss: the
    supervised BCE on the labelled part (noisy labels weighted as in
    :meth:`~fat_tf.methods.base.Method.supervised_loss`) plus ``pseudo_label_weight``
    times the sigmoid ramp after ``unlabelled_start``
    (:meth:`~fat_tf.methods.base.Method.unlabelled_rampup`) times the masked BCE

        sum(mask * bce(target, logit)) / (B_u * C),

    normalised by every entry, confident or not (as FixMatch divides by the batch), so
    the term grows as the model grows confident. Without an unlabelled stream the
    labelled clips are guessed for instead. With ``pseudo_label_teacher`` the guesses
    come from an exponential moving average of the weights (BatchNorm statistics
    included) instead of the current ones: the run's ``evaluation_ema`` average when
    that is on, else a ``teacher`` of its own, updated after every optimiser step like
    mean teacher's (:class:`~fat_tf.methods.guessing_teacher.GuessingTeacher`).

    Args: see :class:`fat_tf.methods.base.Method`.
    """

    name_in_registry = "pseudolabel"
    loss_terms = ("supervised", "pseudo_label")
    uses_unlabelled = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_alignment_state()
        self.add_guessing_teacher(self.hparams.pseudo_label_teacher)

    def guess(self, unlabelled_mel: tf.Tensor, labels: tf.Tensor | None
              ) -> tuple[tf.Tensor, tf.Tensor]:
        """Pseudo-labels of the un-augmented ``unlabelled_mel``: ``(targets, mask)``.

        Args:
            unlabelled_mel: ``[B_u, T, F]`` log-mel.
            labels: the labelled batch's ``[B, C]`` targets (folded into the class
                frequencies when ``pseudo_label_alignment`` is on), or None.
        """
        h = self.hparams
        logits = self.guessing_classifier(unlabelled_mel, training=False)
        probabilities = tf.sigmoid(tf.cast(logits, tf.float32))
        if h.pseudo_label_alignment:
            probabilities, _ = self.aligned_guesses(probabilities, labels)
        return confident_pseudo_labels(probabilities, h.pseudo_label_positive,
                                       h.pseudo_label_negative)

    def compute_losses(self, mel, labels, unlabelled, tape):
        batch = tf.shape(mel)[0]
        guessed = mel if unlabelled is None else unlabelled
        with tape.stop_recording():
            targets, mask = self.guess(guessed, labels[:, :self.num_classes])
        both, split = self.labelled_then_unlabelled(mel, unlabelled)
        logits = self.classify_training(self.augmented(both), split)
        guessed_logits = logits[:batch] if unlabelled is None else logits[batch:]
        per_entry = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=targets, logits=tf.cast(guessed_logits, tf.float32))
        pseudo = tf.reduce_sum(mask * per_entry) / tf.cast(tf.size(mask), tf.float32)
        weight = self.hparams.pseudo_label_weight * self.unlabelled_rampup()
        return {
            "supervised": (self.supervised_loss(labels, logits[:batch]), 1.0),
            "pseudo_label": (pseudo, weight),
        }
