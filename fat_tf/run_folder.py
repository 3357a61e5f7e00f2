"""What a run folder is: its file names, and preparing, checking and reading one.

:func:`fat_tf.training.train` fills a run folder (see :mod:`fat_tf.training` for what each
file holds); ``evaluate``, ``predict``, ``export``, ``report``, :func:`fat_tf.load` and the
tuner read it. Every name of a file or folder inside it is defined here once. Atomic
writes are :mod:`fat_tf.files`' business, the lock :mod:`fat_tf.run_lock`'s.

This module imports no TensorFlow.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from fat_tf import run_lock
from fat_tf.config import Config
from fat_tf.errors import FatTfError
from fat_tf.run_lock import LOCK_NAME

# ------------------------------------------------------------------------------ file names
#: The resolved :class:`fat_tf.config.Config`.
CONFIG = "config.json"
#: Dataset folder, class names, batching and the validation clips.
DATA = "data.json"
#: One row per epoch.
METRICS = "metrics.csv"
#: The evaluated model at the best validation lwlrap.
BEST_MODEL = "best.keras"
#: The best model's state (value, step, ...), written beside it.
BEST_MODEL_STATE = BEST_MODEL + ".json"
#: The final evaluated model.
FINAL_MODEL = "model.keras"
#: Every validation's clip logits (``train.save_validation_predictions``).
VALIDATION_PREDICTIONS = "validation_predictions.npz"
#: Final and best validation lwlrap, chance level, timing (written when the run ends).
SUMMARY = "summary.json"
#: The resumable state's folder.
BACKUP = "backup"
#: The file in :data:`BACKUP` that names the backup's weights and epoch.
BACKUP_METADATA = "training_metadata.json"
#: TensorBoard logs' folder.
TENSORBOARD = "tensorboard"
#: Non-chief multi-worker processes' own folders (``workers/<type>-<index>/``).
WORKERS = "workers"
#: The lock file (:mod:`fat_tf.run_lock`).
LOCK = LOCK_NAME
#: A tuner trial's record (trial and tuner ids, hyperparameters), in the trial's run folder.
TUNE = "tune.json"
#: ``evaluate``'s table and overall figures, per split (``.format(split=...)``).
EVAL_TABLE = "eval-{split}.csv"
EVAL_RESULT = "eval-{split}.json"

#: Files that make a folder a finished run folder (``summary.json`` only once it ends).
RUN_FILES = (CONFIG, DATA, METRICS, SUMMARY)
#: Names only a run folder holds (an export folder holds ``config.json`` and
#: ``model.keras`` too).
RUN_FOLDER_NAMES = (DATA, METRICS, SUMMARY, BACKUP, BEST_MODEL, TENSORBOARD, WORKERS, LOCK)
#: The file of each saved model (``--model best|final``).
MODEL_FILES = {"best": BEST_MODEL, "final": FINAL_MODEL}
#: The saved model that ``evaluate``, ``predict``, ``export``, ``report`` and
#: ``fat_tf.load`` use unless told otherwise: the final model. With the cosine schedule
#: it is as good as the best-validation checkpoint, and picking the best of ten noisy
#: validations chooses partly for noise: on held-out validation clips of the Kitchen20
#: development benchmark it tied in-domain and did better on the shifted variant
#: (experiments/checkpoint_selection).
DEFAULT_MODEL = "final"
#: The ``summary.json`` key holding each saved model's validation lwlrap.
SUMMARY_SCORES = {"best": "best_val_lwlrap", "final": "val_lwlrap"}


def backup_metadata(run_dir: str | os.PathLike) -> Path:
    """Path of the backup's metadata (present once an epoch's backup was committed)."""
    return Path(run_dir) / BACKUP / BACKUP_METADATA


# ------------------------------------------------------------------------------ preparing
class RunFolderError(FatTfError):
    """The run folder cannot be used (unwritable, in use by another process, or holds a
    different run)."""


def prepare_run_folder(run_dir: Path, config: Config) -> bool:
    """Create or reopen a run folder; return True if the run there already finished.

    Takes the folder's lock (:mod:`fat_tf.run_lock`) before touching anything in it; the
    lock is held until the enclosing :func:`fat_tf.training.train` call returns or
    raises, so the stale temporary files deleted here cannot belong to a live run.

    Raises RunFolderError if the folder is unwritable, in use by another process or holds
    a run with another config.
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        run_lock.hold(run_dir, RunFolderError)  # first: one writer per folder
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunFolderError(f"{run_dir}: cannot write to the run folder ({e.strerror})") from e
    for stale in run_dir.rglob(".tmp-*"):  # left by a run killed while writing
        if stale.relative_to(run_dir).parts[0] != WORKERS:  # their own, maybe live
            stale.unlink()
    saved = run_dir / CONFIG
    if saved.exists():
        previous = Config.from_json(saved)
        if previous != config:
            raise RunFolderError(
                f"{run_dir} holds a run with a different config ({saved}); use another "
                "--out folder, or the same settings to resume it"
            )
    else:
        config.save(saved)
    return (run_dir / SUMMARY).exists()


# -------------------------------------------------------------------------------- reading
def check_run_folder(run_dir: str | os.PathLike) -> Path:
    """Return ``run_dir`` as a Path if it is a run folder, else raise naming what is missing.

    Args:
        run_dir: a folder written by ``python -m fat_tf.train``.

    Raises:
        FatTfError: the folder does not exist, or lacks ``config.json``, ``data.json`` or
            ``metrics.csv`` (``summary.json`` is optional: an unfinished run can be shown).
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise FatTfError(f"{path}: no such run folder")
    missing = [n for n in RUN_FILES[:3] if not (path / n).is_file()]
    if missing:
        raise FatTfError(f"{path}: not a fat_tf run folder (no {', '.join(missing)}); "
                         "pass folders written by python -m fat_tf.train")
    return path


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """The per-epoch rows of a run's ``metrics.csv`` as numbers (empty cells become NaN).

    Args:
        run_dir: the run folder.
    """
    path = Path(run_dir) / METRICS
    reader = None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            out = []
            for r in reader:
                if None in r or not all(isinstance(k, str) for k in r):
                    raise ValueError("more cells than header columns")
                out.append({k: float(v) if v not in ("", None) else float("nan")
                            for k, v in r.items()})
    except (ValueError, csv.Error) as e:  # UnicodeDecodeError is a ValueError
        line = f" line {reader.line_num}" if reader is not None else ""
        raise FatTfError(f"{path}{line}: damaged ({e}); copy the run folder again from "
                         "where it was trained") from None
    return out


def checkpoint_step(run_dir: str | os.PathLike, which: str = "best") -> int | None:
    """The optimiser step at which a run's saved model was taken.

    ``best``: ``best.keras.json`` (written with ``best.keras``), else ``summary.json``'s
    ``best_step``; ``final``: ``summary.json``'s ``total_steps``. None when the run does
    not record it (or the file is unreadable: this only labels figures).

    Args:
        run_dir: the run folder.
        which: ``best`` or ``final``.
    """
    run_dir = Path(run_dir)
    sources = ([(BEST_MODEL_STATE, "step"), (SUMMARY, "best_step")]
               if which == "best" else [(SUMMARY, "total_steps")])
    for name, key in sources:
        try:
            value = json.loads((run_dir / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
