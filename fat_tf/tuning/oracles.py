"""The keras-tuner oracles of a search: random, Bayesian and Hyperband, with a failure limit.

:func:`make_oracle` builds the oracle ``fat-tf tune --tuner`` names. Every oracle here
stops handing out trials after ``max_failures`` failed trials in a row
(:class:`_FailureLimit`); :func:`hyperband_schedule` and :func:`hyperband_warning` say
what Hyperband runs for an epoch count and factor, and :func:`default_initial_points`
how many random trials a Bayesian search starts with.
"""

from __future__ import annotations

import math

import keras_tuner

from fat_tf.config import ConfigError

#: The metric every search maximises: the validation lwlrap of the model a run ships by
#: default (``fat_tf.run_folder.DEFAULT_MODEL``).
OBJECTIVE = "val_lwlrap"
TUNERS = ("random", "bayesian", "hyperband")


class _FailureLimit:
    """Oracle mixin: stop handing out new trials after ``max_failures`` failures in a row.

    keras-tuner's own limit raises inside the oracle, which leaves a distributed chief
    waiting forever and makes a resumed search fail on its first trial. This one counts
    the failures that end while this process serves the oracle (a resumed search starts
    again from 0) and then answers every request for a new trial with STOPPED, the way a
    finished search does: single-process searches end, distributed workers exit after
    their current trial, and the chief exits once they have.
    """

    max_failures = 0
    consecutive_failures = 0
    failure_stopped = False

    @keras_tuner.synchronized
    def end_trial(self, trial):
        """Record a finished trial (keras-tuner), then count consecutive failures.

        Args:
            trial: the finished trial.
        """
        super().end_trial(trial)
        status = self.trials[trial.trial_id].status
        if status == "FAILED":
            self.consecutive_failures += 1
        elif status == "COMPLETED":
            self.consecutive_failures = 0

    def populate_space(self, trial_id):
        """keras-tuner's next trial, or STOPPED once the failure limit is reached.

        Args:
            trial_id: the id of the trial to fill.
        """
        if self.max_failures and self.consecutive_failures >= self.max_failures:
            self.failure_stopped = True
            return {"status": "STOPPED"}
        return super().populate_space(trial_id)

    def retry_failed(self) -> list[str]:
        """Queue every FAILED trial to run again (same id and run folder); return the ids.

        Uses the queue keras-tuner itself uses for interrupted trials, which
        ``create_trial`` serves before any new trial.
        """
        queued = set(self._retry_queue)
        ids = sorted((t.trial_id for t in self.trials.values()
                      if t.status == "FAILED" and t.trial_id not in queued),
                     key=lambda t: (len(t), t))
        self._retry_queue.extend(reversed(ids))  # served from the end: lowest id first
        if ids:
            self.save()
        return ids


class RandomOracle(_FailureLimit, keras_tuner.oracles.RandomSearchOracle):
    """keras-tuner's random search with the failure limit of :class:`_FailureLimit`."""


class BayesianOracle(_FailureLimit, keras_tuner.oracles.BayesianOptimizationOracle):
    """keras-tuner's Bayesian optimisation with the failure limit of :class:`_FailureLimit`."""


