"""Export: whole-clip scoring in-graph, SavedModel / .keras / TFLite agreement, reload checks.

Tolerances (max |difference| of clip probabilities against the Keras model scored with
``fat_tf.inference.scoring.score_clips``): 1e-4 for every float32 format (measured ~1e-7),
0.05 for the dynamic-range quantised TFLite model (measured ~2e-3 on the tiny model).
"""

import json
import subprocess
import sys
import wave

import numpy as np
import pytest
import tensorflow as tf

from fat_tf import export, train
from fat_tf.data import pipeline
from fat_tf.data.decode import decode_wav
from fat_tf.inference.loaded import load_run
from fat_tf.inference.scoring import pad_batch, score_clips, sigmoid
from fat_tf.inference.windows import batch_window_starts, waveform_clip_logits
from fat_tf.layers.tflite_logmel import power_spectrum_pow2, tflite_logmel

FLOAT_TOL = 1e-4
QUANT_TOL = 0.05
TINY = [
    "--epochs", "1", "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]


def shared_run(tmp_path_factory, data_dir):
    """A tiny trained run, made once per session and shared by the export/predict tests."""
    run = tmp_path_factory.getbasetemp() / "shared_tiny_run"
    if not (run / "summary.json").exists():
        assert train.main(["--data", str(data_dir), "--out", str(run), *TINY]) == 0
    return run


def shared_export(tmp_path_factory, data_dir):
    """The shared run exported once (with --quantize); returns (run, export folder)."""
    run = shared_run(tmp_path_factory, data_dir)
    out = tmp_path_factory.getbasetemp() / "shared_tiny_export"
    if not (out / "export.json").exists():
        assert export.main([str(run), "--out", str(out), "--quantize"]) == 0
    return run, out


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_demo_dir):
    return shared_export(tmp_path_factory, tiny_demo_dir)


def write_wav(path, audio, rate):
    pcm = np.clip(np.round(np.asarray(audio) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return str(path)


@pytest.fixture(scope="module")
def clips(exported, tmp_path_factory):
    """WAV clips of every windowing case: tiny, short, exact, +1, several, over the cap."""
    run, _ = exported
    config = load_run(run).config
    window = config.crop_samples
    hop = int(window * config.data.eval_hop_fraction)
    lengths = [1, 500, window, window + 1, 3 * window + 17,
               window + hop * (config.data.max_eval_windows + 3)]
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    paths = []
    for i, n in enumerate(lengths):
        t = np.arange(n) / 44100
        audio = 0.2 * np.sin(2 * np.pi * 300 * (i + 1) * t) + 0.05 * rng.standard_normal(n)
        paths.append(write_wav(folder / f"c{i}.wav", audio, 44100))
    return paths


def decoded(paths):
    return pad_batch([decode_wav(tf.constant(p), 44100).numpy() for p in paths])


# --------------------------------------------------------------------------- graph pieces
def test_batch_window_starts_match_window_starts():
    window, hop, cap = 1000, 500, 6
    edges = [999, 1000, 1001, 1500, 1501, 2000, 2001, 10**6]
    lengths = np.concatenate([np.arange(0, 4000, 37), edges])
    starts, mask = batch_window_starts(tf.constant(lengths, tf.int32), window, hop, cap)
    for n, row, real in zip(lengths, starts.numpy(), mask.numpy()):
        expected = pipeline.window_starts(tf.constant(int(n)), window, hop, cap).numpy()
        np.testing.assert_array_equal(row[real], expected)
        assert real.sum() == len(expected) and not row[~real].any()
    one, _ = batch_window_starts(tf.constant([5000]), window, hop, 1)
    np.testing.assert_array_equal(one.numpy(), [[0]])


def test_waveform_clip_logits_ignores_padding_and_handles_empty():
    def tagger(x, training=False):  # per-window features: mean, max and first sample
        return tf.stack([tf.reduce_mean(x, 1), tf.reduce_max(x, 1), x[:, 0]], axis=1)

    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) for n in (3, 40, 100, 1)]
    batch, lengths = pad_batch(clips)
    batch[0, 3:] = 99.0  # garbage past a clip's end is ignored
    kwargs = dict(window=32, hop=16, max_windows=4)
    got = waveform_clip_logits(tagger, batch, lengths, **kwargs).numpy()
    for clip, row in zip(clips, got):
        windows = pipeline.sliding_windows(tf.constant(clip), 32, 16, 4)
        np.testing.assert_allclose(row, tagger(windows).numpy().mean(0), rtol=1e-6)
    empty = waveform_clip_logits(tagger, np.zeros((0, 7), np.float32), np.zeros(0, np.int32),
                                 **kwargs)
    assert empty.shape == (0, 3)


