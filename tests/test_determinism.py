"""Same seed and data -> identical metrics, for every training method (CPU, in-process).

Each method trains one short epoch twice in the same process, into two run folders; the
two ``metrics.csv`` files (every loss term and weight, val_loss, val_lwlrap, learning
rate, written with full float precision) must be identical, and so must the saved model
weights. A third run with another seed must differ, so the test can fail.
"""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest

from fat_tf import train
from fat_tf.methods import METHODS as REGISTRY

FAST = [
    "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]
METHODS = ["supervised", "mixup", "vat", "meanteacher", "mixmatch", "pseudolabel"]


def run(data, out, method: str, seed: int) -> list[dict]:
    code = train.main(["--data", str(data), "--out", str(out), *FAST, "--method", method,
                       "--seed", str(seed), "--epochs", "1",
                       "--set", "train.steps_per_epoch=3"])
    assert code == 0
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def weights(path) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(w) for w in keras.models.load_model(path).weights]


def test_every_method_is_covered():
    assert sorted(METHODS) == sorted(REGISTRY)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_metrics(method, tiny_demo_dir, tmp_path, capsys):
    first = run(tiny_demo_dir, tmp_path / "a", method, seed=3)
    second = run(tiny_demo_dir, tmp_path / "b", method, seed=3)
    capsys.readouterr()
    assert first == second
    row = first[0]
    assert {"loss", "val_loss", "val_lwlrap"} <= set(row)
    for a, b in zip(weights(tmp_path / "a" / "model.keras"),
                    weights(tmp_path / "b" / "model.keras")):
        np.testing.assert_array_equal(a, b)
    if method == "supervised":  # another seed gives other numbers
        other = run(tiny_demo_dir, tmp_path / "c", method, seed=4)
        assert other[0]["loss"] != row["loss"]
