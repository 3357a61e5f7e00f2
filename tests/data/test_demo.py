"""Tests of the synthetic demo dataset generator (fat_tf.data.demo)."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fat_tf.data import demo, demo_sounds
from fat_tf.data.demo import (
    DEMO_CLASSES,
    DemoDatasetExistsError,
    default_demo_dir,
    generate_demo_dataset,
    plan_demo_dataset,
)

SEED = 0  # the seed of the tiny_demo_dir fixture (tests/conftest.py)
FNAME = re.compile(r"^[0-9a-f]{8}\.wav$")
TOP_LEVEL = {
    "train_curated.csv",
    "train_curated",
    "train_noisy.csv",
    "train_noisy",
    "test",
    "sample_submission.csv",
    "test_post_competition.csv",
}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its content."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_rows(path: Path) -> list[list[str]]:
    """CSV rows (header included) read with the csv module."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run ``python -m fat_tf.data.demo`` with ``args`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "fat_tf.data.demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )


def _no_temp_siblings(folder: Path) -> bool:
    """No leftover temporary generation folders next to the output."""
    return not [p for p in folder.iterdir() if ".tmp-" in p.name]


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes(tiny_demo_dir, tmp_path):
    again = generate_demo_dataset(tmp_path / "again", seed=SEED, size="tiny")
    assert _tree_bytes(again) == _tree_bytes(tiny_demo_dir)


def test_different_seed_gives_different_data(tiny_demo_dir, tmp_path):
    other = _tree_bytes(generate_demo_dataset(tmp_path / "other", seed=SEED + 1, size="tiny"))
    ours = _tree_bytes(tiny_demo_dir)
    assert set(other) != set(ours)
    assert other["train_curated.csv"] != ours["train_curated.csv"]


def test_plan_is_deterministic_and_cheap():
    assert plan_demo_dataset(3, "default") == plan_demo_dataset(3, "default")
    assert plan_demo_dataset(3, "default") != plan_demo_dataset(4, "default")


# ----------------------------------------------------------------------------------- layout


def test_layout_matches_fat2019(tiny_demo_dir):
    assert {p.name for p in tiny_demo_dir.iterdir()} == TOP_LEVEL
    all_names = []
    for folder, csv_name in (
        ("train_curated", "train_curated.csv"),
        ("train_noisy", "train_noisy.csv"),
        ("test", "sample_submission.csv"),
    ):
        wavs = sorted(p.name for p in (tiny_demo_dir / folder).iterdir())
        listed = [row[0] for row in _read_rows(tiny_demo_dir / csv_name)[1:]]
        assert wavs == sorted(listed)
        all_names += wavs
    assert all(FNAME.match(n) for n in all_names)
    assert len(set(all_names)) == len(all_names)  # unique across sets


def test_sizes_of_tiny(tiny_demo_dir):
    per_class = demo.DEMO_SIZES["tiny"].curated_per_class
    n_curated = len(list((tiny_demo_dir / "train_curated").iterdir()))
    assert len(DEMO_CLASSES) == 12
    assert n_curated == per_class * len(DEMO_CLASSES)
    assert len(list((tiny_demo_dir / "train_noisy").iterdir())) == 4 * n_curated
    assert len(list((tiny_demo_dir / "test").iterdir())) == 24


def test_classes_are_sorted_fat2019_names():
    assert list(DEMO_CLASSES) == sorted(DEMO_CLASSES)
    assert any("(" in c for c in DEMO_CLASSES)
    assert set(demo_sounds.SYNTHESIZERS) == set(DEMO_CLASSES)
    assert all(re.fullmatch(r"[A-Za-z_()\-]+", c) for c in DEMO_CLASSES)


# ------------------------------------------------------------------------------- CSV format


@pytest.mark.parametrize("name", ["train_curated.csv", "train_noisy.csv"])
def test_train_csv_format(tiny_demo_dir, name):
    raw = (tiny_demo_dir / name).read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n") and not raw.endswith(b"\n\n")
    lines = raw.decode("utf-8").split("\n")[:-1]
    assert lines[0] == "fname,labels"
    rows = _read_rows(tiny_demo_dir / name)
    assert rows[0] == ["fname", "labels"]
    fnames = [r[0] for r in rows[1:]]
    assert fnames == sorted(fnames)
    for line, (fname, labels) in zip(lines[1:], rows[1:], strict=True):
        quoted = "," in labels
        assert line == (f'{fname},"{labels}"' if quoted else f"{fname},{labels}")
        parts = labels.split(",")
        assert parts and len(set(parts)) == len(parts) and set(parts) <= set(DEMO_CLASSES)
    frame = pd.read_csv(tiny_demo_dir / name)
    assert list(frame.columns) == ["fname", "labels"]
    assert frame.values.tolist() == rows[1:]


