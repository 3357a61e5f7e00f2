"""tools/build_devbench.py, tools/baselines.py and ``python -m fat_tf.data layout``.

Everything runs on a tiny fake Kitchen20 layout written here (synthetic tones and noise);
the real Kitchen20 audio never enters the tests.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import itertools
import json
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from fat_tf.data.__main__ import main as data_main
from fat_tf.data.manifest import load_dataset

REPO = Path(__file__).resolve().parents[1]
SR = 44100
CLASSES = ("boiling-water", "cutlery", "drawer", "stove-fan")  # names with '-' as Kitchen20


def _load_tool(name: str):
    """Import tools/<name>.py (tools/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _write_wav(path: Path, x: np.ndarray, channels: int = 1, rate: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    if channels == 2:
        data = np.repeat(data, 2)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(data.tobytes())


def _sound(rng: np.random.Generator, k: int, seconds: float) -> np.ndarray:
    """Class ``k``: a tone at 300 * 2**k Hz with noise, the event in a random part of it."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    x = 0.02 * rng.standard_normal(n)
    start = int(rng.integers(0, n // 2))
    stop = min(n, start + int(rng.uniform(0.3, 0.8) * SR))
    x[start:stop] += 0.5 * np.sin(2 * np.pi * 300 * 2**k * t[start:stop])
    return x


@pytest.fixture(scope="module")
def fake_k20(tmp_path_factory) -> Path:
    """A Kitchen20-shaped folder: 4 classes x 6 recordings x 2 takes of 1-2 s, plus one
    recording with takes in two classes (as some Kitchen20 usr_ids have)."""
    root = tmp_path_factory.mktemp("k20src")
    rng = np.random.default_rng(1)
    rows = []
    for k, name in enumerate(CLASSES):
        for s in range(6):
            usr = f"{k}{s:02d}{'é' if s == 5 else ''}"
            for take in "AB":
                path = f"audio/{s % 5 + 1}-{usr} x-{take}-{k}.wav"
                _write_wav(root / path, _sound(rng, k, rng.uniform(1.0, 2.0)))
                rows.append((name, s % 5 + 1, path, take, k, usr))
    for take, k in (("A", 0), ("B", 1)):
        path = f"audio/1-shared-{take}-{k}.wav"
        _write_wav(root / path, _sound(rng, k, 1.5))
        rows.append((CLASSES[k], 1, path, take, k, "shared"))
    with open(root / "kitchen20.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["", "Unnamed: 0", "category", "fold", "orig_idx", "path", "take", "target", "usr_id"]
        )
        for i, (cat, fold, path, take, k, usr) in enumerate(rows):
            w.writerow([i, i, cat, fold, i, path, take, k, usr])
    return root


def _build(src: Path, out: Path, *args: str) -> int:
    bench = _load_tool("build_devbench")
    return bench.main(["--source", str(src), "--out", str(out), "--curated-per-class", "2", *args])


@pytest.fixture(scope="module")
def builds(fake_k20, tmp_path_factory) -> dict[str, Path]:
    """Two indomain builds and one shifted build of the fake source, seed 0."""
    root = tmp_path_factory.mktemp("devbench")
    out = {"a": root / "a", "b": root / "b", "shifted": root / "shifted"}
    assert _build(fake_k20, out["a"]) == 0
    assert _build(fake_k20, out["b"]) == 0
    assert _build(fake_k20, out["shifted"], "--variant", "shifted") == 0
    return out


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- the builder


def test_build_is_deterministic(builds):
    a, b = builds["a"], builds["b"]
    assert _manifest(a)["hash"] == _manifest(b)["hash"]
    assert _files(a) == _files(b)  # every byte, manifest.json included
    listed = _manifest(a)["files"]
    assert {k: v for k, v in _files(a).items() if k != "manifest.json"} == listed
    assert not list(a.parent.glob(".*tmp*"))  # no temporary folder left behind


def test_splits_are_disjoint_by_recording_and_complete(builds):
    m = _manifest(builds["a"])
    seen: dict[str, str] = {}
    for split, records in m["clips"].items():
        for r in records:
            for usr in [r["usr_id"]] + ([r["mix"]["usr_id"]] if r["mix"] else []):
                assert seen.setdefault(usr, split) == split, f"{usr} in two splits"
    assert set(m["recordings"]["test"]).isdisjoint(m["recordings"]["train_curated"])
    assert "shared" in seen  # the two-class recording went to one split whole
    dataset = load_dataset(builds["a"])  # fat_tf loads the folder, audio headers checked
    assert dataset.class_names == CLASSES
    assert (dataset.curated.labels.sum(0) > 0).all()
    assert (dataset.test.labels.sum(0) > 0).all()
    # curated keeps one take of each of its recordings (every fake recording has two)
    curated = m["clips"]["train_curated"]
    assert len({r["usr_id"] for r in curated}) == len(curated) == len(dataset.curated)
    assert len(dataset.curated) + len(dataset.noisy) + len(dataset.test) == 50 - len(curated)
    assert m["counts"]["test"]["sources"] >= len(CLASSES)
    for split in ("train_curated", "train_noisy", "test"):
        c = m["counts"][split]
        assert c["mixtures"] == round(0.22 * c["clips"])
    durations = np.concatenate([s.durations for s in dataset.sets().values()])
    assert durations.min() > 0.9 and durations.max() <= 2.0


def test_noisy_label_corruption(builds):
    m = _manifest(builds["a"])
    dataset = load_dataset(builds["a"])
    noisy = m["clips"]["train_noisy"]
    written = dict(zip(dataset.noisy.fnames, dataset.noisy.label_sets(), strict=True))
    bad = [r for r in noisy if set(r["labels"]) != set(r["true_labels"])]
    assert len(bad) == round(0.4 * len(noisy)) == m["noisy_labels"]["corrupted_clips"]
    assert all(written[r["fname"]] == set(r["labels"]) for r in noisy)  # CSV = corrupted
    right = sum(len(set(r["labels"]) & set(r["true_labels"])) for r in noisy)
    total = sum(len(r["labels"]) for r in noisy)
    assert m["noisy_labels"]["label_precision"] == round(right / total, 4) < 1.0
    header = (builds["a"] / "train_noisy.csv").read_text().splitlines()[0]
    assert header == "fname,labels"  # the true labels are only in manifest.json
    for r in m["clips"]["train_curated"] + m["clips"]["test"]:
        assert r["labels"] == r["true_labels"]


def test_shifted_variant_shares_curated_and_test(builds):
    a, s = _files(builds["a"]), _files(builds["shifted"])
    for name in a:
        if name.startswith(("train_curated", "test", "sample_submission")):
            assert a[name] == s[name], name
        elif name.startswith("train_noisy/"):
            assert a[name] != s[name], name
    assert a["train_noisy.csv"] == s["train_noisy.csv"]  # same labels, other audio
    assert set(a) == set(s)
    ms = _manifest(builds["shifted"])
    assert ms["variant"] == "shifted" and ms["design"]["shift"]
    assert all("shift" in r for r in ms["clips"]["train_noisy"])


def test_rebuild_replaces_only_a_previous_build(fake_k20, builds, tmp_path, capsys):
    out = tmp_path / "bench"
    assert _build(fake_k20, out) == 0
    assert _build(fake_k20, out, "--seed", "1") == 0  # a previous build: replaced
    assert _manifest(out)["seed"] == 1
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert _build(fake_k20, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert (out / "notes.txt").read_text() == "mine" and _manifest(out)["seed"] == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.wav").write_bytes(b"")
    assert _build(fake_k20, other) == 2
    assert list(other.iterdir()) == [other / "x.wav"]
    assert _build(tmp_path / "missing", tmp_path / "new") == 2
    assert not (tmp_path / "new").exists()


def test_excerpt_holds_the_loud_part():
    bench = _load_tool("build_devbench")
    x = np.zeros(5 * SR)
    x[4 * SR : 4 * SR + SR // 10] = 0.5  # a 100 ms event near the end
    rng = np.random.default_rng(0)
    for length in (SR, 2 * SR):
        for _ in range(20):
            start = bench.loud_excerpt_start(rng, x, length)
            assert np.abs(x[start : start + length]).max() == 0.5


# ---------------------------------------------------------------------- the layout command


def _folder_source(root: Path) -> Path:
    rng = np.random.default_rng(2)
    for k, name in enumerate(("dog", "door knock")):
        for i in range(5):
            _write_wav(root / name / f"{i:03d}.wav", _sound(rng, k, 0.5))
    (root / "dog" / "notes.txt").write_text("not audio")
    return root


def test_layout_from_folders(tmp_path, capsys):
    src = _folder_source(tmp_path / "src")
    out = tmp_path / "out"
    argv = ["layout", "--from-folders", str(src), "--out", str(out), "--test-fraction", "0.4"]
    assert data_main(argv) == 0
    assert "ignored 1 non-audio" in capsys.readouterr().out
    ds = load_dataset(out)
    assert ds.class_names == ("dog", "door knock") and ds.noisy is None
    assert len(ds.test) == 4 and len(ds.curated) == 6
    assert (ds.test.labels.sum(0) == 2).all()
    assert "dog__000.wav" in ds.curated.fnames + ds.test.fnames
    assert data_main(argv) == 2  # an existing folder is refused
    linked = tmp_path / "linked"
    assert data_main([*argv[:3], "--test-fraction", "0.4", "--out", str(linked), "--link"]) == 0
    f = next((linked / "train_curated").iterdir())
    src_file = src / f.name.split("__")[0] / f.name.split("__")[1]
    assert f.stat().st_ino == src_file.stat().st_ino
    assert _files(out)["sample_submission.csv"] == _files(linked)["sample_submission.csv"]


def test_layout_takes_other_formats_and_rejects_unreadable_files_with_one_line(tmp_path,
                                                                              capsys):
    src = _folder_source(tmp_path / "src")
    _write_wav(src / "dog" / "stereo.wav", np.zeros(SR), channels=2)
    (src / "dog" / "clip.flac").write_bytes(b"fLaC")
    out = tmp_path / "out"
    assert data_main(["layout", "--from-folders", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "clip.flac: unreadable audio (libsndfile: " in err and err.count("\n") == 1
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    (src / "dog" / "clip.flac").unlink()
    assert data_main(["layout", "--from-folders", str(src), "--out", str(out)]) == 0
    ds = load_dataset(out)  # the stereo file is copied as it is, converted when read
    names = ds.curated.fnames + ds.test.fnames
    conversions = ds.curated.conversions + ds.test.conversions
    assert conversions[names.index("dog__stereo.wav")] == ("stereo -> mono",)


def test_layout_from_csv_multilabel_with_noisy(tmp_path):
    rng = np.random.default_rng(3)
    audio = tmp_path / "audio"
    rows = []
    for i in range(12):
        labels = ["Bark"] if i % 3 == 0 else ["Slam"] if i % 3 == 1 else ["Bark", "Slam"]
        _write_wav(audio / "sub" / f"c{i}.wav", _sound(rng, i % 3, 0.4))
        rows.append((f"sub/c{i}.wav", ", ".join(labels)))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("fname", "labels"), *rows])
    web = tmp_path / "web"
    _write_wav(web / "w0.wav", _sound(rng, 0, 0.4))
    (web / "noisy.csv").write_text('fname,label\nw0.wav,"Slam,Bark"\n')
    out = tmp_path / "out"
    argv = [
        "layout",
        "--from-csv",
        str(tmp_path / "labels.csv"),
        "--audio-dir",
        str(audio),
        "--out",
        str(out),
        "--noisy-csv",
        str(web / "noisy.csv"),
        "--seed",
        "3",
    ]
    assert data_main(argv) == 0
    ds = load_dataset(out)
    assert ds.class_names == ("Bark", "Slam")
    assert ds.noisy.fnames == ("w0.wav",) and ds.noisy.labels.tolist() == [[1.0, 1.0]]
    assert len(ds.test) == 3  # round(0.2 * 4) clamped to 1 per label set
    sets = dict(
        zip(
            ds.curated.fnames + ds.test.fnames,
            ds.curated.label_sets() + ds.test.label_sets(),
            strict=True,
        )
    )
    assert sets["sub__c2.wav"] == {"Bark", "Slam"} and sets["sub__c0.wav"] == {"Bark"}
    bad = tmp_path / "bad.csv"
    bad.write_text("fname,labels\nsub/c0.wav,Bark\nsub/c0.wav,Slam\n")
    argv = [
        "layout",
        "--from-csv",
        str(bad),
        "--audio-dir",
        str(audio),
        "--out",
        str(tmp_path / "o2"),
    ]
    assert data_main(argv) == 2


# ------------------------------------------------------------------------------ baselines


def _numpy_stats(x: np.ndarray, fe) -> np.ndarray:
    """Reference for the baseline features: log-mel in numpy, then band mean/std/max."""
    from fat_tf.layers.logmel import mel_filterbank, periodic_hann

    pad = fe.n_fft // 2
    y = np.pad(x.astype(np.float64), pad, mode=fe.pad_mode)
    frames = 1 + x.size // fe.hop_length
    idx = np.arange(frames)[:, None] * fe.hop_length + np.arange(fe.n_fft)[None, :]
    spec = np.abs(np.fft.rfft(y[idx] * periodic_hann(fe.n_fft), axis=1)) ** fe.power
    mel = spec @ mel_filterbank(fe.sample_rate, fe.n_fft, fe.n_mels, fe.fmin, fe.fmax)
    db = 10 * np.log10(np.maximum(mel, fe.amin))
    db = np.maximum(db, db.max() - fe.top_db)
    db = (db - db.mean()) / (db.std() + 1e-6)
    return np.concatenate([db.mean(0), db.std(0), db.max(0)])


def test_features_match_numpy_reference():
    baselines = _load_tool("baselines")
    fe = baselines.frontend_config()
    rng = np.random.default_rng(4)
    featurize = baselines.make_featurizer(fe)
    for n in (int(0.3 * SR), int(1.3 * SR)):
        x = (0.1 * rng.standard_normal(n) + 0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32)
        got = featurize(x)
        assert got.shape == (3 * fe.n_mels,)
        np.testing.assert_allclose(got, _numpy_stats(x, fe), atol=2e-3, rtol=1e-3)


def _exact_chance(y: np.ndarray) -> float:
    """Expected lwlrap of a uniformly random ranking, by enumerating every ranking."""
    n_classes = y.shape[1]
    perms = np.array(list(itertools.permutations(range(n_classes))))  # rank order of classes
    total, count = 0.0, 0
    for row in y > 0.5:
        for order in perms:
            hits = np.cumsum(row[order])
            prec = hits / np.arange(1, n_classes + 1)
            total += prec[row[order]].sum() / len(perms)
        count += row.sum()
    return total / count


def test_baselines_on_tiny_set(builds, tmp_path, capsys):
    baselines = _load_tool("baselines")
    out = tmp_path / "res" / "baselines.json"
    argv = [str(builds["a"]), "--out", str(out), "--seeds", "0", "1"]
    assert baselines.main(argv) == 0
    report = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "| reference | trained on | test lwlrap |" in printed
    results = report["results"]
    assert set(results) == {"random", "logreg_curated", "logreg_curated_noisy"}
    for r in results.values():
        assert len(r["per_seed"]) == 2 and all(0.0 <= v <= 1.0 for v in r["per_seed"])
    y_test = load_dataset(builds["a"]).test.labels
    assert results["random"]["mean"] == pytest.approx(_exact_chance(y_test), abs=0.03)
    assert report["search"]["folds_by"] == "recording"
    total = sum(len(v) for v in _manifest(builds["a"])["clips"].values())
    assert report["features"]["computed"] == total
    assert (out.parent / "baselines.features.npz").is_file()
    assert not list(builds["a"].glob("*.npz"))  # never writes into the dataset
    assert baselines.main(argv) == 0  # rerun: every feature from the cache
    again = json.loads(out.read_text())
    assert again["features"]["computed"] == 0
    assert again["results"] == report["results"]


def test_cv_folds_keep_groups_together():
    baselines = _load_tool("baselines")
    groups = np.array([0, 0, 1, 1, 2, 3, 3, 4, 5, 6])
    folds = baselines.cv_splits(len(groups), groups, seed=0)
    assert len(folds) == 5
    held = np.concatenate([v for _, v in folds])
    assert sorted(held.tolist()) == list(range(10))
    for train, val in folds:
        assert set(groups[train]).isdisjoint(groups[val])
