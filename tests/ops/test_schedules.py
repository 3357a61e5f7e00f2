"""Learning-rate schedules against their closed forms; their shape is a function of the
fraction of the run done, whatever the run's length."""

import math

import keras
import numpy as np
import pytest

from fat_tf.ops.schedules import CosineAnnealing, LinearWarmup, build_schedule


def lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_cosine_anneals_once_over_the_run():
    s = build_schedule("cosine", 3e-3, 1e-5, total_steps=101)
    for step in range(101):
        expected = 1e-5 + (3e-3 - 1e-5) * (1 + math.cos(math.pi * step / 100)) / 2
        assert lr(s, step) == pytest.approx(expected, rel=1e-5)
    assert lr(s, 0) == pytest.approx(3e-3) and lr(s, 100) == pytest.approx(1e-5, rel=1e-4)
    assert lr(s, 5000) == pytest.approx(1e-5, rel=1e-4)  # past the budget: the floor


def test_schedule_shape_is_independent_of_the_run_length():
    short, long = (build_schedule(name, 1e-3, 1e-5, total_steps=n, cycles=3,
                                  warmup_fraction=0.1)
                   for name in ("cosine_restarts",) for n in (300, 3000))
    for fraction in (0.05, 0.1, 0.2, 0.33, 0.5, 0.7, 0.9, 0.999):
        assert lr(short, round(fraction * 300)) == pytest.approx(
            lr(long, round(fraction * 3000)), rel=0.06, abs=2e-5)


def test_cosine_restarts_has_equal_cycles_ending_at_the_floor():
    s = build_schedule("cosine_restarts", 1e-3, 1e-5, total_steps=30, cycles=3)
    assert isinstance(s, CosineAnnealing)
    values = [lr(s, k) for k in range(30)]
    for start in (0, 10, 20):
        assert values[start] == pytest.approx(1e-3)  # restart
        assert values[start + 9] == pytest.approx(1e-5, rel=1e-4)  # end of the cycle
    np.testing.assert_allclose(values[:10], values[10:20], rtol=1e-6)
    clone = CosineAnnealing.from_config(s.get_config())
    assert lr(clone, 13) == pytest.approx(values[13])


def test_constant_and_unknown():
    assert build_schedule("constant", 2e-3, 0, 10) == 2e-3
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        build_schedule("linear", 1, 0, 10)
    with pytest.raises(ValueError, match="total_steps"):
        CosineAnnealing(1e-3, 1e-5, 0)


def test_warmup_is_a_fraction_of_the_run_then_hands_over():
    s = build_schedule("cosine", 1e-3, 1e-5, total_steps=80, warmup_fraction=0.1)
    assert isinstance(s, LinearWarmup) and s.warmup_steps == 8
    base = CosineAnnealing(1e-3, 1e-5, 80)
    values = [lr(s, k) for k in range(10)]
    np.testing.assert_allclose(values[:8], [lr(base, k) * (k + 1) / 8 for k in range(8)],
                               rtol=1e-5)
    assert values[9] == pytest.approx(lr(base, 9))
    clone = LinearWarmup.from_config(s.get_config())
    assert lr(clone, 3) == pytest.approx(values[3])
    assert not isinstance(build_schedule("cosine", 1e-3, 1e-5, 80), LinearWarmup)