class HyperbandOracle(_FailureLimit, keras_tuner.oracles.HyperbandOracle):
    """keras-tuner's Hyperband with a cap on the number of trials and the failure limit.

    keras-tuner's ``HyperbandOracle`` runs its own schedule and takes no ``max_trials``;
    this one also stops after ``max_trials`` trials (the base ``Oracle``'s cap).

    Args:
        max_trials: most trials in all (None: Hyperband's schedule alone).
        **kwargs: arguments of ``keras_tuner.oracles.HyperbandOracle``.
    """

    def __init__(self, max_trials: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_trials = max_trials


def hyperband_schedule(max_epochs: int, factor: int) -> list[list[tuple[int, int]]]:
    """Hyperband's brackets in the order keras-tuner runs them (one iteration).

    Each bracket is a list of rounds ``(trials, epochs)``: the first round trains that
    many new trials for that many epochs, each later round continues the best of the
    previous round for more epochs (each continuation is a trial of its own). A bracket
    starts its second round only after its first round's trials have all been handed out.
    Follows ``keras_tuner.oracles.HyperbandOracle`` (``min_epochs`` 1, one iteration).

    Args:
        max_epochs: the most epochs a trial trains (``--epochs``).
        factor: the reduction factor (``--hyperband-factor``).
    """
    brackets, epochs = 0, float(max_epochs)
    while epochs >= 1:
        epochs /= factor
        brackets += 1
    end_size = math.ceil(1 + math.log(max_epochs, factor))
    schedule = []
    for bracket in reversed(range(brackets)):
        schedule.append([
            (math.ceil(end_size / (bracket + 1) * factor ** (bracket - r)),
             math.ceil(max_epochs / factor ** (bracket - r)))
            for r in range(bracket + 1)])
    return schedule


def hyperband_warning(max_trials: int, max_epochs: int, factor: int) -> str | None:
    """A warning when ``max_trials`` cuts Hyperband's first bracket short, else None.

    Args:
        max_trials: ``--max-trials``.
        max_epochs: ``--epochs``.
        factor: ``--hyperband-factor``.
    """
    schedule = hyperband_schedule(max_epochs, factor)
    first = schedule[0]
    first_size = sum(n for n, _ in first)
    if max_trials >= first_size:
        return None
    rounds = ", then ".join(f"{n} of {e} epoch(s)" for n, e in first)
    total = sum(n for bracket in schedule for n, _ in bracket)
    if max_trials <= first[0][0]:
        effect = (f"no trial is ever continued and every trial trains {first[0][1]} "
                  "epoch(s): a random search of short runs")
    else:
        effect = "the first bracket stops before its last round"
    return (f"Hyperband's first bracket (--epochs {max_epochs}, --hyperband-factor {factor}) "
            f"is {first_size} trials ({rounds}) and one full Hyperband iteration "
            f"{total}; with --max-trials {max_trials} {effect}. Raise --max-trials to "
            f"{first_size} or more, or lower --epochs or raise --hyperband-factor")


def default_initial_points(dimensions: int, max_trials: int) -> int:
    """Random trials before Bayesian optimisation: ``max(2, min(3 * dims, max_trials // 2))``.

    keras-tuner's own default (3 per hyperparameter) can exceed the whole search.

    Args:
        dimensions: the number of searched hyperparameters.
        max_trials: ``--max-trials``.
    """
    return max(2, min(3 * dimensions, max_trials // 2))


def make_oracle(tuner: str, max_trials: int, epochs: int, seed: int,
                hyperband_factor: int = 3, max_failures: int = 0,
                initial_points: int | None = None):
    """The keras-tuner oracle of ``tuner`` (random, bayesian or hyperband).

    Args:
        tuner: the search algorithm.
        max_trials: most trials (Hyperband: a cap on top of its own schedule).
        epochs: epochs per trial (Hyperband: the most epochs any trial trains).
        seed: the oracle's random seed.
        hyperband_factor: Hyperband's reduction factor.
        max_failures: consecutive failed trials after which the oracle hands out no new
            trial (0: never); see :class:`_FailureLimit`.
        initial_points: Bayesian: random trials before the Gaussian process is used
            (None: keras-tuner's default, 3 per hyperparameter).
    """
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    # keras-tuner's own consecutive-failure check is off: _FailureLimit replaces it.
    common = dict(objective=objective, seed=seed, max_consecutive_failed_trials=None)
    if tuner == "random":
        oracle = RandomOracle(max_trials=max_trials, **common)
    elif tuner == "bayesian":
        oracle = BayesianOracle(max_trials=max_trials, num_initial_points=initial_points,
                                **common)
    elif tuner == "hyperband":
        oracle = HyperbandOracle(max_trials=max_trials, max_epochs=epochs,
                                 factor=hyperband_factor, **common)
    else:
        raise ConfigError(f"unknown tuner {tuner!r}; choose from {', '.join(TUNERS)}")
    oracle.max_failures = max_failures
    return oracle
