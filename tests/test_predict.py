"""python -m fat_tf.predict on run folders and exports: folders, files, lists, bad files."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fat_tf import predict


@pytest.fixture(scope="module")
def models(tiny_models):
    """(run folder, export folder), shared by the session (tests/conftest.py)."""
    return tiny_models


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_demo_dir):
    """Four good test clips, a truncated WAV, a text file and (for --data) the names."""
    root = tmp_path_factory.mktemp("audio")
    good = sorted((tiny_demo_dir / "test").glob("*.wav"))[:4]
    for p in good:
        shutil.copy(p, root / p.name)
    (root / "broken.wav").write_bytes(good[0].read_bytes()[:60])
    (root / "notes.txt").write_text("not audio")
    return root, [p.name for p in good]


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_folder_with_a_corrupt_file(models, folder, tmp_path, capsys):
    run, out = models
    root, good = folder
    results = {}
    for name, model in (("run", run), ("export", out)):
        target = tmp_path / f"{name}.csv"
        assert predict.main([str(model), str(root), "--out", str(target)]) == 1
        captured = capsys.readouterr()
        assert f"error: {root / 'broken.wav'}: " in captured.err and "truncated" in captured.err
        assert "1 file(s) failed" in captured.out
        rows = read_rows(target)
        assert [r[0] for r in rows[1:]] == good  # the bad file is left out, the rest kept
        results[name] = np.array([r[1:] for r in rows[1:]], float)
        assert rows[0][1:] == json.loads((out / "export.json").read_text())["class_names"]
    np.testing.assert_allclose(results["run"], results["export"], atol=1e-5)


def test_single_file_and_file_list(models, folder, tmp_path, capsys):
    _, out = models
    root, good = folder
    single = tmp_path / "one.csv"
    assert predict.main([str(out), str(root / good[1]), "--out", str(single)]) == 0
    rows = read_rows(single)
    assert len(rows) == 2 and rows[1][0] == str(root / good[1])

    listing = tmp_path / "list.txt"
    listing.write_text(f"# clips\n{root / good[0]}\n\n{tmp_path / 'missing.wav'}\n"
                       f"{root / 'broken.wav'}\n{root / good[2]}\n")
    target = tmp_path / "list.csv"
    assert predict.main([str(out), "--files-from", str(listing), "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missing.wav'}: file not found" in err
    assert str(root / "broken.wav") in err
    assert [r[0] for r in read_rows(target)[1:]] == [str(root / good[0]), str(root / good[2])]


def test_json_top_k(models, folder, tmp_path, capsys):
    _, out = models
    root, good = folder
    target = tmp_path / "top.json"
    assert predict.main([str(out), str(root), "--out", str(target), "--top-k", "3"]) == 1
    result = json.loads(target.read_text())
    assert result["top_k"] == 3 and [p["fname"] for p in result["predictions"]] == good
    assert [e["file"] for e in result["errors"]] == [str(root / "broken.wav")]
    for clip in result["predictions"]:
        top = clip["top"]
        assert len(top) == 3
        logits = [t["logit"] for t in top]
        assert logits == sorted(logits, reverse=True)
        for t in top:
            assert t["probability"] == pytest.approx(1 / (1 + np.exp(-t["logit"])))
    # the same probabilities as the CSV output; --top-k 0 lists every class
    csv_out = tmp_path / "all.csv"
    predict.main([str(out), str(root), "--out", str(csv_out)])
    table = {r[0]: dict(zip(read_rows(csv_out)[0][1:], map(float, r[1:])))
             for r in read_rows(csv_out)[1:]}
    for clip in result["predictions"]:
        for t in clip["top"]:
            assert table[clip["fname"]][t["label"]] == pytest.approx(t["probability"], abs=1e-5)
    capsys.readouterr()
    assert predict.main([str(out), str(root / good[0]), "--format", "json", "--top-k", "0",
                         "--out", "-"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["predictions"][0]["top"]) == len(table[good[0]])


def test_dataset_mode_with_an_export(models, tiny_demo_dir, tmp_path, capsys):
    _, out = models
    target = tmp_path / "submission.csv"
    assert predict.main([str(out), "--data", str(tiny_demo_dir), "--out", str(target)]) == 0
    with open(tiny_demo_dir / "sample_submission.csv") as f:
        sample = list(csv.reader(f))
    rows = read_rows(target)
    assert rows[0] == sample[0] and [r[0] for r in rows[1:]] == [r[0] for r in sample[1:]]
    assert predict.main([str(out)]) == 1  # an export has no dataset of its own
    assert "--data" in capsys.readouterr().err
    assert predict.main([str(out), "--pooling", "max", str(target)]) == 1
    assert "fixed in an export" in capsys.readouterr().err


def test_predict_help():
    out = subprocess.run([sys.executable, "-m", "fat_tf.predict", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--format", "--top-k", "--files-from", "--data", "MODEL_DIR", "AUDIO"):
        assert flag in out
