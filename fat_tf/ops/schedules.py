"""Learning-rate schedules over a run's whole step budget, driven by the optimiser's
step counter.

Every schedule is a function of ``step / total_steps``, so a 300-step and a 3,000-step
run have the same shape (warm-up, annealing, restarts at the same fractions), whatever
the size of the labelled set. Because the step counter is saved with the optimiser, a
resumed run picks up the schedule exactly where it stopped.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from fat_tf.config import LR_SCHEDULES as SCHEDULES  # their one home


@keras.saving.register_keras_serializable(package="fat_tf")
class CosineAnnealing(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing over the run, per step, in ``cycles`` equal cycles.

    With cycle length ``L = total_steps / cycles`` and ``t = min(1, (step mod L) / (L - 1))``:
    ``lr = lr_min + (lr_max - lr_min) * (1 + cos(pi * t)) / 2``. One cycle (the default)
    anneals once from ``lr_max`` at step 0 to ``lr_min`` at the last step; more cycles are
    SGDR's warm restarts with equal periods, each ending at ``lr_min``. Past the budget
    the rate stays at ``lr_min``.

    Args:
        lr_max: rate at the start of each cycle.
        lr_min: rate at the end of each cycle.
        total_steps: optimiser steps of the whole run.
        cycles: number of equal annealing cycles in the run.
    """

    def __init__(self, lr_max: float, lr_min: float, total_steps: int, cycles: int = 1):
        if total_steps < 1 or cycles < 1:
            raise ValueError(f"total_steps and cycles must be >= 1, got {total_steps}, {cycles}")
        self.lr_max = lr_max
        self.lr_min = lr_min
        self.total_steps = int(total_steps)
        self.cycles = int(cycles)

    def __call__(self, step):
        step = ops.minimum(ops.cast(step, "float32"), float(self.total_steps - 1))
        length = max(1.0, self.total_steps / self.cycles)
        t = ops.minimum(1.0, ops.mod(step, length) / max(1.0, length - 1.0))
        cosine = ops.cos(math.pi * t)
        return self.lr_min + (self.lr_max - self.lr_min) * 0.5 * (1.0 + cosine)

    def get_config(self):
        return {"lr_max": self.lr_max, "lr_min": self.lr_min,
                "total_steps": self.total_steps, "cycles": self.cycles}


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
    total_steps: int,
    cycles: int = 1,
    warmup_fraction: float = 0.0,
):
    """The learning-rate schedule called ``name``, shaped to a run of ``total_steps``.

    Args:
        name: ``cosine`` (one annealing over the run), ``cosine_restarts`` (``cycles``
            equal annealing cycles with warm restarts) or ``constant`` (``lr_max``).
        lr_max: peak rate.
        lr_min: floor of the cosine schedules.
        total_steps: optimiser steps of the whole run.
        cycles: cycles of ``cosine_restarts`` (``cosine`` always has one).
        warmup_fraction: linear warm-up over this fraction of the run (0 = none).
    """
    if name == "cosine":
        schedule = CosineAnnealing(lr_max, lr_min, total_steps, 1)
    elif name == "cosine_restarts":
        schedule = CosineAnnealing(lr_max, lr_min, total_steps, cycles)
    elif name == "constant":
        schedule = lr_max
    else:
        raise ValueError(f"unknown learning-rate schedule {name!r}; choose from {SCHEDULES}")
    warmup_steps = int(round(warmup_fraction * total_steps))
    if warmup_steps > 0:
        schedule = LinearWarmup(schedule, warmup_steps)
    return schedule
