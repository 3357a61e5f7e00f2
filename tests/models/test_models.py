"""Shapes, hand-counted parameters and config round trips of the backbone, head and tagger."""

import keras
import numpy as np
import pytest

from fat_tf.models import ConvBlock, GlobalTimeFreqPool, build_backbone, build_head
from fat_tf.models.tagger import build_classifier, build_tagger, tagger_parts
from fat_tf.presets import get_preset


def block_params(cin, cout):
    """Two bias-free 3x3 convs and two BatchNorms (gamma, beta, moving mean, variance)."""
    return 9 * cin * cout + 4 * cout + 9 * cout * cout + 4 * cout


def head_params(cin, units, classes):
    """PReLU (one shared slope), hidden Dense, BatchNorm, logits Dense."""
    return 1 + (cin * units + units) + 4 * units + (units * classes + classes)


@pytest.mark.parametrize("skip", [False, True])
def test_backbone_shapes_and_hand_counted_params(skip):
    channels = (4, 8, 16, 32)
    backbone = build_backbone(64, channels, skip=skip)
    out = backbone(np.zeros((2, 128, 64), np.float32))
    expected_channels = 1 + sum(channels) if skip else channels[-1]
    assert tuple(out.shape) == (2, 8, 4, expected_channels)
    cin, total = 1, 0
    for c in channels:
        total += block_params(cin, c)
        cin = cin + c if skip else c
    assert backbone.count_params() == total


def test_reference_backbone_param_count():
    # reference widths: 37,952 + 222,208 + 886,784 + 3,543,040 weights, block by block
    backbone = build_backbone(128, (64, 128, 256, 512))
    expected = sum(block_params(a, b) for a, b in [(1, 64), (64, 128), (128, 256), (256, 512)])
    assert backbone.count_params() == expected == 4_689_984


def test_skip_block_concatenates_input():
    block = ConvBlock(3, skip=True)
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 2)).astype(np.float32)
    out = keras.ops.convert_to_numpy(block(x))
    assert out.shape == (1, 2, 2, 5)
    # the first channels are the average-pooled input itself
    pooled = x.reshape(1, 2, 2, 2, 2, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(out[..., :2], pooled, rtol=1e-5, atol=1e-6)


def test_pooling_orders():
    x = np.arange(2 * 3 * 4 * 1, dtype=np.float32).reshape(2, 3, 4, 1)  # [b, time, freq, c]
    a = keras.ops.convert_to_numpy(GlobalTimeFreqPool("time_mean_freq_max")(x))
    b = keras.ops.convert_to_numpy(GlobalTimeFreqPool("freq_mean_time_max")(x))
    np.testing.assert_allclose(a, x.mean(axis=1).max(axis=1))
    np.testing.assert_allclose(b, x.mean(axis=2).max(axis=1))
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="pooling order"):
        GlobalTimeFreqPool("sideways")


def test_head_params_and_shape():
    head = build_head(32, 10, units=16)
    out = head(np.zeros((3, 2, 2, 32), np.float32))
    assert tuple(out.shape) == (3, 10)
    assert head.count_params() == head_params(32, 16, 10)


def test_tagger_end_to_end_shape_and_parts():
    config = get_preset("small").replace(**{"model.channels": [4, 8, 8, 8], "model.head_units": 8})
    tagger = build_tagger(config, 7)
    audio = np.random.default_rng(0).normal(size=(2, config.crop_samples)).astype(np.float32)
    logits = keras.ops.convert_to_numpy(tagger(audio))
    assert logits.shape == (2, 7) and np.all(np.isfinite(logits))
    logmel, augment, classifier = tagger_parts(tagger)
    mel = logmel(audio)
    assert tuple(mel.shape) == (2, config.data.crop_frames, config.frontend.n_mels)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(classifier(augment(mel))), logits, rtol=1e-5, atol=1e-5
    )
    # any length works at inference (the front end and global pooling are length-free)
    assert tuple(tagger(audio[:, :50_000]).shape) == (2, 7)


def test_tagger_params_match_hand_count():
    config = get_preset("small")
    tagger = build_tagger(config, 12)
    channels = config.model.channels
    expected = sum(block_params(a, b) for a, b in zip((1,) + channels[:-1], channels))
    expected += head_params(channels[-1], config.model.head_units, 12)
    assert tagger.count_params() == expected


def test_get_config_round_trips(tmp_path):
    config = get_preset("small").replace(
        **{"model.channels": [4, 8, 8, 8], "model.backbone": "cnn_skip",
           "augment.time_masks": 1, "augment.freq_masks": 1}
    )
    classifier = build_classifier(64, 5, config.model)
    clone = keras.Model.from_config(classifier.get_config())
    assert clone.count_params() == classifier.count_params()
    tagger = build_tagger(config, 5)
    audio = np.random.default_rng(1).normal(size=(1, 30_000)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(tagger(audio))
    tagger.save(tmp_path / "t.keras")
    reloaded = keras.models.load_model(tmp_path / "t.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(audio)), expected,
                               rtol=1e-5, atol=1e-5)
    for layer in (ConvBlock(8, skip=True), GlobalTimeFreqPool("freq_mean_time_max")):
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()
