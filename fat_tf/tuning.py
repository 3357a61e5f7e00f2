"""Hyperparameter search over fat_tf training runs with keras-tuner.

:func:`run_search` is what ``python -m fat_tf.tune`` runs. Each trial is one complete
:func:`fat_tf.training.train` run (labelled and unlabelled streams, callbacks, run folder)
with the config fields of a :class:`fat_tf.search_space.SearchSpace` set from the
trial's hyperparameters; the objective is the run's best validation lwlrap (maximised).

The search folder it fills:

* ``search.json`` — the tuner, the search space and the base config (a rerun must match);
* ``tuner/`` — keras-tuner's project (oracle state, one ``trial_<id>/trial.json`` each);
* ``runs/trial_<id>/`` — each trial's run folder, plus ``tune.json`` (trial id, tuner id,
  hyperparameter values);
* ``trials.csv`` and ``trials.md`` — one row per trial: id, status, score, the epochs it
  trained to, values, error;
* ``best_config.json`` — the best trial's full config, for ``fat_tf.train --config``,
  with the search's ``train.epochs`` (under Hyperband: ``--epochs``, not the trial's
  shortened count).

``search.json`` is written only once the tuner has been built, so a search that cannot
start leaves nothing that would refuse the corrected rerun.

Rerunning the same search resumes it: finished trials are kept, an interrupted trial is
run again and its run folder resumes from its last completed epoch.

Hyperband asks to continue a promising trial for more epochs ("tuner/trial_id",
"tuner/initial_epoch", "tuner/epochs"): the new trial's run folder starts as a copy of the
earlier trial's folder (its backup, metrics and best model) and training resumes from the
earlier trial's last completed epoch up to the new epoch count. Schedules and ramps depend
on the epoch, not on the total, so this equals one longer run. If the earlier run folder
is missing (e.g. on another machine), the trial trains from scratch for the full count.
Hyperband trains no continuation before the first bracket's first round has been handed
out in full (:func:`hyperband_schedule`), so ``--max-trials`` below that makes it a
random search of short runs; :func:`run_search` warns.

Failed trials are final in keras-tuner (they keep their id and count toward
``max_trials``); ``retry_failed`` queues them again on a resumed search. After
``max_failures`` failures in a row the oracle hands out no new trial (see
:class:`_FailureLimit`).

Distributed search follows keras-tuner: with ``KERASTUNER_ORACLE_IP``,
``KERASTUNER_ORACLE_PORT`` and ``KERASTUNER_TUNER_ID`` set, the process whose tuner id
contains ``chief`` serves the oracle (and writes the results when the search ends); every
other process is a worker that asks it for trials. All must share the search folder; a
worker waits up to :data:`WORKER_WAIT_S` seconds for the chief's ``search.json`` and
refuses to run a different search.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import keras_tuner

from fat_tf.budget import budget_in_epochs
from fat_tf.config import Config, ConfigError, atomic_write_text
from fat_tf.errors import FatTfError
from fat_tf.search_space import SearchSpace

#: The metric every search maximises (best validation lwlrap of a run).
OBJECTIVE = "val_lwlrap"
TUNERS = ("random", "bayesian", "hyperband")
STRATEGIES = ("none", "mirrored", "multiworker")
_HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/trial_id", "tuner/bracket",
                   "tuner/round")


class SearchError(FatTfError):
    """A search cannot start, or ended without a usable trial."""


class TooManyFailures(SearchError):
    """``max_failures`` trials failed in a row, so the oracle stopped the search."""


def role() -> str:
    """``single`` (no chief oracle), ``chief`` or ``worker``, from keras-tuner's variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if name not in os.environ:
            raise SearchError(f"KERASTUNER_ORACLE_IP is set but {name} is not; a distributed "
                              "search needs KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT and "
                              "KERASTUNER_TUNER_ID")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def one_line(text: str, limit: int = 400) -> str:
    """``text`` with whitespace runs collapsed, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def trial_error(message: str | None) -> str:
    """The one-line error of a failed trial from keras-tuner's stored traceback."""
    if not message:
        return ""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "FailedTrialError: " in line:
            return line.split("FailedTrialError: ", 1)[1].strip()
    return lines[-1].strip() if lines else ""


