"""The tagger head: global pooling of CNN features, then a small MLP to logits."""

from __future__ import annotations

import keras

from fat_tf.config import POOLING_ORDERS  # their one home
from fat_tf.layers.normalization import FusedBatchNormalization
from fat_tf.models.cnn import BN_MOMENTUM


@keras.saving.register_keras_serializable(package="fat_tf")
class GlobalTimeFreqPool(keras.layers.Layer):
    """Pool ``[batch, time, freq, channels]`` to ``[batch, channels]``.

    ``time_mean_freq_max`` (the reference kernel's ``mean(dim=3)`` then ``max(dim=2)``
    on PyTorch's ``(batch, channels, mels, frames)``): mean over time, then max over
    frequency. ``freq_mean_time_max`` (PANNs): mean over frequency, then max over time.

    Args:
        order: one of :data:`POOLING_ORDERS`.
        **kwargs: standard Layer arguments.
    """

    def __init__(self, order: str = "time_mean_freq_max", **kwargs):
        super().__init__(**kwargs)
        if order not in POOLING_ORDERS:
            raise ValueError(f"pooling order must be one of {POOLING_ORDERS}, got {order!r}")
        self.order = order

    def call(self, x):
        if self.order == "time_mean_freq_max":
            return keras.ops.max(keras.ops.mean(x, axis=1), axis=1)
        return keras.ops.max(keras.ops.mean(x, axis=2), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "order": self.order}


def build_head(
    in_channels: int,
    n_classes: int,
    units: int = 128,
    dropout1: float = 0.2,
    dropout2: float = 0.1,
    pooling: str = "time_mean_freq_max",
    name: str = "head",
) -> keras.Sequential:
    """Pooling, dropout, Dense + PReLU + BatchNorm, dropout, Dense logits.

    PReLU has one shared slope initialised to 0.25, as PyTorch's ``nn.PReLU()``.

    Args:
        in_channels: channels of the CNN features.
        n_classes: number of output logits.
        units: hidden width.
        dropout1: dropout rate before the hidden layer.
        dropout2: dropout rate before the logits layer.
        pooling: pooling order (see :class:`GlobalTimeFreqPool`).
        name: model name.
    """
    return keras.Sequential(
        [
            keras.Input((None, None, in_channels)),
            GlobalTimeFreqPool(pooling, name="pool"),
            keras.layers.Dropout(dropout1, name="dropout1"),
            keras.layers.Dense(units, name="hidden"),
            keras.layers.PReLU(
                alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1], name="prelu"
            ),
            FusedBatchNormalization(momentum=BN_MOMENTUM, name="bn"),
            keras.layers.Dropout(dropout2, name="dropout2"),
            keras.layers.Dense(n_classes, dtype="float32", name="logits"),
        ],
        name=name,
    )
