"""Log-mel augmentation layers, active only when called with ``training=True``.

All operate on ``[batch, frames, mels]`` log-mel tensors, draw a new random choice per
example, and take their randomness from a seeded ``keras.random.SeedGenerator`` so a run
with a fixed seed is reproducible. At inference they are the identity.
"""

from __future__ import annotations

import keras
from keras import ops


class _RandomLayer(keras.layers.Layer):
    """Base of the augmentation layers: a seed generator and a training switch.

    Subclasses define ``augment(x)``, the random transformation applied in training.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, x, training=None):
        if not training:
            return x
        return self.augment(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="fat_tf")
class RandomTimeFlip(_RandomLayer):
    """Reverse each example along time with probability ``rate``.

    Args:
        rate: flip probability per example.
        seed: seed of the random choice.
        **kwargs: standard Layer arguments.
    """

    def __init__(self, rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.rate = rate

    def augment(self, x):
        flip = keras.random.uniform(ops.shape(x)[:1], seed=self.seed_generator) < self.rate
        return ops.where(flip[:, None, None], ops.flip(x, axis=1), x)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="fat_tf")
class RandomTimeShift(_RandomLayer):
    """Roll each example along time by a random whole number of frames in
    ``[-max_frames, max_frames]`` (circularly, so no frame is lost or invented).

    A shifted view moves every event to another place in the crop, so two views of a
    clip differ even when the time flip draws the same choice for both.

    Args:
        max_frames: largest shift in frames (0 = identity).
        seed: seed of the random choice.
        **kwargs: standard Layer arguments.
    """

    def __init__(self, max_frames: int = 16, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.max_frames = max_frames

    def augment(self, x):
        frames = ops.shape(x)[1]
        shift = ops.floor(keras.random.uniform(ops.shape(x)[:1], seed=self.seed_generator)
                          * (2 * self.max_frames + 1)) - self.max_frames
        source = ops.mod(ops.arange(frames)[None, :] - ops.cast(shift, "int32")[:, None],
                         frames)
        return ops.take_along_axis(x, source[:, :, None], axis=1)

    def get_config(self):
        return {**super().get_config(), "max_frames": self.max_frames}


def _band_mask(batch, length, count, max_width, seed_generator):
    """``[batch, length]`` boolean mask that is True inside ``count`` random bands per
    example, each of width uniform in ``[0, max_width]`` at a uniform position."""
    width = ops.floor(
        keras.random.uniform((batch, count), seed=seed_generator) * (max_width + 1)
    )
    width = ops.minimum(width, ops.cast(length, "float32"))
    start = ops.floor(
        keras.random.uniform((batch, count), seed=seed_generator)
        * (ops.cast(length, "float32") - width + 1)
    )
    position = ops.cast(ops.arange(length), "float32")[None, None, :]
    inside = (position >= start[:, :, None]) & (position < (start + width)[:, :, None])
    return ops.any(inside, axis=1)


@keras.saving.register_keras_serializable(package="fat_tf")
class SpecAugment(_RandomLayer):
    """SpecAugment-style masking: random time and frequency bands set to ``fill``.

    On a standardised log-mel, ``fill=0`` is the clip mean.

    Args:
        time_masks: number of time masks per example.
        time_mask_frames: maximum width of a time mask in frames.
        freq_masks: number of frequency masks per example.
        freq_mask_bins: maximum width of a frequency mask in mel bins.
        fill: value written into masked cells.
        seed: seed of the random choice.
        **kwargs: standard Layer arguments.
    """

    def __init__(
        self,
        time_masks: int = 2,
        time_mask_frames: int = 16,
        freq_masks: int = 2,
        freq_mask_bins: int = 8,
        fill: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(seed=seed, **kwargs)
        self.time_masks = time_masks
        self.time_mask_frames = time_mask_frames
        self.freq_masks = freq_masks
        self.freq_mask_bins = freq_mask_bins
        self.fill = fill

    def augment(self, x):
        batch, frames, mels = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        masked = ops.zeros((batch, frames, mels), dtype="bool")
        if self.time_masks:
            t = _band_mask(batch, frames, self.time_masks, self.time_mask_frames,
                           self.seed_generator)
            masked = masked | t[:, :, None]
        if self.freq_masks:
            f = _band_mask(batch, mels, self.freq_masks, self.freq_mask_bins,
                           self.seed_generator)
            masked = masked | f[:, None, :]
        return ops.where(masked, ops.cast(self.fill, x.dtype), x)

    def get_config(self):
        return {
            **super().get_config(),
            "time_masks": self.time_masks,
            "time_mask_frames": self.time_mask_frames,
            "freq_masks": self.freq_masks,
            "freq_mask_bins": self.freq_mask_bins,
            "fill": self.fill,
        }


@keras.saving.register_keras_serializable(package="fat_tf")
class RandomTimeCrop(_RandomLayer):
    """Crop ``frames`` consecutive frames at a random offset per example (training only).

    Inputs shorter than ``frames`` are zero-padded at the end first. At inference the
    whole input passes through, so a model trained on crops scores any length.

    Args:
        frames: output length in frames.
        seed: seed of the random choice.
        **kwargs: standard Layer arguments.
    """

    def __init__(self, frames: int, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.frames = frames

    def augment(self, x):
        length = ops.shape(x)[1]
        x = ops.pad(x, [[0, 0], [0, ops.maximum(self.frames - length, 0)], [0, 0]])
        slack = ops.cast(ops.shape(x)[1] - self.frames, "float32")
        batch = ops.shape(x)[0]
        start = ops.floor(keras.random.uniform((batch,), seed=self.seed_generator) * (slack + 1))
        index = ops.cast(start, "int32")[:, None] + ops.arange(self.frames)[None, :]
        return ops.take_along_axis(x, index[:, :, None], axis=1)

    def get_config(self):
        return {**super().get_config(), "frames": self.frames}
