"""Keras callbacks of a training run. Every file they write appears atomically.

* :class:`AtomicBackupAndRestore` — Keras' ``BackupAndRestore`` whose backup files are
  written to a temporary name and renamed, and committed by one atomic metadata rename,
  so a run killed at any moment (even while saving) resumes from the last complete backup.
* :class:`MetricsCSV` — one row per epoch, the whole file rewritten atomically; on
  resume, rows of epochs that will be re-run are replaced.
* :class:`SaveBestModel` — saves the evaluated model (tagger, or teacher) as ``.keras``
  when the monitored validation metric improves.
* :class:`StopOnNonFiniteLoss` — stops training with a clear message on a NaN/inf loss
  or weight.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile

import keras

from fat_tf.config import atomic_write_text
from fat_tf.errors import FatTfError


def atomic_save_model(model: keras.Model, path: str) -> None:
    """Save ``model`` as a ``.keras`` file through a temporary file and a rename.

    Args:
        model: the model to save.
        path: destination path ending in ``.keras``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=folder)
    os.close(fd)
    try:
        model.save(tmp, overwrite=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that never leaves a half-written or inconsistent backup behind.

    Each backup's weights (model, optimiser state, method state such as an EMA teacher)
    go to a new file named after the epoch, written under a temporary name and renamed;
    then ``training_metadata.json``, which names that file and the epoch, is replaced
    atomically. That rename is the single commit point: a run killed at any moment
    resumes from the weights and epoch of one complete backup (before the commit, the
    previous one; after it, the new one), never from weights one epoch ahead of the
    epoch counter. Weights files no committed metadata names are deleted.

    Multi-worker training (``agree`` given): every worker keeps its own backup, and a
    kill can land after one worker committed an epoch and before another did. So the
    previous backup is kept too (named in the metadata as ``previous``; ``null`` when
    the session started from scratch), and on resume ``agree`` (a collective over the
    workers, see :func:`fat_tf.distribute.gather_from_workers`) tells every worker
    which backups the others can restore; all restore the newest one every worker
    holds, so a worker one backup ahead restores its previous one. When there is none
    (a worker's backup is missing or several epochs behind), it refuses with an error
    naming every worker's backups, rather than silently starting the run again.

    Args:
        backup_dir: folder of the backup.
        save_freq: ``"epoch"`` or a number of batches.
        agree: for multi-worker training, a function of this worker's list of ints (its
            :meth:`_encode` restorable positions) returning every worker's list, in
            cluster order; None otherwise.
    """

    def __init__(self, backup_dir: str, save_freq="epoch", agree=None):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self.agree = agree
        self._latest: dict | None = None  # the backup restored or last written

    def _committed(self) -> dict | None:
        """The committed metadata (epoch, batch, weights file name), or None."""
        if not os.path.exists(self._training_metadata_path):
            return None
        with open(self._training_metadata_path, encoding="utf-8") as f:
            metadata = json.load(f)
        # backups written before the weights file was named in the metadata
        metadata.setdefault("weights", os.path.basename(self._weights_path))
        return metadata

    def _remove_uncommitted(self, keep: str | None, previous: str | None = None) -> None:
        if not os.path.isdir(self.backup_dir):
            return
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name not in (keep, previous):
                os.unlink(os.path.join(self.backup_dir, name))

    #: Position of "no backup: start from scratch", before every real backup.
    START = (-1, -1)
    #: Position of an unknown previous backup (metadata written without one).
    UNKNOWN = (-2, -2)

    @staticmethod
    def _position(metadata: dict | None) -> tuple[int, int]:
        """A backup's place in training, ``(epoch, batch)``; :attr:`START` for none."""
        if not metadata:
            return AtomicBackupAndRestore.START
        return int(metadata["epoch"]), int(metadata.get("batch") or 0)

    @classmethod
    def _restorable(cls, metadata: dict | None) -> dict:
        """The positions this worker can restore, mapped to their metadata (None for
        :attr:`START`): its latest backup and, when recorded, the previous one."""
        if metadata is None:
            return {cls.START: None}
        options = {cls._position(metadata): metadata}
        if "previous" in metadata:
            options[cls._position(metadata["previous"])] = metadata["previous"]
        return options

    @classmethod
    def _encode(cls, options: dict) -> list[int]:
        """``[epoch, batch]`` of the latest then the previous restorable position."""
        positions = sorted(options, reverse=True) + [cls.UNKNOWN]
        return [*positions[0], *positions[1]]

    @staticmethod
    def _describe(position: tuple[int, int]) -> str:
        epoch, batch = position
        if position == AtomicBackupAndRestore.START:
            return "no backup"
        return f"epoch {epoch}" + (f" batch {batch}" if batch else "")

    def _agreed_backup(self, metadata: dict | None) -> dict | None:
        """The backup to restore: the newest one every worker holds (see the class)."""
        mine = self._restorable(metadata)
        rows = self.agree(self._encode(mine))
        held = [{tuple(row[:2]), tuple(row[2:])} - {self.UNKNOWN} for row in rows]
        common = set.intersection(*held)
        if common:
            return mine[max(common)]
        workers = "; ".join(
            f"worker {i}: " + " or ".join(self._describe(p) for p in sorted(h, reverse=True))
            for i, h in enumerate(held)
        )
        raise FatTfError(
            f"{self.backup_dir}: the workers hold no common backup to resume from "
            f"(in cluster order, chief first: {workers}). Every worker's backup holds the "
            "same weights, so copy the backup folder of the worker furthest along (the "
            "chief's is <run>/backup, another worker's <run>/workers/<type>-<index>/backup) "
            "over the other workers' backup folders and launch again; or, to start the "
            "run again, delete every worker's backup folder and the run folder's "
            "metrics.csv and best.keras files"
        )

    def _load_model(self):
        metadata = self._committed()
        previous = (metadata or {}).get("previous")
        self._remove_uncommitted(metadata["weights"] if metadata else None,
                                 previous["weights"] if previous else None)
        if self.agree is not None:
            metadata = self._agreed_backup(metadata)
        self._latest = {k: v for k, v in metadata.items() if k != "previous"} if metadata else None
        if metadata is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, metadata["weights"]))
        self.model._initial_epoch = metadata["epoch"]

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        epoch, batch = self._current_epoch, self._last_batch_seen
        name = f"epoch-{epoch:05d}-batch-{batch:06d}.weights.h5"
        tmp_weights = os.path.join(self.backup_dir, ".tmp-latest.weights.h5")
        try:
            self.model.save_weights(tmp_weights, overwrite=True)
            os.replace(tmp_weights, os.path.join(self.backup_dir, name))
        finally:  # e.g. disk full: free the space, keep the previous backup
            if os.path.exists(tmp_weights):
                os.unlink(tmp_weights)
        metadata = {"epoch": epoch, "batch": batch, "weights": name}
        previous = None
        if self.agree is not None:  # multi-worker: keep this session's last backup too
            if self._latest is None or self._latest["weights"] != name:
                # None: this session started from scratch, which stays restorable
                metadata["previous"] = previous = self._latest
        self._latest = {k: v for k, v in metadata.items() if k != "previous"}
        atomic_write_text(self._training_metadata_path, json.dumps(metadata))
        self._remove_uncommitted(keep=name, previous=previous["weights"] if previous else None)


