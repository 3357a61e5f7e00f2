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

from fat_tf import train, tune
from fat_tf.config import Config, ConfigError
from fat_tf.presets import get_preset
from fat_tf.run_folder import DEFAULT_MODEL, SUMMARY_SCORES
from fat_tf.tuning import oracles, search, trials
from fat_tf.tuning.space import SPACES_DIR, SearchSpace, default_space_path

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

#: What each method's default space must search besides the common settings.
METHOD_KNOBS = {
    "supervised": set(),
    "mixup": {"method.mixup_alpha"},
    "vat": {"method.vat_eps", "method.vat_xi", "method.vat_weight"},
    "meanteacher": {"method.ema_decay", "method.consistency_weight", "method.rampup_fraction"},
    "mixmatch": {"method.mixmatch_temperature", "method.mixmatch_alpha", "method.mixmatch_k",
                 "method.mixmatch_weight"},
    "pseudolabel": {"method.pseudo_label_weight", "method.pseudo_label_positive",
                    "method.pseudo_label_negative"},
}


@pytest.mark.parametrize("method", sorted(METHOD_KNOBS))
def test_default_space_of_every_method_is_valid_and_covers_the_settings(method):
    from fat_tf.models.tagger import BACKBONES
    from fat_tf.ops.schedules import SCHEDULES

    space = SearchSpace.load(default_space_path(method), base=get_preset("small"))
    entries = {e.name: e for e in space.entries}
    # learning rate and schedule, width, skip connections, the method's own knobs
    assert {"optim.lr_max", "optim.lr_schedule", "model.backbone"} <= set(entries)
    assert {"model.channels", "model.head_units"} & set(entries)
    assert METHOD_KNOBS[method] <= set(entries), METHOD_KNOBS[method] - set(entries)
    assert all(entries[k].kind != "fixed" for k in METHOD_KNOBS[method])
    assert set(entries["model.backbone"].options["values"]) == set(BACKBONES)
    schedules = entries["optim.lr_schedule"].options["values"]
    assert len(schedules) > 1 and set(schedules) <= set(SCHEDULES)
    # the widths bracket the small preset's (a smaller and a larger one too)
    small = get_preset("small").model
    if "model.channels" in entries:
        widths = [tuple(v) for v in entries["model.channels"].options["values"]]
        assert small.channels in widths and len(widths) > 1
        assert all(len(w) == len(small.channels) for w in widths)
    if "model.head_units" in entries:
        assert small.head_units in entries["model.head_units"].options["values"]
    hp = keras_tuner.HyperParameters()
    values = space.declare(hp)
    config = get_preset("small").replace(**values)  # defaults map onto the config
    assert config.optim.lr_max == values["optim.lr_max"]
    assert config.model.channels == small.channels  # default width: the preset's


