"""Audio in the formats and rates people have (issue 17 item 1), with the default install.

Files are written here with ``soundfile`` itself (every format the installed libsndfile
can write; the others are skipped with the reason), decoded by :mod:`fat_tf.data.audio_io`
and compared with references computed from ``soundfile`` and ``soxr`` directly (the
same downmix and resampling). A resampled sine keeps its frequency. Then the same files
go through the tf.data pipeline, ``data check``, ``train`` and ``predict``.
"""

from __future__ import annotations

import json
import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import tensorflow as tf

from fat_tf import predict, train
from fat_tf.data import audio_io, decode, load_dataset, pipeline
from fat_tf.data.check import run_check
from fat_tf.errors import AudioFormatError

MODEL_RATE = 44100
#: (name, soundfile format, subtype, file extension, lossless)
FORMATS = [
    ("wav16", "WAV", "PCM_16", ".wav", True),
    ("wav24", "WAV", "PCM_24", ".wav", True),
    ("wav32", "WAV", "PCM_32", ".wav", True),
    ("wav_u8", "WAV", "PCM_U8", ".wav", True),
    ("wav_float", "WAV", "FLOAT", ".wav", True),
    ("wav_double", "WAV", "DOUBLE", ".wav", True),
    ("flac16", "FLAC", "PCM_16", ".flac", True),
    ("flac24", "FLAC", "PCM_24", ".flac", True),
    ("vorbis", "OGG", "VORBIS", ".ogg", False),
    ("opus", "OGG", "OPUS", ".opus", False),
    ("mp3", "MP3", "MPEG_LAYER_III", ".mp3", False),
    ("aiff", "AIFF", "PCM_16", ".aiff", True),
]
RATES = [8000, 16000, 22050, 44100, 48000]
#: Quantisation step of each lossless subtype (the written signal is recovered to it).
STEP = {"PCM_16": 2**-15, "PCM_24": 2**-23, "PCM_32": 2**-31, "PCM_U8": 2**-7,
        "FLOAT": 1e-7, "DOUBLE": 1e-7}


def signal(rate: int, channels: int, seconds: float = 0.5) -> np.ndarray:
    """A 440 Hz tone (left) and a quieter 1 kHz tone (right): float32 ``[n, channels]``."""
    t = np.arange(int(seconds * rate)) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    right = 0.2 * np.sin(2 * np.pi * 1000 * t)
    return np.stack([left, right][:channels], axis=1).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int, fmt: str, subtype: str) -> Path:
    """Write with soundfile, or skip the test when this libsndfile cannot write it."""
    if not sf.check_format(fmt, subtype):
        pytest.skip(f"the installed libsndfile {sf.__libsndfile_version__} cannot write "
                    f"{fmt}/{subtype}")
    try:
        sf.write(path, data, rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write {fmt}/{subtype} at "
                    f"{rate} Hz, {data.shape[1]} channel(s): {e}")
    return path


def reference(path: Path, rate: int) -> np.ndarray:
    """soundfile's samples, mean of the channels, soxr HQ to ``rate``."""
    data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float32)
    if file_rate == rate:
        return mono
    return soxr.resample(mono, file_rate, rate, quality="HQ").astype(np.float32)


def peak_hz(wave_: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave_ * np.hanning(len(wave_))))
    return float(np.fft.rfftfreq(len(wave_), 1 / rate)[np.argmax(spectrum)])


# ---------------------------------------------------------------------- decoding


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("name, fmt, subtype, ext, lossless", FORMATS,
                         ids=[f[0] for f in FORMATS])
