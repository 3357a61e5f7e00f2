"""Named starting configs, and the ``--set key=value`` text a command line adds to one.

Presets:
    ``fat2019``: the public mhiro2 log-mel CNN recipe (see ``DESIGN.md``), for GPUs.
    ``small``: the same pipeline at a fraction of the cost (64 mels, a quarter of
    the channels), used by the demo dataset and the tests so a CPU trains in minutes.
"""

from __future__ import annotations

import json
import typing
from typing import Any

from fat_tf.config import (
    Config,
    ConfigError,
    DataConfig,
    FrontEndConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)


def _small_preset() -> Config:
    return Config(
        preset="small",
        frontend=FrontEndConfig(n_mels=64),
        data=DataConfig(batch_size=32, shuffle_buffer=1024),
        model=ModelConfig(channels=(16, 32, 64, 128), head_units=64),
        optim=OptimConfig(lr_max=3e-3),
        train=TrainConfig(steps=1000),
    )


PRESETS: dict[str, typing.Callable[[], Config]] = {
    "fat2019": Config,
    "small": _small_preset,
}


def get_preset(name: str) -> Config:
    """Return the named preset (``fat2019`` or ``small``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``section.field=value`` override; the value is read as JSON if it can be.

    ``data.batch_size=8`` gives ``("data.batch_size", 8)``; ``model.backbone=cnn_skip``
    gives a string; ``model.channels=[8,16,32,64]`` a list; ``frontend.top_db=null`` None.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.field=value")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value