def test_every_method_has_a_default_space():
    from fat_tf.methods import METHODS

    assert {p.stem for p in SPACES_DIR.glob("*.json")} == set(METHODS)
    assert set(METHOD_KNOBS) == set(METHODS)


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
    ({"method.vat_ip": {"type": "float", "min": 1, "max": 3}}, "expected an integer"),
    ({"method.vat_ip": {"type": "int", "min": 1.5, "max": 3}}, "min must be an integer"),
    ({"model.backbone": {"type": "choice", "values": []}}, "non-empty list"),
    ({"model.backbone": {"type": "choice", "values": ["cnn"], "default": "x"}},
     "not one of the values"),
    ({"train.epochs": {"type": "choice", "values": ["many"]}}, "not accepted by the config"),
    ({"augment.time_flip": {"type": "boolean", "default": "yes"}}, "true or false"),
    ({"optim.lr_max": 0.1}, "expected an object"),
    # names the config itself does not check, validated against the library's names
    ({"optim.lr_schedule": {"type": "choice", "values": ["cosine", "cosinee"]}},
     "value 'cosinee' is not accepted by the config (choose from cosine, cosine_restarts"),
    ({"model.backbone": {"type": "choice", "values": ["resnet", "cnn"]}},
     "value 'resnet' is not accepted by the config (choose from cnn, cnn_skip)"),
    ({"model.backbone": {"type": "fixed", "value": "resnet"}}, "value 'resnet'"),
    ({"model.pooling": {"type": "choice", "values": ["max"]}}, "value 'max'"),
    ({"train.loss": {"type": "fixed", "value": "mse"}}, "value 'mse'"),
    ({"model.backbone": {"type": "choice", "values": ["cnn", "cnn_skip"],
                         "default": "cnnn"}}, "not one of the values"),
    # fixed values are checked against the config like every other value
    ({"optim.lr_max": {"type": "fixed", "value": [1, 2]}}, "value [1, 2] is not accepted"),
    ({"optim.lr_max": {"type": "fixed", "value": None}}, "value None is not accepted"),
    # what keras-tuner refuses is reported the same way, not as a traceback
    ({"optim.lr_max": {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log",
                       "step": 1}}, "keras-tuner refuses it: For HyperParameters.Float"),
    ({"optim.lr_max": {"type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log",
                       "step": 0.5}}, "expected step > 1 with sampling='log'"),
    ({"method.vat_ip": {"type": "int", "min": 1, "max": 8, "sampling": "log", "step": 1}},
     "expected step > 1 with sampling='log'"),
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
    (tmp_path / "latin1.json").write_bytes(b'{"hyperparameters": {"\xe9": 1}}')
    with pytest.raises(ConfigError, match="latin1.json: not UTF-8"):
        SearchSpace.load(tmp_path / "latin1.json")
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
        "optim.warmup_fraction": {"type": "fixed", "value": 0.2},
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
    assert config.optim.warmup_fraction == 0.2
    assert config.data == base.data  # everything else untouched
    # the hypermodel builds the same config, and the tuner adds Hyperband's epochs
    model = trials.TrainingHyperModel(space, base, tmp_path)
    assert model.build(hp) == config
    hp.values["tuner/epochs"] = 7
    oracle = oracles.make_oracle("random", 2, 1, 0)
    tuner = trials.SearchTuner(oracle, model, tmp_path / "runs", directory=str(tmp_path),
                               project_name="tuner")
    assert tuner.trial_config(hp) == config.replace(**{"train.epochs": 7})


def test_trial_error_is_the_last_line_of_the_failure():
    message = ("Traceback (most recent call last):\n  File x\nValueError: inner\n\n"
               "The above exception was the direct cause\n"
               "keras_tuner.src.errors.FailedTrialError: data.json: broken\n")
    assert trials.trial_error(message) == "data.json: broken"
    assert trials.trial_error("RuntimeError: boom\n") == "RuntimeError: boom"
    assert trials.trial_error(None) == ""


def test_continue_run_copies_the_earlier_trial_for_hyperband(tmp_path):
    previous, new = tmp_path / "trial_0", tmp_path / "trial_3"
    (previous / "backup").mkdir(parents=True)
    for name in ("config.json", "summary.json", "model.keras", "tune.json", "metrics.csv",
                 "best.keras", "backup/training_metadata.json", "backup/w.weights.h5"):
        (previous / name).write_text(name)
    assert trials.continue_run(previous, new)
    kept = {str(p.relative_to(new)) for p in new.rglob("*") if p.is_file()}
    assert kept == {"metrics.csv", "best.keras", "backup/training_metadata.json",
                    "backup/w.weights.h5"}
    assert not trials.continue_run(tmp_path / "missing", tmp_path / "trial_4")
    assert not (tmp_path / "trial_4").exists()


def test_strategy_is_passed_only_when_set(tmp_path, monkeypatch, tiny_demo_dir):
    calls = []

    def fake_train(config, data_dir, run_dir, verbose="auto", strategy=None, **kwargs):
        calls.append({"strategy": strategy, **kwargs})
        # the objective is the default saved model's score, not the other one's
        scores = dict.fromkeys(SUMMARY_SCORES.values(), 0.5)
        scores[SUMMARY_SCORES[DEFAULT_MODEL]] = config.optim.lr_max
        return scores

    monkeypatch.setattr("fat_tf.training.train", fake_train)
    space = SearchSpace.from_dict({"hyperparameters": {
        "optim.lr_max": {"type": "float", "min": 1e-3, "max": 1e-2}}})
    base = get_preset("small")
    for strategy, out in (("none", "a"), ("mirrored", "b")):
        calls.clear()
        result = search.run_search(base, space, tiny_demo_dir, tmp_path / out, max_trials=2,
                                   strategy=strategy, verbose=0)
        assert [c["strategy"] for c in calls] == [None if strategy == "none" else strategy] * 2
        rows = read_csv(tmp_path / out / "trials.csv")
        best = max(float(r["val_lwlrap"]) for r in rows)
        assert result.best_score == pytest.approx(best)
        assert Config.from_json(result.best_config).optim.lr_max == pytest.approx(best)

    def old_train(config, data_dir, run_dir, verbose="auto"):
        raise AssertionError("not called")

    monkeypatch.setattr("fat_tf.training.train", old_train)
    with pytest.raises(search.SearchError, match="no strategy argument"):
        search.run_search(base, space, tiny_demo_dir, tmp_path / "c", strategy="mirrored")


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