def test_multi_label_strings_are_not_alphabetical(tiny_demo_dir):
    rows = _read_rows(tiny_demo_dir / "train_noisy.csv")[1:]
    multi = [r[1].split(",") for r in rows if "," in r[1]]
    assert multi and any(labels != sorted(labels) for labels in multi)


def test_sample_submission(tiny_demo_dir):
    raw = (tiny_demo_dir / "sample_submission.csv").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    rows = _read_rows(tiny_demo_dir / "sample_submission.csv")
    assert rows[0] == ["fname", *DEMO_CLASSES]
    fnames = [r[0] for r in rows[1:]]
    assert fnames == sorted(fnames)
    assert sorted(fnames) == sorted(p.name for p in (tiny_demo_dir / "test").iterdir())
    assert all(r[1:] == ["0"] * len(DEMO_CLASSES) for r in rows[1:])
    frame = pd.read_csv(tiny_demo_dir / "sample_submission.csv")
    assert (frame[list(DEMO_CLASSES)].to_numpy() == 0).all()


def test_test_post_competition(tiny_demo_dir):
    raw = (tiny_demo_dir / "test_post_competition.csv").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    frame = pd.read_csv(tiny_demo_dir / "test_post_competition.csv")
    assert list(frame.columns) == ["fname", "labels", "usage", "freesound_id", "license"]
    assert sorted(frame.fname) == sorted(p.name for p in (tiny_demo_dir / "test").iterdir())
    assert set(frame.usage) == {"Public", "Private"}
    assert 0.15 <= (frame.usage == "Public").mean() <= 0.35
    assert frame.freesound_id.dtype.kind == "i" and frame.freesound_id.is_unique
    assert set(frame.license) <= {name for name, _ in demo.LICENSES}
    truth = {c.fname: ",".join(c.true_labels) for c in plan_demo_dataset(SEED, "tiny")["test"]}
    assert dict(zip(frame.fname, frame.labels, strict=True)) == truth  # clean labels


# ------------------------------------------------------------------------------------ audio


def test_wav_format_and_durations(tiny_demo_dir):
    max_duration = demo.DEMO_SIZES["tiny"].max_duration
    for path in sorted(tiny_demo_dir.glob("*/*.wav")):
        header = path.read_bytes()[:44]
        assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
        assert int.from_bytes(header[20:22], "little") == 1  # PCM
        with wave.open(str(path)) as f:
            assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (1, 2, 44100)
            assert f.getcomptype() == "NONE"
            duration = f.getnframes() / 44100
            samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
        assert 0.3 <= duration <= max_duration + 1e-9
        assert samples.std() > 10  # never silent (background noise everywhere)


def test_default_durations_are_varied():
    clips = [c for split in plan_demo_dataset(SEED, "default").values() for c in split]
    durations = np.array([c.duration for c in clips])
    assert durations.min() >= 0.3 and durations.max() <= 10.0
    assert 2.0 <= durations.mean() <= 3.5
    assert (durations < 1.0).mean() > 0.1 and (durations > 5.0).mean() > 0.1


def test_event_can_be_shorter_than_clip():
    rng = np.random.default_rng(0)
    n = 10 * 44100
    spans = [demo_sounds._place_event(rng, n, demo_sounds.SYNTHESIZERS["Knock"])[1].size
             for _ in range(40)]
    assert min(spans) < n / 2 and max(spans) == n


@pytest.mark.parametrize("name", DEMO_CLASSES)
def test_every_synthesizer_sounds_even_in_the_shortest_span(name):
    shortest = round(0.25 * 44100)  # events last at least 0.25 s
    for seed in range(20):
        event = demo_sounds.SYNTHESIZERS[name](np.random.default_rng(seed), shortest)
        assert event.shape == (shortest,) and np.isfinite(event).all()
        assert event.std() > 1e-3 * np.abs(event).max() > 0


# ----------------------------------------------------------------------------------- labels


def test_curated_classes_are_balanced():
    curated = plan_demo_dataset(SEED, "default")["train_curated"]
    firsts = Counter(c.labels[0] for c in curated)
    assert set(firsts.values()) == {demo.DEMO_SIZES["default"].curated_per_class}
    totals = Counter(label for c in curated for label in c.labels)
    assert max(totals.values()) <= 1.6 * min(totals.values())


def test_multi_label_fraction():
    for clips in plan_demo_dataset(SEED, "default").values():
        counts = np.array([len(c.true_labels) for c in clips])
        assert 0.2 <= (counts > 1).mean() <= 0.3
        assert counts.max() == 3 and (counts == 3).mean() < (counts == 2).mean()


def test_curated_and_test_labels_are_true_labels():
    plan = plan_demo_dataset(SEED, "default")
    assert all(c.labels == c.true_labels for c in plan["train_curated"] + plan["test"])


def test_noisy_labels_are_corrupted_at_the_planned_rate():
    noisy = plan_demo_dataset(SEED, "default")["train_noisy"]
    assert all(c.labels for c in noisy)
    assert 0.3 <= np.mean([c.corrupted for c in noisy]) <= 0.4
    kinds = Counter(_corruption_kind(c) for c in noisy if c.corrupted)
    assert set(kinds) == {"replace", "drop", "add"}


