"""The Python API (``fat_tf.load``), custom objects for ``keras.models.load_model`` after
``import fat_tf``, and scoring every window of long recordings."""

import importlib
import pkgutil
import subprocess
import sys
import wave

import numpy as np
import pandas as pd
import pytest
import soundfile
import tensorflow as tf

import fat_tf
from fat_tf import predict
from fat_tf.data import audio_io
from fat_tf.errors import AudioFormatError, FatTfError
from fat_tf.inference.loaded import load_exported, load_run
from fat_tf.inference.scoring import CHUNK_WINDOWS, pad_batch, pool_frames, score_clips
from fat_tf.inference.windows import waveform_clip_logits

RATE = 44100


@pytest.fixture(scope="module")
def models(tiny_models):
    """(run folder, export folder), shared by the session (tests/conftest.py)."""
    return tiny_models


@pytest.fixture(scope="module")
def taggers(models):
    run, out = models
    return {"run": fat_tf.load(run), "export": fat_tf.load(out)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_demo_dir):
    """Three test clips of the demo set (copied) and their names."""
    root = tmp_path_factory.mktemp("api_audio")
    names = []
    for p in sorted((tiny_demo_dir / "test").glob("*.wav"))[:3]:
        (root / p.name).write_bytes(p.read_bytes())
        names.append(p.name)
    return root, names