def test_fixed_lists_and_null_are_encoded_like_choices():
    space = SearchSpace.from_dict({"hyperparameters": {
        "model.channels": {"type": "fixed", "value": [8, 16, 32, 64]},
        "frontend.top_db": {"type": "fixed", "value": None},
        "optim.warmup_fraction": {"type": "fixed", "value": 0.05},
    }})
    hp = keras_tuner.HyperParameters()
    values = space.declare(hp)  # keras-tuner takes them (as JSON text)
    assert hp.values["model.channels"] == "[8, 16, 32, 64]"
    assert hp.values["frontend.top_db"] == "null" and hp.values["optim.warmup_fraction"] == 0.05
    config = get_preset("small").replace(**values)
    assert config.model.channels == (8, 16, 32, 64) and config.frontend.top_db is None
    assert space.apply(get_preset("small"), hp.values) == config
    assert space.dimensions == 0


def fake_trainer(calls, fail=lambda config, run_dir: None, score=None):
    """A stand-in for fat_tf.training.train: records the run, fails when ``fail`` says."""

    def fake_train(config, data_dir, run_dir, verbose="auto"):
        calls.append((os.path.basename(run_dir), config))
        message = fail(config, run_dir)
        if message:
            raise ConfigError(message)
        value = score(config) if score else config.optim.lr_max
        return {"val_lwlrap": value, "best_val_lwlrap": value, "epochs": config.train.epochs}

    return fake_train


LR_SPACE = {"optim.lr_max": {"type": "float", "min": 1e-3, "max": 1e-2}}


def test_some_failed_trials_warn_and_exit_2_unless_allowed(tmp_path, monkeypatch,
                                                           tiny_demo_dir, capsys):
    calls = []
    monkeypatch.setattr("fat_tf.training.train", fake_trainer(
        calls, fail=lambda c, run_dir: "data broken\nsecond line"
        if run_dir.name in ("trial_1", "trial_3") else None))
    space = write_space(tmp_path / "space.json", LR_SPACE)
    argv = ["--data", str(tiny_demo_dir), "--space", str(space), "--out", str(tmp_path / "s"),
            "--max-trials", "4", "--epochs", "1"]
    assert tune.main(argv) == 2
    captured = capsys.readouterr()
    assert "2 of 4 trial(s) completed" in captured.out
    assert "trial 1 failed: data broken second line" in captured.out  # status from the trial
    assert "warning: 2 of 4 trial(s) failed:" in captured.err
    assert "  trial 1: data broken second line\n  trial 3: data broken" in captured.err
    assert "--allow-failures" in captured.err
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert [r["status"] for r in rows] == ["COMPLETED", "FAILED", "COMPLETED", "FAILED"]
    assert (tmp_path / "s" / "best_config.json").exists()
    # the finished search reports the same on a rerun, and --allow-failures accepts it
    assert tune.main(argv) == 2
    assert tune.main([*argv, "--allow-failures"]) == 0
    assert "trial 3: data broken" in capsys.readouterr().err
    assert len(calls) == 4  # nothing ran again


def test_retry_failed_runs_the_failed_trials_again_on_a_rerun(tmp_path, monkeypatch,
                                                              tiny_demo_dir, capsys):
    calls, broken = [], {"trial_1"}
    monkeypatch.setattr("fat_tf.training.train", fake_trainer(
        calls, fail=lambda c, run_dir: "flaky disk" if run_dir.name in broken else None))
    space = write_space(tmp_path / "space.json", LR_SPACE)
    argv = ["--data", str(tiny_demo_dir), "--space", str(space), "--out", str(tmp_path / "s"),
            "--max-trials", "3", "--epochs", "1"]
    assert tune.main(argv) == 2
    first = {name: config for name, config in calls}
    broken.clear()  # fixed
    calls.clear()
    assert tune.main([*argv, "--retry-failed"]) == 0
    assert "retrying failed trial(s) 1" in capsys.readouterr().out
    # the same trial (id, run folder, values) runs again; no new trial is added
    assert [name for name, _ in calls] == ["trial_1"]
    assert calls[0][1] == first["trial_1"]
    rows = read_csv(tmp_path / "s" / "trials.csv")
    assert [(r["trial"], r["status"]) for r in rows] == [
        ("0", "COMPLETED"), ("1", "COMPLETED"), ("2", "COMPLETED")]