def test_every_format_rate_and_layout_matches_soundfile_and_soxr(
        tmp_path, name, fmt, subtype, ext, lossless, channels, rate):
    data = signal(rate, channels)
    path = write(tmp_path / f"clip{ext}", data, rate, fmt, subtype)
    if lossless:  # the file holds what was written, scaled as tf.audio.decode_wav scales
        read, _ = sf.read(path, dtype="float32", always_2d=True)
        np.testing.assert_allclose(read, data, atol=STEP[subtype])

    info = audio_io.probe_audio(path, MODEL_RATE)
    assert (info.channels, info.sample_rate) == (channels, rate)
    fast = (fmt, subtype, channels, rate) == ("WAV", "PCM_16", 1, MODEL_RATE)
    assert info.fast == fast, info.conversion
    if not fast:
        assert ("stereo -> mono" in info.conversion) == (channels == 2)
        assert (f"{rate} Hz -> {MODEL_RATE} Hz" in info.conversion) == (rate != MODEL_RATE)

    decoded = audio_io.load_audio(path, MODEL_RATE)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    np.testing.assert_allclose(decoded, reference(path, MODEL_RATE), atol=1e-6)
    expected = len(sf.read(path)[0]) * MODEL_RATE / rate
    assert abs(len(decoded) - expected) <= 1
    # the host decoder gives the in-graph decoder's values on a fast-path file
    np.testing.assert_allclose(audio_io.decode_audio(path, MODEL_RATE), decoded, atol=1e-6)


@pytest.mark.parametrize("rate_in, rate_out", [(48000, 44100), (8000, 44100), (44100, 16000),
                                               (22050, 48000), (16000, 44100)])
@pytest.mark.parametrize("fmt, subtype, ext", [("FLAC", "PCM_24", ".flac"),
                                               ("WAV", "FLOAT", ".wav")])
def test_a_resampled_sine_keeps_its_frequency(tmp_path, rate_in, rate_out, fmt, subtype, ext):
    seconds, hz = 2.0, 1000.0
    t = np.arange(int(seconds * rate_in)) / rate_in
    tone = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    path = write(tmp_path / f"sine{ext}", np.stack([tone, tone], axis=1), rate_in, fmt, subtype)
    decoded = audio_io.load_audio(path, rate_out)
    assert abs(len(decoded) - seconds * rate_out) <= 1
    assert abs(peak_hz(decoded, rate_out) - hz) <= rate_out / len(decoded)  # one FFT bin
    middle = decoded[rate_out // 4: -rate_out // 4]  # away from the filter's edges
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_downmix_is_the_mean_of_the_channels(tmp_path):
    x = signal(MODEL_RATE, 2)
    path = write(tmp_path / "s.flac", x, MODEL_RATE, "FLAC", "PCM_24")
    np.testing.assert_allclose(audio_io.load_audio(path, MODEL_RATE), x.mean(axis=1),
                               atol=2**-22)


def test_conversion_reasons_name_format_channels_and_rate(tmp_path):
    x = signal(48000, 2)
    flac = write(tmp_path / "a.flac", x, 48000, "FLAC", "PCM_16")
    assert audio_io.probe_audio(flac, MODEL_RATE).conversion == (
        "FLAC", "stereo -> mono", "48000 Hz -> 44100 Hz")
    wav24 = write(tmp_path / "b.wav", x[:, :1], MODEL_RATE, "WAV", "PCM_24")
    assert audio_io.probe_audio(wav24, MODEL_RATE).conversion == ("24-bit PCM WAV",)
    ogg = write(tmp_path / "c.ogg", x[:, :1], 16000, "OGG", "VORBIS")
    info = audio_io.probe_audio(ogg, 16000)
    assert info.conversion == ("Ogg Vorbis",) and info.description == "Ogg Vorbis, mono, 16000 Hz"
    # a 16-bit mono WAV whose header tf.audio.decode_wav cannot walk (an odd-sized chunk
    # before the data) is converted too
    plain = write(tmp_path / "d.wav", x[:, :1], MODEL_RATE, "WAV", "PCM_16").read_bytes()
    odd = b"LIST" + (3).to_bytes(4, "little") + b"abc\0"
    riff = (len(plain) - 8 + len(odd)).to_bytes(4, "little")
    (tmp_path / "e.wav").write_bytes(b"RIFF" + riff + plain[8:36] + odd + plain[36:])
    info = audio_io.probe_audio(tmp_path / "e.wav", MODEL_RATE)
    assert info.conversion == (audio_io.WAV_HEADER_REASON,)
    np.testing.assert_allclose(audio_io.load_audio(tmp_path / "e.wav", MODEL_RATE),
                               x[:, 0], atol=2**-15)


def float_wav_with_nan(path: Path) -> Path:
    x = signal(MODEL_RATE, 1)
    x[100] = np.nan
    sf.write(path, x, MODEL_RATE, subtype="FLOAT")
    return path


def bad_files(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its error must hold)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "noise.flac").write_bytes(b"fLaC" + bytes(200))
    (root / "text.mp3").write_text("not audio at all\n" * 20)
    (root / "empty.ogg").write_bytes(b"")
    (root / "folder.wav").mkdir()
    good = root / "good.flac"
    sf.write(good, signal(MODEL_RATE, 1), MODEL_RATE)
    (root / "cut.flac").write_bytes(good.read_bytes()[:30])
    sf.write(root / "zero.aiff", np.zeros((0, 1), np.float32), MODEL_RATE)
    return {
        "noise": (root / "noise.flac", "unreadable audio (libsndfile: "),
        "text": (root / "text.mp3", "unreadable audio (libsndfile: "),
        "empty": (root / "empty.ogg", "empty file (0 bytes)"),
        "folder": (root / "folder.wav", "is a directory"),
        "cut": (root / "cut.flac", "libsndfile"),
        "zero": (root / "zero.aiff", "no audio"),
        "nan": (float_wav_with_nan(root / "nan.wav"), "NaN or infinite samples"),
        "missing": (root / "missing.opus", "file not found"),
    }


