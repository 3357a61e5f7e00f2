"""Batch normalisation that trains with TensorFlow's fused kernel.

Keras 3's ``BatchNormalization`` on the TensorFlow backend computes the batch moments,
the normalisation and the moving-average updates as separate element-wise passes. On a
CPU those passes cost about a quarter of the reference CNN's train step.
:class:`FusedBatchNormalization` is a drop-in subclass whose training-mode forward pass
(and its gradient) is TensorFlow's single ``FusedBatchNormV3`` kernel, which also
returns the updated moving statistics. Inference mode, masks, renormalisation and
synchronised (cross-replica) statistics use the parent's code unchanged, so exported
models contain the same plain affine ops as before.

One documented difference from the parent: the kernel updates the moving variance with
the *unbiased* batch variance (divided by ``n - 1``), as PyTorch does (the reference
recipe is a PyTorch kernel); Keras' own layer uses the biased one. The normalisation
itself uses the biased batch variance in both.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_FUSED_DTYPES = (tf.float32, tf.float16, tf.bfloat16)


@keras.saving.register_keras_serializable(package="fat_tf")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with a fused training-mode kernel.

    Accepts the parent's arguments. The fused path applies to channels-last inputs of
    rank 2 to 4 (rank 2 and 3 are viewed as rank 4 with unit spatial dimensions) when
    the layer normalises the last axis and is neither synchronised nor renormalising;
    anything else falls back to the parent implementation.

    Args:
        **kwargs: arguments of ``keras.layers.BatchNormalization`` (``momentum``,
            ``epsilon``, ``center``, ``scale``, ``name``, ...).
    """

    def _fused_applies(self, inputs, mask) -> bool:
        rank = len(inputs.shape)
        return (
            mask is None
            and not self.renorm
            and not self.synchronized
            and 2 <= rank <= 4
            and self.axis in (-1, rank - 1)
            and tf.as_dtype(inputs.dtype) in _FUSED_DTYPES
        )

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or not self._fused_applies(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        shape = tf.shape(inputs)
        x = inputs
        if len(inputs.shape) < 4:  # [B, C] or [B, T, C] -> [B, 1, T, C]
            x = tf.reshape(x, tf.concat([shape[:1], [1, -1], shape[-1:]], axis=0))
        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones((channels,), tf.float32)
        beta = self.beta if self.center else tf.zeros((channels,), tf.float32)
        # float16 inputs keep float16 in the kernel with float32 statistics (U=float)
        y, new_mean, new_variance = tf.compat.v1.nn.fused_batch_norm(
            x,
            tf.cast(gamma, tf.float32),
            tf.cast(beta, tf.float32),
            mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=True,
            exponential_avg_factor=1.0 - self.momentum,
        )
        self.moving_mean.assign(tf.cast(new_mean, self.moving_mean.dtype))
        self.moving_variance.assign(tf.cast(new_variance, self.moving_variance.dtype))
        if len(inputs.shape) < 4:
            y = tf.reshape(y, shape)
        return tf.cast(y, self.compute_dtype)