def test_max_failures_stops_through_the_oracle_so_a_chief_would_exit(tmp_path, monkeypatch,
                                                                     tiny_demo_dir):
    calls = []
    monkeypatch.setattr("fat_tf.training.train", fake_trainer(
        calls, fail=lambda c, run_dir: None if run_dir.name == "trial_0" else "boom"))
    space = SearchSpace.from_dict({"hyperparameters": LR_SPACE})
    base = get_preset("small").replace(**{"train.epochs": 1})
    oracle = oracles.make_oracle("random", 9, 1, 0, max_failures=2)
    search_tuner = trials.SearchTuner(
        oracle, trials.TrainingHyperModel(space, base, tiny_demo_dir), tmp_path / "runs",
        directory=str(tmp_path), project_name="tuner")
    search_tuner.search(verbose=0)
    assert [name for name, _ in calls] == ["trial_0", "trial_1", "trial_2"]
    assert oracle.failure_stopped and oracle.consecutive_failures == 2
    # the process that asked got STOPPED, which is what lets keras-tuner's chief exit
    from keras_tuner.src.distribute.oracle_chief import exit_chief

    assert not oracle.ongoing_trials and not oracle.tuner_ids and exit_chief(oracle)
    assert [s for _, s, _, _ in search_tuner.trials_run] == ["COMPLETED", "FAILED", "FAILED"]

    # through run_search: exit 1, the best trial so far is kept; a rerun counts afresh
    calls.clear()
    with pytest.raises(search.SearchError, match=r"2 trials failed in a row.*Last error: boom"):
        search.run_search(base, space, tiny_demo_dir, tmp_path / "s", max_trials=9,
                          max_failures=2, verbose=0)
    assert (tmp_path / "s" / "best_config.json").exists() and len(calls) == 3
    with pytest.raises(search.SearchError, match="2 trials failed in a row"):
        search.run_search(base, space, tiny_demo_dir, tmp_path / "s", max_trials=9,
                          max_failures=2, verbose=0)
    assert len(calls) == 5  # two more trials ran before it stopped again


def test_hyperband_schedule_follows_keras_tuner_and_best_config_has_full_epochs(
        tmp_path, monkeypatch, tiny_demo_dir, capsys):
    assert oracles.hyperband_schedule(30, 3) == [
        [(34, 2), (12, 4), (4, 10), (2, 30)], [(15, 4), (5, 10), (2, 30)], [(8, 10), (3, 30)],
        [(5, 30)]]
    help_text = " ".join(tune.build_parser().format_help().split())
    assert "52 trials (34 of 2 epochs, then 12 of 4, 4 of 10, 2 of 30" in help_text
    assert "one full Hyperband iteration is 90" in help_text
    assert oracles.hyperband_warning(52, 30, 3) is None
    assert "no trial is ever continued" in oracles.hyperband_warning(34, 30, 3)
    assert "stops before its last round" in oracles.hyperband_warning(35, 30, 3)

    calls = []
    # a shorter run scores higher, so the best trial is one of the 1-epoch trials
    monkeypatch.setattr("fat_tf.training.train", fake_trainer(
        calls, score=lambda c: 1.0 / c.train.epochs - c.optim.lr_max))
    space = write_space(tmp_path / "space.json", LR_SPACE)
    argv = ["--data", str(tiny_demo_dir), "--space", str(space), "--tuner", "hyperband",
            "--epochs", "9", "--hyperband-factor", "3"]
    # the first bracket of 9 epochs and factor 3: 9 trials of 1 epoch, 3 of 3, 1 of 9
    assert oracles.hyperband_schedule(9, 3)[0] == [(9, 1), (3, 3), (1, 9)]
    assert tune.main([*argv, "--out", str(tmp_path / "a"), "--max-trials", "13"]) == 0
    assert "warning" not in capsys.readouterr().err
    rows = read_csv(tmp_path / "a" / "trials.csv")
    assert [int(r["tuner/epochs"]) for r in rows] == [1] * 9 + [3] * 3 + [9]
    assert [int(r["epochs"]) for r in rows] == [1] * 9 + [3] * 3 + [9]
    assert [c.train.epochs for _, c in calls] == [1] * 9 + [3] * 3 + [9]
    assert all(r["tuner/trial_id"] for r in rows[9:])
    best = Config.from_json(tmp_path / "a" / "best_config.json")
    winner = max(rows, key=lambda r: float(r["val_lwlrap"]))
    assert winner["epochs"] == "1" and best.train.epochs == 9
    assert best.optim.lr_max == pytest.approx(float(winner["optim.lr_max"]))

    # too few trials for the first bracket: warned on stderr, nothing continued
    calls.clear()
    assert tune.main([*argv, "--out", str(tmp_path / "b"), "--max-trials", "5"]) == 0
    err = capsys.readouterr().err
    assert "warning: Hyperband's first bracket (--epochs 9, --hyperband-factor 3) is 13 " \
           "trials" in err and "no trial is ever continued" in err
    assert [c.train.epochs for _, c in calls] == [1] * 5
    assert Config.from_json(tmp_path / "b" / "best_config.json").train.epochs == 9


