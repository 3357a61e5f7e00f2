"""Keras callbacks of a training run. Every file they write appears atomically.

* :class:`AtomicBackupAndRestore` — Keras' ``BackupAndRestore`` whose backup files are
  written to a temporary name and renamed, so a run killed at any moment (even while
  saving) resumes from the last complete backup.
* :class:`MetricsCSV` — one row per epoch, the whole file rewritten atomically; on
  resume, rows of epochs that will be re-run are replaced.
* :class:`SaveBestModel` — saves the evaluated model (tagger, or teacher) as ``.keras``
  when the monitored validation metric improves.
* :class:`StopOnNonFiniteLoss` — stops training with a clear message on a NaN/inf loss.
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
    """``BackupAndRestore`` that never leaves a half-written backup behind.

    Weights (model, optimiser state, method state such as an EMA teacher) and the
    epoch counter are each written to a temporary file and renamed into place; the
    weights file is renamed before the metadata, so the metadata never points past the
    weights it describes.

    Args:
        backup_dir: folder of the backup.
        save_freq: ``"epoch"`` or a number of batches.
    """

    def __init__(self, backup_dir: str, save_freq="epoch"):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp_weights = os.path.join(self.backup_dir, ".tmp-latest.weights.h5")
        self.model.save_weights(tmp_weights, overwrite=True)
        os.replace(tmp_weights, self._weights_path)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        atomic_write_text(self._training_metadata_path, json.dumps(metadata))


class MetricsCSV(keras.callbacks.Callback):
    """Write epoch metrics to a CSV file, rewritten atomically after every epoch.

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
        if not os.path.exists(self.state_path):
            return None
        with open(self.state_path, encoding="utf-8") as f:
            return json.load(f)["value"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        best = self.best()
        if best is not None and self.sign * value <= self.sign * best:
            return
        atomic_save_model(self.model.evaluated_model, self.path)
        state = {"monitor": self.monitor, "value": value, "epoch": epoch + 1}
        atomic_write_text(self.state_path, json.dumps(state))


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or infinite, with a clear message.

    The backup of the last completed epoch is left untouched, so nothing good is lost.
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"loss became {float(loss)} at batch {batch + 1}; training stopped. "
                "The last completed epoch's backup and best model are kept. Try a lower "
                "learning rate (optim.lr_max) or float32 precision."
            )
