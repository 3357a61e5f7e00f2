"""The run budget: steps or epochs, cut into validation intervals; the tuner's view."""

import pytest

from fat_tf.budget import budget_in_epochs, resolve_budget, steps_per_pass
from fat_tf.config import ConfigError
from fat_tf.presets import get_preset


def config(**train):
    return get_preset("small").replace(**{f"train.{k}": v for k, v in train.items()})


def test_default_budget_is_steps_and_does_not_depend_on_the_labelled_set():
    c = get_preset("small")
    assert c.train.epochs is None
    small, large = resolve_budget(c, 120, 32), resolve_budget(c, 12_000, 32)
    assert small == large
    assert small.total_steps == c.train.steps
    assert small.interval_steps * small.intervals == small.total_steps


@pytest.mark.parametrize("steps,every,total,interval", [
    (1500, 100, 1500, 100), (1000, 300, 999, 333), (50, 100, 50, 50), (1, 100, 1, 1),
    (250, 100, 250, 125),
])
def test_steps_are_cut_into_even_intervals(steps, every, total, interval):
    b = resolve_budget(config(steps=steps, validate_every=every), 100, 32)
    assert (b.total_steps, b.interval_steps) == (total, interval)
    assert b.requested_steps == steps and abs(b.total_steps - steps) <= b.intervals / 2


def test_epochs_validate_at_least_once_per_epoch():
    b = resolve_budget(config(epochs=30), 120, 32)  # 3 steps per pass
    assert (b.total_steps, b.interval_steps, b.intervals) == (90, 3, 30)
    b = resolve_budget(config(epochs=2, steps_per_epoch=250, validate_every=100), 120, 32)
    assert (b.interval_steps, b.intervals, b.total_steps) == (83, 6, 498)
    assert steps_per_pass(5, 32) == 1 and steps_per_pass(4970, 32) == 155


def test_bad_budgets_are_refused():
    for field, value in [("steps", 0), ("validate_every", 0), ("epochs", -1),
                         ("steps", 2.5)]:
        with pytest.raises(ConfigError, match=f"train.{field}"):
            config(**{field: value})


def test_the_tuner_sees_the_step_budget_as_epochs():
    c = budget_in_epochs(config(steps=1000, validate_every=100))
    assert (c.train.epochs, c.train.steps_per_epoch) == (10, 100)
    b = resolve_budget(c, 120, 32)
    assert (b.total_steps, b.interval_steps) == (1000, 100)
    already = config(epochs=3)
    assert budget_in_epochs(already) is already