class TrainingHyperModel(keras_tuner.HyperModel):
    """A keras-tuner hypermodel whose ``build`` makes a run config and ``fit`` trains it.

    ``build(hp)`` returns the base config with the search space's fields set from
    ``hp``; ``fit(hp, config, run_dir=...)`` runs :func:`fat_tf.training.train` (the full
    run: unlabelled stream, callbacks, resumable run folder) and returns
    ``{"val_lwlrap": score}``, the run's best validation lwlrap.

    Args:
        space: the search space.
        base_config: the config the space's values are applied to.
        data_dir: the FAT2019-layout dataset folder.
        strategy: distribution strategy name passed to ``train`` (None: not passed).
        verbose: Keras ``fit`` verbosity of each trial (2: one line per epoch).
    """

    def __init__(self, space: SearchSpace, base_config: Config, data_dir: str | os.PathLike,
                 strategy: str | None = None, verbose: int | str = 2):
        super().__init__(name="fat_tf_training", tunable=True)
        self.space = space
        self.base_config = base_config
        self.data_dir = data_dir
        self.strategy = strategy
        self.verbose = verbose

    def declare_hyperparameters(self, hp) -> None:
        """Register every search-space entry on ``hp``."""
        self.space.declare(hp)

    def build(self, hp) -> Config:
        """The run config of the values in ``hp`` (a :class:`Config`, not a model)."""
        return self.base_config.replace(**self.space.declare(hp))

    def fit(self, hp, config: Config, *args, run_dir: str | os.PathLike, **kwargs) -> dict:
        """Train ``config`` into ``run_dir``; return ``{"val_lwlrap": best score}``.

        Args:
            hp: the trial's hyperparameters (already applied to ``config``).
            config: the trial's run config (from :meth:`build`).
            run_dir: the trial's run folder (resumed if it holds an unfinished run).
            *args: ignored (keras-tuner passes ``search``'s arguments).
            **kwargs: ignored.
        """
        from fat_tf.training import train

        extra = {"strategy": self.strategy} if self.strategy else {}
        summary = train(config, self.data_dir, run_dir, verbose=self.verbose, **extra)
        score = summary.get("best_val_lwlrap")
        if score is None:
            score = summary.get("val_lwlrap")
        if score is None or not math.isfinite(score):
            raise FatTfError(f"{run_dir}: the run ended without a finite validation lwlrap "
                             f"({score})")
        return {OBJECTIVE: float(score)}


class SearchTuner(keras_tuner.Tuner):
    """A keras-tuner ``Tuner`` whose trials are fat_tf training runs.

    Works with any oracle (random, Bayesian, Hyperband). Each trial trains in
    ``runs_dir/trial_<id>``; a failing trial is recorded as FAILED with a one-line error
    (no traceback). Consecutive failures are limited by the oracle (see
    :func:`make_oracle`), which stops handing out trials, so distributed workers stop too.

    Args:
        oracle: a keras-tuner oracle with objective ``val_lwlrap`` (max).
        hypermodel: the :class:`TrainingHyperModel`.
        runs_dir: folder of the trials' run folders.
        **kwargs: ``directory``, ``project_name``, ``overwrite`` of ``keras_tuner.Tuner``.
    """

    def __init__(self, oracle, hypermodel: TrainingHyperModel, runs_dir: str | os.PathLike,
                 **kwargs):
        self.runs_dir = Path(runs_dir)
        self.trials_run: list[tuple[str, str, float | None, str]] = []
        self._scores: dict[str, float] = {}
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def run_dir(self, trial_id: str) -> Path:
        """The run folder of trial ``trial_id``."""
        return self.runs_dir / f"trial_{trial_id}"

    def trial_config(self, hp) -> Config:
        """The config a trial trains (with Hyperband's epoch count for this trial).

        Args:
            hp: the trial's hyperparameters (Hyperband adds ``tuner/epochs``).
        """
        config = self.hypermodel.build(hp)
        values = hp.values
        if "tuner/epochs" in values:
            config = config.replace(**{"train.epochs": int(values["tuner/epochs"])})
        return config

    def result_config(self, hp) -> Config:
        """The config to train a trial's settings for real (``best_config.json``).

        The search's own epoch count, not Hyperband's shortened ``tuner/epochs``: a
        Hyperband trial of 2 epochs stands for settings meant to train ``--epochs``.

        Args:
            hp: the trial's hyperparameters.
        """
        return self.hypermodel.build(hp)

    def run_trial(self, trial, *args, **kwargs) -> dict:
        """Train one trial in its run folder and return its objective.

        Args:
            trial: the keras-tuner trial.
            *args: ignored (``search``'s arguments).
            **kwargs: ignored.

        Raises:
            keras_tuner.errors.FailedTrialError: with the run's error on one line.
        """
        values = dict(trial.hyperparameters.values)
        run_dir = self.run_dir(trial.trial_id)
        try:
            config = self.trial_config(trial.hyperparameters)
            previous = values.get("tuner/trial_id")
            if previous and not (run_dir / "config.json").exists():
                continue_run(self.run_dir(previous), run_dir)
            atomic_write_text(run_dir / "tune.json", json.dumps({
                "trial_id": trial.trial_id, "tuner_id": self.tuner_id,
                "hyperparameters": values, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            }, indent=2, default=str) + "\n")
            print(f"trial {trial.trial_id} [{self.tuner_id}]: "
                  + ", ".join(f"{k}={v}" for k, v in self.hypermodel.space.overrides(values)
                              .items())
                  + f", {config.train.epochs} epoch(s) -> {run_dir}", flush=True)
            result = self.hypermodel.fit(trial.hyperparameters, config, run_dir=run_dir)
        except Exception as e:
            raise keras_tuner.errors.FailedTrialError(one_line(_describe(e))) from e
        self._scores[trial.trial_id] = result[OBJECTIVE]
        return result

    def on_trial_end(self, trial) -> None:
        """Report the trial to the oracle, then print one line with its outcome.

        Args:
            trial: the finished trial (its status set by keras-tuner).
        """
        super().on_trial_end(trial)
        status = str(trial.status)
        score = self._scores.pop(trial.trial_id, None)
        if status != "COMPLETED":
            score = None
        error = "" if status == "COMPLETED" else trial_error(trial.message)
        self.trials_run.append((trial.trial_id, status, score, error))
        if status == "COMPLETED":
            print(f"trial {trial.trial_id} done: {OBJECTIVE} {score:.4f}", flush=True)
        else:
            print(f"trial {trial.trial_id} failed: {error}", flush=True)