@pytest.mark.parametrize("n_fft", [2560, 1024, 6, 400])
def test_power_spectrum_pow2_matches_numpy(n_fft):
    rng = np.random.default_rng(n_fft)
    frames = rng.standard_normal((2, 3, n_fft + 9)).astype(np.float32)
    expected = np.abs(np.fft.rfft(frames[..., :n_fft].astype(np.float64), axis=-1)) ** 2
    got = power_spectrum_pow2(tf.constant(frames), n_fft).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 2e-6 * expected.max()


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_tflite_logmel_matches_layer(pad_mode):
    from fat_tf.layers import LogMel

    layer = LogMel(n_mels=40, pad_mode=pad_mode)
    x = np.random.default_rng(0).standard_normal((2, 9000)).astype(np.float32) * 0.1
    np.testing.assert_allclose(tflite_logmel(layer)(x).numpy(), layer(x).numpy(),
                               atol=2e-4)


# --------------------------------------------------------------------------- the export
def test_export_folder_and_reported_check(exported, tmp_path_factory):
    run, out = exported
    for name in ("saved_model.pb", "variables", "assets/class_names.txt", "model.keras",
                 "model.tflite", "model_quantized.tflite", "class_names.txt", "config.json",
                 "export.json"):
        assert (out / name).exists(), name
    info = json.loads((out / "export.json").read_text())
    trained = load_run(run)
    assert info["class_names"] == list(trained.class_names)
    assert info["window_samples"] == trained.config.crop_samples
    diffs = info["check"]["max_abs_diff_probabilities"]
    assert set(diffs) >= {"saved_model", "saved_model_wav_bytes", "keras", "tflite",
                          "tflite_quantized"}
    assert all(v <= FLOAT_TOL for k, v in diffs.items() if k != "tflite_quantized")
    assert diffs["tflite_quantized"] <= QUANT_TOL
    assert info["check"]["tflite_interpreter"] == export.tflite_interpreter_class()[1]
    assert not list(out.parent.glob(".tmp-*")) and not list(out.parent.glob(".old-*"))
    assert (out / "class_names.txt").read_text().split() == list(trained.class_names)


def test_keras_saved_model_tflite_agree(exported, clips):
    run, out = exported
    trained = load_run(run)
    # every window, however long the clip (the last clip has more than max_eval_windows)
    keras_p = sigmoid(score_clips(trained.load_model(), clips, trained.config,
                                         verbose=0, max_windows=0))
    waveform, lengths = decoded(clips)
    loaded = tf.saved_model.load(str(out))
    sm = loaded.signatures["waveform_with_lengths"](waveform=tf.constant(waveform),
                                                    lengths=tf.constant(lengths))
    np.testing.assert_allclose(sm["probabilities"].numpy(), keras_p, atol=FLOAT_TOL)
    np.testing.assert_allclose(tf.sigmoid(sm["logits"]).numpy(), sm["probabilities"].numpy(),
                               atol=1e-6)
    # one clip at a time through serving_default (rows share a length)
    for i in (0, 2, 5):
        one = loaded.waveform(waveform[i : i + 1, : lengths[i]])["probabilities"].numpy()
        np.testing.assert_allclose(one[0], keras_p[i], atol=FLOAT_TOL)
    wav = loaded.wav_bytes(tf.constant([open(p, "rb").read() for p in clips]))
    np.testing.assert_allclose(wav["probabilities"].numpy(), keras_p, atol=FLOAT_TOL)
    lite = export.tflite_runner(out / "model.tflite")(waveform=waveform, lengths=lengths)
    np.testing.assert_allclose(lite["probabilities"], keras_p, atol=FLOAT_TOL)
    quant = export.tflite_runner(out / "model_quantized.tflite")(waveform=waveform,
                                                                   lengths=lengths)
    np.testing.assert_allclose(quant["probabilities"], keras_p, atol=QUANT_TOL)
    names = export.tflite_runner(out / "model.tflite", "class_names")()["class_names"]
    assert [n.decode() for n in names] == list(trained.class_names)