def write_wav(path, audio, rate=RATE):
    pcm = np.clip(np.round(np.asarray(audio) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return str(path)


# ----------------------------------------------------------------------------- loading
def test_import_is_light_and_load_model_works_after_it(models):
    """`import fat_tf` imports neither TensorFlow nor Keras, and
    keras.models.load_model("RUN/best.keras") works after it, whatever the import order."""
    run, _ = models
    check = (
        "import sys\n"
        "{imports}\n"
        "model = keras.models.load_model(sys.argv[1])\n"
        "import numpy as np\n"
        "print(model(np.zeros((1, 30000), 'float32')).shape)\n"
    )
    orders = ["import fat_tf\nimport keras", "import keras\nimport fat_tf",
              "import fat_tf\nimport tensorflow as tf\nkeras = tf.keras"]
    for imports in orders:
        code = check.format(imports=imports)
        done = subprocess.run([sys.executable, "-c", code, str(run / "best.keras")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{imports!r}:\n{done.stderr[-2000:]}"
        assert "(1, 12)" in done.stdout
    quiet = subprocess.run(
        [sys.executable, "-c", "import sys, fat_tf; print(sorted(m for m in sys.modules "
         "if m.split('.')[0] in ('tensorflow', 'keras', 'numpy', 'pandas')))"],
        capture_output=True, text=True, check=True)
    assert quiet.stdout.strip() == "[]"


def test_deferred_table_lists_every_registered_class():
    import keras

    from fat_tf.keras_objects import KERAS_OBJECTS

    for info in pkgutil.walk_packages(fat_tf.__path__, "fat_tf."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    registered = {name: obj for name, obj in keras.saving.get_custom_objects().items()
                  if name.startswith("fat_tf>")}
    assert set(registered) == set(KERAS_OBJECTS)
    for name, obj in registered.items():
        assert isinstance(obj, type), f"{name} is still deferred"
        assert obj.__module__ == KERAS_OBJECTS[name], name


def test_load_refuses_what_it_cannot_do(models, tmp_path):
    run, out = models
    with pytest.raises(FatTfError, match="no such folder"):
        fat_tf.load(tmp_path / "nothing")
    with pytest.raises(FatTfError, match="not a fat_tf run folder"):
        fat_tf.load(tmp_path)
    with pytest.raises(FatTfError, match="run folders only"):
        fat_tf.load(out, model="final")
    with pytest.raises(FatTfError, match="fixed in an export"):
        fat_tf.load(out, pooling="max")
    with pytest.raises(ValueError, match="best' or 'final"):
        fat_tf.load(run, model="last")


def test_tagger_attributes(taggers, models):
    run, _ = models
    trained = load_run(run)
    for tagger in taggers.values():
        assert tagger.class_names == list(trained.class_names)
        assert tagger.sample_rate == RATE
        assert tagger.window_seconds == pytest.approx(trained.config.crop_samples / RATE)
        assert tagger.pooling == "mean" and not tagger.tta
        assert "classes" in repr(tagger)
    final = fat_tf.load(run, model="final", pooling="max")
    assert final.pooling == "max"


# ----------------------------------------------------------------------------- predict
def test_predict_gives_the_command_line_probabilities(taggers, models, folder, tmp_path):
    run, out = models
    root, names = folder
    for kind, path in (("run", run), ("export", out)):
        table = taggers[kind].predict(root)
        assert list(table.index) == names and table.index.name == "input"
        assert list(table.columns) == taggers[kind].class_names
        # the same computation as python -m fat_tf.predict ...
        model = predict.load_model(str(path), None, None, False)
        clips, _ = predict.collect_clips([str(root)])
        _, logits, errors = predict.score(model, clips)
        assert not errors
        np.testing.assert_allclose(table.to_numpy(), predict.sigmoid(logits), rtol=0,
                                   atol=1e-6)
        # ... and as what it writes
        csv = tmp_path / f"{kind}.csv"
        assert predict.main([str(path), str(root), "--out", str(csv)]) == 0
        written = pd.read_csv(csv, index_col="fname")
        assert list(written.index) == names
        np.testing.assert_allclose(table.to_numpy(), written.to_numpy(), rtol=1e-5, atol=1e-6)
        logit_table = taggers[kind].predict(root, logits=True)
        np.testing.assert_allclose(logit_table.to_numpy(), logits, atol=1e-6)
    np.testing.assert_allclose(taggers["run"].predict(root).to_numpy(),
                               taggers["export"].predict(root).to_numpy(), atol=1e-5)


def test_inputs_files_arrays_lists_and_rates(taggers, folder, tmp_path):
    tagger = taggers["export"]
    root, names = folder
    path = str(root / names[0])
    by_file = tagger.predict(path)
    assert list(by_file.index) == [path]
    samples = audio_io.load_audio(path, RATE)
    # a waveform at the model's rate: no sample_rate needed, named by position
    by_array = tagger.predict(samples)
    assert list(by_array.index) == [0]
    np.testing.assert_allclose(by_array.to_numpy(), by_file.to_numpy(), atol=1e-6)
    # integer PCM is scaled like a WAV decoder's; a 2-D array is a batch of rows
    pcm = np.round(samples * 32768).astype(np.int16)
    np.testing.assert_allclose(tagger.predict(pcm).to_numpy(), by_file.to_numpy(), atol=1e-6)
    batch = tagger.predict(np.stack([samples, samples[::-1]]))
    assert list(batch.index) == [0, 1]
    np.testing.assert_allclose(batch.to_numpy()[0], by_file.to_numpy()[0], atol=1e-6)
    # another rate: an array is resampled exactly as a file at that rate
    at_48k = audio_io.resample(samples, RATE, 48000)
    soundfile.write(tmp_path / "high.flac", at_48k, 48000, subtype="PCM_24")
    from_flac = tagger.predict(str(tmp_path / "high.flac"))
    from_array = tagger.predict(soundfile.read(tmp_path / "high.flac", dtype="float32")[0],
                                sample_rate=48000)
    np.testing.assert_allclose(from_array.to_numpy(), from_flac.to_numpy(), atol=1e-6)
    np.testing.assert_allclose(from_array.to_numpy(), by_file.to_numpy(), atol=0.02)
    # a list mixes arrays (named by list position), files and folders
    mixed = tagger.predict([samples, root, tmp_path / "high.flac"])
    assert list(mixed.index) == [0, *names, str(tmp_path / "high.flac")]
    np.testing.assert_allclose(mixed.to_numpy()[1:4], tagger.predict(root).to_numpy(),
                               atol=1e-6)


def test_bad_inputs(taggers, folder, tmp_path):
    tagger = taggers["run"]
    root, names = folder
    x = np.zeros(1000, np.float32)
    with pytest.raises(ValueError, match="sample_rate applies to NumPy waveforms"):
        tagger.predict(str(root), sample_rate=16000)
    with pytest.raises(ValueError, match="positive integer"):
        tagger.predict(x, sample_rate=-1)
    with pytest.raises(ValueError, match="looks like \\[samples, channels\\]"):
        tagger.predict(np.zeros((50000, 2), np.float32))
    with pytest.raises(ValueError, match="must be 1-D"):
        tagger.predict([np.zeros((2, 1000), np.float32)])
    with pytest.raises(TypeError, match="numeric NumPy waveform"):
        tagger.predict([{"not": "audio"}])
    with pytest.raises(AudioFormatError, match="holds NaN"):
        tagger.predict(np.full(1000, np.nan, np.float32))
    with pytest.raises(AudioFormatError, match="file not found"):
        tagger.predict(str(tmp_path / "missing.wav"))
    broken = tmp_path / "broken.wav"
    broken.write_bytes((root / names[0]).read_bytes()[:60])
    with pytest.raises(AudioFormatError, match="broken.wav"):
        tagger.predict([str(root / names[0]), str(broken)])
    with pytest.warns(UserWarning, match="skipped: .*broken.wav"):
        kept = tagger.predict([str(root / names[0]), str(broken)], errors="skip")
    assert list(kept.index) == [str(root / names[0])]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FatTfError, match="no audio files"):
        tagger.predict(empty)
    assert tagger.predict([]).shape == (0, len(tagger.class_names))


# ----------------------------------------------------------------------------- embed
def test_embeddings_are_the_heads_input(taggers, models, folder):
    run, _ = models
    root, names = folder
    trained = load_run(run)
    head = trained.load_model().get_layer("classifier").get_layer("head")
    tables = {kind: t.embed(root) for kind, t in taggers.items()}
    for table in tables.values():
        assert list(table.index) == names and table.shape == (3, 16)  # last block: 16 channels
    np.testing.assert_allclose(tables["run"].to_numpy(), tables["export"].to_numpy(),
                               atol=1e-5)
    # a clip of one window: the head's dense layers turn its embedding into its logits
    x = audio_io.load_audio(root / names[0], RATE)[: trained.config.crop_samples // 2]
    for tagger in taggers.values():
        h = tagger.embed(x).to_numpy()
        for layer in head.layers[1:]:
            h = layer(h, training=False)
        np.testing.assert_allclose(np.asarray(h), tagger.predict(x, logits=True).to_numpy(),
                                   atol=1e-4)


# ----------------------------------------------------------------------------- frames
def test_frames_pool_to_the_clip_scores(taggers, folder):
    root, names = folder
    for tagger in taggers.values():
        frames = tagger.frames(root, logits=True)
        assert list(frames.columns[:3]) == ["input", "start", "end"]
        assert list(frames.columns[3:]) == tagger.class_names
        assert list(frames["input"].unique()) == names
        clip_logits = tagger.predict(root, logits=True)
        for name, rows in frames.groupby("input", sort=False):
            duration = len(audio_io.load_audio(root / name, RATE)) / RATE
            assert rows["start"].iloc[0] == 0
            assert rows["end"].iloc[-1] == pytest.approx(duration)
            steps = np.diff(rows["start"].to_numpy())
            assert (steps > 0).all() and (steps <= tagger.hop_seconds + 1e-6).all()
            np.testing.assert_allclose(rows[tagger.class_names].mean().to_numpy(),
                                       clip_logits.loc[name].to_numpy(), atol=1e-5)
        probabilities = tagger.frames(root)
        np.testing.assert_allclose(probabilities[tagger.class_names].to_numpy(),
                                   1 / (1 + np.exp(-frames[tagger.class_names].to_numpy())),
                                   atol=1e-6)


def test_frames_of_a_short_clip(taggers):
    tagger = taggers["export"]
    frames = tagger.frames(np.zeros(800, np.float32), sample_rate=16000)
    assert len(frames) == 1
    assert frames["start"].iloc[0] == 0 and frames["end"].iloc[0] == pytest.approx(0.05)


# ----------------------------------------------------------------------------- long clips
def test_a_60_s_recording_is_scored_on_every_window(taggers, models, folder, tmp_path):
    """The event is only in the last 10 s; every window is scored (in chunks), so the
    clip score is the mean over all ~245 windows, and the export agrees with the run."""
    run, out = models
    root, names = folder
    event = audio_io.load_audio(root / names[0], RATE)
    clip = np.zeros(60 * RATE, np.float32)
    tail = np.resize(event, 10 * RATE)
    clip[-len(tail):] = tail
    path = write_wav(tmp_path / "long.wav", clip)
    settings = taggers["run"]._backend.settings
    assert settings.max_windows == 0 and load_exported(out).settings.max_windows == 0
    window, hop = settings.window_samples, settings.hop_samples
    expected = 1 + -(-(len(clip) - window) // hop)
    assert expected > 3 * CHUNK_WINDOWS  # scored in several chunks
    results = {}
    for kind, tagger in taggers.items():
        frames = tagger.frames(path, logits=True)
        assert len(frames) == expected
        assert frames["end"].iloc[-1] == pytest.approx(60.0)
        assert (np.diff(frames["start"]) <= tagger.hop_seconds + 1e-6).all()
        logits = tagger.predict(path, logits=True).to_numpy()[0]
        scores = frames[tagger.class_names].to_numpy()
        np.testing.assert_allclose(scores.mean(0), logits, atol=1e-5)
        # the event's windows (those reaching into the last 10 s) score unlike silence
        in_event = frames["end"].to_numpy() > 50.0
        silent = scores[~in_event]
        assert np.allclose(silent, silent[0], atol=1e-5)
        assert np.abs(scores[in_event] - silent[0]).max() > 1e-2
        results[kind] = logits
    np.testing.assert_allclose(results["run"], results["export"], atol=1e-5)
    # the same scores as the evaluation pipeline with no window cap; the capped pipeline
    # (validation during training) sees 16 windows only
    trained = load_run(run)
    every = score_clips(trained.load_model(), [path], trained.config, verbose=0, max_windows=0)
    np.testing.assert_allclose(every[0], results["run"], atol=1e-4)
    capped = score_clips(trained.load_model(), [path], trained.config, verbose=0)
    assert not np.allclose(capped[0], results["run"], atol=1e-4)


def test_chunked_window_scoring_matches_one_pass():
    def tagger(x, training=False):
        return tf.stack([tf.reduce_mean(x, 1), tf.reduce_max(x, 1), x[:, 0]], axis=1)

    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) for n in (3, 40, 1000, 1)]
    batch, lengths = pad_batch(clips)
    kwargs = dict(window=32, hop=16, max_windows=0)
    whole = waveform_clip_logits(tagger, batch, lengths, **kwargs).numpy()
    for chunk in (1, 5, 64, 1000):
        for pooling in ("mean", "max"):
            np.testing.assert_allclose(
                waveform_clip_logits(tagger, batch, lengths, chunk_windows=chunk,
                                     pooling=pooling, tta=True, **kwargs).numpy(),
                waveform_clip_logits(tagger, batch, lengths, pooling=pooling, tta=True,
                                     **kwargs).numpy(), rtol=1e-6)
        np.testing.assert_allclose(
            waveform_clip_logits(tagger, batch, lengths, chunk_windows=chunk, **kwargs),
            whole, rtol=1e-6)
    empty = waveform_clip_logits(tagger, np.zeros((0, 7), np.float32), np.zeros(0, np.int32),
                                 chunk_windows=4, **kwargs)
    assert empty.shape == (0, 3)


def test_saved_model_signatures(models, folder):
    """The SavedModel's embeddings and frames signatures, from TensorFlow alone."""
    _, out = models
    root, names = folder
    loaded = tf.saved_model.load(str(out))
    waveform, lengths = pad_batch([audio_io.load_audio(root / n, RATE) for n in names])
    clip = loaded.signatures["waveform_with_lengths"](waveform=waveform, lengths=lengths)
    frames = loaded.frames(waveform, lengths)
    assert set(frames) == {"logits", "probabilities", "starts", "ends", "mask"}
    pooled = pool_frames(frames["logits"].numpy(), frames["mask"].numpy())
    np.testing.assert_allclose(pooled, clip["logits"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(frames["ends"].numpy().max(1), lengths)
    embeddings = loaded.signatures["embeddings"](waveform=waveform, lengths=lengths)
    assert embeddings["embeddings"].shape == (3, 16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="frames: a length is 0"):
        loaded.frames(waveform, tf.constant([1, 0, 1]))
    assert loaded.signatures["metadata"]()["max_windows"].numpy() == 0