def _describe(e: BaseException) -> str:
    if type(e).__module__.startswith("tensorflow"):
        from fat_tf.data.pipeline import pipeline_error

        return pipeline_error(e)
    if isinstance(e, (FatTfError, ConfigError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


def continue_run(previous: Path, run_dir: Path) -> bool:
    """Start ``run_dir`` as a copy of ``previous`` so training resumes where it stopped.

    Copies everything but the files that mark a run as configured or finished
    (``config.json``, ``summary.json``, ``model.keras``, ``tune.json``); the copy is
    made under a temporary name and renamed. Returns False (and copies nothing) when
    ``previous`` holds no backup.
    """
    if not (previous / "backup" / "training_metadata.json").exists():
        print(f"{previous} has no backup to continue from; training this trial from scratch")
        return False
    tmp = run_dir.with_name(f".tmp-{run_dir.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(previous, tmp, ignore=shutil.ignore_patterns(
        "config.json", "summary.json", "model.keras", "tune.json", ".tmp-*"))
    if run_dir.exists():  # only a tune.json of an attempt killed before training began
        shutil.rmtree(run_dir)
    os.replace(tmp, run_dir)
    print(f"continuing {previous.name} in {run_dir}")
    return True


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


@dataclasses.dataclass
class SearchResult:
    """What a search produced.

    Args:
        role: ``single``, ``chief`` or ``worker``.
        rows: one dict per trial (the rows of ``trials.csv``; a worker's own trials).
        best_config: path of ``best_config.json`` (None on workers or without a best).
        best_score: the best trial's validation lwlrap.
    """

    role: str
    rows: list[dict[str, Any]]
    best_config: Path | None = None
    best_score: float | None = None


def run_search(config: Config, space: SearchSpace, data_dir: str | os.PathLike | None,
               out: str | os.PathLike, *, tuner: str = "random", max_trials: int = 10,
               hyperband_factor: int = 3, overwrite: bool = False, strategy: str | None = None,
               max_failures: int = 3, verbose: int | str = 2,
               initial_points: int | None = None, retry_failed: bool = False) -> SearchResult:
    """Search ``space`` around ``config``; write the results into ``out``.

    Args:
        config: the base config (``train.epochs`` = epochs per trial; Hyperband: the most).
            A budget in steps is first turned into epochs of ``train.validate_every``
            steps (:func:`fat_tf.budget.budget_in_epochs`).
        space: the hyperparameters to search.
        data_dir: the dataset folder (not needed by a distributed chief).
        out: the search folder (resumed when it holds the same search).
        tuner: ``random``, ``bayesian`` or ``hyperband``.
        max_trials: most trials in total (including finished and failed ones of a
            resumed search).
        hyperband_factor: Hyperband's reduction factor.
        overwrite: delete the search folder's earlier search first (not on workers).
        strategy: distribution strategy passed to ``train`` (None or ``none``: not passed).
        max_failures: consecutive failed trials after which no new trial starts (0:
            never); a distributed search counts them on the chief, over all workers.
        verbose: Keras ``fit`` verbosity of each trial.
        initial_points: Bayesian: random trials before the Gaussian process is used
            (None: :func:`default_initial_points`); fixed when the search starts.
        retry_failed: run the FAILED trials of a resumed search again (same ids and run
            folders) before new ones (not on workers).

    Raises:
        SearchError: the folder holds another search, no trial completed (the message
            is the first failed trial's error), or ``max_failures`` stopped the search.
        ConfigError: the space sets what the tuner sets itself (``train.epochs`` under
            Hyperband).
    """
    who = role()
    out = Path(out)
    config = budget_in_epochs(config)
    strategy = None if strategy in (None, "none") else strategy
    if tuner not in TUNERS:
        raise ConfigError(f"unknown tuner {tuner!r}; choose from {', '.join(TUNERS)}")
    space.check_tuner(tuner)
    if strategy is not None:
        from fat_tf.training import train

        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose from "
                              f"{', '.join(STRATEGIES)}")
        if "strategy" not in inspect.signature(train).parameters:
            raise SearchError("this version of fat_tf.training.train has no strategy "
                              "argument; use --strategy none")
    if who != "chief" and (data_dir is None or not Path(data_dir).is_dir()):
        raise SearchError(f"{data_dir}: dataset folder not found")
    if tuner == "bayesian" and initial_points is None:
        initial_points = default_initial_points(space.dimensions, max_trials)
    if overwrite and who != "worker":
        for name in ("tuner", "runs", "search.json", "trials.csv", "trials.md",
                     "best_config.json"):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    search = _search_record(config, space, tuner, hyperband_factor)
    _check_same_search(out, search, wait=WORKER_WAIT_S if who == "worker" else 0)

    hypermodel = TrainingHyperModel(space, config, data_dir, strategy=strategy, verbose=verbose)
    oracle = make_oracle(tuner, max_trials, config.train.epochs, config.train.seed,
                         hyperband_factor, max_failures=max_failures,
                         initial_points=initial_points)
    new_tuner_dir = not (out / "tuner").exists()
    try:
        search_tuner = SearchTuner(oracle, hypermodel, out / "runs", directory=str(out),
                                   project_name="tuner", overwrite=False)
    except BaseException:
        if new_tuner_dir and who != "worker":  # leave no half-made search behind
            shutil.rmtree(out / "tuner", ignore_errors=True)
        raise
    if who != "worker" and not (out / "search.json").exists():
        atomic_write_text(out / "search.json", json.dumps(search, indent=2, sort_keys=True)
                          + "\n")
    if retry_failed and who != "worker":
        again = oracle.retry_failed()
        if again:
            print(f"retrying failed trial(s) {', '.join(again)}", flush=True)
    if tuner == "hyperband" and who != "worker":
        warning = hyperband_warning(max_trials, config.train.epochs, hyperband_factor)
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    if who == "chief":
        print(f"chief oracle serving {tuner} search on {os.environ['KERASTUNER_ORACLE_IP']}:"
              f"{os.environ['KERASTUNER_ORACLE_PORT']}; search folder {out}", flush=True)
    else:
        each = {"hyperband": f"{config.train.epochs} epoch(s) at most",
                "bayesian": f"{config.train.epochs} epoch(s) each, the first "
                            f"{getattr(oracle, 'num_initial_points', initial_points)} random"}
        print(f"{tuner} search over {', '.join(space.names)} ({max_trials} trials at most, "
              f"{each.get(tuner, f'{config.train.epochs} epoch(s) each')}); search folder "
              f"{out}", flush=True)
    search_tuner.search(verbose=1 if verbose else 0)
    if who == "worker":
        rows = [{"trial": t, "status": s, OBJECTIVE: v, "error": e}
                for t, s, v, e in search_tuner.trials_run]
        if rows and all(r["status"] != "COMPLETED" for r in rows):
            raise SearchError(f"every trial this worker ran failed; the first: {rows[0]['error']}")
        return SearchResult(who, rows)
    rows = write_trials(search_tuner, out)
    stopped = None
    if oracle.failure_stopped:
        last = next((r["error"] for r in reversed(rows) if r["error"]), "")
        stopped = TooManyFailures(f"{oracle.consecutive_failures} trials failed in a row; the "
                                  f"search stops (--max-failures {max_failures}). "
                                  f"Last error: {last}")
    best = [t for t in oracle.get_best_trials(1)
            if t.status == "COMPLETED" and t.score is not None]
    if not best:
        failed = [r for r in rows if r["error"]]
        first = f"trial {failed[0]['trial']}: {failed[0]['error']}" if failed else "none ran"
        raise SearchError(f"no trial completed ({len(rows)} ran{'; stopped' if stopped else ''})"
                          f"; the first error, {first}; see {out / 'trials.md'}")
    best_trial = best[0]
    best_config = out / "best_config.json"
    search_tuner.result_config(best_trial.hyperparameters).save(best_config)
    if stopped is not None:
        raise SearchError(f"{stopped} ({best_config} holds the best trial so far)")
    return SearchResult(who, rows, best_config, float(best_trial.score))


