"""mixup on the labelled batch: convex combinations of log-mels and of their labels."""

from __future__ import annotations

import keras
import tensorflow as tf

from fat_tf.methods.base import Method
from fat_tf.ops import sampling
from fat_tf.ops.ssl import mix


class Mixup(Method):
    """Supervised learning on mixed pairs (Zhang et al., 2018).

    Each example is mixed with a random partner of the same batch: the log-mels (after
    the front end and augmentation) and the multi-hot labels are combined with the same
    ``lambda ~ Beta(alpha, alpha)``, drawn per example. ``hparams.mixup_alpha`` sets alpha.

    Args: see :class:`fat_tf.methods.base.Method`.
    """

    name_in_registry = "mixup"
    loss_terms = ("mixup",)

    def compute_losses(self, mel, labels, unlabelled, tape):
        features = self.augmented(mel)
        batch = tf.shape(features)[0]
        alpha = self.hparams.mixup_alpha
        lam = sampling.beta((batch,), alpha, alpha, seed=self.seed_generator)
        partner = tf.argsort(keras.random.uniform((batch,), seed=self.seed_generator))
        mixed = mix(features, tf.gather(features, partner), lam)
        targets = mix(tf.cast(labels, tf.float32), tf.gather(labels, partner), lam)
        logits = self.classifier(mixed, training=True)
        return {"mixup": (self.supervised_loss(targets, logits), 1.0)}
