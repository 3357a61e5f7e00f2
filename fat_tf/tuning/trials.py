"""One trial of a search: a complete fat_tf training run in its own run folder.

:class:`TrainingHyperModel` turns a trial's hyperparameters into a run config and trains
it; :class:`SearchTuner` runs each trial in ``runs/trial_<id>/`` (with ``tune.json``) and
records a failure as one line; :func:`continue_run` starts a Hyperband continuation as a
copy of the trial it continues.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import keras_tuner

from fat_tf import run_folder as rf
from fat_tf.config import Config, ConfigError
from fat_tf.errors import FatTfError
from fat_tf.files import atomic_write_text
from fat_tf.tuning.oracles import OBJECTIVE
from fat_tf.tuning.space import SearchSpace


def one_line(text: str, limit: int = 400) -> str:
    """``text`` with whitespace runs collapsed, cut to ``limit`` characters.

    Args:
        text: any text (a message, a traceback).
        limit: the most characters returned.
    """
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def trial_error(message: str | None) -> str:
    """The one-line error of a failed trial from keras-tuner's stored traceback.

    Args:
        message: the trial's ``message`` (a traceback), or None.
    """
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
    ``{"val_lwlrap": score}``, the validation lwlrap of the model the trial's run
    ships by default (:data:`fat_tf.run_folder.DEFAULT_MODEL`: the final model).

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
        """Register every search-space entry on ``hp``.

        Args:
            hp: keras-tuner's ``HyperParameters``.
        """
        self.space.declare(hp)

    def build(self, hp) -> Config:
        """The run config of the values in ``hp`` (a :class:`~fat_tf.config.Config`, not a model).

        Args:
            hp: the trial's keras-tuner hyperparameters.
        """
        return self.base_config.replace(**self.space.declare(hp))

    def fit(self, hp, config: Config, *args, run_dir: str | os.PathLike, **kwargs) -> dict:
        """Train ``config`` into ``run_dir``; return ``{"val_lwlrap": score}`` (the
        default saved model's validation lwlrap).

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
        score = summary.get(rf.SUMMARY_SCORES[rf.DEFAULT_MODEL])
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
    :func:`fat_tf.tuning.oracles.make_oracle`), which stops handing out trials, so
    distributed workers stop too.

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
        """The run folder of trial ``trial_id``.

        Args:
            trial_id: keras-tuner's trial id.
        """
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
            if previous and not (run_dir / rf.CONFIG).exists():
                continue_run(self.run_dir(previous), run_dir)
            atomic_write_text(run_dir / rf.TUNE, json.dumps({
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
        from fat_tf.data.decode import pipeline_error

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

    Args:
        previous: the run folder of the trial being continued.
        run_dir: the new trial's run folder.
    """
    if not rf.backup_metadata(previous).exists():
        print(f"{previous} has no backup to continue from; training this trial from scratch")
        return False
    tmp = run_dir.with_name(f".tmp-{run_dir.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(previous, tmp, ignore=shutil.ignore_patterns(
        rf.CONFIG, rf.SUMMARY, rf.FINAL_MODEL, rf.TUNE, ".tmp-*"))
    if run_dir.exists():  # only a tune.json of an attempt killed before training began
        shutil.rmtree(run_dir)
    os.replace(tmp, run_dir)
    print(f"continuing {previous.name} in {run_dir}")
    return True
