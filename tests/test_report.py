"""python -m fat_tf.report on two tiny runs trained here: table, plots, errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from fat_tf import evaluate, report, train

FAST = [
    "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8", "--set", "train.steps_per_epoch=3",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_runs(tiny_demo_dir, tmp_path_factory):
    """A reference-CNN run and a skip-connection run with a constant learning rate."""
    root = tmp_path_factory.mktemp("report_runs")
    runs = [root / "plain", root / "skip"]
    assert train.main(["--data", str(tiny_demo_dir), "--out", str(runs[0]), *FAST,
                       "--epochs", "2"]) == 0
    assert train.main(["--data", str(tiny_demo_dir), "--out", str(runs[1]), *FAST,
                       "--epochs", "2", "--set", "model.backbone=cnn_skip",
                       "--lr-schedule", "constant"]) == 0
    return runs


def assert_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.slow
def test_report_table_and_plots(two_runs, tmp_path, capsys):
    plain, skip = two_runs
    assert evaluate.main([str(plain), "--split", "test", "--model", "final"]) == 0
    err = capsys.readouterr().err
    evaluated = json.loads(err[err.index("{"):])
    assert evaluated["checkpoint"] == "final model, step 6" and evaluated["step"] == 6
    assert json.loads((plain / "eval-test.json").read_text()) == evaluated
    evaluated = evaluated["lwlrap"]

    out = tmp_path / "report"
    assert report.main([str(plain), str(skip), "--out", str(out)]) == 0
    rows = read_csv(out / "runs.csv")
    assert [r["run"] for r in rows] == ["plain", "skip"]
    assert [r["method"] for r in rows] == ["supervised", "supervised"]
    # exactly the settings that differ, with each run's value
    assert [r["model.backbone"] for r in rows] == ["cnn", "cnn_skip"]
    assert [r["optim.lr_schedule"] for r in rows] == ["cosine", "constant"]
    assert "data.batch_size" not in rows[0] and "train.method" not in rows[0]
    for row, run in zip(rows, two_runs):
        summary = json.loads((run / "summary.json").read_text())
        metrics = read_csv(run / "metrics.csv")
        val = [float(m["val_lwlrap"]) for m in metrics]
        assert int(row["epochs"]) == len(metrics) == 2
        assert float(row["val_lwlrap_final"]) == pytest.approx(summary["val_lwlrap"])
        assert float(row["val_lwlrap_final"]) == pytest.approx(val[-1])
        assert float(row["val_lwlrap_best"]) == pytest.approx(summary["best_val_lwlrap"])
        assert float(row["val_lwlrap_best"]) == pytest.approx(max(val))
        assert int(row["best_epoch"]) == int(np.argmax(val)) + 1
        best_step = json.loads((run / "best.keras.json").read_text())["step"]
        assert int(row["best_step"]) == best_step == summary["best_step"]
        assert float(row["val_chance_lwlrap"]) == pytest.approx(summary["chance_lwlrap"])
        assert float(row["train_seconds"]) == pytest.approx(
            summary["train_seconds_this_session"])
        # by default the final model is scored (as evaluate, predict and export do):
        # its validation lwlrap is the last one training logged, and the row says so
        assert float(row["validation_lwlrap_final"]) == pytest.approx(val[-1], abs=1e-5)
        assert row["scored_model"] == f"final model, step {summary['total_steps']}"
    # test lwlrap already computed by fat_tf.evaluate is picked up from eval-test.csv,
    # with the model it scored
    assert float(rows[0]["test_lwlrap_eval_csv"]) == pytest.approx(evaluated, abs=1e-5)
    assert rows[0]["eval_csv_model"] == "final model, step 6"
    assert rows[1]["test_lwlrap_eval_csv"] == "" and rows[1]["eval_csv_model"] == ""

    markdown = (out / "runs.md").read_text()
    assert markdown.startswith("| run | method |") and "| skip | supervised |" in markdown
    for name in ("learning_curves.png", "lr_schedule.png", "per_class_ap.png"):
        assert_png(out / name)
    per_class = read_csv(out / "per_class_ap.csv")
    assert len(per_class) == 12 and set(per_class[0]) == {"class", "plain", "skip"}
    assert not list(out.glob(".tmp-*"))
    assert "report written to" in capsys.readouterr().out


@pytest.mark.slow
def test_report_scores_test_split_without_per_class_when_not_scoring(two_runs, tmp_path):
    plain, skip = two_runs
    assert report.main([str(plain), str(skip), "--out", str(tmp_path / "a"), "--split",
                        "test", "--model", "best", "--tta"]) == 0
    rows = read_csv(tmp_path / "a" / "runs.csv")
    scores = [float(r["test_lwlrap_best_tta"]) for r in rows]
    assert all(0 < s <= 1 for s in scores)
    direct = report.score_run(skip, "test", model="best", tta=True).lwlrap
    assert scores[1] == pytest.approx(direct, abs=1e-6)
    # no validation chance level (nor an older test evaluation) beside the test scores
    assert "val_chance_lwlrap" not in rows[0] and "test_lwlrap_eval_csv" not in rows[0]
    assert "chance" not in (tmp_path / "a" / "runs.md").read_text()

    assert report.main([str(plain), "--out", str(tmp_path / "b"), "--no-score"]) == 0
    rows = read_csv(tmp_path / "b" / "runs.csv")
    assert len(rows) == 1 and "validation_lwlrap_final" not in rows[0]
    assert_png(tmp_path / "b" / "learning_curves.png")
    assert not (tmp_path / "b" / "per_class_ap.png").exists()


@pytest.mark.slow
def test_evaluate_and_report_agree_on_test_lwlrap_by_default(two_runs, tmp_path, capsys):
    """One run, two commands, their defaults: the same model, the same figure, the same
    label (issue: evaluate scored the best checkpoint and report the final model)."""
    _, skip = two_runs
    assert evaluate.main([str(skip), "--split", "test"]) == 0
    err = capsys.readouterr().err
    result = json.loads(err[err.index("{"):])
    step = json.loads((skip / "summary.json").read_text())["total_steps"]
    label = f"final model, step {step}"
    assert result["model"] == "final" and result["checkpoint"] == label
    assert f"test lwlrap ({label}): {result['lwlrap']:.4f}" in err

    assert report.main([str(skip), "--out", str(tmp_path / "r"), "--split", "test"]) == 0
    captured = capsys.readouterr()
    row = read_csv(tmp_path / "r" / "runs.csv")[0]
    assert float(row["test_lwlrap_final"]) == pytest.approx(result["lwlrap"], abs=1e-6)
    assert row["scored_model"] == label
    assert f"scoring skip on test ({label})" in captured.err
    assert label in captured.out  # the printed table names the model
    for name in ("eval-test.csv", "eval-test.json"):  # leave the shared run as it was
        (skip / name).unlink()


def test_bad_folders_are_named(tmp_path, capsys):
    not_a_run = tmp_path / "photos"
    not_a_run.mkdir()
    (not_a_run / "config.json").write_text("{}")
    assert report.main([str(not_a_run), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(not_a_run) in err and "not a fat_tf run" in err
    assert "data.json" in err and "metrics.csv" in err and "Traceback" not in err
    missing = tmp_path / "nowhere"
    assert report.main([str(missing), "--out", str(tmp_path / "out")]) == 1
    assert f"{missing}: no such run folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_explains_outputs():
    out = subprocess.run([sys.executable, "-m", "fat_tf.report", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for word in ("runs.csv", "learning_curves.png", "lr_schedule.png", "per_class_ap.png",
                 "--split", "--no-score"):
        assert word in out
