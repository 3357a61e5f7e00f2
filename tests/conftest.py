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


#: Training arguments of the small run that the predict, export, API and audio-format
#: tests share (one epoch of a narrow model).
TINY_RUN_ARGS = [
    "--epochs", "1", "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, tiny_demo_dir: Path
                ) -> tuple[Path, Path]:
    """(run folder, export folder with --quantize) trained on ``tiny_demo_dir`` once per
    session (tests/test_export.py's ``shared_export`` finds the same folders)."""
    from fat_tf import export, train

    base = tmp_path_factory.getbasetemp()
    run, out = base / "shared_tiny_run", base / "shared_tiny_export"
    if not (run / "summary.json").exists():
        assert train.main(["--data", str(tiny_demo_dir), "--out", str(run),
                           *TINY_RUN_ARGS]) == 0
    if not (out / "export.json").exists():
        assert export.main([str(run), "--out", str(out), "--quantize"]) == 0
    return run, out
