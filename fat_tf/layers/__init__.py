"""Keras layers of fat_tf: the log-mel front end, augmentation and fused batch norm."""

from fat_tf.layers.logmel import LogMel, mel_filterbank
from fat_tf.layers.normalization import FusedBatchNormalization

__all__ = ["FusedBatchNormalization", "LogMel", "mel_filterbank"]
