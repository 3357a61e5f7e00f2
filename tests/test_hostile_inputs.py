"""Hostile inputs and faults (issue 16): every one ends in one clear line, never a hang,
a traceback, a crash or a wrong answer given without a word.

Classes of case covered here: special files (a FIFO named ``x.wav``), truncation of every
run-folder file, a disk that fills up in the middle of a checkpoint (a real size-limited
tmpfs when this process may mount one, else ``RLIMIT_FSIZE``), bad input to the exported
``waveform_with_lengths``, a dataset without curated clips, long clips in one predict
batch, and the permissions of the files a run and an export write. Data loss (concurrent
writers, ``export --overwrite``) is in ``tests/test_data_loss.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import threading
import wave
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from fat_tf import callbacks, export, predict, report, train
from fat_tf.callbacks import checkpoint
from fat_tf.data.check import run_check
from fat_tf.data.fetch import archives, download
from fat_tf.data.fetch.transfer import DownloadError, DownloadOptions, RemoteFile, download_file
from fat_tf.data.wav import check_wav
from fat_tf.errors import AudioFormatError, FatTfError
from fat_tf.files import atomic_write_text
from fat_tf.inference.scoring import ScoringSettings

FAST = [
    "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8", "--set", "train.steps=4", "--set", "train.validate_every=2",
]


def train_args(data, out) -> list[str]:
    return ["--data", str(data), "--out", str(out), *FAST]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_demo_dir) -> Path:
    """A finished 2-validation run (shared: copy it before changing anything)."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    assert train.main(train_args(tiny_demo_dir, run)) == 0
    return run


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def write_wav(path: Path, samples: int, rate: int = 44100) -> Path:
    data = (np.random.default_rng(samples).standard_normal(samples) * 3000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def truncate(path: Path, how: str) -> None:
    """``empty``: 0 bytes; ``half``: the first half of the file is kept."""
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])


# ----------------------------------------------------------------------------- special files


class FifoWatchdog:
    """Unblocks any reader stuck opening ``fifo`` once ``seconds`` have passed (by opening
    it for writing and closing it at once; again every second until the block ends), and
    records that it had to: a hang becomes a test failure instead of a test that never
    ends."""

    def __init__(self, fifo: Path, seconds: float = 60):
        self.fifo, self.seconds, self.fired = fifo, seconds, False
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        if self.done.wait(self.seconds):
            return
        while not self.done.wait(1.0):
            try:
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))  # with a reader
                self.fired = True
            except OSError:
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        assert not self.fired, f"reading {self.fifo} hung"


def test_fifo_named_wav_is_refused_at_once(tmp_path):
    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    with FifoWatchdog(fifo, 20), pytest.raises(AudioFormatError) as caught:
        check_wav(fifo)
    assert str(caught.value) == (f"{fifo}: is a FIFO (named pipe), not a regular file; "
                                 "expected a WAV file")


def test_fifo_in_a_dataset_fails_data_check_with_one_line(tiny_demo_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo_dir, data)
    victim = sorted((data / "train_curated").iterdir())[0]
    victim.unlink()
    os.mkfifo(victim)
    with FifoWatchdog(victim):
        assert run_check(data) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(victim) in line and "is a FIFO (named pipe), not a regular file" in line, line


def test_fifo_test_labels_csv_is_refused(tiny_demo_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo_dir, data)
    labels = data / "test_post_competition.csv"
    labels.unlink()
    os.mkfifo(labels)
    with FifoWatchdog(labels):
        assert run_check(data) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{labels}: is a FIFO (named pipe), not a regular file; expected a CSV" in line


def test_predict_skips_a_fifo_and_scores_the_rest(tiny_run, tmp_path, capsys):
    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    good = write_wav(tmp_path / "good.wav", 30000)
    out = tmp_path / "p.csv"
    with FifoWatchdog(fifo):
        code = predict.main([str(tiny_run), str(fifo), str(good), "--out", str(out)])
    assert code == 1  # a file failed, the others were written
    err = capsys.readouterr().err
    assert f"error: {fifo}: is a FIFO (named pipe), not a regular file" in err, err
    assert out.read_text().splitlines()[1].startswith(f"{good},")


