"""The full tagger: raw waveform -> log-mel -> augmentation -> CNN -> head -> logits.

The tagger is a functional Keras model with three named parts that training methods
reach into (VAT perturbs the log-mel that enters the classifier):

* ``logmel``: :class:`fat_tf.layers.LogMel`, waveform ``[batch, samples]`` to
  ``[batch, frames, mels]``;
* ``augment``: training-only augmentation on the log-mel (identity at inference);
* ``classifier``: backbone + head, log-mel to logits ``[batch, n_classes]``.

Because the front end is inside the model, a saved tagger takes raw 44.1 kHz audio.
"""

from __future__ import annotations

import dataclasses

import keras

from fat_tf.config import BACKBONES, AugmentConfig, Config, ModelConfig
from fat_tf.layers import LogMel
from fat_tf.layers.augment import RandomTimeFlip, RandomTimeShift, SpecAugment
from fat_tf.models.cnn import build_backbone
from fat_tf.models.head import build_head


def classifier_channels(model: ModelConfig) -> int:
    """Channels of the backbone's output (the skip variant accumulates its inputs)."""
    if model.backbone == "cnn_skip":
        return 1 + sum(model.channels)
    return model.channels[-1]


def build_classifier(n_mels: int, n_classes: int, model: ModelConfig) -> keras.Model:
    """Backbone and head as one model on log-mel ``[batch, frames, n_mels]``.

    Args:
        n_mels: mel bands of the input.
        n_classes: number of output logits.
        model: architecture settings.
    """
    if model.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {model.backbone!r}; choose from {BACKBONES}")
    backbone = build_backbone(n_mels, model.channels, skip=model.backbone == "cnn_skip")
    head = build_head(
        classifier_channels(model), n_classes, model.head_units,
        model.dropout1, model.dropout2, model.pooling,
    )
    mel = keras.Input((None, n_mels), name="logmel_input")
    return keras.Model(mel, head(backbone(mel)), name="classifier")


def build_augment(n_mels: int, augment: AugmentConfig, seed: int) -> keras.Sequential:
    """Training-only augmentation of the log-mel (identity at inference).

    Args:
        n_mels: mel bands of the input.
        augment: which augmentations to apply.
        seed: base seed of the random layers.
    """
    layers: list[keras.layers.Layer] = [keras.Input((None, n_mels))]
    if augment.time_flip:
        layers.append(RandomTimeFlip(seed=seed, name="time_flip"))
    if augment.time_shift_frames:
        layers.append(RandomTimeShift(augment.time_shift_frames, seed=seed + 2,
                                      name="time_shift"))
    if augment.time_masks or augment.freq_masks:
        layers.append(
            SpecAugment(
                augment.time_masks, augment.time_mask_frames,
                augment.freq_masks, augment.freq_mask_bins, seed=seed + 1, name="spec_augment",
            )
        )
    return keras.Sequential(layers, name="augment")


def build_tagger(config: Config, n_classes: int, name: str = "tagger") -> keras.Model:
    """Build the waveform-to-logits tagger described by ``config``.

    Args:
        config: run config (front end, augmentation, model, seed are read).
        n_classes: number of classes.
        name: model name.

    Returns:
        functional model ``[batch, samples]`` float32 -> logits ``[batch, n_classes]``.
    """
    n_mels = config.frontend.n_mels
    audio = keras.Input((None,), name="audio")
    logmel = LogMel(**dataclasses.asdict(config.frontend), name="logmel")
    augment = build_augment(n_mels, config.augment, config.train.seed)
    classifier = build_classifier(n_mels, n_classes, config.model)
    logits = classifier(augment(logmel(audio)))
    return keras.Model(audio, logits, name=name)


def tagger_parts(tagger: keras.Model) -> tuple[keras.layers.Layer, keras.Model, keras.Model]:
    """The ``(logmel, augment, classifier)`` parts of a tagger built by :func:`build_tagger`."""
    return tagger.get_layer("logmel"), tagger.get_layer("augment"), tagger.get_layer("classifier")
