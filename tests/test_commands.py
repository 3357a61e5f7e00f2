"""The ``fat-tf`` command: dispatch, help, settings checked before TensorFlow, plain logs,
thresholds in predict and evaluate, and no TensorFlow start-up noise (issue 17, item 3)."""

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fat_tf import cli, commands, evaluate, predict, train
from fat_tf.config import Config
from fat_tf.presets import get_preset

COMMAND_NAMES = ["data", "train", "tune", "evaluate", "predict", "export", "report"]

TINY = ["--steps", "4", "--set", "train.validate_every=2", "--set", "frontend.n_mels=32",
        "--set", "data.crop_frames=32", "--set", "model.channels=[8,8,16,16]",
        "--set", "model.head_units=16", "--set", "data.batch_size=8"]

BAD_SETTINGS = [
    (["--method", "foo"], "train.method must be one of supervised, mixup, vat"),
    (["--set", "model.backbone=resnet"], "model.backbone must be one of cnn, cnn_skip"),
    (["--set", "optim.lr_schedule=cosin"], "got 'cosin' (did you mean cosine?)"),
    (["--data", "{tmp}/nodir"], "nodir: dataset folder not found"),
    (["--config", "{tmp}/none.json"], "none.json: No such file or directory"),
    (["--set", "model.depth=3"], "unknown setting 'model.depth'"),
]


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        commands.main(list(argv))
    assert exit_.value.code == 0
    return capsys.readouterr().out


# ----------------------------------------------------------------------------- dispatch
def test_help_lists_every_command(capsys):
    assert commands.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fat-tf COMMAND")
    for name in COMMAND_NAMES:
        assert f"\n  {name} " in out
    assert commands.main([]) == 2 and "usage: fat-tf" in capsys.readouterr().err