def _corruption_kind(clip: demo.DemoClip) -> str:
    """How the written labels of a corrupted clip differ from its true labels."""
    written, true = set(clip.labels), set(clip.true_labels)
    if written < true:
        return "drop"
    if written > true:
        return "add"
    return "replace"


def test_noisy_csv_holds_the_planned_noisy_labels(tiny_demo_dir):
    plan = {c.fname: c for c in plan_demo_dataset(SEED, "tiny")["train_noisy"]}
    rows = _read_rows(tiny_demo_dir / "train_noisy.csv")[1:]
    assert {f: tuple(labels.split(",")) for f, labels in rows} == {
        f: c.labels for f, c in plan.items()
    }
    assert 0.3 <= np.mean([c.corrupted for c in plan.values()]) <= 0.4


@pytest.mark.parametrize("kwargs", [{"size": "huge"}, {"seed": -1}, {"seed": 1.5}])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        plan_demo_dataset(**kwargs)


# ------------------------------------------------------------------------- atomic writing


def test_refuses_to_overwrite(tiny_demo_dir):
    before = _tree_bytes(tiny_demo_dir)
    with pytest.raises(DemoDatasetExistsError, match="not empty"):
        generate_demo_dataset(tiny_demo_dir, seed=SEED + 1, size="tiny")
    assert _tree_bytes(tiny_demo_dir) == before
    assert _no_temp_siblings(tiny_demo_dir.parent)


@pytest.fixture
def cheap_writer(monkeypatch):
    """Replace the audio and CSV writing by one marker file (tests of the folder logic)."""

    def write(root, plan, seed):
        (root / "marker.txt").write_text(f"seed {seed}")

    monkeypatch.setattr(demo, "_write_dataset", write)


def test_overwrite_replaces(tmp_path, cheap_writer):
    out = tmp_path / "data"
    out.mkdir()
    (out / "junk.txt").write_text("old")
    assert generate_demo_dataset(out, seed=5, size="tiny", overwrite=True) == out
    assert [p.name for p in out.iterdir()] == ["marker.txt"]
    assert _no_temp_siblings(tmp_path)


def test_empty_or_missing_folder_is_fine(tmp_path, cheap_writer):
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_demo_dataset(empty, size="tiny")
    generate_demo_dataset(tmp_path / "new" / "nested", size="tiny")
    assert (empty / "marker.txt").exists()
    assert (tmp_path / "new" / "nested" / "marker.txt").exists()
    assert _no_temp_siblings(tmp_path)


def test_refuses_a_file_even_with_overwrite(tmp_path, cheap_writer):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(DemoDatasetExistsError, match="not a folder"):
        generate_demo_dataset(target, size="tiny", overwrite=True)


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing(clip, seed):
        calls.append(clip)
        if len(calls) > 3:
            raise RuntimeError("disk full")
        return np.zeros(clip.num_samples, dtype="<i2")

    monkeypatch.setattr(demo, "synthesize_clip", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_demo_dataset(tmp_path / "out", size="tiny")
    assert list(tmp_path.iterdir()) == []


def test_default_demo_dir_generates_once(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_generate(out_dir, *, seed, size, overwrite=False):
        calls.append((seed, size))
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "train_curated.csv").write_text("fname,labels\n")
        return Path(out_dir)

    monkeypatch.setenv("FAT_TF_CACHE", str(tmp_path))
    monkeypatch.setattr(demo, "generate_demo_dataset", fake_generate)
    path = default_demo_dir(seed=7, size="small")
    assert path == tmp_path / "demo-v1-small-seed7"
    # the first use says on stderr what it is doing, where, and how to move the cache
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"generating the small demo dataset (seed 7) into {path}" in captured.err
    assert "FAT_TF_CACHE" in captured.err and "demo dataset ready in" in captured.err
    assert default_demo_dir(seed=7, size="small") == path
    assert calls == [(7, "small")]
    assert capsys.readouterr().err == ""  # already there: silent


# -------------------------------------------------------------------------------------- CLI


def test_cli_generates_same_bytes_and_summary(tiny_demo_dir, tmp_path):
    out = tmp_path / "cli"
    result = _run_cli("--out", str(out), "--size", "tiny", "--seed", str(SEED))
    assert result.returncode == 0, result.stderr
    assert _tree_bytes(out) == _tree_bytes(tiny_demo_dir)
    for word in ("train_curated", "train_noisy", "test", "min", "wrong or missing", " s"):
        assert word in result.stdout
    again = _run_cli("--out", str(out), "--size", "tiny")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_cli_help():
    result = _run_cli("--help")
    assert result.returncode == 0
    for word in ("--out", "--seed", "--size", "tiny", "--overwrite", "FAT2019"):
        assert word in result.stdout