def test_hyperband_refuses_train_epochs_in_the_space(tmp_path, tiny_demo_dir, capsys):
    space = write_space(tmp_path / "space.json", {
        "train.epochs": {"type": "int", "min": 1, "max": 3}})
    argv = ["--data", str(tiny_demo_dir), "--space", str(space), "--out", str(tmp_path / "s")]
    assert tune.main([*argv, "--tuner", "hyperband"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {space}: entry 'train.epochs': Hyperband sets each "
                          "trial's epoch count itself")
    assert err.count("\n") == 1 and not (tmp_path / "s").exists()


def test_a_search_that_cannot_start_leaves_nothing_that_refuses_the_fix(tmp_path, monkeypatch,
                                                                        tiny_demo_dir):
    from fat_tf.tuning.space import HyperparameterSpec

    # a space keras-tuner refuses (built without SearchSpace's checks, which catch this)
    bad = SearchSpace((HyperparameterSpec("optim.lr_max", "float", {
        "min": 1e-3, "max": 1e-2, "sampling": "log", "step": 0.5}),))
    base = get_preset("small").replace(**{"train.epochs": 1})
    out = tmp_path / "s"
    with pytest.raises(ValueError, match="step > 1"):
        search.run_search(base, bad, tiny_demo_dir, out, max_trials=1, verbose=0)
    assert not (out / "search.json").exists() and not (out / "tuner").exists()
    calls = []
    monkeypatch.setattr("fat_tf.training.train", fake_trainer(calls))
    good = SearchSpace.from_dict({"hyperparameters": LR_SPACE})
    result = search.run_search(base, good, tiny_demo_dir, out, max_trials=1, verbose=0)
    assert result.best_config.exists() and len(calls) == 1
    assert json.loads((out / "search.json").read_text())["space"] == good.fingerprint()


def test_bayesian_search_starts_with_few_random_trials(tmp_path, monkeypatch, tiny_demo_dir,
                                                       capsys):
    assert oracles.default_initial_points(1, 10) == 3
    assert oracles.default_initial_points(6, 10) == 5  # keras-tuner's own would be 18
    assert oracles.default_initial_points(6, 3) == 2
    calls = []
    monkeypatch.setattr("fat_tf.training.train", fake_trainer(calls))
    space = write_space(tmp_path / "space.json", {
        **LR_SPACE, "model.backbone": {"type": "choice", "values": ["cnn", "cnn_skip"]},
        "optim.warmup_fraction": {"type": "fixed", "value": 0.0}})
    argv = ["--data", str(tiny_demo_dir), "--space", str(space), "--tuner", "bayesian",
            "--epochs", "1", "--max-trials", "5"]
    for out, extra, points in (("a", [], 2), ("b", ["--initial-points", "3"], 3)):
        calls.clear()
        assert tune.main([*argv, "--out", str(tmp_path / out), *extra]) == 0
        assert f"the first {points} random" in capsys.readouterr().out
        state = json.loads((tmp_path / out / "tuner" / "oracle.json").read_text())
        assert state["num_initial_points"] == points
        rows = read_csv(tmp_path / out / "trials.csv")
        assert len(rows) == 5 == len(calls) and {r["status"] for r in rows} == {"COMPLETED"}
    with pytest.raises(SystemExit):
        tune.main([*argv, "--initial-points", "0"])


def test_worker_waits_for_the_chiefs_search_json(tmp_path, monkeypatch, tiny_demo_dir):
    import threading

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    space = SearchSpace.from_dict({"hyperparameters": LR_SPACE})
    base = get_preset("small")
    out = tmp_path / "s"
    monkeypatch.setattr(search, "WORKER_WAIT_S", 0.3)
    start = time.monotonic()
    with pytest.raises(search.SearchError, match="did not appear within 0.3 s: start the chief"):
        search.run_search(base, space, tiny_demo_dir, out)
    assert time.monotonic() - start >= 0.3 and not out.exists()

    # a chief of another search writes its search.json while the worker waits
    other = search._search_record(base.replace(**{"optim.lr_min": 1e-4}), space, "random", 3)
    writer = threading.Timer(0.3, lambda: (out.mkdir(parents=True),
                                           (out / "search.json").write_text(json.dumps(other))))
    monkeypatch.setattr(search, "WORKER_WAIT_S", 30)
    writer.start()
    try:
        with pytest.raises(search.SearchError, match=r"holds a different search \(base_config"):
            search.run_search(base, space, tiny_demo_dir, out)
    finally:
        writer.join()


def test_keras_tuner_debug_flag_is_still_there():
    # tune.py turns keras-tuner's traceback printing off through this private flag:
    # an upgrade that moves it must fail here, not silently print tracebacks again
    from keras_tuner.src import config as kt_config

    assert isinstance(kt_config.DEBUG, bool)
    before = kt_config.DEBUG
    try:
        tune._set_keras_tuner_debug(False)
        assert kt_config.DEBUG is False
        tune._set_keras_tuner_debug(True)
        assert kt_config.DEBUG is True
    finally:
        kt_config.DEBUG = before
    # and the base tuner still reads it where it prints a failed trial's traceback
    import inspect

    from keras_tuner.src.engine import base_tuner

    assert "config_module.DEBUG" in inspect.getsource(base_tuner.BaseTuner)


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
                                                                capsys, monkeypatch):
    calls = []  # every trial's training fails (a bad name is refused before any trial)
    monkeypatch.setattr("fat_tf.training.train", fake_trainer(
        calls, fail=lambda c, run_dir: "the model build refused it"))
    out = tmp_path / "search"
    code = tune.main(["--data", str(tiny_demo_dir), "--out", str(out), "--max-trials", "5",
                      "--epochs", "1", *FAST])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no trial completed (3 ran; stopped)")
    assert "trial 0: the model build refused it" in err
    assert "Traceback" not in err
    rows = read_csv(out / "trials.csv")
    assert [r["status"] for r in rows] == ["FAILED"] * 3  # --max-failures 3 stopped it
    assert all("the model build refused it" in r["error"] for r in rows)
    assert not (out / "best_config.json").exists()


