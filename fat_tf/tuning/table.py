"""The table of a search's trials: ``trials.csv`` and ``trials.md``, one row per trial."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from fat_tf import run_folder as rf
from fat_tf.config import ConfigError
from fat_tf.files import atomic_write_text
from fat_tf.tuning.oracles import OBJECTIVE
from fat_tf.tuning.trials import SearchTuner, trial_error

_HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/trial_id", "tuner/bracket",
                   "tuner/round")


def write_trials(search_tuner: SearchTuner, out: Path) -> list[dict[str, Any]]:
    """Write ``trials.csv`` and ``trials.md`` (one row per trial) atomically; return rows.

    Args:
        search_tuner: the search's tuner (its oracle holds the trials).
        out: the search folder.
    """
    oracle = search_tuner.oracle
    space = search_tuner.hypermodel.space
    rows = []
    for trial_id in sorted(oracle.trials, key=lambda t: (len(t), t)):
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        run_dir = search_tuner.run_dir(trial_id)
        summary = read_json(run_dir / rf.SUMMARY)
        info = read_json(run_dir / rf.TUNE)
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


def read_json(path: Path) -> dict:
    """The JSON object in ``path``, or ``{}`` when it is missing or not JSON.

    Args:
        path: the file (a run's ``summary.json``, ``tune.json``, or ``search.json``).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
