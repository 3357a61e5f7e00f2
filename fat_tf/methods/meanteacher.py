"""Mean teacher (Tarvainen & Valpola, 2017) for multi-label tagging."""

from __future__ import annotations

import keras
import tensorflow as tf

from fat_tf.callbacks.ema import ExponentialMovingAverage
from fat_tf.methods.base import Method, averaged_copy
from fat_tf.metrics import Lwlrap


class MeanTeacher(Method):
    """Student trained on labels plus consistency with an EMA teacher.

    The teacher is a copy of the tagger whose every weight (BatchNorm moving statistics
    included) is the exponential moving average of the student's, updated after every
    optimiser step by :class:`fat_tf.callbacks.ema.ExponentialMovingAverage` with coefficient
    ``min(1 - 1/(step+1), decay)``, where ``decay`` is ``ema_decay`` capped so that the
    teacher averages at most ``ema_horizon_fraction`` of the run
    (:func:`fat_tf.ops.ramps.ema_decay_for_run`). Each batch of labelled + unlabelled clips is
    augmented twice (two independent draws of the augmentation layers); the
    consistency loss is the mean squared difference between the student's and the
    teacher's sigmoid outputs on the two views, weighted by
    ``consistency_weight * exp(-5 (1 - t)^2)`` over ``rampup_fraction`` after
    ``unlabelled_start`` (:meth:`~fat_tf.methods.base.Method.unlabelled_rampup`). The teacher is
    what validation scores and what is saved and exported (``export_student`` swaps it);
    validation scores the student too (``student_lwlrap``), and the best checkpoint is
    the better of the two at its best validation.

    Args: see :class:`fat_tf.methods.base.Method`.
    """

    name_in_registry = "meanteacher"
    loss_terms = ("supervised", "consistency")
    uses_unlabelled = True
    averages_weights = True

    def __init__(self, tagger: keras.Model, *args, **kwargs):
        super().__init__(tagger, *args, **kwargs)
        self.teacher = averaged_copy(tagger, "teacher")
        self.teacher_classifier = self.teacher.get_layer("classifier")
        other = "teacher" if self.hparams.export_student else "student"
        self.alternative_lwlrap = {other: Lwlrap(self.num_classes, name=f"{other}_lwlrap")}

    def extra_callbacks(self):
        return [ExponentialMovingAverage(self.tagger, self.teacher, self.run_ema_decay)]

    @property
    def evaluated_model(self):
        return self.tagger if self.hparams.export_student else self.teacher

    @property
    def alternative_models(self):
        if self.hparams.export_student:
            return {"teacher": self.teacher}
        return {"student": self.tagger}

    def compute_losses(self, mel, labels, unlabelled, tape):
        batch = tf.shape(mel)[0]
        both, split = self.labelled_then_unlabelled(mel, unlabelled)
        student_logits = self.classify_training(self.augmented(both), split)
        teacher_view = self.augmented(both)  # an independent augmentation draw
        teacher_logits = tf.stop_gradient(self.teacher_classifier(teacher_view, training=False))
        consistency = tf.reduce_mean(
            tf.square(tf.sigmoid(tf.cast(student_logits, tf.float32))
                      - tf.sigmoid(tf.cast(teacher_logits, tf.float32)))
        )
        weight = self.hparams.consistency_weight * self.unlabelled_rampup()
        return {
            "supervised": (self.supervised_loss(labels, student_logits[:batch]), 1.0),
            "consistency": (consistency, weight),
        }
