"""Virtual adversarial training (Miyato et al., 2018) for multi-label outputs."""

from __future__ import annotations

import keras
import tensorflow as tf

from fat_tf.methods.base import DropoutMasks, Method, frozen_batchnorm_statistics
from fat_tf.ops.ssl import binary_kl, normalize_per_example


class VAT(Method):
    """Supervised loss plus the virtual adversarial loss on labelled + unlabelled clips.

    On the log-mel ``x`` that enters the classifier (after front end and augmentation):

    1. clean logits ``f(x)`` (this pass trains the classifier and updates BatchNorm);
    2. ``d ~ N(0, I)`` normalised per example; for ``ip`` power iterations,
       ``d = normalise(grad_d D(stop_grad f(x), f(x + xi d)))``;
    3. ``r_adv = eps * d``; loss ``D(stop_grad f(x), f(x + r_adv))``, averaged over clips,

    where ``D`` is the per-class binary KL averaged over classes (sigmoid, not softmax;
    the mean, like the supervised BCE).
    The perturbed passes run with BatchNorm on batch statistics but leave its moving
    statistics untouched, and replay the clean pass's dropout masks
    (:class:`~fat_tf.methods.base.DropoutMasks`), so ``D`` measures the perturbation,
    not two dropout draws. Hyperparameters: ``vat_xi`` (10, the FAT2019 write-up; the
    paper's 1e-6 also works), ``vat_eps``, ``vat_ip``, ``vat_weight`` ramped up with a
    sigmoid over ``rampup_fraction`` after ``unlabelled_start``.

    Args: see :class:`fat_tf.methods.base.Method`.
    """

    name_in_registry = "vat"
    loss_terms = ("supervised", "vat")
    uses_unlabelled = True

    def adversarial_direction(self, features: tf.Tensor, clean_logits: tf.Tensor,
                              masks: DropoutMasks | None = None,
                              labelled: tf.Tensor | int | None = None) -> tf.Tensor:
        """Unit-norm (per example) direction of steepest divergence increase, by ``ip``
        power iterations from a random start.

        Args:
            features: ``[B, T, F]`` classifier inputs.
            clean_logits: ``[B, C]`` logits of the clean inputs (treated as constant).
            masks: when given, every perturbed pass replays the clean pass's dropout
                masks, so the divergence measures the perturbation alone.
            labelled: number of labelled rows first in ``features``, ``None`` when
                all are (see :meth:`~fat_tf.methods.base.Method.classify_training`).
        """
        target = tf.stop_gradient(clean_logits)
        d = normalize_per_example(
            keras.random.normal(tf.shape(features), seed=self.seed_generator)
        )
        with frozen_batchnorm_statistics(self.classifier):
            for _ in range(self.hparams.vat_ip):
                if masks is not None:
                    masks.replay()
                with tf.GradientTape() as inner:
                    inner.watch(d)
                    perturbed = features + self.hparams.vat_xi * tf.cast(d, features.dtype)
                    divergence = tf.reduce_mean(
                        binary_kl(target, self.classify_training(perturbed, labelled))
                    )
                    # under mixed_float16 the float16 backward pass would underflow for
                    # small divergences: scale like the main loss (normalising cancels it)
                    scaled = self.scaled_for_gradients(divergence)
                d = normalize_per_example(inner.gradient(scaled, d))
        return tf.stop_gradient(d)

    def compute_losses(self, mel, labels, unlabelled, tape):
        batch = tf.shape(mel)[0]
        both, split = self.labelled_then_unlabelled(mel, unlabelled)
        features = self.augmented(both)
        masks = DropoutMasks(self.classifier)
        masks.record()
        logits = self.classify_training(features, split)
        with tape.stop_recording():
            d = self.adversarial_direction(features, logits, masks, split)
        r_adv = self.hparams.vat_eps * tf.cast(d, features.dtype)
        masks.replay()
        with frozen_batchnorm_statistics(self.classifier):
            adv_logits = self.classify_training(features + r_adv, split)
        vat_loss = tf.reduce_mean(binary_kl(tf.stop_gradient(logits), adv_logits))
        weight = self.hparams.vat_weight * self.unlabelled_rampup()
        return {
            "supervised": (self.supervised_loss(labels, logits[:batch]), 1.0),
            "vat": (vat_loss, weight),
        }