# ----------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("name, model, how", [
    ("best.keras", "best", "empty"), ("best.keras", "best", "half"),
    ("model.keras", "final", "empty"), ("model.keras", "final", "half"),
])
def test_truncated_model_file_is_one_line(run_copy, tmp_path, capsys, name, model, how):
    truncate(run_copy / name, how)
    good = write_wav(tmp_path / "good.wav", 30000)
    assert predict.main([str(run_copy), str(good), "--model", model,
                         "--out", str(tmp_path / "p.csv")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {run_copy / name}: "), line
    assert "File not found" not in line and "copy it again" in line, line
    other = {"best": "final", "final": "best"}[model]
    assert f"--model {other}" in line
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("how", ["empty", "half"])
def test_truncated_data_json_is_one_line(run_copy, tmp_path, capsys, how):
    truncate(run_copy / "data.json", how)
    assert predict.main([str(run_copy), str(write_wav(tmp_path / "a.wav", 30000)),
                         "--out", str(tmp_path / "p.csv")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {run_copy / 'data.json'}: "), line


@pytest.mark.parametrize("name", ["summary.json", "data.json", "config.json", "metrics.csv"])
def test_truncated_run_files_in_report_are_one_line(run_copy, tmp_path, capsys, name):
    path = run_copy / name
    text = path.read_text()
    # metrics.csv: cut inside a number of the last row (a damaged cell); JSON: halved
    cut = text.rstrip("\n")[:-3] + "e" if name == "metrics.csv" else text[: len(text) // 2]
    path.write_text(cut)
    assert report.main([str(run_copy), "--out", str(tmp_path / "rep"), "--no-score"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {path}"), line


def test_truncated_best_model_state_is_one_line(run_copy):
    state = run_copy / "best.keras.json"
    truncate(state, "half")
    with pytest.raises(FatTfError, match=f"^{state}: not valid JSON.*delete it"):
        callbacks.SaveBestModel(str(run_copy / "best.keras")).best_state()


def test_truncated_metrics_csv_on_resume_is_one_line(run_copy):
    path = run_copy / "metrics.csv"  # a crash can leave a block of NUL bytes
    path.write_text(path.read_text() + "\x00\x00\x00\n")
    with pytest.raises(FatTfError, match=f"^{path} line 4: damaged"):
        callbacks.MetricsCSV(str(path)).on_train_begin()


def small_model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 4)), np.ones((8, 3)), verbose=0)
    return model


def write_backup(folder: Path, model: keras.Model, epoch: int) -> callbacks.AtomicBackupAndRestore:
    backup = callbacks.AtomicBackupAndRestore(str(folder))
    backup.set_model(model)
    backup._current_epoch, backup._last_batch_seen = epoch, 0
    backup._save_model()
    return backup


def restore(folder: Path) -> keras.Model:
    """A fresh model resumed from ``folder`` as training does (``on_train_begin``)."""
    fresh = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    fresh.compile(optimizer="adam", loss="mse")
    backup = callbacks.AtomicBackupAndRestore(str(folder))
    backup.set_model(fresh)
    backup.on_train_begin()
    return fresh


@pytest.mark.parametrize("how", ["empty", "half"])
def test_truncated_backup_weights_is_one_line_saying_how_to_restart(tmp_path, how):
    folder = tmp_path / "run" / "backup"
    write_backup(folder, small_model(), 2)
    weights = folder / "epoch-00002-batch-000000.weights.h5"
    truncate(weights, how)
    with pytest.raises(FatTfError) as caught:
        restore(folder)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{weights}: damaged or unreadable")
    assert "no earlier backup is kept" in message and "to start the run again" in message


def test_truncated_backup_metadata_falls_back_to_the_newest_weights(tmp_path, capsys):
    folder = tmp_path / "run" / "backup"
    model = small_model()
    write_backup(folder, model, 3)
    truncate(folder / "training_metadata.json", "half")
    fresh = restore(folder)
    assert fresh._initial_epoch == 3
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    assert "training_metadata.json is damaged; resuming from the newest backup weights " \
           "file, epoch-00003-batch-000000.weights.h5" in capsys.readouterr().err


def test_truncated_backup_metadata_without_weights_is_one_line(tmp_path):
    folder = tmp_path / "run" / "backup"
    write_backup(folder, small_model(), 1)
    (folder / "epoch-00001-batch-000000.weights.h5").unlink()
    truncate(folder / "training_metadata.json", "half")
    with pytest.raises(FatTfError, match="damaged .* no weights file to resume from; to start"):
        restore(folder)


def test_damaged_backup_falls_back_to_the_previous_one_when_kept(tmp_path, capsys):
    """Multi-worker backups keep the previous one; a damaged latest one falls back to it."""
    folder = tmp_path / "run" / "backup"
    model = small_model()
    write_backup(folder, model, 1)
    first = [keras.ops.convert_to_numpy(w) for w in model.weights]
    shutil.copyfile(folder / "epoch-00001-batch-000000.weights.h5", tmp_path / "epoch1.h5")
    model.fit(np.zeros((8, 4)), np.ones((8, 3)), verbose=0)
    write_backup(folder, model, 2)  # deletes epoch 1's file: a single worker keeps one
    shutil.copyfile(tmp_path / "epoch1.h5", folder / "epoch-00001-batch-000000.weights.h5")
    metadata = json.loads((folder / "training_metadata.json").read_text())
    metadata["previous"] = {"epoch": 1, "batch": 0,
                            "weights": "epoch-00001-batch-000000.weights.h5"}
    (folder / "training_metadata.json").write_text(json.dumps(metadata))
    truncate(folder / metadata["weights"], "half")
    restored = restore(folder)
    assert restored._initial_epoch == 1
    for w, value in zip(restored.weights, first, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), value)
    err = capsys.readouterr().err
    assert "damaged or unreadable backup weights" in err
    assert "resumed from the previous backup" in err


def test_resuming_from_truncated_backup_weights_via_train_is_one_line(
    run_copy, tiny_demo_dir, capsys
):
    (run_copy / "summary.json").unlink()  # unfinished again: train resumes from the backup
    weights = next((run_copy / "backup").glob("*.weights.h5"))
    truncate(weights, "half")
    assert train.main(train_args(tiny_demo_dir, run_copy)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {weights}: damaged or unreadable backup weights"), line
    assert "to start the run again" in line


# ----------------------------------------------------------------------------- disk full

#: Trains with FAST settings, filling the run folder's disk just before the second
#: backup (leaving FAT_TF_TEST_FREE bytes, or capping file sizes there with
#: RLIMIT_FSIZE when FAT_TF_TEST_RLIMIT is set); FAT_TF_TEST_NO_PRECHECK turns off the
#: free-space check so the write itself runs out of space.
FILL_WRAPPER = r"""
import os, resource, signal, sys
from fat_tf import train
from fat_tf.callbacks import checkpoint

calls = []
real_save = checkpoint.AtomicBackupAndRestore._save_model

def _save_model(self):
    calls.append(1)
    if len(calls) == 2:
        if os.environ.get("FAT_TF_TEST_RLIMIT"):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            limit = int(os.environ["FAT_TF_TEST_RLIMIT"])
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        else:
            filler = os.path.join(os.path.dirname(self.backup_dir), "..", "filler")
            free = os.statvfs(self.backup_dir).f_bavail * os.statvfs(self.backup_dir).f_frsize
            with open(filler, "wb") as f:
                f.write(b"\0" * max(free - int(os.environ["FAT_TF_TEST_FREE"]), 0))
    return real_save(self)

checkpoint.AtomicBackupAndRestore._save_model = _save_model
if os.environ.get("FAT_TF_TEST_NO_PRECHECK"):
    checkpoint.check_room = lambda *args: None
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MB tmpfs (the run's up-front free-space check asks for ~17 MB), or None
    when this process may not mount one (then RLIMIT_FSIZE stands in)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        yield None
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode:
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def train_filling_the_disk(data, run, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", FILL_WRAPPER, *train_args(data, run)],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600, cwd=run.parent)


@pytest.mark.slow
def test_disk_full_in_the_middle_of_a_backup_write_is_one_line(tiny_demo_dir, small_disk,
                                                               tmp_path):
    """The disk fills up while the backup weights are being written (the free-space check
    is turned off so the write itself fails): one line naming the file, exit 1, no h5py
    traceback flood and no segmentation fault; the same command then resumes."""
    if small_disk is None:  # no tmpfs: file sizes capped instead (EFBIG, not ENOSPC)
        run, env = tmp_path / "run", {"FAT_TF_TEST_RLIMIT": str(100_000)}
        reason = "File too large"
    else:
        run, env = small_disk / "run", {"FAT_TF_TEST_FREE": str(100_000)}
        reason = "No space left on device"
    done = train_filling_the_disk(tiny_demo_dir, run, {**env, "FAT_TF_TEST_NO_PRECHECK": "1"})
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    line = one_error_line(done.stderr)
    tmp = run / "backup" / ".tmp-latest.weights.h5"
    assert line.startswith(f"error: {tmp}: {reason} while writing the backup of epoch 2; "
                           "the backup of epoch 1 is kept"), line
    assert "h5py" not in done.stderr and not list(run.rglob(".tmp-*"))
    assert json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    if small_disk is not None:
        (small_disk / "filler").unlink()
    assert train.main(train_args(tiny_demo_dir, run)) == 0  # resumes and finishes


@pytest.mark.slow
def test_too_little_room_for_the_next_backup_is_refused_before_writing(
    tiny_demo_dir, small_disk
):
    if small_disk is None:
        pytest.skip("needs a size-limited file system (mounting a tmpfs needs root)")
    run = small_disk / "run"
    done = train_filling_the_disk(tiny_demo_dir, run, {"FAT_TF_TEST_FREE": str(100_000)})
    assert done.returncode == 1, done.stderr[-3000:]
    line = one_error_line(done.stderr)
    tmp = run / "backup" / ".tmp-latest.weights.h5"
    assert re.match(rf"error: {re.escape(str(tmp))}: only 0\.\d MB free on its disk, the "
                    r"backup of epoch 2 needs 0\.\d MB \(\+1\.0 MB margin\); nothing was "
                    "written", line), line
    assert not list(run.rglob(".tmp-*"))


def test_serialized_weights_equal_save_weights(tmp_path):
    model = small_model()
    path = tmp_path / "w.weights.h5"
    path.write_bytes(checkpoint.serialize_weights(model))
    fresh = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    fresh.compile(optimizer="adam", loss="mse")
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(path)
    for a, b in zip(model.weights + model.optimizer.variables,
                    fresh.weights + fresh.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))


# ----------------------------------------------------------------------------- datasets


def test_dataset_without_curated_clips_fails_data_check(tiny_demo_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_demo_dir, data)
    (data / "train_curated.csv").write_text("fname,labels\n")
    shutil.rmtree(data / "train_curated")
    (data / "train_curated").mkdir()
    assert run_check(data) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {data / 'train_curated.csv'}: no curated clips"), line


# ----------------------------------------------------------------------------- export contract


@pytest.fixture(scope="module")
def clip_module(tiny_run):
    from fat_tf.inference.clip_module import make_clip_module
    from fat_tf.inference.loaded import load_run

    trained = load_run(tiny_run)
    settings = ScoringSettings.from_config(trained.config)
    return make_clip_module(trained.load_model(), trained.class_names, settings)


@pytest.mark.parametrize("lengths, words", [
    ([30000], "lengths has 1 entries but waveform has 2 rows"),
    ([30000, 30000, 30000], "lengths has 3 entries but waveform has 2 rows"),
    ([30000, 0], "a length is 0; every clip needs at least 1 sample"),
    ([30000, -5], "a length is -5"),
    ([30000, 30001], "a length is 30001 but waveform has only 30000 samples per row"),
])
def test_waveform_with_lengths_rejects_bad_lengths(clip_module, lengths, words):
    x = np.random.default_rng(0).standard_normal((2, 30000)).astype(np.float32) * 0.1
    with pytest.raises(tf.errors.InvalidArgumentError, match=words):
        clip_module.waveform_with_lengths(tf.constant(x), tf.constant(lengths, tf.int32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_waveform_with_lengths_rejects_non_finite_clips(clip_module, bad):
    x = np.random.default_rng(0).standard_normal((2, 30000)).astype(np.float32) * 0.1
    x[1, 20000] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or infinite samples"):
        clip_module.waveform_with_lengths(tf.constant(x), tf.constant([30000, 30000]))
    # past the clip's end the samples are ignored, whatever they are
    out = clip_module.waveform_with_lengths(tf.constant(x), tf.constant([30000, 10000]))
    assert np.isfinite(out["probabilities"].numpy()).all()


def test_predict_reports_non_finite_audio_by_file(tiny_run, tmp_path, capsys, monkeypatch):
    from fat_tf.data import audio_io

    good = write_wav(tmp_path / "good.wav", 30000)
    bad = write_wav(tmp_path / "bad.wav", 30000)
    real = audio_io.load_audio

    def load_audio(path, rate):  # a decoder that lets NaN through
        wave = real(path, rate)
        return np.full_like(wave, np.nan) if path == str(bad) else wave

    monkeypatch.setattr(audio_io, "load_audio", load_audio)
    out = tmp_path / "p.csv"
    assert predict.main([str(tiny_run), str(bad), str(good), "--out", str(out)]) == 1
    assert f"error: {bad}: holds NaN or infinite samples" in capsys.readouterr().err
    assert [r.split(",")[0] for r in out.read_text().splitlines()[1:]] == [str(good)]


# ----------------------------------------------------------------------------- predict batches


class RecordingModel:
    """Stands in for a loaded model: records the padded batch shapes it is given."""

    class_names = ("a", "b")
    settings = ScoringSettings(sample_rate=44100, window_samples=1000, hop_samples=500,
                               max_windows=4, pooling="mean", tta=False)

    def __init__(self):
        self.shapes = []

    def logits(self, waveform, lengths):
        self.shapes.append(waveform.shape)
        return np.zeros((len(waveform), 2), np.float32)


def test_predict_batches_by_samples_not_clip_count(tmp_path, monkeypatch):
    """One long clip among short ones is scored alone, not padding 15 others to its
    length; the padded size of every batch stays within the budget."""
    monkeypatch.setattr(predict, "MAX_BATCH_SAMPLES", 100_000)
    lengths = [1000] * 7 + [200_000] + [1000] * 8 + [40_000, 40_000, 40_000]
    clips = [predict.Clip(str(write_wav(tmp_path / f"{i:02d}.wav", n)), f"{i}")
             for i, n in enumerate(lengths)]
    model = RecordingModel()
    done, logits, errors = predict.score(model, clips, batch_size=16)
    assert not errors and [c.name for c in done] == [c.name for c in clips]
    assert logits.shape == (len(clips), 2)
    assert (1, 200_000) in model.shapes  # alone
    for rows, samples in model.shapes:
        assert rows * samples <= 100_000 or rows == 1, model.shapes
    assert sum(rows for rows, _ in model.shapes) == len(clips)


# ----------------------------------------------------------------------------- permissions


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_honour_the_umask(tmp_path, umask_027):
    atomic_write_text(tmp_path / "a.json", "{}")
    callbacks.atomic_save_model(small_model(), str(tmp_path / "m.keras"))
    write_backup(tmp_path / "backup", small_model(), 1)
    assert mode(tmp_path / "a.json") == 0o640
    assert mode(tmp_path / "m.keras") == 0o640
    for path in (tmp_path / "backup").iterdir():
        assert mode(path) == 0o640, path


def test_run_folder_files_are_readable_by_others_under_umask_022(tiny_run):
    old = os.umask(0o022)
    os.umask(old)
    assert old == 0o022, "the test process runs with another umask"
    files = [p for p in tiny_run.rglob("*") if p.is_file() and p.name != ".lock"]
    assert {p.name for p in files} >= {"config.json", "data.json", "metrics.csv",
                                       "summary.json", "best.keras", "model.keras"}
    private = [str(p) for p in files if mode(p) & 0o044 != 0o044]
    assert not private, private


@pytest.mark.slow
def test_export_folder_honours_the_umask(tiny_run, tmp_path):
    out = tmp_path / "exported"
    assert export.main([str(tiny_run), "--out", str(out), "--no-tflite"]) == 0
    assert mode(out) == 0o755
    private = [str(p) for p in [out, *out.rglob("*")] if mode(p) & 0o044 != 0o044]
    assert not private, private



# ----------------------------------------------------------------------------- downloads


class HostileServer(ThreadingHTTPServer):
    """Serves one file at ``/f`` the way a broken or hostile server might.

    ``extra``: bytes sent after the file (more than the record declares); ``trickle``:
    bytes sent per connection before closing it (honouring ``Range``).
    """

    def __init__(self, data: bytes, extra: bytes = b"", trickle: int | None = None):
        super().__init__(("127.0.0.1", 0), _HostileHandler)
        self.data, self.extra, self.trickle = data, extra, trickle
        self.gets = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/f"


class _HostileHandler(BaseHTTPRequestHandler):
    server: HostileServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.gets += 1
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
        body = srv.data[start:] + srv.extra
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range",
                             f"bytes {start}-{len(srv.data) - 1}/{len(srv.data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if srv.trickle is None else body[: srv.trickle])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def hostile_server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    servers = []

    def start(*args, **kwargs) -> HostileServer:
        server = HostileServer(*args, **kwargs)
        thread = threading.Thread(target=server.serve_forever,
                                  kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def remote_file(server: HostileServer) -> RemoteFile:
    return RemoteFile("f.zip", len(server.data), hashlib.md5(server.data).hexdigest(),
                      server.url)


def quiet_options(**kwargs) -> DownloadOptions:
    return DownloadOptions(timeout=5.0, backoff=0.0, out=io.StringIO(), **kwargs)


def test_download_writes_no_more_than_the_declared_size(hostile_server, tmp_path):
    data = os.urandom(50_000)
    server = hostile_server(data, extra=b"\0" * 3_000_000)  # 3 MB over the declared size
    path = tmp_path / "f.zip"
    download_file(remote_file(server), path, quiet_options(retries=0))
    assert path.read_bytes() == data


def test_trickling_server_does_not_reset_the_retry_count(hostile_server, tmp_path):
    """A server that sends a few bytes per connection, then closes it, used to reset the
    failure count on every byte (39 attempts with --retries 2)."""
    server = hostile_server(os.urandom(5_000), trickle=100)
    with pytest.raises(DownloadError, match=r"failed after 3 attempt\(s\)"):
        download_file(remote_file(server), tmp_path / "f.zip", quiet_options(retries=2))
    assert server.gets == 3


def test_connections_that_each_bring_a_mebibyte_count_as_progress(hostile_server, tmp_path):
    """Real progress (at least 1 MiB, or the rest of the file, per attempt) still
    restarts the failure count: 3 attempts succeed with --retries 1."""
    data = os.urandom(3 * 2**20)
    server = hostile_server(data, trickle=1_200_000)
    download_file(remote_file(server), tmp_path / "f.zip", quiet_options(retries=1))
    assert (tmp_path / "f.zip").read_bytes() == data and server.gets == 3


def zip_bomb_split_parts(tmp_path: Path, declared: int, actual: int) -> list[Path]:
    """A two-part split archive (Info-ZIP ``zip -s`` layout) whose one member declares
    ``declared`` bytes and inflates to ``actual``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("train_noisy/a.wav", b"\0" * actual)
    data = bytearray(buf.getvalue())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<L", data, local + 22, declared)  # local header: uncompressed size
    struct.pack_into("<L", data, central + 24, declared)  # central directory entry
    eocd = data.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<2L", data, eocd + 12)
    stream = b"PK\x07\x08" + bytes(data[:cd_offset])  # split: spanning signature first
    half = len(stream) // 2
    first, last = stream[:half], bytearray(stream[half:])
    cd = bytearray(data[cd_offset : cd_offset + cd_size])
    struct.pack_into("<H", cd, 34, 0)  # the local header starts on disk 0 ...
    struct.pack_into("<L", cd, 42, 4)  # ... at offset 4 (after the signature)
    cd_rel = len(last)
    last += cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 1, 1, 1, 1, len(cd), cd_rel, 0)
    paths = [tmp_path / "noisy.z01", tmp_path / "noisy.zip"]
    paths[0].write_bytes(first)
    paths[1].write_bytes(bytes(last))
    return paths


def test_split_archive_member_inflating_past_its_declared_size_is_cut_off(tmp_path):
    """A member that declares 1,000 bytes and inflates to 20 MB: the reader stops at the
    declared size, never holding more than one chunk of output in memory."""
    parts = zip_bomb_split_parts(tmp_path, declared=1_000, actual=20_000_000)
    chunks = []
    with archives.open_archive([str(p) for p in parts]) as archive:
        assert isinstance(archive, archives.SplitZipArchive)
        (member,) = archive.members()
        assert member.size == 1_000
        with pytest.raises(archives.ArchiveError, match="inflates to more than the 1000 "
                                                        "bytes the central directory declares"):
            for chunk in archive.chunks(member):
                chunks.append(len(chunk))
    assert sum(chunks) <= 1_000 and max(chunks, default=0) <= 2**20


def test_split_archive_reader_still_reads_an_honest_member(tmp_path):
    parts = zip_bomb_split_parts(tmp_path, declared=3_000_000, actual=3_000_000)
    with archives.open_archive([str(p) for p in parts]) as archive:
        (member,) = archive.members()
        chunks = [len(c) for c in archive.chunks(member)]
    assert sum(chunks) == 3_000_000 and max(chunks) <= 2**20


@pytest.mark.parametrize("where, words", [
    ("proc", "/proc/fat_tf_hostile_test: No such file or directory; check that --dest"),
    ("file", "cannot be the --dest folder: it is a file, not a folder"),
    ("under a file", "it lies under"),
])
def test_download_dest_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, where, words):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    dest = {"proc": Path("/proc/fat_tf_hostile_test"), "file": afile,
            "under a file": afile / "sub" / "fat"}[where]
    if where == "proc" and not Path("/proc/self").exists():
        pytest.skip("needs /proc")
    code = download.main(["--dest", str(dest), "--record-url", "http://127.0.0.1:9/none",
                          "--retries", "0", "--subset", "curated"])
    assert code == 1
    line = one_error_line(capsys.readouterr().err)
    assert words in line and str(dest) in line, line
    assert afile.read_text() == "mine"


def test_rerunning_train_on_truncated_summary_or_data_json_is_one_line(
        tiny_demo_dir, tmp_path, capsys):
    """A finished run whose summary.json (or a resumable one whose data.json) was cut
    short: rerunning train says which file and what to do, no traceback."""
    import shutil

    from fat_tf import train

    run = tmp_path / "run"
    args = ["--data", str(tiny_demo_dir), "--out", str(run),
            "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
            "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
            "--set", "data.batch_size=8", "--set", "train.steps=2",
            "--set", "train.validate_every=1"]
    assert train.main(args) == 0
    capsys.readouterr()
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "summary.json").unlink()  # resumable: the backup and data.json are read
    for folder, name in ((run, "summary.json"), (unfinished, "data.json")):
        (folder / name).write_text('{"val_lwl')
        code = train.main([*args[:2], "--out", str(folder), *args[4:]])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err, err
        assert err.startswith("error: ") and name in err and "delete it" in err, err


def test_an_edited_config_json_is_refused_before_scoring(tiny_demo_dir, tmp_path, capsys):
    """Weights are tied to the settings they were trained with: a run folder whose
    config.json was edited afterwards (here the window pooling) is refused by name instead
    of predicting different probabilities; a reformatted but equal file is fine."""
    import json

    from fat_tf import predict, train
    from fat_tf.config import Config

    run = tmp_path / "run"
    assert train.main(["--data", str(tiny_demo_dir), "--out", str(run),
                       "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
                       "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
                       "--set", "data.batch_size=8", "--set", "train.steps=2",
                       "--set", "train.validate_every=1"]) == 0
    capsys.readouterr()
    clip = str(sorted((tiny_demo_dir / "test").glob("*.wav"))[0])
    original = (run / "config.json").read_text()
    config = Config.from_json(run / "config.json")
    (run / "config.json").write_text(json.dumps(config.to_dict()))  # same settings, new layout
    assert predict.main([str(run), clip, "--out", str(tmp_path / "a.csv")]) == 0
    capsys.readouterr()
    config.replace(**{"data.window_pooling": "max"}).save(run / "config.json")
    assert predict.main([str(run), clip, "--out", str(tmp_path / "b.csv")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    assert "config.json" in err and "trained with" in err
    (run / "config.json").write_text(original)
    assert predict.main([str(run), clip, "--out", str(tmp_path / "c.csv")]) == 0


#: Not UTF-8 (a Latin-1 "café" and stray bytes), as a disk error or another tool may leave.
UNDECODABLE = b'{"train": {"method": "caf\xe9"}, "\xff\xfe": 1}\n'


@pytest.mark.parametrize("name", ["config.json", "data.json"])
def test_undecodable_run_json_is_one_line_naming_the_file(run_copy, tmp_path, capsys, name):
    """Bytes that are not UTF-8 in config.json or data.json: predict and report each say
    which file in one line (config.json used to raise UnicodeDecodeError)."""
    path = run_copy / name
    path.write_bytes(UNDECODABLE)
    clip = write_wav(tmp_path / "a.wav", 30000)
    assert predict.main([str(run_copy), str(clip), "--out", str(tmp_path / "p.csv")]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {path}: not UTF-8 text"), line
    assert report.main([str(run_copy), "--out", str(tmp_path / "rep"), "--no-score"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {path}: not UTF-8 text"), line


def test_rerunning_train_on_an_undecodable_config_json_is_one_line(tiny_demo_dir, run_copy,
                                                                   capsys):
    path = run_copy / "config.json"
    path.write_bytes(UNDECODABLE)
    assert train.main(train_args(tiny_demo_dir, run_copy)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {path}: not UTF-8 text (byte 0xe9 at offset 25)"), line


def test_every_run_folder_json_reader_names_an_undecodable_file(run_copy, tmp_path):
    """The readers behind the CLI lines: the config, a bad setting in it, the best-model
    state, the backup metadata (which falls back to the newest weights file), and a FIFO
    named config.json (refused at once, not waited on)."""
    from fat_tf.config import Config, ConfigError

    config = run_copy / "config.json"
    config.write_bytes(UNDECODABLE)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(config))}: not UTF-8 text"):
        Config.from_json(config)
    config.write_text('{"train": {"steps": "many"}}')
    with pytest.raises(ConfigError) as caught:
        Config.from_json(config)
    assert str(caught.value).startswith(f"{config}: train.steps") and "\n" not in str(
        caught.value)
    state = run_copy / "best.keras.json"
    state.write_bytes(UNDECODABLE)
    with pytest.raises(FatTfError, match=f"^{re.escape(str(state))}: not UTF-8.*delete it"):
        callbacks.SaveBestModel(str(run_copy / "best.keras")).best_state()
    metadata = run_copy / "backup" / "training_metadata.json"
    metadata.write_bytes(UNDECODABLE)
    backup = callbacks.AtomicBackupAndRestore(str(run_copy / "backup"))
    assert backup._committed()["weights"].endswith(".weights.h5")
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    with FifoWatchdog(fifo), pytest.raises(OSError) as caught:
        Config.from_json(fifo)
    assert caught.value.filename == str(fifo) and "FIFO" in caught.value.strerror
