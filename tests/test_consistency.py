"""Consistency between commands and documentation (issue 17, section 4): which model a
figure comes from, the TFLite runtime, and what the README and the package docstring
point at. Fast: no training (the end-to-end agreement of evaluate and report is in
test_report.py)."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import fat_tf
from fat_tf import report

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- model labels
def fake_run(folder: Path, *, best_step=700, total_steps=1000, summary=True) -> Path:
    folder.mkdir(parents=True)
    if best_step is not None:
        (folder / "best.keras.json").write_text(json.dumps(
            {"monitor": "val_lwlrap", "value": 0.9, "epoch": 7, "step": best_step}))
    if summary:
        (folder / "summary.json").write_text(json.dumps(
            {"total_steps": total_steps, "best_step": best_step, "val_lwlrap": 0.8,
             "best_val_lwlrap": 0.9, "chance_lwlrap": 0.3}))
    return folder


def test_checkpoint_labels_name_the_model_and_its_step(tmp_path):
    run = fake_run(tmp_path / "run")
    assert report.checkpoint_label(run, "best") == "best checkpoint, step 700"
    assert report.checkpoint_label(run, "final") == "final model, step 1000"
    assert report.checkpoint_label(run) == "final model, step 1000"  # the default model
    assert report.checkpoint_step(run, "best") == 700
    # best.keras.json is the source of truth; summary.json is the fallback
    (run / "best.keras.json").unlink()
    assert report.checkpoint_label(run, "best") == "best checkpoint, step 700"
    # a run that records nothing (or a damaged file) still gets a model name
    bare = fake_run(tmp_path / "bare", best_step=None, summary=False)
    (bare / "best.keras.json").write_text("{trunc")
    assert report.checkpoint_label(bare, "best") == "best checkpoint"
    assert report.checkpoint_label(bare, "final") == "final model"


def test_every_command_defaults_to_the_same_saved_model(tmp_path, monkeypatch):
    """evaluate, predict, export, report and fat_tf.load score one model by default:
    run_folder.DEFAULT_MODEL, the final model."""
    import inspect

    from fat_tf import evaluate, export, predict
    from fat_tf.inference import loaded
    from fat_tf.run_folder import DEFAULT_MODEL

    assert DEFAULT_MODEL == "final"
    for function in (report.score_run, report.compare_runs):
        assert inspect.signature(function).parameters["model"].default == DEFAULT_MODEL
    assert inspect.signature(export.export_run).parameters["which"].default == DEFAULT_MODEL
    assert inspect.signature(loaded.RunModel).parameters["which"].default == DEFAULT_MODEL
    assert report.build_parser().parse_args(["r", "--out", "o"]).model == DEFAULT_MODEL
    assert evaluate.build_parser().parse_args(["r"]).model == DEFAULT_MODEL
    assert export.build_parser().parse_args(["r", "--out", "o"]).model == DEFAULT_MODEL
    # predict and fat_tf.load leave it unset (exports refuse --model); a run folder
    # then opens with the default
    assert predict.build_parser().parse_args(["m", "a.wav"]).model is None
    monkeypatch.setattr(loaded, "RunModel", lambda path, which, *rest: which)
    assert loaded.load_model(str(tmp_path), None, None, False) == DEFAULT_MODEL


def record(tmp_path: Path, name: str, **kwargs) -> report.RunRecord:
    run = fake_run(tmp_path / name, **kwargs)
    summary = json.loads((run / "summary.json").read_text())
    metrics = [{"epoch": 1.0, "step": 500.0, "val_lwlrap": 0.7},
               {"epoch": 2.0, "step": 1000.0, "val_lwlrap": 0.8}]
    return report.RunRecord(name, run, {"train": {"method": "supervised"}}, {}, summary,
                            metrics)


def scores(split: str, run: report.RunRecord) -> report.Scores:
    labels = np.array([[1, 0], [0, 1], [1, 1]], float)
    logits = np.array([[2.0, -1.0], [-1.0, 1.0], [0.5, 0.4]])
    return report.Scores(split, "best", False, ("a", "b"), labels, logits,
                         report.checkpoint_label(run.run_dir, "best"))


def test_table_labels_every_figure_and_keeps_chance_off_test_scores(tmp_path):
    run = record(tmp_path, "r1")
    [row] = report.run_table([run], {"r1": scores("test", run)})
    assert row["test_lwlrap_best"] == pytest.approx(1.0)
    assert row["scored_model"] == "best checkpoint, step 700" and row["best_step"] == 700
    assert not [k for k in row if "chance" in k]  # validation chance: not beside a test score

    [row] = report.run_table([run], {"r1": scores("validation", run)})
    assert row["val_chance_lwlrap"] == 0.3 and row["scored_model"].startswith("best")
    keys = list(row)
    assert keys.index("val_chance_lwlrap") < keys.index("validation_lwlrap_best")
    [row] = report.run_table([run])  # --no-score
    assert row["val_chance_lwlrap"] == 0.3 and "scored_model" not in row


def test_earlier_test_evaluation_names_its_model(tmp_path):
    run = record(tmp_path, "r1")
    table = "class,lwlrap,average_precision,positives\na,0.500000,0.5,2\nb,1.000000,1.0,2\n"
    (run.run_dir / "eval-test.csv").write_text(table)
    [row] = report.run_table([run])
    assert row["test_lwlrap_eval_csv"] == pytest.approx(0.75)
    assert row["eval_csv_model"] == "not recorded"  # a table from before eval-test.json
    (run.run_dir / "eval-test.json").write_text(json.dumps(
        {"model": "final", "checkpoint": "final model, step 1000", "lwlrap": 0.75}))
    [row] = report.run_table([run])
    assert row["eval_csv_model"] == "final model, step 1000"
    # a JSON from another evaluation than the table's is not trusted
    (run.run_dir / "eval-test.json").write_text(json.dumps(
        {"checkpoint": "best checkpoint, step 700", "lwlrap": 0.5}))
    [row] = report.run_table([run])
    assert row["eval_csv_model"] == "not recorded"


# --------------------------------------------------------------------------- TFLite runtime
class FakeInterpreter:
    made: list[str] = []

    def __init__(self, model_path):
        FakeInterpreter.made.append(model_path)

    def get_signature_runner(self, name):
        return ("runner", name)


def test_tflite_uses_ai_edge_litert_when_installed(monkeypatch):
    from fat_tf import export

    package = types.ModuleType("ai_edge_litert")
    module = types.ModuleType("ai_edge_litert.interpreter")
    module.Interpreter = FakeInterpreter
    package.interpreter = module
    monkeypatch.setitem(sys.modules, "ai_edge_litert", package)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", module)
    assert export.tflite_interpreter_class() == (FakeInterpreter, "ai_edge_litert")
    FakeInterpreter.made.clear()
    assert export.tflite_runner("m.tflite", "serving_default") == ("runner", "serving_default")
    assert FakeInterpreter.made == ["m.tflite"]


def test_tflite_falls_back_to_tf_lite_without_litert(monkeypatch):
    import tensorflow as tf

    from fat_tf import export

    # None in sys.modules makes the import raise ImportError, as when it is not installed
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    interpreter_class, name = export.tflite_interpreter_class()
    assert name == "tf.lite" and interpreter_class is tf.lite.Interpreter

    class Deprecated(FakeInterpreter):
        def __init__(self, model_path):
            import warnings

            warnings.warn("tf.lite.Interpreter is deprecated", DeprecationWarning, 2)
            super().__init__(model_path)

    monkeypatch.setattr(tf.lite, "Interpreter", Deprecated)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecation notice is not passed on
        assert export.tflite_runner("x.tflite") == ("runner", "waveform_with_lengths")


def test_readme_says_which_tflite_runtime():
    assert "ai_edge_litert" in README and "ai-edge-litert" in README
    assert "tf.lite.Interpreter" in README


# --------------------------------------------------------------------------- docs
def test_package_docstring_points_at_files_that_exist():
    named = re.findall(r"[\w/.-]+\.md\b", fat_tf.__doc__)
    assert named
    for name in named:
        assert (REPO / name).is_file(), name


def test_readme_tensorboard_command_matches_the_run_folder():
    source = (REPO / "fat_tf" / "training.py").read_text(encoding="utf-8")
    [folder] = re.findall(r'TensorBoard\(str\(run_dir / "(\w+)"\)', source)
    assert f"tensorboard --logdir RUN/{folder}" in README


def test_readme_says_where_the_demo_data_is_cached():
    from fat_tf.data import demo

    assert "FAT_TF_CACHE" in README and "~/.cache/fat_tf" in README
    assert f"demo-v{demo.DEMO_VERSION}-" in README


def test_readme_documents_download_dry_run_and_eta():
    assert "--dry-run" in README and "ETA" in README
