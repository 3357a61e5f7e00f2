"""Backbones, head and the full waveform-to-logits tagger."""

from fat_tf.models.cnn import ConvBlock, build_backbone
from fat_tf.models.head import GlobalTimeFreqPool, build_head
from fat_tf.models.tagger import build_classifier, build_tagger, tagger_parts

__all__ = [
    "ConvBlock",
    "GlobalTimeFreqPool",
    "build_backbone",
    "build_classifier",
    "build_head",
    "build_tagger",
    "tagger_parts",
]