FRESH_PROCESS = """
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
x = np.random.default_rng(0).standard_normal((2, 30000)).astype(np.float32) * 0.1
out = model.signatures["serving_default"](waveform=tf.constant(x))
names = model.signatures["class_names"]()["class_names"].numpy()
meta = model.signatures["metadata"]()
print(json.dumps({"shape": list(out["probabilities"].shape),
                  "p": out["probabilities"].numpy().tolist(),
                  "classes": len(names), "rate": int(meta["sample_rate"]),
                  "fat_tf": [m for m in sys.modules if m.startswith("fat_tf")]}))
"""


@pytest.fixture(scope="module", autouse=True)
def fresh_process(exported):
    """Load the SavedModel in a new Python that imports only TensorFlow (started early,
    so it runs while the other tests do)."""
    _, out = exported
    proc = subprocess.Popen([sys.executable, "-c", FRESH_PROCESS, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_saved_model_runs_in_a_fresh_process_with_tensorflow_only(exported, fresh_process):
    _, out = exported
    stdout, stderr = fresh_process.communicate(timeout=120)
    assert fresh_process.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["shape"] == [2, report["classes"]] and report["rate"] == 44100
    assert report["fat_tf"] == []
    x = np.random.default_rng(0).standard_normal((2, 30000)).astype(np.float32) * 0.1
    loaded = tf.saved_model.load(str(out))  # keep a reference: its functions need it
    here = loaded.waveform(x)["probabilities"].numpy()
    np.testing.assert_allclose(report["p"], here, atol=1e-6)


def test_signature_edge_cases(exported):
    _, out = exported
    model = tf.saved_model.load(str(out))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 25000)).astype(np.float32) * 0.1
    padded = model.waveform_with_lengths(x, tf.constant([25000, 9000, 1]))["logits"].numpy()
    np.testing.assert_allclose(padded[1], model.waveform(x[1:2, :9000])["logits"][0], atol=1e-5)
    np.testing.assert_allclose(padded[2], model.waveform(x[2:3, :1])["logits"][0], atol=1e-5)
    # lengths outside [1, T], or one per row missing, fail (tests/test_hostile_inputs.py)
    for bad in ([10**9, 9000, 1], [25000, 9000, 0], [25000, 9000, -5], [25000, 9000]):
        with pytest.raises(tf.errors.InvalidArgumentError, match="waveform_with_lengths: "):
            model.waveform_with_lengths(x, tf.constant(bad))
    with pytest.raises(tf.errors.InvalidArgumentError, match="a length is 0"):
        model.waveform(x[:1, :0])
    empty = model.waveform_with_lengths(x[:0], tf.zeros([0], tf.int32))["probabilities"]
    assert empty.shape[0] == 0
    assert model.class_map_path().numpy().decode().endswith("class_names.txt")


def test_wav_bytes_rejects_other_rates_naming_the_item(exported, tmp_path):
    _, out = exported
    model = tf.saved_model.load(str(out))
    good = write_wav(tmp_path / "a.wav", np.zeros(1000), 44100)
    bad = write_wav(tmp_path / "b.wav", np.zeros(1000), 22050)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"wav_bytes\[1\]: sample rate"):
        model.wav_bytes(tf.constant([open(good, "rb").read(), open(bad, "rb").read()]))


def test_failed_export_leaves_nothing_and_existing_out_is_kept(exported, tmp_path,
                                                               monkeypatch, capsys):
    run, out = exported
    assert export.main([str(run), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err

    def broken(*args, **kwargs):
        raise export.ExportError("simulated failure")

    monkeypatch.setattr(export, "check_export", broken)
    target = tmp_path / "exp"
    assert export.main([str(run), "--out", str(target), "--no-tflite"]) == 1
    assert "simulated failure" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_help():
    result = subprocess.run([sys.executable, "-m", "fat_tf.export", "--help"],
                            capture_output=True, text=True, check=True)
    assert "usage:" in result.stdout and "--quantize" in result.stdout
