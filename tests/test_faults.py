"""Faults during training: non-finite loss, unwritable or full disks, SIGKILL at every stage.

Each test checks what the user sees (one ``error: ...`` line, exit code 1, no traceback)
and what the run folder holds afterwards (the last complete backup, finite weights, a
complete metrics.csv, loadable models, no ``.tmp-*`` file), and that rerunning the same
command finishes the run. ``tests/test_train_cli.py`` covers a SIGKILL in mid-epoch.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from fat_tf import callbacks, train, training
from fat_tf.callbacks import checkpoint
from fat_tf.errors import FatTfError

FAST = [
    "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]


def run_train(data, out, *extra) -> int:
    return train.main(["--data", str(data), "--out", str(out), *FAST, *extra])


def run_short(data, out, epochs: int) -> int:
    """In-process training of ``epochs`` short epochs (2 steps each)."""
    return run_train(data, out, "--epochs", str(epochs), "--set", "train.steps_per_epoch=2")


def epochs_in_csv(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def committed_epoch(run: Path) -> int | None:
    path = run / "backup" / "training_metadata.json"
    return json.loads(path.read_text())["epoch"] if path.exists() else None


def backup_weights(run: Path) -> Path:
    name = json.loads((run / "backup" / "training_metadata.json").read_text())["weights"]
    return run / "backup" / name


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return arrays


def assert_finite_h5(path: Path) -> None:
    for name, value in h5_arrays(path).items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.all(np.isfinite(value)), f"{path}: {name} is not finite"


def optimizer_steps(run: Path) -> int:
    """Optimiser iterations stored in the committed backup (the Adam step counter)."""
    return int(h5_arrays(backup_weights(run))["optimizer/vars/0"])


def assert_loadable_finite_model(path: Path) -> None:
    model = keras.models.load_model(path)
    assert model.output_shape[-1] == 12
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if np.issubdtype(value.dtype, np.floating):
            assert np.all(np.isfinite(value)), f"{path}: {weight.path}"


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def no_tmp_files(run: Path) -> bool:
    return not list(run.rglob(".tmp-*"))


# ----------------------------------------------------------------------------- NaN / inf


def test_non_finite_loss_is_one_error_line(tiny_demo_dir, tmp_path, capsys):
    """A real divergence (absurd learning rate) in a fresh run: one line, exit 1."""
    run = tmp_path / "run"
    code = run_train(tiny_demo_dir, run, "--epochs", "2", "--lr-schedule", "constant",
                     "--set", "optim.lr_max=1e30")
    line = one_error_line(capsys.readouterr().err)
    assert code == 1
    assert line.startswith("error: loss became nan at batch ") and "optim.lr_max" in line
    assert committed_epoch(run) is None and not (run / "summary.json").exists()


def poison_audio_after(monkeypatch, run: Path, epoch: int) -> None:
    """Make every training batch NaN from the first batch after ``epoch`` epochs.

    (A 16-bit WAV cannot hold a NaN; this stands for any input or step that diverges.)
    The training stream repeats and is prefetched across epoch ends, so batches are
    counted as the pipeline produces them rather than timed by the backup's commit.
    """
    real = training.make_datasets

    def make_datasets(data, config, *args, **kwargs):
        train_ds, val_ds, budget = real(data, config, *args, **kwargs)
        produced = itertools.count()
        first_bad = budget.interval_steps * epoch

        def poisoned(audio):
            return audio * np.float32("nan") if next(produced) >= first_bad else audio

        def poison(inputs, labels):
            audio = tf.numpy_function(poisoned, [inputs["audio"]], tf.float32, stateful=True)
            return {**inputs, "audio": tf.ensure_shape(audio, inputs["audio"].shape)}, labels

        return train_ds.map(poison, deterministic=True), val_ds, budget

    monkeypatch.setattr(training, "make_datasets", make_datasets)


def test_nan_keeps_last_good_backup_and_rerun_resumes_from_it(
    tiny_demo_dir, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    poison_audio_after(monkeypatch, run, epoch=1)
    assert run_train(tiny_demo_dir, run, "--epochs", "2") == 1
    line = one_error_line(capsys.readouterr().err)
    # NaN audio gives a NaN loss, or (where TF's fused BatchNorm + ReLU kernels turn NaN
    # activations into 0) a finite loss with NaN weights: both stop at the first batch
    assert line.startswith(("error: loss became nan at batch 1;",
                            "error: weight backbone/block1/conv1/kernel became non-finite "
                            "at batch 1;")), line
    # epoch 2 left no trace: the last good epoch's backup, row and best model are kept
    assert committed_epoch(run) == 1 and epochs_in_csv(run) == [1]
    assert_finite_h5(backup_weights(run))
    assert_loadable_finite_model(run / "best.keras")
    assert no_tmp_files(run) and not (run / "summary.json").exists()

    monkeypatch.undo()  # the same command, now without the fault
    assert run_train(tiny_demo_dir, run, "--epochs", "2") == 0
    capsys.readouterr()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run_this_session"] == 1 and np.isfinite(summary["val_lwlrap"])
    assert epochs_in_csv(run) == [1, 2]
    assert_finite_h5(backup_weights(run))
    assert_loadable_finite_model(run / "model.keras")


@pytest.mark.slow
def test_non_finite_weights_at_epoch_end_stop_before_anything_is_saved(
    tiny_demo_dir, tmp_path, capsys, monkeypatch
):
    """An optimiser step can leave NaN weights while the loss it reported was finite:
    the epoch-end check stops the run before the CSV row, best model and backup."""

    class BreakWeightsAtEpoch2(callbacks.StopOnNonFiniteLoss):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                weight = self.model.tagger.trainable_weights[0]
                weight.assign(np.full(weight.shape, np.nan, np.float32))
            super().on_epoch_end(epoch, logs)

    monkeypatch.setattr(training, "StopOnNonFiniteLoss", BreakWeightsAtEpoch2)
    run = tmp_path / "run"
    assert run_short(tiny_demo_dir, run, 2) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "became non-finite in epoch 2" in line and "weight " in line, line
    assert committed_epoch(run) == 1 and epochs_in_csv(run) == [1]
    assert_finite_h5(backup_weights(run))
    assert_loadable_finite_model(run / "best.keras")


def test_stop_on_non_finite_loss_unit():
    assert issubclass(callbacks.NonFiniteLossError, FatTfError)  # so the CLIs report it
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    stop = callbacks.StopOnNonFiniteLoss()
    stop.set_model(model)
    stop.on_train_batch_end(0, {"loss": 1.0})
    stop.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(callbacks.NonFiniteLossError, match="loss became inf at batch 3"):
        stop.on_train_batch_end(2, {"loss": float("inf")})
    model.layers[0].bias.assign([0.0, np.nan])
    with pytest.raises(callbacks.NonFiniteLossError, match="bias became non-finite in epoch 5"):
        stop.on_epoch_end(4, {"loss": 1.0})
    assert model.stop_training


# ----------------------------------------------------------------------------- disk


def test_run_folder_under_a_file_is_reported_before_training(tiny_demo_dir, tmp_path, capsys):
    """An unwritable run folder (root ignores chmod, so: a path below a regular file)."""
    blocker = tmp_path / "somefile"
    blocker.write_text("not a folder")
    assert run_train(tiny_demo_dir, blocker / "run", "--epochs", "1") == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(blocker / "run") in line and "cannot write to the run folder" in line


needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"),
                                    reason="needs /dev/full (Linux)")


@needs_dev_full
def test_full_disk_at_the_write_probe(tiny_demo_dir, tmp_path, capsys):
    """A real ENOSPC at the first write: the probe file is a link to /dev/full (filling a
    real disk would need root and a tmpfs mount)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".write-test").symlink_to("/dev/full")
    assert run_train(tiny_demo_dir, run, "--epochs", "1") == 1
    line = one_error_line(capsys.readouterr().err)
    assert line == f"error: {run}: cannot write to the run folder (No space left on device)"


