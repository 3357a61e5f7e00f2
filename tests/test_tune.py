"""python -m fat_tf.tune: search spaces, the keras-tuner search, resume, failures, distribution."""

import csv
import json
import os
import socket
import subprocess
import sys
import time

import keras_tuner
import pytest

from fat_tf import train, tune, tuning
from fat_tf.config import Config, ConfigError, get_preset
from fat_tf.search_space import SPACES_DIR, SearchSpace, default_space_path

FAST = [
    "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8", "--set", "train.steps_per_epoch=2",
    "--set", "data.max_eval_windows=2", "--verbose", "0",
]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_space(path, hyperparameters):
    path.write_text(json.dumps({"hyperparameters": hyperparameters}))
    return path


# --- search-space files -----------------------------------------------------------------

@pytest.mark.parametrize("method", ["supervised", "mixup", "vat", "meanteacher", "mixmatch"])
def test_default_space_of_every_method_is_valid(method):
    space = SearchSpace.load(default_space_path(method), base=get_preset("small"))
    assert space.names and "optim.lr_max" in space.names
    hp = keras_tuner.HyperParameters()
    values = space.declare(hp)
    config = get_preset("small").replace(**values)  # defaults map onto the config
    assert config.optim.lr_max == values["optim.lr_max"]
    assert {p.stem for p in SPACES_DIR.glob("*.json")} >= {method}


