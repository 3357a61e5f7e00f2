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
* ``trials.csv`` and ``trials.md`` — one row per trial: id, status, score, values, error;
* ``best_config.json`` — the best trial's full config, for ``fat_tf.train --config``.

Rerunning the same search resumes it: finished trials are kept, an interrupted trial is
run again and its run folder resumes from its last completed epoch.

Hyperband asks to continue a promising trial for more epochs ("tuner/trial_id",
"tuner/initial_epoch", "tuner/epochs"): the new trial's run folder starts as a copy of the
earlier trial's folder (its backup, metrics and best model) and training resumes from the
earlier trial's last completed epoch up to the new epoch count. Schedules and ramps depend
on the epoch, not on the total, so this equals one longer run. If the earlier run folder
is missing (e.g. on another machine), the trial trains from scratch for the full count.

Distributed search follows keras-tuner: with ``KERASTUNER_ORACLE_IP``,
``KERASTUNER_ORACLE_PORT`` and ``KERASTUNER_TUNER_ID`` set, the process whose tuner id
contains ``chief`` serves the oracle (and writes the results when the search ends); every
other process is a worker that asks it for trials. All must share the search folder.
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
import time
from pathlib import Path
from typing import Any

import keras_tuner

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
    """``max_failures`` trials failed in a row, so the search stopped."""


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
    (no traceback), and ``max_failures`` consecutive failures stop a single-process
    search (workers of a distributed search keep going, so the chief can finish).

    Args:
        oracle: a keras-tuner oracle with objective ``val_lwlrap`` (max).
        hypermodel: the :class:`TrainingHyperModel`.
        runs_dir: folder of the trials' run folders.
        max_failures: consecutive failed trials that stop the search (0: never).
        **kwargs: ``directory``, ``project_name``, ``overwrite`` of ``keras_tuner.Tuner``.
    """

    def __init__(self, oracle, hypermodel: TrainingHyperModel, runs_dir: str | os.PathLike,
                 max_failures: int = 3, **kwargs):
        self.runs_dir = Path(runs_dir)
        self.max_failures = max_failures
        self.consecutive_failures = 0
        self.trials_run: list[tuple[str, str, float | None, str]] = []
        self._last: tuple[float | None, str] = (None, "")
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def run_dir(self, trial_id: str) -> Path:
        """The run folder of trial ``trial_id``."""
        return self.runs_dir / f"trial_{trial_id}"

    def trial_config(self, hp) -> Config:
        """The run config of a trial's hyperparameters (incl. Hyperband's epoch count)."""
        config = self.hypermodel.build(hp)
        values = hp.values
        if "tuner/epochs" in values:
            config = config.replace(**{"train.epochs": int(values["tuner/epochs"])})
        return config

    def run_trial(self, trial, *args, **kwargs) -> dict:
        """Train one trial in its run folder and return its objective.

        Raises:
            keras_tuner.errors.FailedTrialError: with the run's error on one line.
        """
        values = dict(trial.hyperparameters.values)
        run_dir = self.run_dir(trial.trial_id)
        self._last = (None, "")
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
            message = one_line(_describe(e))
            self._last = (None, message)
            raise keras_tuner.errors.FailedTrialError(message) from e
        self._last = (result[OBJECTIVE], "")
        return result

    def on_trial_end(self, trial) -> None:
        """Report the trial to the oracle, print one line, stop after too many failures."""
        super().on_trial_end(trial)
        score, error = self._last
        status = "COMPLETED" if score is not None else "FAILED"
        self.trials_run.append((trial.trial_id, status, score, error))
        if score is not None:
            print(f"trial {trial.trial_id} done: {OBJECTIVE} {score:.4f}", flush=True)
            self.consecutive_failures = 0
            return
        print(f"trial {trial.trial_id} failed: {error}", flush=True)
        self.consecutive_failures += 1
        if (self.max_failures and self.consecutive_failures >= self.max_failures
                and role() == "single"):
            raise TooManyFailures(f"{self.consecutive_failures} trials failed in a row; the "
                              f"search stops (--max-failures {self.max_failures}). "
                              f"Last error: {error}")


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


def make_oracle(tuner: str, max_trials: int, epochs: int, seed: int,
                hyperband_factor: int = 3):
    """The keras-tuner oracle of ``tuner`` (random, bayesian or hyperband).

    Args:
        tuner: the search algorithm.
        max_trials: most trials (Hyperband: a cap on top of its own schedule).
        epochs: epochs per trial (Hyperband: the most epochs any trial trains).
        seed: the oracle's random seed.
        hyperband_factor: Hyperband's reduction factor.
    """
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    # Failures are counted by SearchTuner: keras-tuner's own count raises inside the
    # oracle, which leaves a distributed chief waiting forever and a resumed search stuck.
    common = dict(objective=objective, seed=seed, max_consecutive_failed_trials=None)
    if tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(max_trials=max_trials, **common)
    if tuner == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=epochs, factor=hyperband_factor,
                                                     **common)
        oracle.max_trials = max_trials
        return oracle
    raise ConfigError(f"unknown tuner {tuner!r}; choose from {', '.join(TUNERS)}")


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
               max_failures: int = 3, verbose: int | str = 2) -> SearchResult:
    """Search ``space`` around ``config``; write the results into ``out``.

    Args:
        config: the base config (``train.epochs`` = epochs per trial; Hyperband: the most).
        space: the hyperparameters to search.
        data_dir: the dataset folder (not needed by a distributed chief).
        out: the search folder (resumed when it holds the same search).
        tuner: ``random``, ``bayesian`` or ``hyperband``.
        max_trials: most trials in total (including finished ones of a resumed search).
        hyperband_factor: Hyperband's reduction factor.
        overwrite: delete the search folder's earlier search first (not on workers).
        strategy: distribution strategy passed to ``train`` (None or ``none``: not passed).
        max_failures: consecutive failed trials that stop a single-process search.
        verbose: Keras ``fit`` verbosity of each trial.

    Raises:
        SearchError: the folder holds another search, or no trial completed (the message
            is the first failed trial's error).
    """
    who = role()
    out = Path(out)
    strategy = None if strategy in (None, "none") else strategy
    if tuner not in TUNERS:
        raise ConfigError(f"unknown tuner {tuner!r}; choose from {', '.join(TUNERS)}")
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
    if overwrite and who != "worker":
        for name in ("tuner", "runs", "search.json", "trials.csv", "trials.md",
                     "best_config.json"):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    _check_same_search(out, config, space, tuner, hyperband_factor, write=who != "worker")

    hypermodel = TrainingHyperModel(space, config, data_dir, strategy=strategy, verbose=verbose)
    oracle = make_oracle(tuner, max_trials, config.train.epochs, config.train.seed,
                         hyperband_factor)
    search_tuner = SearchTuner(oracle, hypermodel, out / "runs", max_failures=max_failures,
                               directory=str(out), project_name="tuner", overwrite=False)
    if who == "chief":
        print(f"chief oracle serving {tuner} search on {os.environ['KERASTUNER_ORACLE_IP']}:"
              f"{os.environ['KERASTUNER_ORACLE_PORT']}; search folder {out}", flush=True)
    else:
        print(f"{tuner} search over {', '.join(space.names)} ({max_trials} trials at most, "
              f"{config.train.epochs} epoch(s) each{' at most' if tuner == 'hyperband' else ''}"
              f"); search folder {out}", flush=True)
    stopped = None
    try:
        search_tuner.search(verbose=1 if verbose else 0)
    except TooManyFailures as e:
        stopped = e
    if who == "worker":
        rows = [{"trial": t, "status": s, OBJECTIVE: v, "error": e}
                for t, s, v, e in search_tuner.trials_run]
        if rows and all(r["status"] != "COMPLETED" for r in rows):
            raise SearchError(f"every trial this worker ran failed; the first: {rows[0]['error']}")
        return SearchResult(who, rows)
    rows = write_trials(search_tuner, out)
    best = [t for t in oracle.get_best_trials(1)
            if t.status == "COMPLETED" and t.score is not None]
    if not best:
        failed = [r for r in rows if r["error"]]
        first = f"trial {failed[0]['trial']}: {failed[0]['error']}" if failed else "none ran"
        raise SearchError(f"no trial completed ({len(rows)} ran{'; stopped' if stopped else ''})"
                          f"; the first error, {first}; see {out / 'trials.md'}")
    best_trial = best[0]
    best_config = out / "best_config.json"
    search_tuner.trial_config(best_trial.hyperparameters).save(best_config)
    if stopped is not None:
        raise SearchError(f"{stopped} ({best_config} holds the best trial so far)")
    return SearchResult(who, rows, best_config, float(best_trial.score))


def _check_same_search(out: Path, config: Config, space: SearchSpace, tuner: str,
                       hyperband_factor: int, write: bool) -> None:
    """Refuse to resume a search folder that holds a different search."""
    search = {"tuner": tuner, "objective": OBJECTIVE, "space": space.fingerprint(),
              "base_config": config.to_dict()}
    if tuner == "hyperband":
        search["hyperband_factor"] = hyperband_factor
    path = out / "search.json"
    if path.exists():
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != json.loads(json.dumps(search)):
            changed = sorted(k for k in set(previous) | set(search)
                             if previous.get(k) != json.loads(json.dumps(search.get(k))))
            raise SearchError(f"{out} holds a different search ({', '.join(changed)} "
                              "changed); use another --out folder, the same settings to "
                              "resume it, or --overwrite to start again")
    elif write:
        atomic_write_text(path, json.dumps(search, indent=2, sort_keys=True) + "\n")


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
               "epochs": summary.get("epochs", values.get("tuner/epochs")),
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