def test_too_little_free_space_is_refused_before_training(
    tiny_demo_dir, tmp_path, capsys, monkeypatch
):
    """The free-space check compares the disk's free bytes with the run's estimated needs."""
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(training.shutil, "disk_usage",
                        lambda path: Usage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))
    run = tmp_path / "run"
    assert run_train(tiny_demo_dir, run, "--epochs", "1") == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {run}: only 1 MB free on its disk, but this run needs"), line
    assert not (run / "metrics.csv").exists() and not (run / "backup").exists()


@needs_dev_full
def test_full_disk_while_saving_a_backup_then_resume(
    tiny_demo_dir, tmp_path, capsys, monkeypatch
):
    """A real ENOSPC while writing epoch 2's backup (its temporary file is made a link to
    /dev/full): one error line, epoch 1's backup kept, the temporary file
    removed; the same command then finishes the run."""
    real_write_weights = checkpoint.write_weights_file
    calls = []

    def write_weights_file(data, filepath):
        calls.append(filepath)
        if len(calls) == 2:  # the disk is full from now on
            os.symlink("/dev/full", filepath)
        return real_write_weights(data, filepath)

    monkeypatch.setattr(checkpoint, "write_weights_file", write_weights_file)
    run = tmp_path / "run"
    assert run_short(tiny_demo_dir, run, 2) == 1
    line = one_error_line(capsys.readouterr().err)
    assert ".tmp-latest.weights.h5" in line and "No space left on device" in line, line
    assert committed_epoch(run) == 1 and no_tmp_files(run)

    monkeypatch.undo()
    assert run_short(tiny_demo_dir, run, 2) == 0
    capsys.readouterr()
    assert epochs_in_csv(run) == [1, 2] and committed_epoch(run) == 2
    assert json.loads((run / "summary.json").read_text())["epochs_run_this_session"] == 1
    assert no_tmp_files(run)