@pytest.mark.parametrize("entry, message", [
    ({"optim.lr_maxx": {"type": "float", "min": 0.1, "max": 1}}, "unknown config field"),
    ({"lr_max": {"type": "float", "min": 0.1, "max": 1}}, "unknown config field"),
    ({"optim.lr_max": {"type": "uniform", "min": 0.1, "max": 1}}, "unknown type 'uniform'"),
    ({"optim.lr_max": {"type": "float", "min": 0.1}}, "needs max"),
    ({"optim.lr_max": {"type": "float", "min": 1, "max": 0.1}}, "must be below max"),
    ({"optim.lr_max": {"type": "float", "min": 0, "max": 1, "sampling": "log"}},
     "log sampling needs min > 0"),
    ({"optim.lr_max": {"type": "float", "min": 0.1, "max": 1, "sampling": "exp"}},
     "sampling must be"),
    ({"optim.lr_max": {"type": "float", "min": 0.1, "max": 1, "values": [1]}},
     "unknown key(s) values"),
    ({"method.rampup_epochs": {"type": "float", "min": 1, "max": 5}}, "expected an integer"),
    ({"method.vat_ip": {"type": "int", "min": 1.5, "max": 3}}, "min must be an integer"),
    ({"model.backbone": {"type": "choice", "values": []}}, "non-empty list"),
    ({"model.backbone": {"type": "choice", "values": ["cnn"], "default": "x"}},
     "not one of the values"),
    ({"train.epochs": {"type": "choice", "values": ["many"]}}, "not accepted by the config"),
    ({"augment.time_flip": {"type": "boolean", "default": "yes"}}, "true or false"),
    ({"optim.lr_max": 0.1}, "expected an object"),
])
def test_bad_space_entries_are_one_line_errors(tmp_path, entry, message):
    path = write_space(tmp_path / "space.json", entry)
    with pytest.raises(ConfigError) as info:
        SearchSpace.load(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text
    assert f"entry {next(iter(entry))!r}" in text


def test_bad_space_files(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        SearchSpace.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="non-empty object"):
        SearchSpace.from_dict({"hyperparameters": {}})
    with pytest.raises(ConfigError, match="unknown top-level"):
        SearchSpace.from_dict({"hps": {}})
    # the CLI reports it as one line and exits 1 before any trial runs
    path = write_space(tmp_path / "space.json", {"optim.nope": {"type": "boolean"}})
    assert tune.main(["--space", str(path), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: entry 'optim.nope': unknown config field")
    assert "Traceback" not in err and not (tmp_path / "s").exists()


def test_hyperparameter_values_map_into_the_config(tmp_path):
    space = SearchSpace.from_dict({"hyperparameters": {
        "optim.lr_max": {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"},
        "method.mixmatch_k": {"type": "int", "min": 1, "max": 3},
        "model.channels": {"type": "choice", "values": [[8, 16, 32, 64], [16, 32, 64, 128]]},
        "frontend.top_db": {"type": "choice", "values": [None, 80.0]},
        "model.backbone": {"type": "choice", "values": ["cnn", "cnn_skip"]},
        "augment.time_flip": {"type": "boolean", "default": True},
        "optim.warmup_epochs": {"type": "fixed", "value": 2},
    }})
    hp = keras_tuner.HyperParameters()
    space.declare(hp)
    hp.values.update({"optim.lr_max": 5e-4, "method.mixmatch_k": 3,
                      "model.channels": "[16, 32, 64, 128]", "frontend.top_db": "null",
                      "model.backbone": "cnn_skip", "augment.time_flip": False})
    base = get_preset("small")
    config = space.apply(base, hp.values)
    assert config.optim.lr_max == 5e-4 and config.method.mixmatch_k == 3
    assert config.model.channels == (16, 32, 64, 128) and config.frontend.top_db is None
    assert config.model.backbone == "cnn_skip" and config.augment.time_flip is False
    assert config.optim.warmup_epochs == 2
    assert config.data == base.data  # everything else untouched
    # the hypermodel builds the same config, and the tuner adds Hyperband's epochs
    model = tuning.TrainingHyperModel(space, base, tmp_path)
    assert model.build(hp) == config
    hp.values["tuner/epochs"] = 7
    oracle = tuning.make_oracle("random", 2, 1, 0)
    tuner = tuning.SearchTuner(oracle, model, tmp_path / "runs", directory=str(tmp_path),
                               project_name="tuner")
    assert tuner.trial_config(hp) == config.replace(**{"train.epochs": 7})


def test_trial_error_is_the_last_line_of_the_failure():
    message = ("Traceback (most recent call last):\n  File x\nValueError: inner\n\n"
               "The above exception was the direct cause\n"
               "keras_tuner.src.errors.FailedTrialError: data.json: broken\n")
    assert tuning.trial_error(message) == "data.json: broken"
    assert tuning.trial_error("RuntimeError: boom\n") == "RuntimeError: boom"
    assert tuning.trial_error(None) == ""


def test_continue_run_copies_the_earlier_trial_for_hyperband(tmp_path):
    previous, new = tmp_path / "trial_0", tmp_path / "trial_3"
    (previous / "backup").mkdir(parents=True)
    for name in ("config.json", "summary.json", "model.keras", "tune.json", "metrics.csv",
                 "best.keras", "backup/training_metadata.json", "backup/w.weights.h5"):
        (previous / name).write_text(name)
    assert tuning.continue_run(previous, new)
    kept = {str(p.relative_to(new)) for p in new.rglob("*") if p.is_file()}
    assert kept == {"metrics.csv", "best.keras", "backup/training_metadata.json",
                    "backup/w.weights.h5"}
    assert not tuning.continue_run(tmp_path / "missing", tmp_path / "trial_4")
    assert not (tmp_path / "trial_4").exists()


def test_strategy_is_passed_only_when_set(tmp_path, monkeypatch, tiny_demo_dir):
    calls = []

    def fake_train(config, data_dir, run_dir, verbose="auto", strategy=None, **kwargs):
        calls.append({"strategy": strategy, **kwargs})
        return {"val_lwlrap": 0.5, "best_val_lwlrap": config.optim.lr_max}

    monkeypatch.setattr("fat_tf.training.train", fake_train)
    space = SearchSpace.from_dict({"hyperparameters": {
        "optim.lr_max": {"type": "float", "min": 1e-3, "max": 1e-2}}})
    base = get_preset("small")
    for strategy, out in (("none", "a"), ("mirrored", "b")):
        calls.clear()
        result = tuning.run_search(base, space, tiny_demo_dir, tmp_path / out, max_trials=2,
                                   strategy=strategy, verbose=0)
        assert [c["strategy"] for c in calls] == [None if strategy == "none" else strategy] * 2
        rows = read_csv(tmp_path / out / "trials.csv")
        best = max(float(r["val_lwlrap"]) for r in rows)
        assert result.best_score == pytest.approx(best)
        assert Config.from_json(result.best_config).optim.lr_max == pytest.approx(best)

    def old_train(config, data_dir, run_dir, verbose="auto"):
        raise AssertionError("not called")

    monkeypatch.setattr("fat_tf.training.train", old_train)
    with pytest.raises(tuning.SearchError, match="no strategy argument"):
        tuning.run_search(base, space, tiny_demo_dir, tmp_path / "c", strategy="mirrored")


def test_interrupted_search_reruns_only_the_unfinished_trial(tmp_path, monkeypatch,
                                                             tiny_demo_dir, capsys):
    calls = []

    def fake_train(config, data_dir, run_dir, verbose="auto"):
        calls.append(os.path.basename(run_dir))
        if len(calls) == 2:  # killed during the second trial
            raise KeyboardInterrupt
        return {"val_lwlrap": 0.5, "best_val_lwlrap": 0.5}

    monkeypatch.setattr("fat_tf.training.train", fake_train)
    argv = ["--data", str(tiny_demo_dir), "--out", str(tmp_path / "s"), "--max-trials", "3",
            "--epochs", "1"]
    assert tune.main(argv) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert tune.main(argv) == 0
    # trial_1 runs again (its run folder resumes), trial_0 is not redone
    assert calls == ["trial_0", "trial_1", "trial_1", "trial_2"]
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert [(r["trial"], r["status"]) for r in rows] == [
        ("0", "COMPLETED"), ("1", "COMPLETED"), ("2", "COMPLETED")]


# --- end to end --------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_search_writes_results_resumes_and_its_best_config_trains(tiny_demo_dir, tmp_path,
                                                                       capsys):
    out = tmp_path / "search"
    argv = ["--data", str(tiny_demo_dir), "--out", str(out), "--tuner", "random",
            "--max-trials", "3", "--epochs", "1", *FAST]
    assert tune.main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 of 3 trial(s) completed" in printed and "best config:" in printed
    rows = read_csv(out / "trials.csv")
    assert [r["trial"] for r in rows] == ["0", "1", "2"]
    assert all(r["status"] == "COMPLETED" and 0 <= float(r["val_lwlrap"]) <= 1 for r in rows)
    assert {"optim.lr_max", "optim.lr_schedule", "model.backbone", "model.dropout1",
            "tuner_id", "run_dir", "error"} <= set(rows[0])
    assert (out / "trials.md").read_text().count("| COMPLETED |") == 3
    for r in rows:
        assert (out / r["run_dir"] / "summary.json").exists()
    best = max(rows, key=lambda r: float(r["val_lwlrap"]))
    config = Config.from_json(out / "best_config.json")
    assert config.optim.lr_schedule == best["optim.lr_schedule"]
    assert config.model.backbone == best["model.backbone"]
    assert config == Config.from_json(out / best["run_dir"] / "config.json")

    # rerunning the same command finishes nothing again; more trials continue the search
    stamps = {r["trial"]: (out / r["run_dir"] / "summary.json").stat().st_mtime for r in rows}
    assert tune.main(argv) == 0
    assert len(read_csv(out / "trials.csv")) == 3
    argv[argv.index("--max-trials") + 1] = "4"
    assert tune.main(argv) == 0
    rows = read_csv(out / "trials.csv")
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    assert all((out / r["run_dir"] / "summary.json").stat().st_mtime == stamps[r["trial"]]
               for r in rows[:3])
    # other settings in the same folder are refused
    capsys.readouterr()
    assert tune.main([*argv, "--set", "optim.lr_min=0.001"]) == 1
    assert "holds a different search (base_config changed)" in capsys.readouterr().err

    # the best config trains with fat_tf.train
    assert train.main(["--data", str(tiny_demo_dir), "--config", str(out / "best_config.json"),
                       "--out", str(tmp_path / "best-run")]) == 0
    assert (tmp_path / "best-run" / "model.keras").exists()


def test_every_trial_failing_exits_nonzero_with_the_first_error(tiny_demo_dir, tmp_path,
                                                                capsys):
    out = tmp_path / "search"
    code = tune.main(["--data", str(tiny_demo_dir), "--out", str(out), "--max-trials", "5",
                      "--epochs", "1", *FAST, "--set", "optim.optimizer=sgd"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no trial completed (3 ran; stopped)")
    assert "trial 0: optim.optimizer must be adam or adamw, got 'sgd'" in err
    assert "Traceback" not in err
    rows = read_csv(out / "trials.csv")
    assert [r["status"] for r in rows] == ["FAILED"] * 3  # --max-failures 3 stopped it
    assert all("optim.optimizer must be adam or adamw" in r["error"] for r in rows)
    assert not (out / "best_config.json").exists()


@pytest.mark.slow
def test_hyperband_continues_a_trial_in_its_own_run_folder(tiny_demo_dir, tmp_path):
    out = tmp_path / "search"
    # max 2 epochs, factor 2: two 1-epoch trials, then the better one continued to 2 epochs
    assert tune.main(["--data", str(tiny_demo_dir), "--out", str(out), "--tuner", "hyperband",
                      "--hyperband-factor", "2", "--max-trials", "3", "--epochs", "2",
                      *FAST]) == 0
    rows = read_csv(out / "trials.csv")
    assert [r["tuner/epochs"] for r in rows] == ["1", "1", "2"]
    continued = rows[2]
    assert continued["tuner/initial_epoch"] == "1" and continued["tuner/trial_id"] in ("0", "1")
    metrics = read_csv(out / continued["run_dir"] / "metrics.csv")
    assert [m["epoch"] for m in metrics] == ["1", "2"]
    earlier = read_csv(out / f"runs/trial_{continued['tuner/trial_id']}" / "metrics.csv")
    assert metrics[0] == earlier[0]  # epoch 1 is the earlier trial's, not retrained
    summary = json.loads((out / continued["run_dir"] / "summary.json").read_text())
    assert summary["epochs_run_this_session"] == 1
    assert Config.from_json(out / "best_config.json").train.epochs in (1, 2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_two_workers(tiny_demo_dir, tmp_path):
    out = tmp_path / "search"
    cmd = [sys.executable, "-m", "fat_tf.tune", "--data", str(tiny_demo_dir), "--out", str(out),
           "--max-trials", "4", "--epochs", "1", *FAST]
    port = str(free_port())
    procs = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id,
               "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port,
               "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        log = open(tmp_path / f"{tuner_id}.log", "w")
        procs[tuner_id] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                           log)
    deadline = time.time() + 240
    try:
        for proc, _ in procs.values():
            proc.wait(timeout=max(1, deadline - time.time()))
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    logs = {t: (tmp_path / f"{t}.log").read_text() for t in procs}
    for tuner_id, (proc, _) in procs.items():
        assert proc.returncode == 0, f"{tuner_id}:\n{logs[tuner_id][-3000:]}"
    rows = read_csv(out / "trials.csv")
    assert len(rows) == 4 and all(r["status"] == "COMPLETED" for r in rows)
    assert {r["tuner_id"] for r in rows} == {"tuner0", "tuner1"}
    assert "worker finished" in logs["tuner0"] and "best config:" in logs["chief"]
    assert Config.from_json(out / "best_config.json").train.epochs == 1


def test_tune_help():
    out = subprocess.run([sys.executable, "-m", "fat_tf.tune", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for text in ("--tuner", "--space", "--max-trials", "--strategy", "KERASTUNER_TUNER_ID",
                 "best_config.json", "hyperband"):
        assert text in out
