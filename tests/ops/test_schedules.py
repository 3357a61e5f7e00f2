"""Learning-rate schedules against their closed forms."""

import math

import keras
import numpy as np
import pytest

from fat_tf.ops.schedules import EpochCosineAnnealing, LinearWarmup, build_schedule


def lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_epoch_cosine_matches_pytorch_closed_form():
    s = EpochCosineAnnealing(3e-3, 1e-5, period=10, steps_per_epoch=7)
    for epoch in range(0, 35):
        expected = 1e-5 + (3e-3 - 1e-5) * (1 + math.cos(math.pi * epoch / 10)) / 2
        for step in (epoch * 7, epoch * 7 + 6):  # constant within an epoch
            assert lr(s, step) == pytest.approx(expected, rel=1e-5)
    assert lr(s, 0) == pytest.approx(3e-3) and lr(s, 70) == pytest.approx(1e-5, rel=1e-4)


def test_cosine_restarts_and_constant():
    s = build_schedule("cosine_restarts", 1e-3, 1e-5, period=2, steps_per_epoch=5)
    assert isinstance(s, keras.optimizers.schedules.CosineDecayRestarts)
    assert lr(s, 0) == pytest.approx(1e-3)
    assert lr(s, 10) == pytest.approx(1e-3)  # restart after the first 10-step cycle
    assert lr(s, 9) < 1e-4
    assert build_schedule("constant", 2e-3, 0, 1, 1) == 2e-3
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        build_schedule("linear", 1, 0, 1, 1)


def test_warmup_ramps_then_hands_over():
    s = build_schedule("cosine", 1e-3, 1e-5, period=10, steps_per_epoch=4, warmup_epochs=2)
    assert isinstance(s, LinearWarmup)
    base = EpochCosineAnnealing(1e-3, 1e-5, 10, 4)
    values = [lr(s, k) for k in range(10)]
    np.testing.assert_allclose(values[:8], [lr(base, k) * (k + 1) / 8 for k in range(8)],
                               rtol=1e-5)
    assert values[9] == pytest.approx(lr(base, 9))
    clone = LinearWarmup.from_config(s.get_config())
    assert lr(clone, 3) == pytest.approx(values[3])