def optimizer_step(model) -> int | None:
    """The optimiser steps ``model`` has taken (None before it has an optimiser)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


class MetricsCSV(keras.callbacks.Callback):
    """Write epoch metrics to a CSV file, rewritten atomically after every epoch.

    Each row holds the epoch (a validation interval), the optimiser ``step`` reached,
    every logged metric and the learning rate.

    Args:
        path: the CSV file.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.rows: dict[int, dict] = {}

    def on_train_begin(self, logs=None):
        self.rows = {}
        if os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    self.rows[int(row["epoch"])] = row

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        step = optimizer_step(self.model)
        if step is not None:
            row["step"] = step
        for key, value in (logs or {}).items():
            row[key] = float(value)
        lr = self._learning_rate()
        if lr is not None:
            row["learning_rate"] = lr
        self.rows = {e: r for e, r in self.rows.items() if e <= epoch}
        self.rows[epoch + 1] = row
        self._write()

    def _learning_rate(self) -> float | None:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        lr = optimizer.learning_rate
        return float(keras.ops.convert_to_numpy(lr))

    def _write(self) -> None:
        fields: list[str] = []
        for row in self.rows.values():
            fields += [k for k in row if k not in fields]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for epoch in sorted(self.rows):
            writer.writerow(self.rows[epoch])
        atomic_write_text(self.path, buffer.getvalue())


