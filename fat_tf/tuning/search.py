"""Hyperparameter search over fat_tf training runs with keras-tuner.

:func:`run_search` is what ``python -m fat_tf.tune`` runs. Each trial is one complete
:func:`fat_tf.training.train` run (labelled and unlabelled streams, callbacks, run folder)
with the config fields of a :class:`fat_tf.tuning.space.SearchSpace` set from the
trial's hyperparameters; the objective is the validation lwlrap (maximised) of the model
the run ships by default (``fat_tf.run_folder.DEFAULT_MODEL``: the final model).

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
out in full (:func:`fat_tf.tuning.oracles.hyperband_schedule`), so ``--max-trials`` below
that makes it a random search of short runs; :func:`run_search` warns.

Failed trials are final in keras-tuner (they keep their id and count toward
``max_trials``); ``retry_failed`` queues them again on a resumed search. After
``max_failures`` failures in a row the oracle hands out no new trial (see
:class:`fat_tf.tuning.oracles._FailureLimit`).

Distributed search follows keras-tuner: with ``KERASTUNER_ORACLE_IP``,
``KERASTUNER_ORACLE_PORT`` and ``KERASTUNER_TUNER_ID`` set, the process whose tuner id
contains ``chief`` serves the oracle (and writes the results when the search ends); every
other process is a worker that asks it for trials. All must share the search folder; a
worker waits up to :data:`WORKER_WAIT_S` seconds for the chief's ``search.json`` and
refuses to run a different search.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from fat_tf.budget import budget_in_epochs
from fat_tf.config import STRATEGIES, Config, ConfigError
from fat_tf.errors import FatTfError
from fat_tf.files import atomic_write_text
from fat_tf.tuning.oracles import (
    OBJECTIVE,
    TUNERS,
    default_initial_points,
    hyperband_warning,
    make_oracle,
)
from fat_tf.tuning.space import SearchSpace
from fat_tf.tuning.table import read_json, write_trials
from fat_tf.tuning.trials import SearchTuner, TrainingHyperModel


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
            (None: :func:`~fat_tf.tuning.oracles.default_initial_points`); fixed when the
            search starts.
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
    previous = read_json(path)
    if previous != search:
        changed = sorted(k for k in set(previous) | set(search)
                         if previous.get(k) != search.get(k))
        raise SearchError(f"{out} holds a different search ({', '.join(changed) or 'search.json'}"
                          " changed); use another --out folder, the same settings to "
                          "resume it, or --overwrite to start again")