# ----------------------------------------------------------------------------- SIGKILL

#: Runs ``python -m fat_tf.train`` with one pause point: when reached, the process writes
#: a marker file and sleeps until the test kills it. FAT_TF_TEST_PAUSE is ``WHERE:EPOCH``:
#: ``backup:N`` — halfway through writing epoch N's backup weights (the temporary file is
#:   truncated to half, as a write cut short leaves it);
#: ``commit:N`` — epoch N's weights file is complete and renamed, its metadata not yet
#:   written;
#: ``final:0`` — halfway through writing model.keras after the last epoch.
WRAPPER = r"""
import os, sys, time
import keras
from fat_tf import train, training
from fat_tf.callbacks import checkpoint
from fat_tf.errors import FatTfError

where, _, at = os.environ.get("FAT_TF_TEST_PAUSE", "").partition(":")
marker = os.environ["FAT_TF_TEST_MARKER"]
state = {"epoch": None, "final": False}

def hold():
    open(marker, "w").close()
    time.sleep(600)

def halve(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)

real_save_model = checkpoint.AtomicBackupAndRestore._save_model
def _save_model(self):
    state["epoch"] = self._current_epoch
    real_save_model(self)
checkpoint.AtomicBackupAndRestore._save_model = _save_model

real_write_weights = checkpoint.write_weights_file
def write_weights_file(data, filepath):
    real_write_weights(data, filepath)
    if where == "backup" and state["epoch"] == int(at):
        halve(filepath)
        hold()
checkpoint.write_weights_file = write_weights_file

real_write = checkpoint.atomic_write_text
def atomic_write_text(path, text):
    if where == "commit" and state["epoch"] == int(at) and path.endswith("metadata.json"):
        hold()
    real_write(path, text)
checkpoint.atomic_write_text = atomic_write_text

real_atomic_save_model = training.atomic_save_model
def atomic_save_model(model, path):
    state["final"] = path.endswith("model.keras")
    real_atomic_save_model(model, path)
training.atomic_save_model = atomic_save_model

real_save = keras.Model.save
def save(self, filepath, *args, **kwargs):
    real_save(self, filepath, *args, **kwargs)
    if where == "final" and state["final"]:
        halve(filepath)
        hold()
keras.Model.save = save

sys.exit(train.main(sys.argv[1:]))
"""