class SaveBestModel(keras.callbacks.Callback):
    """Save the method's evaluated model when a validation metric improves.

    The best value so far is kept in a JSON file beside the model, so a resumed run
    keeps comparing against the true best.

    Args:
        path: ``.keras`` destination.
        monitor: metric name in the epoch logs (``val_lwlrap``).
        mode: ``max`` or ``min``.
    """

    def __init__(self, path: str, monitor: str = "val_lwlrap", mode: str = "max"):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.sign = 1.0 if mode == "max" else -1.0
        self.state_path = path + ".json"

    def best(self) -> float | None:
        """The best monitored value saved so far (None before the first save)."""
        state = self.best_state()
        return None if state is None else state["value"]

    def best_state(self) -> dict | None:
        """``{"monitor", "value", "epoch", "step"}`` of the saved best model, or None."""
        if not os.path.exists(self.state_path):
            return None
        with open(self.state_path, encoding="utf-8") as f:
            return json.load(f)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        best = self.best()
        if best is not None and self.sign * value <= self.sign * best:
            return
        atomic_save_model(self.model.evaluated_model, self.path)
        state = {"monitor": self.monitor, "value": value, "epoch": epoch + 1,
                 "step": optimizer_step(self.model)}
        atomic_write_text(self.state_path, json.dumps(state))


class NonFiniteLossError(FatTfError, RuntimeError):
    """Training produced a NaN or infinite loss (or weights)."""


def _float_weights(weights) -> list:
    """The floating-point variables among ``weights``."""
    return [w for w in weights if "float" in str(w.dtype)]


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first batch whose loss, or whose first or last trainable weight, is
    NaN or infinite, with a clear message.

    At the end of every epoch it also checks that the loss and every floating-point
    weight of the model are finite (an optimiser step can turn weights into NaN after
    the loss it reported was still finite). Put it *first* in the callback list: its
    error then stops the epoch before later callbacks write the CSV row, the best
    model or the backup, so the last completed epoch's backup and best model stay as
    they were and a rerun resumes from finite weights.
    """

    def set_model(self, model):
        super().set_model(model)
        # A finite loss does not prove finite gradients: TF's fused BatchNorm + ReLU
        # kernels map NaN activations to 0, so NaN inputs can give a finite loss and
        # NaN weights. A NaN gradient reaches the first and the last layer's weights, so
        # checking those two small tensors per batch catches it at once.
        trainable = _float_weights(model.trainable_weights)
        self._sentinels = trainable[:1] + trainable[-1:] if len(trainable) > 1 else trainable

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, self._sentinels, f"at batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, _float_weights(self.model.weights), f"in epoch {epoch + 1}")

    def _check(self, logs, weights, when: str):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(f"loss became {float(loss)} {when}")
        for weight in weights:
            if not bool(keras.ops.all(keras.ops.isfinite(weight.value))):
                self._stop(f"weight {weight.path} became non-finite {when}")

    def _stop(self, what: str):
        self.model.stop_training = True
        raise NonFiniteLossError(
            f"{what}; training stopped. The last completed epoch's backup and best model "
            "are kept. Try a lower learning rate (optim.lr_max) or float32 precision."
        )
