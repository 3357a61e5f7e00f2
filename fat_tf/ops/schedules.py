"""Learning-rate schedules, all driven by the optimiser's step counter.

Because they are functions of the step (saved with the optimiser), a resumed run picks
up the schedule exactly where it stopped.
"""

from __future__ import annotations

import math

import keras
from keras import ops

SCHEDULES = ("cosine", "cosine_restarts", "constant")


@keras.saving.register_keras_serializable(package="fat_tf")
class EpochCosineAnnealing(keras.optimizers.schedules.LearningRateSchedule):
    """Per-epoch cosine annealing (PyTorch ``CosineAnnealingLR`` stepped once per epoch).

    ``lr(e) = lr_min + (lr_max - lr_min) * (1 + cos(pi * e / period)) / 2`` with
    ``e = step // steps_per_epoch``, constant within an epoch. Past ``period`` epochs the
    cosine rises again (PyTorch's closed form), so the rate oscillates with a full cycle
    of ``2 * period`` epochs, as in the reference kernel's 80-epoch runs with period 10.

    Args:
        lr_max: rate at epoch 0.
        lr_min: lowest rate (reached at epoch ``period``).
        period: epochs from maximum to minimum.
        steps_per_epoch: optimiser steps per epoch.
    """

    def __init__(self, lr_max: float, lr_min: float, period: int, steps_per_epoch: int):
        self.lr_max = lr_max
        self.lr_min = lr_min
        self.period = period
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        epoch = ops.floor(ops.cast(step, "float32") / self.steps_per_epoch)
        cosine = ops.cos(math.pi * epoch / self.period)
        return self.lr_min + (self.lr_max - self.lr_min) * 0.5 * (1.0 + cosine)

    def get_config(self):
        return {
            "lr_max": self.lr_max,
            "lr_min": self.lr_min,
            "period": self.period,
            "steps_per_epoch": self.steps_per_epoch,
        }


@keras.saving.register_keras_serializable(package="fat_tf")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Scale another schedule by ``min(1, (step + 1) / warmup_steps)``.

    Args:
        schedule: the schedule to warm up (a LearningRateSchedule or a float).
        warmup_steps: steps of the linear ramp.
    """

    def __init__(self, schedule, warmup_steps: int):
        self.schedule = schedule
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        base = self.schedule(step) if callable(self.schedule) else self.schedule
        ramp = ops.minimum(1.0, (ops.cast(step, "float32") + 1.0) / max(1, self.warmup_steps))
        return base * ramp

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.saving.serialize_keras_object(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        return cls(schedule, config["warmup_steps"])


def build_schedule(
    name: str,
    lr_max: float,
    lr_min: float,
    period: int,
    steps_per_epoch: int,
    warmup_epochs: int = 0,
):
    """The learning-rate schedule called ``name``.

    Args:
        name: ``cosine`` (:class:`EpochCosineAnnealing`), ``cosine_restarts``
            (``keras.optimizers.schedules.CosineDecayRestarts`` with first cycle
            ``period`` epochs, floor ``lr_min``) or ``constant`` (``lr_max``).
        lr_max: peak rate.
        lr_min: floor of the cosine schedules.
        period: cosine period in epochs.
        steps_per_epoch: optimiser steps per epoch.
        warmup_epochs: linear warm-up epochs (0 = none).
    """
    if name == "cosine":
        schedule = EpochCosineAnnealing(lr_max, lr_min, period, steps_per_epoch)
    elif name == "cosine_restarts":
        schedule = keras.optimizers.schedules.CosineDecayRestarts(
            lr_max, first_decay_steps=period * steps_per_epoch, alpha=lr_min / lr_max
        )
    elif name == "constant":
        schedule = lr_max
    else:
        raise ValueError(f"unknown learning-rate schedule {name!r}; choose from {SCHEDULES}")
    if warmup_epochs > 0:
        schedule = LinearWarmup(schedule, warmup_epochs * steps_per_epoch)
    return schedule
