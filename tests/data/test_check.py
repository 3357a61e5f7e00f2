"""``python -m fat_tf.data check DIR``: summary on a valid folder, clean errors otherwise."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from fat_tf.data.__main__ import main
from fat_tf.data.check import format_duration, run_check

CLASSES = ("Bark", "Hiss", "Slam")
REPO = Path(__file__).resolve().parents[2]


def write_wav(path, seconds, rate=44100, channels=1) -> None:
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate) * channels, "<i2").tobytes())


def write_set(root: Path, name: str, rows: list[tuple[str, str]], header="fname,labels") -> None:
    (root / name).mkdir(parents=True)
    lines = [header] + [
        f'{f},"{labels}"' if "," in labels else f"{f},{labels}" for f, labels in rows
    ]
    (root / f"{name}.csv").write_text("\n".join(lines) + "\n")
    for i, (fname, _) in enumerate(rows):
        write_wav(root / name / fname, 0.5 + i)


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Curated (3 clips: 0.5, 1.5, 2.5 s), noisy (2) and unlabelled test (1)."""
    root = tmp_path / "fat"
    write_set(root, "train_curated", [("a.wav", "Bark"), ("b.wav", "Slam,Bark"), ("c.wav", "Hiss")])
    write_set(root, "train_noisy", [("n1.wav", "Hiss"), ("n2.wav", "Hiss,Slam,Bark")])
    (root / "test").mkdir()
    write_wav(root / "test" / "t1.wav", 1.0)
    (root / "sample_submission.csv").write_text("fname,Bark,Hiss,Slam\nt1.wav,0,0,0\n")
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "fat_tf.data", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


def test_cli_valid_folder(dataset):
    result = run_cli("check", str(dataset))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert f"FAT2019 dataset: {dataset}" in out
    assert "classes: 3 (Bark, Hiss, Slam)" in out
    assert "curated        3     4.5 s   0.50s   1.50s   2.50s  from train_curated.csv" in out
    assert "noisy          2" in out and "test           1" in out
    assert "none (unlabelled)" in out
    assert "curated: labels per clip 1: 2, 2: 1 (mean 1.333)" in out
    assert "curated: clips per class min 1 (Hiss), max 2 (Bark)" in out
    assert "noisy: labels per clip 1: 1, 3: 1" in out
    assert "warnings: none" in out
    assert out.rstrip().endswith(f"{dataset}: OK")


def test_cli_invalid_folder(dataset):
    (dataset / "train_curated.csv").write_text("fname,labels\na.wav,Bark\nb.wav,Slamm\n")
    result = run_cli("check", str(dataset))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    csv_path = dataset / "train_curated.csv"
    assert f"error: {csv_path} line 3 (b.wav): unknown label 'Slamm'" in result.stderr
    assert "INVALID" in result.stderr


def test_cli_skip_bad_reports_warnings(dataset):
    (dataset / "train_curated.csv").write_text("fname,labels\na.wav,Bark\nb.wav,Slamm\n")
    result = run_cli("check", "--skip-bad", str(dataset))
    assert result.returncode == 0, result.stderr
    assert "curated        1" in result.stdout
    assert "warnings (2):" in result.stdout
    assert "skipped 1 of 2 row(s)" in result.stdout
    assert "1 audio file(s) not listed" in result.stdout  # c.wav


def test_cli_help():
    result = run_cli("--help")
    assert result.returncode == 0 and "check" in result.stdout
    result = run_cli("check", "--help")
    assert result.returncode == 0
    for word in ("--skip-bad", "--sample-rate", "DIR", "sample_submission.csv"):
        assert word in result.stdout


def test_cli_without_command_is_a_usage_error():
    result = run_cli()
    assert result.returncode == 2 and "usage:" in result.stderr


def test_missing_folder(tmp_path):
    err = io.StringIO()
    assert run_check(tmp_path / "nope", out=io.StringIO(), err=err) == 1
    assert "dataset folder not found" in err.getvalue()
    assert "train_curated.csv" in err.getvalue()


def test_other_rates_and_stereo_are_reported_as_converted(dataset, capsys):
    assert main(["check", "--sample-rate", "22050", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "converted when read: 6 of 6 clip(s)" in out
    assert "curated: 3 of 3 clip(s) converted (44100 Hz -> 22050 Hz: 3)" in out
    write_wav(dataset / "train_curated" / "a.wav", 0.5, channels=2)
    assert main(["check", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "converted when read: 1 of 6 clip(s)" in out
    assert "curated: 1 of 3 clip(s) converted (stereo -> mono: 1)" in out


def test_bad_audio(dataset, capsys):
    (dataset / "train_curated" / "a.wav").write_bytes(b"RIFF\0\0\0\0WAVEdata")
    assert main(["check", str(dataset)]) == 1
    err = capsys.readouterr().err
    assert "line 2: " in err and f"{dataset / 'train_curated' / 'a.wav'}: " in err
    assert err.count("error: ") == 1 and "INVALID" in err


def test_format_duration():
    assert format_duration(42) == "42.0 s"
    assert format_duration(750) == "12.5 min"
    assert format_duration(10.5 * 3600) == "10.5 h"
