"""The reference log-mel CNN backbone (mhiro2's FAT2019 kernel) and its skip variant."""

from __future__ import annotations

import keras

from fat_tf.layers.normalization import FusedBatchNormalization

# PyTorch's BatchNorm default (momentum 0.1 there = 0.9 in Keras' convention): the
# reference recipe's statistics adapt within tens of steps, not hundreds.
BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="fat_tf")
class ConvBlock(keras.layers.Layer):
    """[conv3x3 - BatchNorm - ReLU] x 2, then 2x2 average pooling.

    The convolutions have no bias (BatchNorm's offset plays that role). With
    ``skip=True`` the block's input is concatenated with its output along channels
    before pooling (the DenseNet-like variant), so it emits ``in + filters`` channels.

    Args:
        filters: output channels of both convolutions.
        skip: concatenate input and output before pooling.
        **kwargs: standard Layer arguments (name, dtype, ...).
    """

    def __init__(self, filters: int, skip: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.skip = skip
        self.convs = []
        self.norms = []
        for i in range(2):
            self.convs.append(
                keras.layers.Conv2D(
                    filters, 3, padding="same", use_bias=False,
                    kernel_initializer="he_normal", name=f"conv{i + 1}",
                )
            )
            self.norms.append(
                FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"bn{i + 1}")
            )
        self.pool = keras.layers.AveragePooling2D(2, name="pool")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = shape[:-1] + (self.filters,)
            norm.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for conv, norm in zip(self.convs, self.norms):
            x = keras.ops.relu(norm(conv(x), training=training))
        if self.skip:
            x = keras.ops.concatenate([inputs, x], axis=-1)
        return self.pool(x)

    def compute_output_shape(self, input_shape):
        b, t, f, c = input_shape
        channels = self.filters + (c if self.skip else 0)
        return (b, None if t is None else t // 2, None if f is None else f // 2, channels)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "skip": self.skip}


def build_backbone(
    n_mels: int, channels: tuple[int, ...], skip: bool = False, name: str = "backbone"
) -> keras.Sequential:
    """The CNN on log-mel ``[batch, frames, mels]``: one :class:`ConvBlock` per entry of
    ``channels``; output ``[batch, frames / 2^k, mels / 2^k, C]``.

    Args:
        n_mels: number of mel bands of the input.
        channels: output channels of each block (the reference uses 64, 128, 256, 512).
        skip: use the DenseNet-like skip variant.
        name: model name.
    """
    layers = [
        keras.Input((None, n_mels)),
        keras.layers.Reshape((-1, n_mels, 1), name="add_channel"),
    ]
    layers += [ConvBlock(c, skip=skip, name=f"block{i + 1}") for i, c in enumerate(channels)]
    return keras.Sequential(layers, name=name)
