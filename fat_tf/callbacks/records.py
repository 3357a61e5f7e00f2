"""Per-epoch records of a training run: the metrics CSV and the best model so far.

* :class:`MetricsCSV` — one row per epoch, the whole file rewritten atomically; on
  resume, rows of epochs that will be re-run are replaced.
* :class:`SaveBestModel` — saves the evaluated model (tagger, or teacher) as ``.keras``
  when the monitored validation metric improves.
* :class:`SaveValidationPredictions` — every scored model's clip logits on the
  validation clips at each validation, for comparing checkpoint-selection rules
  afterwards (:mod:`fat_tf.selection`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

import keras
import numpy as np

from fat_tf.callbacks.checkpoint import atomic_save_model
from fat_tf.errors import FatTfError
from fat_tf.files import atomic_write_bytes, atomic_write_text, read_json_object
from fat_tf.ops.pooling import clip_logits


def optimizer_step(model) -> int | None:
    """The optimiser steps ``model`` has taken (None before it has an optimiser).

    Args:
        model: the model being fit.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def scored_models(method) -> dict[str, keras.Model]:
    """Every model a validation scores, ``{name: model}``: ``evaluated`` (the method's
    evaluated model), then the method's alternatives (mean teacher's ``student``).

    Args:
        method: the method being fit.
    """
    return {"evaluated": method.evaluated_model,
            **getattr(method, "alternative_models", {})}


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
            reader = None
            try:
                with open(self.path, newline="", encoding="utf-8") as f:
                    reader = csv.DictReader(f)
                    for row in reader:
                        self.rows[int(row["epoch"])] = row
            except (KeyError, TypeError, ValueError, csv.Error) as e:
                line = f" line {reader.line_num}" if reader is not None else ""
                raise FatTfError(
                    f"{self.path}{line}: damaged ({type(e).__name__}: {e}); delete the "
                    "damaged rows, or the whole file (rows of the epochs left to run are "
                    "written again), and rerun the same command") from None

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
    keeps comparing against the true best. When the method scores alternative models
    too (:attr:`fat_tf.methods.base.Method.alternative_models`, e.g. mean teacher's
    student, logged as ``val_<name>_lwlrap``), the best of all of them at each
    validation competes, and the JSON names the model that was saved.

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
        state = read_json_object(
            self.state_path, f"delete it (and {os.path.basename(self.path)} if that is "
            "damaged too) to let the run save a new best model")
        if not isinstance(state.get("value"), (int, float)):
            raise FatTfError(f"{self.state_path}: has no numeric 'value'; delete it to let the "
                             "run save a new best model")
        return state

    def candidates(self, logs: dict) -> list[tuple[str, str, keras.Model, float]]:
        """``(monitor, model name, model, value)`` of every scored model with a finite
        value in ``logs``: the evaluated model, then the alternatives.

        Args:
            logs: the epoch's logs.
        """
        scored = scored_models(self.model)
        models = [(self.monitor, "evaluated", scored.pop("evaluated"))]
        if self.monitor == "val_lwlrap":
            models += [(f"val_{name}_lwlrap", name, model) for name, model in scored.items()]
        found = []
        for monitor, name, model in models:
            value = logs.get(monitor)
            if value is not None and math.isfinite(float(value)):
                found.append((monitor, name, model, float(value)))
        return found

    def on_epoch_end(self, epoch, logs=None):
        found = self.candidates(logs or {})
        if not found:
            return
        monitor, name, model, value = max(found, key=lambda c: self.sign * c[3])
        best = self.best()
        if best is not None and self.sign * value <= self.sign * best:
            return
        atomic_save_model(model, self.path)
        state = {"monitor": monitor, "value": value, "epoch": epoch + 1,
                 "step": optimizer_step(self.model), "model": name}
        atomic_write_text(self.state_path, json.dumps(state))


class SaveValidationPredictions(keras.callbacks.Callback):
    """After every validation, score the validation clips once more and keep the clip
    logits of every scored model, in one ``.npz`` rewritten atomically.

    The file holds ``epochs`` and ``steps`` (``[E]``), ``labels`` (``[N, C]``) and, per
    scored model, ``logits_<name>`` (``[E, N, C]``): ``logits_evaluated`` for the
    evaluated model, then the alternatives (mean teacher's ``logits_student``). On
    resume, the rows of epochs that will be re-run are replaced, as in
    :class:`MetricsCSV`.

    Args:
        path: the ``.npz`` file.
        validation_data: the validation dataset as ``fit`` gets it: batches of
            ``({"windows", "window_mask"}, labels)``.
    """

    def __init__(self, path: str, validation_data):
        super().__init__()
        self.path = path
        self.validation_data = validation_data
        self.rows: dict[int, dict[str, np.ndarray]] = {}
        self.labels: np.ndarray | None = None

    def on_train_begin(self, logs=None):
        self.rows, self.labels = {}, None
        if not os.path.exists(self.path):
            return
        try:
            with np.load(self.path) as saved:
                names = [k for k in saved.files if k.startswith("logits_")]
                self.labels = saved["labels"]
                for i, (epoch, step) in enumerate(zip(saved["epochs"], saved["steps"])):
                    self.rows[int(epoch)] = {"step": int(step),
                                             **{k: saved[k][i] for k in names}}
        except (KeyError, IndexError, ValueError, OSError) as e:
            raise FatTfError(
                f"{self.path}: damaged ({type(e).__name__}: {e}); delete it (the "
                "predictions of the epochs left to run are written again) and rerun the "
                "same command") from None

    def on_epoch_end(self, epoch, logs=None):
        method = self.model
        models = scored_models(method)
        logits: dict[str, list] = {name: [] for name in models}
        labels = []
        for inputs, batch_labels in self.validation_data:
            for name, model in models.items():
                logits[name].append(keras.ops.convert_to_numpy(clip_logits(
                    model, inputs["windows"], inputs["window_mask"],
                    method.window_pooling)).astype(np.float32))
            labels.append(keras.ops.convert_to_numpy(batch_labels).astype(np.float32))
        self.labels = np.concatenate(labels)
        self.rows = {e: r for e, r in self.rows.items() if e <= epoch}
        self.rows[epoch + 1] = {"step": optimizer_step(method) or 0,
                                **{f"logits_{name}": np.concatenate(values)
                                   for name, values in logits.items()}}
        self._write()

    def _write(self) -> None:
        epochs = sorted(self.rows)
        names = sorted({k for row in self.rows.values() for k in row if k != "step"})
        buffer = io.BytesIO()
        np.savez(buffer, epochs=np.asarray(epochs, np.int64),
                 steps=np.asarray([self.rows[e]["step"] for e in epochs], np.int64),
                 labels=self.labels,
                 **{k: np.stack([self.rows[e][k] for e in epochs]) for k in names})
        atomic_write_bytes(self.path, buffer.getvalue())