#: Seconds a distributed worker waits for the chief's ``search.json`` before giving up.
WORKER_WAIT_S = 60.0


def _search_record(config: Config, space: SearchSpace, tuner: str,
                   hyperband_factor: int) -> dict[str, Any]:
    """What ``search.json`` records: a resumed search must match it."""
    search = {"tuner": tuner, "objective": OBJECTIVE, "space": space.fingerprint(),
              "base_config": config.to_dict()}
    if tuner == "hyperband":
        search["hyperband_factor"] = hyperband_factor
    return json.loads(json.dumps(search))


def _check_same_search(out: Path, search: dict[str, Any], wait: float = 0) -> None:
    """Refuse to resume a search folder whose ``search.json`` records another search.

    Args:
        out: the search folder.
        search: this search's record (:func:`_search_record`).
        wait: seconds to wait for ``search.json`` to appear (a distributed worker waits
            for the chief to write it); after that, a missing file is an error. 0: a
            missing file means a new search.

    Raises:
        SearchError: the records differ, or ``search.json`` did not appear in time.
    """
    path = out / "search.json"
    deadline = time.monotonic() + wait
    while wait and not path.exists():
        if time.monotonic() >= deadline:
            raise SearchError(f"{path} did not appear within {wait:g} s: start the chief "
                              "(KERASTUNER_TUNER_ID=chief) first, with the same --out folder "
                              "shared with every worker")
        time.sleep(min(1.0, max(0.05, wait / 20)))
    if not path.exists():
        return
    previous = _read_json(path)
    if previous != search:
        changed = sorted(k for k in set(previous) | set(search)
                         if previous.get(k) != search.get(k))
        raise SearchError(f"{out} holds a different search ({', '.join(changed) or 'search.json'}"
                          " changed); use another --out folder, the same settings to "
                          "resume it, or --overwrite to start again")