def test_bad_files_are_one_line_naming_the_file(tmp_path):
    for name, (path, words) in bad_files(tmp_path).items():
        for read in (audio_io.probe_audio, audio_io.load_audio):
            with pytest.raises(AudioFormatError) as caught:
                read(path, MODEL_RATE)
            message = str(caught.value)
            assert message.startswith(f"{path}: ") and words in message, (name, message)
            assert "\n" not in message, (name, message)


def test_probes_are_remembered_until_the_file_changes(tmp_path):
    path = write(tmp_path / "a.flac", signal(16000, 1), 16000, "FLAC", "PCM_16")
    first = audio_io.probe_audio(path, MODEL_RATE)
    assert audio_io.probe_audio(path, MODEL_RATE) is first
    write(path, signal(16000, 2, seconds=1.0), 16000, "FLAC", "PCM_16")  # another size
    again = audio_io.probe_audio(path, MODEL_RATE)
    assert again.channels == 2 and again.frames == 16000


# ---------------------------------------------------------------------- tf.data pipeline


def test_pipeline_mixes_fast_path_and_converted_files(tmp_path):
    x = signal(MODEL_RATE, 1, seconds=0.2)
    paths = [write(tmp_path / "a.wav", x, MODEL_RATE, "WAV", "PCM_16"),
             write(tmp_path / "b.flac", signal(48000, 2, 0.3), 48000, "FLAC", "PCM_24"),
             write(tmp_path / "c.mp3", signal(16000, 2, 0.4), 16000, "MP3", "MPEG_LAYER_III")]
    assert decode.converted_on_host([str(p) for p in paths], MODEL_RATE).tolist() == [
        False, True, True]
    expected = [audio_io.load_audio(p, MODEL_RATE) for p in paths]
    window = max(len(e) for e in expected)
    for names in ([paths[0]], paths[1:], paths):  # fast only, converted only, mixed
        ds = pipeline.evaluation_dataset(
            [str(p) for p in names], None, sample_rate=MODEL_RATE, window_samples=window,
            hop_samples=window, max_windows=1, batch_size=8)
        (batch,) = list(ds)
        got = batch["windows"].numpy()[:, 0]
        for row, path in zip(got, names):
            e = expected[paths.index(path)]
            np.testing.assert_allclose(row[:len(e)], e, atol=1e-6)
            assert not row[len(e):].any()


