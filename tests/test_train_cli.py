"""End-to-end runs of train -> evaluate -> predict on the tiny demo dataset."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from fat_tf import evaluate, predict, train

FAST = [
    "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]


def run_train(data, out, *extra):
    return train.main(["--data", str(data), "--out", str(out), *FAST, *extra])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_evaluate_predict(tiny_demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_train(tiny_demo_dir, run, "--epochs", "2") == 0
    out = capsys.readouterr().out
    assert "validation lwlrap" in out and "chance" in out
    for name in ("config.json", "data.json", "metrics.csv", "best.keras", "model.keras",
                 "summary.json", "tensorboard", "backup"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["val_lwlrap"] <= 1 and 0 < summary["chance_lwlrap"] < 1
    rows = read_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"loss", "supervised_loss", "supervised_weight", "val_lwlrap",
            "learning_rate"} <= set(rows[0])
    assert not [p for p in run.rglob(".tmp-*")]

    # evaluate writes a per-class table, on validation and on the labelled test set
    assert evaluate.main([str(run), "--model", "final"]) == 0
    table = read_csv(run / "eval-validation.csv")
    assert len(table) == 12 and {"class", "lwlrap", "average_precision"} <= set(table[0])
    assert evaluate.main([str(run), "--split", "test", "--tta", "--pooling", "max"]) == 0

    # predict writes a Kaggle-valid submission
    submission = tmp_path / "submission.csv"
    assert predict.main([str(run), "--out", str(submission)]) == 0
    with open(tiny_demo_dir / "sample_submission.csv") as f:
        sample = list(csv.reader(f))
    with open(submission) as f:
        rows = list(csv.reader(f))
    assert rows[0] == sample[0]
    assert [r[0] for r in rows[1:]] == [r[0] for r in sample[1:]]
    probabilities = np.array([r[1:] for r in rows[1:]], float)
    assert np.all((probabilities >= 0) & (probabilities <= 1))

    # rerunning a finished run changes nothing
    before = (run / "summary.json").read_text()
    assert run_train(tiny_demo_dir, run, "--epochs", "2") == 0
    assert (run / "summary.json").read_text() == before


def test_evaluate_score_matches_training_validation(tiny_demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_train(tiny_demo_dir, run, "--epochs", "1") == 0
    capsys.readouterr()
    assert evaluate.main([str(run), "--model", "final"]) == 0
    err = capsys.readouterr().err  # the overall figures; stdout holds the per-class CSV
    reported = json.loads(err[err.index("{"):])
    summary = json.loads((run / "summary.json").read_text())
    assert reported["lwlrap"] == pytest.approx(summary["val_lwlrap"], abs=1e-6)


def test_same_seed_gives_identical_results(tiny_demo_dir, tmp_path):
    scores = []
    for name in ("a", "b"):
        assert run_train(tiny_demo_dir, tmp_path / name, "--epochs", "2", "--seed", "5") == 0
        scores.append(json.loads((tmp_path / name / "summary.json").read_text()))
        scores[-1]["losses"] = [r["loss"] for r in read_csv(tmp_path / name / "metrics.csv")]
    assert scores[0]["val_lwlrap"] == scores[1]["val_lwlrap"]
    assert scores[0]["losses"] == scores[1]["losses"]


def test_config_errors_are_one_line(tiny_demo_dir, tmp_path, capsys):
    assert run_train(tiny_demo_dir, tmp_path / "x", "--set", "model.depth=3") == 2  # usage
    err = capsys.readouterr().err
    assert err.startswith("error: unknown setting 'model.depth'") and "Traceback" not in err
    assert run_train(tmp_path / "missing", tmp_path / "y") == 2
    assert "missing" in capsys.readouterr().err
    assert run_train(tiny_demo_dir, tmp_path / "z", "--epochs", "1") == 0
    assert run_train(tiny_demo_dir, tmp_path / "z", "--epochs", "3") == 1
    assert "different config" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [
    ["--set", "optim.optimizer=sgd"],          # a name the config refuses
    ["--set", "data.noisy_usage=sometimes"],   # a bad value of a setting
    ["--method", "fixmatch"],                  # an unknown method
    ["--data", "{missing}"],                   # no dataset there
])
def test_a_failed_start_leaves_no_run_folder(bad, tiny_demo_dir, tmp_path, capsys):
    """Bad data or settings fail before the run folder is created, so the corrected
    rerun with the same --out is not blocked by a folder holding only a config."""
    run = tmp_path / "run"
    bad = [a.format(missing=tmp_path / "missing") for a in bad]
    assert train.main(["--data", str(tiny_demo_dir), "--out", str(run), *FAST,
                       "--set", "train.steps=2", *bad]) == 2  # refused as it is parsed
    assert capsys.readouterr().err.startswith("error: ")
    assert not run.exists()
    assert run_train(tiny_demo_dir, run, "--set", "train.steps=2") == 0


@pytest.mark.parametrize("module", ["fat_tf.train", "fat_tf.evaluate", "fat_tf.predict",
                                    "fat_tf.data", "fat_tf.data.demo"])
def test_cli_help(module):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "usage:" in out and len(out) > 200


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tiny_demo_dir, tmp_path):
    run = tmp_path / "run"
    epochs = 6
    cmd = [sys.executable, "-m", "fat_tf.train", "--data", str(tiny_demo_dir), "--out",
           str(run), *FAST, "--epochs", str(epochs), "--set", "train.steps_per_epoch=12"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    metadata = run / "backup" / "training_metadata.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metadata.exists() and json.loads(metadata.read_text())["epoch"] >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the next epoch
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(metadata.read_text())["epoch"]
    assert 2 <= done < epochs and not (run / "summary.json").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = read_csv(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run_this_session"] == epochs - done
    model = keras.models.load_model(run / "model.keras")
    assert model.output_shape[-1] == 12
    assert not [p for p in run.rglob(".tmp-*")]


def test_feature_cache_is_rebuilt_when_the_front_end_changes(tiny_demo_dir, tmp_path):
    cache = tmp_path / "cache"
    settings = ["--epochs", "1", "--method", "meanteacher", "--set", "data.feature_cache=true",
                "--set", f"data.cache={cache}"]
    assert run_train(tiny_demo_dir, tmp_path / "a", *settings) == 0
    first = {p.name for p in cache.glob("*.index")}
    assert len(first) == 3  # labelled features, unlabelled features, validation audio
    assert run_train(tiny_demo_dir, tmp_path / "b", *settings, "--set", "frontend.n_mels=24") == 0
    second = {p.name for p in cache.glob("*.index")}
    assert len(second - first) == 2  # new feature caches; the audio cache is reused
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert 0 <= summary["val_lwlrap"] <= 1