def write_trials(search_tuner: SearchTuner, out: Path) -> list[dict[str, Any]]:
    """Write ``trials.csv`` and ``trials.md`` (one row per trial) atomically; return rows."""
    oracle = search_tuner.oracle
    space = search_tuner.hypermodel.space
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda t: (len(t), t)):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        run_dir = search_tuner.run_dir(trial_id)
        summary = _read_json(run_dir / "summary.json")
        info = _read_json(run_dir / "tune.json")
        row = {"trial": trial_id, "status": str(trial.status),
               OBJECTIVE: trial.score if trial.status == "COMPLETED" else None,
               "final_val_lwlrap": summary.get("val_lwlrap"),
               "epochs": _trial_epochs(search_tuner, trial.hyperparameters),
               "tuner_id": info.get("tuner_id", "")}
        for name, value in space.overrides(values).items():
            row[name] = json.dumps(value) if value is None or isinstance(value, (list, dict)) \
                else value
        for key in _HYPERBAND_KEYS:
            if key in values:
                row[key] = values[key]
        row["run_dir"] = os.path.relpath(run_dir, out)
        row["error"] = trial_error(trial.message) if trial.status != "COMPLETED" else ""
        rows.append(row)
    present = {k for row in rows for k in row}
    fields = ["trial", "status", OBJECTIVE, "final_val_lwlrap", "epochs", "tuner_id",
              *space.names, *(k for k in _HYPERBAND_KEYS if k in present), "run_dir", "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "trials.csv", buffer.getvalue())
    atomic_write_text(out / "trials.md", _markdown(rows, fields))
    return rows


def _trial_epochs(search_tuner: SearchTuner, hp) -> int | None:
    """The epoch count a trial trains to (Hyperband: its ``tuner/epochs``)."""
    try:
        return search_tuner.trial_config(hp).train.epochs
    except (ConfigError, KeyError, ValueError):
        return hp.values.get("tuner/epochs")


def _markdown(rows: list[dict[str, Any]], fields: list[str]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    ranked = sorted(rows, key=lambda r: (r.get(OBJECTIVE) is None, -(r.get(OBJECTIVE) or 0)))
    lines = [f"# Trials ({len(rows)}), best {OBJECTIVE} first", "",
             "| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(cell(r.get(f)) for f in fields) + " |" for r in ranked]
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
