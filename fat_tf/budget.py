"""How long a run trains: its budget in optimiser steps and how it is cut into
validation intervals (Keras "epochs").

A run's length is given in optimiser steps (``train.steps``), or, when ``train.epochs``
is set, in passes over the labelled set. Either way the run validates (and checkpoints)
every ``train.validate_every`` steps, and every schedule and ramp is a fraction of the
whole budget, so its shape does not depend on how many labelled clips there are.
"""

from __future__ import annotations

import dataclasses

from fat_tf.config import Config


@dataclasses.dataclass(frozen=True)
class RunBudget:
    """A run's length.

    Args:
        total_steps: optimiser steps of the whole run (``intervals * interval_steps``).
        interval_steps: optimiser steps between validations (one Keras epoch).
        intervals: number of validations (Keras epochs).
        requested_steps: the budget asked for before rounding to whole intervals.
    """

    total_steps: int
    interval_steps: int
    intervals: int
    requested_steps: int


def steps_per_pass(train_clips: int, global_batch: int) -> int:
    """Optimiser steps in one pass over ``train_clips`` labelled clips (at least 1)."""
    return max(1, train_clips // max(1, global_batch))


def resolve_budget(config: Config, train_clips: int, global_batch: int) -> RunBudget:
    """The run's budget from ``train.steps`` or ``train.epochs``, cut into validation
    intervals of about ``train.validate_every`` steps.

    By steps: ``round(steps / validate_every)`` intervals (at least 1) of
    ``round(steps / intervals)`` steps each, so the run takes within ``intervals / 2``
    steps of the request and validates evenly. By epochs: every epoch ends with a
    validation, and an epoch longer than ``validate_every`` steps is cut into
    ``ceil(epoch / validate_every)`` equal intervals.

    Args:
        config: the run config (``train.steps``, ``train.epochs``,
            ``train.steps_per_epoch``, ``train.validate_every``).
        train_clips: labelled training clips.
        global_batch: labelled clips per optimiser step.
    """
    t = config.train
    if t.epochs is not None:  # validate at least once per epoch
        per_epoch = t.steps_per_epoch or steps_per_pass(train_clips, global_batch)
        pieces = -(-per_epoch // t.validate_every)  # intervals per epoch
        interval = max(1, round(per_epoch / pieces))
        return RunBudget(t.epochs * pieces * interval, interval, t.epochs * pieces,
                         t.epochs * per_epoch)
    intervals, interval = _even_intervals(t.steps, t.validate_every)
    return RunBudget(intervals * interval, interval, intervals, t.steps)


def _even_intervals(steps: int, validate_every: int) -> tuple[int, int]:
    """``(intervals, steps per interval)``: ``steps`` cut into equal validation intervals
    of about ``validate_every`` steps (at least one of at least one step)."""
    intervals = max(1, round(steps / validate_every))
    return intervals, max(1, round(steps / intervals))


def budget_in_epochs(config: Config) -> Config:
    """``config`` with a budget in steps expressed in epochs of about
    ``train.validate_every`` steps (unchanged when ``train.epochs`` is already set).

    The tuner counts trial budgets in epochs (Hyperband continues promising trials for
    more of them); the run then validates at the same steps as the budget in steps would.

    Args:
        config: a run config.
    """
    t = config.train
    if t.epochs is not None:
        return config
    intervals, interval = _even_intervals(t.steps, t.validate_every)
    return config.replace(**{"train.epochs": intervals, "train.steps_per_epoch": interval})