def test_pipeline_caches_converted_audio_under_its_own_key(tmp_path):
    paths = [str(write(tmp_path / f"{i}.flac", signal(22050, 2, 0.1 + 0.1 * i), 22050, "FLAC",
                       "PCM_16")) for i in range(3)]
    cache = tmp_path / "cache"
    ds = pipeline.training_dataset(paths, np.eye(3, dtype=np.float32), sample_rate=MODEL_RATE,
                                   crop_samples=2000, batch_size=3, seed=0, cache=str(cache))
    for _ in range(2):  # decoded and cached, then read from the cache
        (batch,) = list(ds)
        assert batch[0]["audio"].shape == (3, 2000)
    (description,) = cache.glob("*.json")
    assert json.loads(description.read_text())["converted"] == audio_io.CONVERSION


def test_a_bad_file_in_a_stream_is_one_line_naming_it(tmp_path):
    files = bad_files(tmp_path / "bad")
    good = str(write(tmp_path / "ok.ogg", signal(16000, 1), 16000, "OGG", "VORBIS"))
    for name in ("noise", "nan", "missing", "cut"):
        path, words = files[name]
        ds = pipeline.evaluation_dataset([good, str(path)], None, sample_rate=MODEL_RATE,
                                         window_samples=1000, hop_samples=1000, max_windows=2,
                                         batch_size=1)
        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            list(ds)
        line = decode.pipeline_error(caught.value)
        assert line.startswith(f"{path}: ") and words in line and "\n" not in line, line


# ---------------------------------------------------------------------- commands

