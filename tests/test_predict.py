"""python -m fat_tf.predict on run folders and exports: folders, files, lists, bad files."""

import csv
import json
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest

from fat_tf import audio_io, export, predict, train

TINY = [
    "--epochs", "1", "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_demo_dir):
    """(run folder, export folder), shared with tests/test_export.py within a session."""
    base = tmp_path_factory.getbasetemp()
    run, out = base / "shared_tiny_run", base / "shared_tiny_export"
    if not (run / "summary.json").exists():
        assert train.main(["--data", str(tiny_demo_dir), "--out", str(run), *TINY]) == 0
    if not (out / "export.json").exists():
        assert export.main([str(run), "--out", str(out), "--quantize"]) == 0
    return run, out


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


@pytest.mark.skipif(audio_io.tfio_module() is not None, reason="tensorflow-io is installed")
def test_other_formats_need_the_io_extra(models, tmp_path, capsys):
    _, out = models
    (tmp_path / "a.flac").write_bytes(b"fLaC" + bytes(100))
    with wave.open(str(tmp_path / "b.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(48000)
        f.writeframes(np.zeros(4800, "<i2").tobytes())
    assert predict.main([str(out), str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert 'pip install "fat_tf[io]"' in err and "a.flac" in err and "b.wav" in err
    assert "48000 Hz" in err and "nothing written" in err


@pytest.mark.io
@pytest.mark.skipif(audio_io.tfio_module() is None, reason="needs tensorflow-io (fat_tf[io])")
def test_flac_ogg_and_48khz_through_tensorflow_io(models, folder, tmp_path):
    import tensorflow as tf

    tfio = audio_io.tfio_module()
    _, out = models
    root, good = folder
    source = root / good[0]
    with wave.open(str(source)) as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2")
    x = pcm.astype(np.float32) / 32768
    files = tmp_path / "formats"
    files.mkdir()
    shutil.copy(source, files / "a_reference.wav")
    (files / "b.flac").write_bytes(
        tfio.audio.encode_flac(tf.constant(pcm[:, None]), rate=44100).numpy())
    (files / "c.ogg").write_bytes(
        tfio.audio.encode_vorbis(tf.constant(x[:, None]), rate=44100).numpy())
    resampled = tfio.audio.resample(tf.constant(x[:, None]), rate_in=44100, rate_out=48000)
    with wave.open(str(files / "d_48k_stereo.wav"), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(48000)
        mono = np.clip(np.round(resampled.numpy()[:, 0] * 32767), -32768, 32767)
        f.writeframes(np.repeat(mono.astype("<i2")[:, None], 2, axis=1).tobytes())
    decoded = audio_io.load_audio(files / "d_48k_stereo.wav", 44100)
    assert abs(len(decoded) - len(x)) <= 2
    target = tmp_path / "formats.csv"
    assert predict.main([str(out), str(files), "--out", str(target)]) == 0
    rows = {r[0]: np.array(r[1:], float) for r in read_rows(target)[1:]}
    reference = rows["a_reference.wav"]
    np.testing.assert_allclose(rows["b.flac"], reference, atol=1e-5)  # lossless
    np.testing.assert_allclose(rows["c.ogg"], reference, atol=0.05)  # lossy
    np.testing.assert_allclose(rows["d_48k_stereo.wav"], reference, atol=0.05)


def test_predict_help():
    out = subprocess.run([sys.executable, "-m", "fat_tf.predict", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--format", "--top-k", "--files-from", "--data", "MODEL_DIR", "AUDIO"):
        assert flag in out