EPOCHS = 3


def train_command(data, run) -> list[str]:
    return [sys.executable, "-c", WRAPPER, "--data", str(data), "--out", str(run), *FAST,
            "--epochs", str(EPOCHS)]


def run_until_paused(data, run: Path, pause: str) -> None:
    """Run training until it reaches ``pause``, then SIGKILL it there."""
    marker = run.parent / f"paused-{pause.replace(':', '-')}"
    env = {**os.environ, "FAT_TF_TEST_PAUSE": pause, "FAT_TF_TEST_MARKER": str(marker),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(train_command(data, run), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert proc.poll() is None, f"exited before {pause}: {proc.stderr.read()[-3000:]}"
            assert time.time() < deadline, f"never reached {pause}"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def finish(data, run: Path) -> dict:
    """Rerun the same command without a pause; check the run folder is complete."""
    env = {**os.environ, "FAT_TF_TEST_MARKER": str(run.parent / "unused")}
    done = subprocess.run(train_command(data, run), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert epochs_in_csv(run) == list(range(1, EPOCHS + 1))
    assert committed_epoch(run) == EPOCHS
    steps = json.loads((run / "data.json").read_text())["train_clips"] // 8
    # exactly EPOCHS epochs of optimiser steps: no epoch was skipped or trained twice
    assert optimizer_steps(run) == EPOCHS * steps
    assert [p.name for p in (run / "backup").glob("*.weights.h5")] == [backup_weights(run).name]
    assert_loadable_finite_model(run / "model.keras")
    assert_loadable_finite_model(run / "best.keras")
    assert no_tmp_files(run)
    return json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_sigkill_while_writing_the_first_and_second_backups(tiny_demo_dir, tmp_path):
    run = tmp_path / "run"
    tmp_weights = run / "backup" / ".tmp-latest.weights.h5"

    # before the first backup exists: killed while writing it
    run_until_paused(tiny_demo_dir, run, "backup:1")
    assert tmp_weights.exists() and committed_epoch(run) is None
    assert epochs_in_csv(run) == [1]  # the row is written before the backup

    # the same command starts over (nothing committed), then is killed writing epoch 2's
    run_until_paused(tiny_demo_dir, run, "backup:2")
    assert tmp_weights.exists() and committed_epoch(run) == 1
    assert epochs_in_csv(run) == [1, 2]

    summary = finish(tiny_demo_dir, run)
    assert summary["epochs_run_this_session"] == EPOCHS - 1


@pytest.mark.slow
def test_sigkill_between_weights_and_metadata_and_while_saving_the_final_model(
    tiny_demo_dir, tmp_path
):
    run = tmp_path / "run"
    # epoch 2's weights are complete on disk but not committed: resume from epoch 1's
    run_until_paused(tiny_demo_dir, run, "commit:2")
    assert committed_epoch(run) == 1
    assert sorted(p.name for p in (run / "backup").glob("*.weights.h5")) == [
        "epoch-00001-batch-000000.weights.h5", "epoch-00002-batch-000000.weights.h5"]

    # every epoch done, killed halfway through writing model.keras
    run_until_paused(tiny_demo_dir, run, "final:0")
    assert committed_epoch(run) == EPOCHS and not (run / "model.keras").exists()
    assert list(run.glob(".tmp-*.keras")) and not (run / "summary.json").exists()

    summary = finish(tiny_demo_dir, run)
    assert summary["epochs_run_this_session"] == 0