TINY = [
    "--epochs", "1", "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]


@pytest.fixture(scope="module")
def models(tiny_models):
    """(run folder, export folder), shared by the session (tests/conftest.py)."""
    return tiny_models


def read_csv_rows(path: Path) -> dict[str, np.ndarray]:
    lines = path.read_text().splitlines()[1:]
    return {line.split(",")[0]: np.array(line.split(",")[1:], float) for line in lines}


def test_predict_on_a_stereo_16khz_flac(models, tiny_demo_dir, tmp_path, capsys):
    """The FLAC scores as the 16-bit mono 44.1 kHz WAV of its own conversion does (the
    fast path), through a run folder and an export alike."""
    source = sorted((tiny_demo_dir / "test").glob("*.wav"))[0]
    with wave.open(str(source)) as f:
        x = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768
    low = soxr.resample(x, MODEL_RATE, 16000, quality="HQ")
    folder = tmp_path / "audio"
    folder.mkdir()
    flac = write(folder / "clip.flac", np.stack([low, 0.5 * low], axis=1), 16000, "FLAC",
                 "PCM_16")
    converted = audio_io.load_audio(flac, MODEL_RATE)
    np.testing.assert_allclose(converted, reference(flac, MODEL_RATE), atol=1e-6)
    pcm = np.clip(np.round(converted * 32768), -32768, 32767).astype("<i2")
    with wave.open(str(folder / "same_as_wav.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(MODEL_RATE)
        f.writeframes(pcm.tobytes())
    for model in models:
        target = tmp_path / f"{model.name}.csv"
        assert predict.main([str(model), str(folder), "--out", str(target)]) == 0
        assert "error" not in capsys.readouterr().err
        rows = read_csv_rows(target)
        assert sorted(rows) == ["clip.flac", "same_as_wav.wav"]
        np.testing.assert_allclose(rows["clip.flac"], rows["same_as_wav.wav"], atol=2e-3)


def test_predict_reports_a_bad_flac_and_scores_the_rest(models, tmp_path, capsys):
    _, out = models
    files = bad_files(tmp_path / "bad")
    good = write(tmp_path / "ok.mp3", signal(22050, 2, 1.0), 22050, "MP3", "MPEG_LAYER_III")
    target = tmp_path / "p.csv"
    noise, words = files["noise"]
    assert predict.main([str(out), str(noise), str(good), "--out", str(target)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert any(line.startswith(f"error: {noise}: ") and words in line for line in err), err
    assert list(read_csv_rows(target)) == [str(good)]


def converted_dataset(tiny_demo_dir: Path, root: Path) -> tuple[Path, dict[str, str]]:
    """The tiny demo with four curated clips and one test clip in other formats; returns
    the folder and the new file names by old name. The copy's files are hard links to the
    shared demo: they are replaced (:func:`rewrite`), never written in place."""
    shutil.copytree(tiny_demo_dir, root, copy_function=os.link)
    renames = {}
    kinds = [("FLAC", "PCM_16", ".flac", 48000, 2), ("MP3", "MPEG_LAYER_III", ".mp3", 16000, 1),
             ("WAV", "PCM_24", ".wav", MODEL_RATE, 1), ("OGG", "VORBIS", ".ogg", 22050, 2)]
    for folder, csv_name, count in (("train_curated", "train_curated.csv", 4),
                                    ("test", "sample_submission.csv", 1)):
        csv_path = root / csv_name
        lines = csv_path.read_text().splitlines()
        for i in range(1, count + 1):
            fname = lines[i].split(",")[0]
            fmt, subtype, ext, rate, channels = kinds[(i - 1) % len(kinds)]
            with wave.open(str(root / folder / fname)) as f:
                x = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32)
            x = soxr.resample(x / 32768, MODEL_RATE, rate) if rate != MODEL_RATE else x / 32768
            new = fname[:-4] + ("_24bit" if ext == ".wav" else "") + ext
            (root / folder / fname).unlink()
            sf.write(root / folder / new, np.repeat(x[:, None], channels, axis=1), rate,
                     format=fmt, subtype=subtype)
            lines[i] = new + lines[i][len(fname):]
            renames[fname] = new
        rewrite(csv_path, "\n".join(lines) + "\n")
    labels = root / "test_post_competition.csv"
    text = labels.read_text()
    for old, new in renames.items():
        text = text.replace(old, new)
    rewrite(labels, text)
    return root, renames


def rewrite(path: Path, text: str) -> None:
    path.unlink()  # break the hard link first
    path.write_text(text)


def test_data_check_reports_what_is_converted(tiny_demo_dir, tmp_path, capsys):
    root, _ = converted_dataset(tiny_demo_dir, tmp_path / "data")
    assert run_check(root) == 0
    out = capsys.readouterr().out
    curated = len(load_dataset(root, check_audio=False).curated)
    assert "converted when read: 5 of " in out and audio_io.CONVERSION in out
    assert (f"curated: 4 of {curated} clip(s) converted (stereo -> mono: 2, FLAC: 1, "
            "48000 Hz -> 44100 Hz: 1, MP3: 1, 16000 Hz -> 44100 Hz: 1, 24-bit PCM WAV: 1, "
            "Ogg Vorbis: 1, 22050 Hz -> 44100 Hz: 1)") in out, out
    assert "test: 1 of " in out and out.rstrip().endswith(f"{root}: OK")


def test_train_on_converted_files_with_a_cache(tiny_demo_dir, tmp_path, capsys):
    root, _ = converted_dataset(tiny_demo_dir, tmp_path / "data")
    run, cache = tmp_path / "run", tmp_path / "cache"
    code = train.main(["--data", str(root), "--out", str(run), *TINY,
                       "--set", "train.steps_per_epoch=2", "--set", f"data.cache={cache}"])
    assert code == 0, capsys.readouterr().err
    keys = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    assert any(k.get("converted") == audio_io.CONVERSION for k in keys), keys
