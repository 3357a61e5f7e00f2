"""The configs in experiments/fat2019/ load, validate and resolve through the train CLI."""

from pathlib import Path

import pytest

from fat_tf.cli import config_from_args
from fat_tf.config import Config
from fat_tf.train import build_parser

FAT2019 = Path(__file__).resolve().parents[1] / "experiments" / "fat2019"
BACKBONES = {"reference_cnn.json": "cnn", "reference_cnn_skip.json": "cnn_skip"}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_fat2019_configs_load_and_validate(name):
    path = FAT2019 / name
    config = Config.from_json(path)
    assert config.preset == "fat2019"
    assert config.model.backbone == BACKBONES[name]
    assert config.model.channels == (64, 128, 256, 512) and config.frontend.n_mels == 128
    assert config.train.method == "supervised" and config.data.noisy_usage == "none"
    # exactly what `python -m fat_tf.train --config FILE` resolves
    args = build_parser().parse_args(["--config", str(path), "--seed", "3"])
    resolved = config_from_args(args)
    assert resolved.train.seed == 3 and resolved.model == config.model
    # the two configs differ only in the backbone
    other = Config.from_json(FAT2019 / (set(BACKBONES) - {name}).pop())
    assert config.replace(**{"model.backbone": other.model.backbone}) == other
