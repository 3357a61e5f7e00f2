"""Keras layers of fat_tf: the log-mel front end (and, later, augmentation layers)."""

from fat_tf.layers.logmel import LogMel, mel_filterbank

__all__ = ["LogMel", "mel_filterbank"]