def test_a_bad_setting_is_refused_before_any_trial(tmp_path, capsys):
    out = tmp_path / "search"
    assert tune.main(["--out", str(out), "--set", "optim.optimizer=sgd"]) == 2
    err = capsys.readouterr().err
    assert err == "error: optim.optimizer must be one of adam, adamw, got 'sgd'\n"
    assert not out.exists()


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
    # the best config trains the full budget (--epochs), whichever trial won
    assert Config.from_json(out / "best_config.json").train.epochs == 2
    assert [r["epochs"] for r in rows] == ["1", "1", "2"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_chief_and_two_workers(tiny_demo_dir, tmp_path):
    out = tmp_path / "search"
    space = write_space(tmp_path / "space.json", LR_SPACE)  # FAST's small model throughout
    cmd = [sys.executable, "-m", "fat_tf.tune", "--data", str(tiny_demo_dir), "--out", str(out),
           "--space", str(space), "--max-trials", "4", "--epochs", "1", *FAST]
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
                 "best_config.json", "hyperband", "--initial-points", "--allow-failures",
                 "--retry-failed"):
        assert text in out
    flat = " ".join(out.split())
    assert "--epochs EPOCHS epochs per trial; Hyperband: the most epochs a trial trains" in flat
    assert "Failed trials are final and count toward --max-trials" in flat
    assert "2 some trials failed" in flat
