"""A corpus of bad inputs through every user-facing entry point.

Each bad WAV file or CSV (generated here) goes through ``python -m fat_tf.data check``,
``python -m fat_tf.train`` and ``python -m fat_tf.predict RUN --data DIR``. Each is either
handled correctly or rejected with exit code 1 and one ``error:`` line that names the file
and the problem, and no traceback. A property-based test checks the contract between
the pre-flight header check and the in-graph decoder on mutated WAV bytes.
"""

from __future__ import annotations

import builtins
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fat_tf import predict, train
from fat_tf.data import __main__ as data_cli
from fat_tf.data import load_dataset
from fat_tf.data.decode import decode_wav
from fat_tf.data.wav import check_wav
from fat_tf.errors import AudioFormatError

RATE = 44100
FAST = [
    "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]

# ----------------------------------------------------------------------------- WAV builders


def chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def wav(audio: bytes, *, code=1, channels=1, rate=RATE, bits=16, data_size=None) -> bytes:
    """A WAV file: 16-byte ``fmt `` chunk and a data chunk declaring ``data_size`` bytes."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * align, align, bits)
    size = len(audio) if data_size is None else data_size
    body = b"WAVE" + chunk(b"fmt ", fmt) + b"data" + struct.pack("<I", size) + audio
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(frames: int, channels: int = 1) -> np.ndarray:
    return np.repeat(0.3 * np.sin(np.arange(frames) * 0.07), channels)


def pcm16(frames: int = RATE // 2, channels: int = 1, rate: int = RATE) -> bytes:
    audio = (tone(frames, channels) * 32767).astype("<i2").tobytes()
    return wav(audio, channels=channels, rate=rate)


def pcm24(frames: int = RATE // 2) -> bytes:
    ints = (tone(frames) * (2**23 - 1)).astype("<i4")
    audio = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    return wav(audio, bits=24)


def float32(frames: int = RATE // 2, nan: bool = False) -> bytes:
    x = tone(frames).astype("<f4")
    if nan:
        x[::7] = np.nan
    return wav(x.tobytes(), code=3, bits=32)


def riff_random_bytes() -> bytes:
    body = b"WAVE" + np.random.default_rng(1).bytes(2000)
    return b"RIFF" + struct.pack("<I", len(body)) + body


#: name -> (file bytes, or None for a directory / unreadable file; words the error must hold)
BAD_WAVS: dict[str, tuple[bytes | None, tuple[str, ...]]] = {
    "riff_random_bytes": (riff_random_bytes(), ("corrupt",)),
    "truncated_data": (pcm16()[:5000], ("data chunk truncated",)),
    "zero_length_data": (wav(b""), ("no audio",)),
    "float32_nan": (float32(nan=True), ("32-bit float", "NaN")),
    "unknown_format": (wav(bytes(400), code=0x1234), ("format 0x1234", "libsndfile")),
    "directory": (None, ("is a directory",)),
    "unreadable": (None, ("permission denied",)),
}
#: WAV files that are not 16-bit PCM mono at the model's rate: converted when read, not
#: refused (tests/test_audio_formats.py trains and predicts on such files).
CONVERTED_WAVS: dict[str, tuple[bytes, str]] = {
    "pcm24": (pcm24(), "24-bit PCM WAV"),
    "float32": (float32(), "32-bit float WAV"),
    "8_channels": (pcm16(RATE // 10, channels=8), "8 channels -> mono"),
    "8_khz": (pcm16(8000, rate=8000), "8000 Hz -> 44100 Hz"),
    "96_khz": (pcm16(RATE, rate=96000), "96000 Hz -> 44100 Hz"),
}

# ----------------------------------------------------------------------------- datasets


def copy_dataset(src: Path, dst: Path) -> Path:
    """Copy the (read-only, shared) demo dataset cheaply: WAVs are hard links, so a
    file is only ever replaced (:func:`replace`), never written in place."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def replace(path: Path, data: bytes | str | None) -> None:
    """Replace ``path`` by a new file (bytes or text) or, for None, a directory."""
    path.unlink()  # break the hard link first: never write into the shared file
    if data is None:
        path.mkdir()
    elif isinstance(data, str):
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def first_fname(csv_path: Path) -> str:
    return csv_path.read_text().splitlines()[1].split(",")[0]


def corrupt_clip(root: Path, folder: str, csv_name: str, case: str, monkeypatch) -> Path:
    """Replace the first clip listed in ``csv_name`` by the bad file ``case``."""
    path = root / folder / first_fname(root / csv_name)
    data, _ = BAD_WAVS[case]
    replace(path, data if case != "unreadable" else pcm16())
    if case == "unreadable":  # root ignores chmod: make open() refuse it instead
        real_open = builtins.open

        def fake_open(file, *args, **kwargs):
            if os.fspath(file) == str(path):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
    return path


# ----------------------------------------------------------------------------- CLI runners


def run_check_cli(root: Path, in_process: bool, capsys) -> tuple[int, str, str]:
    """``python -m fat_tf.data check ROOT`` as a subprocess (in-process when open() is
    monkeypatched, which a subprocess would not see)."""
    if in_process:
        code = data_cli.main(["check", str(root)])
        out, err = capsys.readouterr()
        return code, out, err
    done = subprocess.run([sys.executable, "-m", "fat_tf.data", "check", str(root)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def assert_rejected(code: int, err: str, path: Path | str, words, single: bool = True) -> None:
    """Exit code 1, no traceback, and an ``error:`` line naming ``path`` and the problem
    (the only one unless ``single`` is False: predict reports each bad file and goes on)."""
    assert code == 1, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    if single:
        assert len(lines) == 1, err
    named = [line for line in lines if str(path) in line]
    assert named, err
    for word in words:
        assert word in named[0], (word, named[0])


@pytest.fixture(scope="module")
def trained_run(tiny_demo_dir, tmp_path_factory) -> Path:
    """A tiny trained run (1 epoch of 1 step) for the predict command."""
    run = tmp_path_factory.mktemp("bad-input") / "run"
    code = train.main(["--data", str(tiny_demo_dir), "--out", str(run), *FAST, "--epochs", "1",
                       "--set", "train.steps_per_epoch=1", "--set", "data.validation_split=0.1"])
    assert code == 0
    return run


# ----------------------------------------------------------------------------- bad WAVs


@pytest.mark.parametrize("case", sorted(BAD_WAVS))
def test_bad_wav_in_training_data(case, tiny_demo_dir, tmp_path, capsys, monkeypatch):
    root = copy_dataset(tiny_demo_dir, tmp_path / "data")
    bad = corrupt_clip(root, "train_curated", "train_curated.csv", case, monkeypatch)
    words = BAD_WAVS[case][1]

    code, out, err = run_check_cli(root, case == "unreadable", capsys)
    assert_rejected(code, err, bad, words)
    assert "INVALID" in err

    code = train.main(["--data", str(root), "--out", str(tmp_path / "run"), *FAST])
    assert_rejected(code, capsys.readouterr().err, bad, words)
    assert not (tmp_path / "run" / "backup").exists()


@pytest.mark.parametrize("case", sorted(BAD_WAVS))
def test_bad_wav_in_test_data(case, trained_run, tiny_demo_dir, tmp_path, capsys, monkeypatch):
    root = copy_dataset(tiny_demo_dir, tmp_path / "data")
    bad = corrupt_clip(root, "test", "sample_submission.csv", case, monkeypatch)
    words = BAD_WAVS[case][1]

    code, out, err = run_check_cli(root, case == "unreadable", capsys)
    assert_rejected(code, err, bad, words)

    submission = tmp_path / "submission.csv"
    code = predict.main([str(trained_run), "--data", str(root), "--out", str(submission)])
    assert_rejected(code, capsys.readouterr().err, bad, words, single=False)
    if submission.exists():  # the other clips were scored: the bad one is left out
        rows = submission.read_text().splitlines()
        assert not [r for r in rows if r.startswith(bad.name + ",")]
        assert np.all(np.isfinite(np.array([r.split(",")[1:] for r in rows[1:]], float)))


@pytest.mark.slow
def test_bad_wav_through_real_commands(trained_run, tiny_demo_dir, tmp_path):
    """The same through ``python -m`` processes: what a user's terminal shows."""
    train_root = copy_dataset(tiny_demo_dir, tmp_path / "train-data")
    bad_train = train_root / "train_curated" / first_fname(train_root / "train_curated.csv")
    replace(bad_train, BAD_WAVS["truncated_data"][0])
    test_root = copy_dataset(tiny_demo_dir, tmp_path / "test-data")
    bad_test = test_root / "test" / first_fname(test_root / "sample_submission.csv")
    replace(bad_test, BAD_WAVS["float32_nan"][0])
    commands = [
        ([sys.executable, "-m", "fat_tf.train", "--data", str(train_root), "--out",
          str(tmp_path / "run"), *FAST], bad_train, "data chunk truncated"),
        ([sys.executable, "-m", "fat_tf.predict", str(trained_run), "--data", str(test_root),
          "--out", str(tmp_path / "sub.csv")], bad_test, "32-bit float"),
    ]
    for command, bad, problem in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert_rejected(done.returncode, done.stderr, bad, [problem], single=False)


@pytest.mark.parametrize("case", sorted(CONVERTED_WAVS))
def test_convertible_wav_is_reported_not_refused(case, tiny_demo_dir, tmp_path, capsys):
    root = copy_dataset(tiny_demo_dir, tmp_path / "data")
    path = root / "test" / first_fname(root / "sample_submission.csv")
    data, reason = CONVERTED_WAVS[case]
    replace(path, data)
    code, out, err = run_check_cli(root, True, capsys)
    assert code == 0, err
    assert "converted when read: 1 of" in out and "test: 1 of " in out and reason in out


# ----------------------------------------------------------------------------- bad CSVs


def with_extra_columns(text: str) -> str:
    lines = text.splitlines()
    rows = [lines[0] + ",freesound_id,license"]
    rows += [f"{line},{i},CC-BY" for i, line in enumerate(lines[1:]) if line]
    return "\n".join(rows) + "\n"


#: name -> (edit of train_curated.csv, None if accepted else (line, words of the error))
CSV_CASES = {
    "bom": (lambda t: "\ufeff" + t, None),
    "crlf": (lambda t: t.replace("\n", "\r\n"), None),
    "extra_columns": (with_extra_columns, None),
    "bom_crlf_extra_columns": (
        lambda t: "\ufeff" + with_extra_columns(t).replace("\n", "\r\n"), None),
    "missing_header": (lambda t: t.split("\n", 1)[1], ("line 1", "missing header")),
    "stray_spaces_in_labels": (
        lambda t: t.replace(",", ", ", 2).replace("fname, labels", "fname,labels"),
        ("line 2", "stray spaces")),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_csv(case, tiny_demo_dir, tmp_path, capsys):
    root = copy_dataset(tiny_demo_dir, tmp_path / "data")
    csv_path = root / "train_curated.csv"
    original = csv_path.read_text(encoding="utf-8")
    edit, expected = CSV_CASES[case]
    replace(csv_path, edit(original))
    assert csv_path.read_bytes() != original.encode("utf-8")

    code, out, err = run_check_cli(root, False, capsys)
    if expected is None:  # accepted, and read exactly as the original
        assert code == 0 and "Traceback" not in err, err
        assert out.rstrip().endswith(": OK")
        ours = load_dataset(root, check_audio=False).curated
        reference = load_dataset(tiny_demo_dir, check_audio=False).curated
        assert ours.fnames == reference.fnames
        np.testing.assert_array_equal(ours.labels, reference.labels)
        return
    line, words = expected
    assert_rejected(code, err, f"{csv_path} {line}", words)

    code = train.main(["--data", str(root), "--out", str(tmp_path / "run"), *FAST])
    assert_rejected(code, capsys.readouterr().err, f"{csv_path} {line}", words)


#: name -> (edit of sample_submission.csv, words of the error)
SUBMISSION_CASES = {
    "missing_header": (lambda t: t.split("\n", 1)[1], ("line 1", "fname")),
    "stray_space_in_class_name": (lambda t: t.replace(",", ", ", 1), ("line 1", "stray spaces")),
}


@pytest.mark.parametrize("case", sorted(SUBMISSION_CASES))
def test_bad_sample_submission(case, tiny_demo_dir, trained_run, tmp_path, capsys):
    root = copy_dataset(tiny_demo_dir, tmp_path / "data")
    csv_path = root / "sample_submission.csv"
    edit, words = SUBMISSION_CASES[case]
    replace(csv_path, edit(csv_path.read_text(encoding="utf-8")))
    code, out, err = run_check_cli(root, False, capsys)
    assert_rejected(code, err, csv_path, words)
    code = predict.main([str(trained_run), "--data", str(root), "--out",
                         str(tmp_path / "sub.csv")])
    assert_rejected(code, capsys.readouterr().err, csv_path, words)


def test_tolerated_csv_oddities_train_and_predict(tiny_demo_dir, trained_run, tmp_path, capsys):
    """BOM, CRLF and extra columns in every CSV: training and prediction just work."""
    root = copy_dataset(tiny_demo_dir, tmp_path / "data")
    for name in ("train_curated.csv", "train_noisy.csv", "test_post_competition.csv"):
        text = (root / name).read_text(encoding="utf-8")
        if name != "test_post_competition.csv":
            text = with_extra_columns(text)
        replace(root / name, "\ufeff" + text.replace("\n", "\r\n"))
    sample = (root / "sample_submission.csv").read_text(encoding="utf-8")
    replace(root / "sample_submission.csv", "\ufeff" + sample.replace("\n", "\r\n"))

    run = tmp_path / "run"
    assert train.main(["--data", str(root), "--out", str(run), *FAST, "--epochs", "1",
                       "--set", "train.steps_per_epoch=1"]) == 0
    submission = tmp_path / "submission.csv"
    assert predict.main([str(run), "--out", str(submission)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    rows = submission.read_text().splitlines()
    assert rows[0] == sample.splitlines()[0]
    assert len(rows) == len(sample.splitlines())


# ----------------------------------------------------------------------------- property


#: (offset, struct format) of the header fields of :func:`wav` files
HEADER_FIELDS = [(4, "<I"), (12, "4s"), (16, "<I"), (20, "<H"), (22, "<H"), (24, "<I"),
                 (28, "<I"), (32, "<H"), (34, "<H"), (36, "4s"), (40, "<I")]
INTERESTING = [0, 1, 2, 3, 8, 16, 18, 24, 32, 40, 0xFFFE, 8000, 22050, 44100, 88200,
               2**31 - 1, 2**31, 2**32 - 1]
CHUNK_IDS = [b"fmt ", b"data", b"LIST", b"JUNK", b"fact", b"\0\0\0\0", b"RIFF", b"WAVE"]


@st.composite
def mutated_wavs(draw) -> bytes:
    """A valid 16-bit WAV (sometimes with extra chunks), then 0-3 random mutations."""
    frames = draw(st.integers(0, 400))
    channels = draw(st.sampled_from([1, 1, 1, 2]))
    data = bytearray(pcm16(frames, channels=channels))
    if draw(st.booleans()):  # an extra chunk before or after the audio
        extra = draw(st.sampled_from([b"LIST", b"JUNK", b"fact"])) + struct.pack(
            "<I", n := draw(st.integers(0, 9))) + bytes(n + (n % 2 if draw(st.booleans()) else 0))
        at = draw(st.sampled_from([12, 36, len(data)]))
        data[at:at] = extra
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "field", "insert", "delete", "append"]))
        if kind == "flip" and data:
            bit = draw(st.integers(0, 8 * len(data) - 1))
            data[bit // 8] ^= 1 << (bit % 8)
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "field":
            offset, form = draw(st.sampled_from(HEADER_FIELDS))
            if form == "4s":
                value = struct.pack(form, draw(st.sampled_from(CHUNK_IDS)))
            else:
                top = 2 ** (8 * struct.calcsize(form)) - 1
                number = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, top)))
                value = struct.pack(form, min(number, top))
            data[offset:offset + len(value)] = value
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete" and data:
            at = draw(st.integers(0, len(data) - 1))
            del data[at:at + draw(st.integers(1, 9))]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=9))
    return bytes(data)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_wavs())
def test_check_wav_accepts_only_what_decode_wav_decodes(scratch, data):
    """check_wav raises AudioFormatError (and nothing else) or accepts; whatever it
    accepts, the pipeline's in-graph decoder decodes, with the frame count it read."""
    path = scratch / "mutated.wav"
    path.write_bytes(data)
    try:
        info = check_wav(path, RATE)
    except AudioFormatError as e:
        assert str(e).startswith(f"{path}: ")
        return
    audio = decode_wav(tf.constant(str(path)), RATE)
    assert audio.shape[0] == info.num_frames > 0
    assert np.all(np.abs(audio.numpy()) <= 1.0)