def test_unknown_command_is_one_line(capsys):
    assert commands.main(["trian", "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean train?" in err


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_every_command_has_help_under_its_fat_tf_name(name, capsys):
    out = help_text(capsys, name, "--help")
    assert out.startswith(f"usage: fat-tf {name}")
    assert cli._COMMAND_PREFIX is None  # restored: python -m usage lines stay right
    assert "(default: None)" not in out and "(default: True)" not in out
    assert "(default: False)" not in out and "%%" not in out


def test_data_commands_are_forwarded(capsys):
    assert help_text(capsys, "data", "demo", "--help").startswith("usage: fat-tf data demo")
    out = help_text(capsys, "data", "download", "--help")
    assert out.startswith("usage: fat-tf data download")
    assert help_text(capsys, "data", "layout", "--help").startswith("usage: fat-tf data layout")


def test_help_shows_the_real_defaults(capsys):
    out = " ".join(help_text(capsys, "train", "--help").split())
    small, full = get_preset("small"), get_preset("fat2019")
    assert f"--method NAME training method: supervised, mixup, vat, meanteacher, mixmatch, " \
           f"pseudolabel (default: {small.train.method})" in out
    assert f"(default: {small.train.steps} with --preset small, {full.train.steps} with " \
           "fat2019)" in out
    assert f"labelled clips per batch (default: {small.data.batch_size})" in out
    assert "(default: not used)" in out  # --epochs
    export_help = help_text(capsys, "export", "--help")
    assert "--no-tflite" in export_help and "(default: True)" not in export_help
    demo_help = help_text(capsys, "data", "demo", "--help")
    assert "~35% wrong labels" in " ".join(demo_help.split())


def test_python_m_names_stay_without_the_dispatcher():
    assert train.build_parser().prog == "python -m fat_tf.train"
    assert evaluate.build_parser().prog == "python -m fat_tf.evaluate"


# ----------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("bad, words", BAD_SETTINGS)
def test_bad_settings_are_one_line_exit_2_and_write_nothing(bad, words, tmp_path, capsys):
    bad = [a.format(tmp=tmp_path) for a in bad]
    out = tmp_path / "run"
    assert commands.main(["train", "--out", str(out), *bad]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert words in captured.err and captured.out == ""
    assert sorted(os.listdir(tmp_path)) == []


def test_tune_checks_settings_the_same_way(tmp_path, capsys):
    assert commands.main(["tune", "--out", str(tmp_path / "s"), "--method", "foo"]) == 2
    assert capsys.readouterr().err.startswith("error: train.method must be one of")
    assert not (tmp_path / "s").exists()


def test_print_config_shows_the_resolved_settings(tmp_path, capsys):
    assert commands.main(["train", "--out", str(tmp_path / "run"), "--method", "vat",
                          "--set", "data.batch_size=8", "--print-config"]) == 0
    config = Config.from_dict(json.loads(capsys.readouterr().out))
    assert config == get_preset("small").replace(**{"train.method": "vat",
                                                     "data.batch_size": 8})
    assert not (tmp_path / "run").exists()


def test_errors_and_help_never_import_tensorflow(tmp_path):
    """Help, dispatch and refused settings answer without the ~15 s TensorFlow import."""
    code = textwrap.dedent(f"""
        import contextlib, io, sys
        from fat_tf import commands
        runs = [["--help"], ["train", "--method", "foo"],
                ["train", "--set", "model.backbone=resnet"],
                ["train", "--set", "optim.lr_schedule=cosin"],
                ["train", "--data", {str(tmp_path / "nodir")!r}],
                ["train", "--print-config"], ["tune", "--method", "foo"]]
        runs += [[name, "--help"] for name in {COMMAND_NAMES!r}]
        for argv in runs:
            with contextlib.redirect_stdout(io.StringIO()), \\
                    contextlib.redirect_stderr(io.StringIO()):
                try:
                    code = commands.main(argv)
                except SystemExit as e:
                    code = e.code
            assert code in (0, 2), (argv, code)
            assert "tensorflow" not in sys.modules, argv
            assert "keras" not in sys.modules, argv
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr[-3000:]


def test_console_script_and_python_m(tmp_path):
    script = Path(sys.executable).parent / "fat-tf"
    script = str(script) if script.exists() else shutil.which("fat-tf")
    assert script, "the fat-tf console script is not installed (pip install -e .)"
    for cmd, prog in (([script], "fat-tf"), ([sys.executable, "-m", "fat_tf"],
                                              "python -m fat_tf")):
        done = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: {prog} COMMAND")
        done = subprocess.run([*cmd, "train", "--method", "foo"], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == "" and os.listdir(tmp_path) == []
        assert done.stderr.startswith("error: train.method") and done.stderr.count("\n") == 1


def test_no_tensorflow_start_up_noise(tmp_path):
    """A command that imports TensorFlow prints only its own line on a CPU-only machine
    (no oneDNN, CUDA-driver or cuInit lines), unless TF_CPP_MIN_LOG_LEVEL is the user's."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "fat_tf", "evaluate", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"error: {tmp_path}: not a fat_tf run folder (no config.json)\n"


# ----------------------------------------------------------------------------- train
def test_default_verbose_follows_the_terminal():
    class Stream(io.StringIO):
        def __init__(self, tty):
            super().__init__()
            self.tty = tty

        def isatty(self):
            return self.tty

    assert train.default_verbose(Stream(True)) == 1
    assert train.default_verbose(Stream(False)) == 2


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_demo_dir):
    """A 4-step run trained through ``fat-tf train`` with stdout redirected to a file."""
    run = tmp_path_factory.mktemp("commands") / "run"
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert commands.main(["train", "--data", str(tiny_demo_dir), "--out", str(run),
                              *TINY]) == 0
    return run, log.getvalue()


def test_redirected_training_log_is_plain_lines(tiny_run):
    _, log = tiny_run
    assert not any(c in log for c in "\b\r\x1b"), repr(log[:500])
    lines = log.splitlines()
    assert "Epoch 1/2" in lines and "Epoch 2/2" in lines
    progress = [line for line in lines if "val_lwlrap:" in line]
    assert len(progress) == 2 and all(len(line) < 300 for line in progress)


def test_train_verbose_0_is_silent(tiny_demo_dir, tmp_path, capsys):
    assert train.main(["--data", str(tiny_demo_dir), "--out", str(tmp_path / "r"), *TINY,
                       "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "Epoch" not in out and "validation lwlrap" in out


# ------------------------------------------------------------------ predict / evaluate
def read_csv(text):
    return list(csv.reader(io.StringIO(text)))


def test_predict_threshold_adds_the_decided_labels(tiny_run, tiny_demo_dir, capsys):
    run, _ = tiny_run
    clips = str(tiny_demo_dir / "test")
    assert predict.main([str(run), clips, "--out", "-", "--threshold", "0.5"]) == 0
    rows = read_csv(capsys.readouterr().out)
    header, rows = rows[0], rows[1:]
    assert header[-1] == "labels" and header[0] == "fname"
    classes = header[1:-1]
    decided = 0
    for row in rows:
        probabilities = np.array(row[1:-1], float)
        expected = {c for c, p in zip(classes, probabilities) if p >= 0.5}
        labels = row[-1].split(",") if row[-1] else []
        assert set(labels) == expected
        assert [probabilities[classes.index(c)] for c in labels] == sorted(
            (probabilities[classes.index(c)] for c in labels), reverse=True)
        decided += len(labels)
    assert 0 < decided < len(rows) * len(classes)  # a threshold that decides something

    assert predict.main([str(run), clips, "--out", "-", "--format", "json", "--top-k", "1",
                         "--threshold", "0.5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threshold"] == 0.5
    for p in result["predictions"]:
        assert len(p["top"]) == 1
        assert all(isinstance(label, str) for label in p["labels"])

    assert predict.main([str(run), clips, "--out", "-"]) == 0
    assert read_csv(capsys.readouterr().out)[0][-1] != "labels"  # unchanged without it


@pytest.mark.parametrize("value", ["0", "1", "1.5", "x"])
def test_threshold_must_be_a_probability(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        predict.build_parser().parse_args(["m", "--threshold", value])
    assert exit_.value.code == 2 and "--threshold" in capsys.readouterr().err


def test_evaluate_csv_on_stdout_figures_on_stderr(tiny_run, capsys):
    run, _ = tiny_run
    assert evaluate.main([str(run), "--threshold", "0.5"]) == 0
    captured = capsys.readouterr()
    table = read_csv(captured.out)  # nothing but the CSV
    assert table[0] == ["class", "lwlrap", "average_precision", "positives", "f1"]
    assert len(table) == 13 and all(len(r) == 5 for r in table)
    assert (run / "eval-validation.csv").read_text() == captured.out
    err = captured.err
    result = json.loads(err[err.index("{"):])
    assert {"lwlrap", "mAP", "micro_f1", "macro_f1", "threshold"} <= set(result)
    assert not any(c in err for c in "\b\r\x1b")  # stderr is not a terminal here
    ap = [float(r[2]) for r in table[1:] if int(r[3]) > 0]
    assert result["mAP"] == pytest.approx(np.mean(ap), abs=1e-6)

    assert evaluate.main([str(run)]) == 0
    captured = capsys.readouterr()
    assert read_csv(captured.out)[0][-1] == "positives"
    assert "micro_f1" not in captured.err and '"mAP"' in captured.err


def test_map_and_f1_match_sklearn():
    from fat_tf.metrics import mean_average_precision

    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth = (rng.random((40, 6)) < 0.3).astype(float)
    truth[:, 5] = 0  # a class without positives: left out of mAP and macro F1
    scores = np.round(rng.random((40, 6)), 1)  # ties, as lwlrap's tests have them
    with_positives = truth.any(axis=0)
    expected_map = metrics.average_precision_score(truth[:, with_positives],
                                                   scores[:, with_positives], average="macro")
    assert mean_average_precision(truth, scores) == pytest.approx(expected_map)
    micro, macro, per_class = evaluate.f1_scores(truth, scores, 0.5)
    decided = scores >= 0.5
    assert micro == pytest.approx(metrics.f1_score(truth, decided, average="micro"))
    assert macro == pytest.approx(metrics.f1_score(
        truth, decided, average="macro", labels=np.flatnonzero(with_positives)))
    assert per_class[:5] == pytest.approx(metrics.f1_score(truth, decided, average=None)[:5])
