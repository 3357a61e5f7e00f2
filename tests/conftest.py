"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Seed of the ``tiny_demo_dir`` dataset (tests can rebuild its plan with it).
TINY_DEMO_SEED = 0


@pytest.fixture(scope="session")
def tiny_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``tiny`` synthetic FAT2019-layout dataset (seed 0), generated once per session.

    Treat it as read-only: other tests share it.
    """
    from fat_tf.data.demo import generate_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    return generate_demo_dataset(root / "tiny", seed=TINY_DEMO_SEED, size="tiny")
