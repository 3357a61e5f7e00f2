"""Keras callbacks of a training run. Every file they write appears atomically.

* :mod:`fat_tf.callbacks.checkpoint` — :class:`AtomicBackupAndRestore` (resumable
  backups committed by one atomic rename) and :func:`atomic_save_model`;
* :mod:`fat_tf.callbacks.records` — :class:`MetricsCSV` (one row per epoch) and
  :class:`SaveBestModel` (the best model so far) and :class:`SaveValidationPredictions`
  (every validation's clip logits);
* :mod:`fat_tf.callbacks.nonfinite` — :class:`StopOnNonFiniteLoss`;
* :mod:`fat_tf.callbacks.ema` — :class:`ExponentialMovingAverage` of a model's weights
  (mean teacher's teacher).

The callbacks import nothing of training, methods or distribution, so a method may use
them (:mod:`fat_tf.methods.meanteacher` uses the EMA).
"""

from fat_tf.callbacks.checkpoint import AtomicBackupAndRestore, atomic_save_model
from fat_tf.callbacks.ema import ExponentialMovingAverage
from fat_tf.callbacks.nonfinite import NonFiniteLossError, StopOnNonFiniteLoss
from fat_tf.callbacks.records import MetricsCSV, SaveBestModel, SaveValidationPredictions

__all__ = [
    "AtomicBackupAndRestore",
    "ExponentialMovingAverage",
    "MetricsCSV",
    "NonFiniteLossError",
    "SaveBestModel",
    "SaveValidationPredictions",
    "StopOnNonFiniteLoss",
    "atomic_save_model",
]
