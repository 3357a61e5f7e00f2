"""Every training method: VAT's direction and BatchNorm hygiene, a few real steps each,
and training under mixed precision and XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fat_tf.callbacks.ema import ExponentialMovingAverage
from fat_tf.config import ConfigError
from fat_tf.methods import METHODS, get_method
from fat_tf.methods.base import frozen_batchnorm_statistics
from fat_tf.models import build_tagger
from fat_tf.ops.ssl import binary_kl, normalize_per_example
from fat_tf.presets import get_preset
from fat_tf.training import build_method

CLASSES = 5


def tiny_config(**overrides):
    """A fast config: short crops, few mels, narrow CNN, no dropout, constant LR."""
    base = {
        "frontend.n_mels": 32, "data.crop_frames": 32, "model.channels": [8, 8, 16, 16],
        "model.head_units": 16, "model.dropout1": 0.0, "model.dropout2": 0.0,
        "optim.lr_schedule": "constant", "optim.lr_max": 3e-3, "method.rampup_fraction": 0,
        "method.unlabelled_start": 0,
    }
    return get_preset("small").replace(**{**base, **overrides})


def batch_data(config, n=8, seed=0):
    """Learnable synthetic batch: class c is a tone at 500 * (c + 1) Hz plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(config.crop_samples) / config.frontend.sample_rate
    labels = np.zeros((n, CLASSES), np.float32)
    audio = 0.01 * rng.normal(size=(n, len(t)))
    for i in range(n):
        for c in rng.choice(CLASSES, size=1 + i % 2, replace=False):
            labels[i, c] = 1
            audio[i] += 0.3 * np.sin(2 * np.pi * 500 * (c + 1) * t)
    return audio.astype(np.float32), labels


def moving_stats(model):
    return [v.numpy().copy() for v in frozen_batchnorm_statistics(model).variables]


def test_registry_has_every_method():
    assert set(METHODS) == {"supervised", "mixup", "vat", "meanteacher", "mixmatch",
                            "pseudolabel"}
    with pytest.raises(ValueError, match="unknown method"):
        get_method("fixmatch")


def test_vat_direction_beats_random_directions_and_keeps_bn_stats():
    config = tiny_config(**{"train.method": "vat", "augment.time_flip": False,
                            "method.vat_xi": 1e-1, "method.vat_ip": 2})
    method = build_method(config, CLASSES, total_steps=1)
    audio, _ = batch_data(config)
    features = method.augmented(method.logmel(tf.constant(audio)))
    stats_before = moving_stats(method.classifier)
    with frozen_batchnorm_statistics(method.classifier):
        clean = method.classifier(features, training=True)
    d = method.adversarial_direction(features, clean)
    for before, after in zip(stats_before, moving_stats(method.classifier)):
        np.testing.assert_array_equal(before, after)  # perturbed passes left BN stats alone
    norms = np.sqrt(np.sum(np.square(d.numpy()), axis=(1, 2)))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)

    def divergence(direction, eps=2.0):
        with frozen_batchnorm_statistics(method.classifier):
            out = method.classifier(features + eps * direction, training=True)
        return binary_kl(clean, out).numpy()

    adversarial = divergence(d)
    rng = np.random.default_rng(0)
    randoms = np.stack([
        divergence(normalize_per_example(rng.normal(size=features.shape).astype(np.float32)))
        for _ in range(10)
    ])
    assert adversarial.mean() > 3 * randoms.mean()
    assert np.all(adversarial > randoms.max(axis=0) * 0.99)


def test_vat_step_updates_bn_stats_like_one_clean_pass():
    """With ``batchnorm_statistics=all`` labelled and unlabelled clips share the clean
    pass; the perturbed passes leave the statistics alone."""
    config = tiny_config(**{"train.method": "vat", "augment.time_flip": False,
                            "method.batchnorm_statistics": "all"})
    method = build_method(config, CLASSES, total_steps=1)
    audio, labels = batch_data(config)
    unlabelled = batch_data(config, seed=1)[0]
    both = tf.concat([audio, unlabelled], 0)
    start = moving_stats(method.classifier)
    method.classifier(method.augmented(method.logmel(both)), training=True)  # one clean pass
    expected = moving_stats(method.classifier)
    for v, s in zip(frozen_batchnorm_statistics(method.classifier).variables, start):
        v.assign(s)
    with tf.GradientTape() as tape:
        method.compute_losses(method.logmel(tf.constant(audio)), tf.constant(labels),
                              method.logmel(tf.constant(unlabelled)), tape)
    for got, want in zip(moving_stats(method.classifier), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _train_a_few_steps(name, steps=3, **overrides):
    """Build ``name`` on the tiny config and fit ``steps`` one-step epochs on one batch.

    Returns the method, the batch's audio and the history dict."""
    config = tiny_config(**{"train.method": name, **overrides})
    method = build_method(config, CLASSES, total_steps=1)
    audio, labels = batch_data(config)
    inputs = {"audio": audio}
    if method.uses_unlabelled:
        inputs["unlabelled"] = batch_data(config, seed=1)[0]
    dataset = tf.data.Dataset.from_tensors((inputs, labels)).repeat()
    history = method.fit(dataset, steps_per_epoch=1, epochs=steps, verbose=0, shuffle=False,
                         callbacks=method.extra_callbacks())
    return method, audio, labels, history.history


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_trains_with_finite_decreasing_loss(name, tmp_path):
    # without ramp-up, a strong consistency term holds the student near its (lagging)
    # teacher for these few steps; weight 1 lets the supervised term show progress
    method, audio, labels, history = _train_a_few_steps(
        name, steps=24, **{"method.consistency_weight": 1.0})
    first_term = f"{method.loss_terms[0]}_loss"
    losses = np.array(history[first_term])
    assert np.all(np.isfinite(history["loss"]))
    assert losses[-4:].mean() < 0.8 * losses[:4].mean(), losses
    for term in method.loss_terms:
        assert np.all(np.isfinite(history[f"{term}_loss"]))
        assert f"{term}_weight" in history
    # the evaluated model scores whole clips as windows and saves/reloads as .keras
    windows = {"windows": audio[:, None, :], "window_mask": np.ones((len(audio), 1), "float32")}
    scores = method.evaluate(tf.data.Dataset.from_tensors((windows, labels)), return_dict=True,
                             verbose=0)
    assert 0.0 <= scores["lwlrap"] <= 1.0
    path = tmp_path / "model.keras"
    method.evaluated_model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded(audio), method.evaluated_model(audio), rtol=1e-4,
                               atol=1e-4)


def test_mean_teacher_evaluates_teacher_and_can_export_student():
    config = tiny_config(**{"train.method": "meanteacher", "method.ema_decay": 0.5})
    method = build_method(config, CLASSES, total_steps=1)
    assert method.evaluated_model is method.teacher
    assert not method.teacher.trainable_weights
    assert all(v is not w for v, w in zip(method.teacher.weights, method.tagger.weights))
    student = build_method(config.replace(**{"method.export_student": True}), CLASSES, 1)
    assert student.evaluated_model is student.tagger
    long_run = tiny_config(**{"train.method": "meanteacher", "method.ema_decay": 0.999})
    assert build_method(long_run, CLASSES, total_steps=600).run_ema_decay == pytest.approx(
        1 - 1 / 60)
    (ema,) = build_method(long_run, CLASSES, total_steps=20_000).extra_callbacks()
    assert ema.decay == pytest.approx(0.999)


@pytest.mark.parametrize("name", ["supervised", "vat", "mixmatch"])
def test_evaluation_ema_scores_and_saves_the_average_of_the_trained_weights(name, tmp_path):
    """With ``evaluation_ema`` the evaluated model is a separate, non-trainable copy
    whose every float weight (BatchNorm statistics included) is the EMA of the trained
    weights after each step, ``a_k = min(1 - 1/(k+1), decay)`` (numpy reference over
    weights recorded after every step, dropout on as in real runs)."""
    decay = 0.6
    config = tiny_config(**{"train.method": name, "method.evaluation_ema": True,
                            "method.ema_decay": decay, "method.ema_horizon_fraction": 0,
                            "model.dropout1": 0.2, "model.dropout2": 0.3})
    method = build_method(config, CLASSES, total_steps=5)
    assert method.evaluated_model is method.averaged is not method.tagger
    assert not method.averaged.trainable_weights
    recorded = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            recorded.append([w.numpy().copy() for w in method.tagger.weights])

    audio, labels = batch_data(config)
    inputs = {"audio": audio}
    if method.uses_unlabelled:
        inputs["unlabelled"] = batch_data(config, seed=1)[0]
    dataset = tf.data.Dataset.from_tensors((inputs, labels)).repeat()
    # the EMA callback runs first, Record after it: both see the same step's weights
    method.fit(dataset, steps_per_epoch=5, epochs=1, verbose=0, shuffle=False,
               callbacks=[*method.extra_callbacks(), Record()])
    expected = [w.copy() for w in recorded[0]]  # coefficient 0 at the first step
    for k, weights in enumerate(recorded[1:], start=1):
        a = min(1 - 1 / (k + 1), decay)
        expected = [a * e + (1 - a) * w if np.issubdtype(w.dtype, np.floating) else w
                    for e, w in zip(expected, weights)]
    floats = [(e, v.numpy(), last) for e, v, last
              in zip(expected, method.averaged.weights, recorded[-1])
              if np.issubdtype(e.dtype, np.floating)]
    for e, v, _ in floats:
        np.testing.assert_allclose(v, e, rtol=1e-5, atol=1e-6)
    # the average differs from the last step's weights, and what is saved is the average
    assert any(not np.allclose(v, last) for _, v, last in floats)
    path = tmp_path / "model.keras"
    method.evaluated_model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(audio), method.averaged(audio),
                               rtol=1e-4, atol=1e-4)
    # auto by default: on for MixMatch only; false turns it off; and mean teacher's
    # teacher is not averaged a second time
    default = build_method(tiny_config(**{"train.method": name}), CLASSES, 5)
    assert (default.averaged is not None) == (name == "mixmatch")
    assert build_method(tiny_config(**{"train.method": name, "method.evaluation_ema": False}),
                        CLASSES, 5).averaged is None
    assert tiny_config(**{"method.evaluation_ema": "auto"}).method.evaluation_ema == "auto"
    with pytest.raises(ConfigError, match="method.evaluation_ema must be true, false or auto"):
        tiny_config(**{"method.evaluation_ema": "sometimes"})
    teacher = build_method(tiny_config(**{"train.method": "meanteacher",
                                          "method.evaluation_ema": True}), CLASSES, 5)
    assert teacher.averaged is None and teacher.evaluated_model is teacher.teacher
    assert not teacher.uses_evaluation_ema
    assert len(teacher.extra_callbacks()) == 1


def test_mixmatch_guesses_are_sharpened_and_constant():
    # plain sharpening around 0.5 (the alignment has its own test below)
    config = tiny_config(**{"train.method": "mixmatch", "method.mixmatch_k": 3,
                            "method.mixmatch_alignment": False})
    method = build_method(config, CLASSES, total_steps=1)
    audio, _ = batch_data(config)
    before = moving_stats(method.classifier)
    with tf.GradientTape() as tape:
        views, guess = method.guess_labels(method.logmel(tf.constant(audio)))
        probe = tf.reduce_sum(guess)
    assert len(views) == 3
    assert tape.gradient(probe, method.classifier.trainable_variables[0]) is None
    for a, b in zip(before, moving_stats(method.classifier)):
        np.testing.assert_array_equal(a, b)
    probs = tf.add_n([tf.sigmoid(method.classifier(v, training=True)) for v in views]) / 3
    p = np.clip(probs.numpy(), 1e-7, 1 - 1e-7)
    np.testing.assert_allclose(guess.numpy(), p**2 / (p**2 + (1 - p) ** 2), rtol=1e-4,
                               atol=1e-5)


def test_tagger_built_by_method_matches_build_tagger_architecture():
    config = tiny_config()
    method = build_method(config, CLASSES, total_steps=1)
    assert method.tagger.count_params() == build_tagger(config, CLASSES).count_params()


# ------------------------------------------------ mixed precision and XLA
@pytest.fixture
def restore_float32_policy():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_under_mixed_precision(name, policy, restore_float32_policy):
    method, audio, _, history = _train_a_few_steps(name, **{"train.precision": policy})
    for term in ("loss", *(f"{t}_loss" for t in method.loss_terms)):
        assert np.all(np.isfinite(history[term])), (term, history[term])
    # loss scaling exactly where float16 gradients can underflow
    scaled = isinstance(method.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    # variables (student, teacher, BN statistics) stay float32; logits come out float32
    assert {v.dtype for v in method.weights if v.dtype != "int64"} <= {"float32", "int32",
                                                                         "uint32"}
    assert method.tagger(audio[:2]).dtype == tf.float32
    assert method.classifier.compute_dtype == policy.split("_")[1]
    assert method.logmel(audio[:2]).dtype == tf.float32  # the front end computes in float32


def test_vat_direction_under_float16_is_finite_unit_norm_and_scaled(restore_float32_policy):
    method, audio, _, _ = _train_a_few_steps("vat", steps=1,
                                              **{"train.precision": "mixed_float16"})
    loss = tf.constant(2.0)
    scale = float(method.optimizer.dynamic_scale)
    assert scale > 1
    assert float(method.scaled_for_gradients(loss)) == pytest.approx(2.0 * scale)
    features = method.augmented(method.logmel(tf.constant(audio)))
    assert features.dtype == tf.float16
    d = method.adversarial_direction(features, method.classifier(features, training=False))
    assert d.dtype == tf.float32
    norms = np.sqrt(np.sum(np.square(d.numpy()), axis=(1, 2)))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)


def test_precision_and_jit_settings_are_validated():
    with pytest.raises(ConfigError, match="train.precision"):
        tiny_config(**{"train.precision": "float16"})
    with pytest.raises(ConfigError, match="train.jit_compile"):
        tiny_config(**{"train.jit_compile": "sometimes"})
    assert tiny_config().train.jit_compile == "auto"


def test_xla_front_end_matches_the_plain_one():
    audio, _ = batch_data(tiny_config())
    mels = []
    for jit_frontend in (False, True):
        config = tiny_config(**{"train.jit_frontend": jit_frontend})
        method = build_method(config, CLASSES, total_steps=1)
        mels.append(method.batch_logmel({"audio": tf.constant(audio)}, "audio", "logmel"))
    np.testing.assert_allclose(mels[1].numpy(), mels[0].numpy(), atol=1e-4)
    assert method._frontend is not method.logmel  # the compiled function is in use


def test_auto_jit_is_off_on_a_cpu_only_machine():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is present: 'auto' turns XLA on")
    method = build_method(tiny_config(), CLASSES, total_steps=1)
    assert method.jit_compile is False


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_trains_under_xla(name):
    method, _, _, history = _train_a_few_steps(name, **{"train.jit_compile": True})
    assert method.jit_compile is True
    for term in ("loss", *(f"{t}_loss" for t in method.loss_terms)):
        assert np.all(np.isfinite(history[term])), (term, history[term])


@tf.function
def _vat_loss(method, mel, labels, unlabelled):
    with tf.GradientTape() as tape:
        terms = method.compute_losses(mel, labels, unlabelled, tape)
    return terms["vat"][0]


@pytest.mark.parametrize("replay", [True, False])
def test_vat_divergence_is_the_perturbation_not_dropout_noise(replay, monkeypatch):
    """With dropout on (as in real runs), a vanishing perturbation gives no VAT loss
    because every perturbed pass replays the clean pass's dropout masks; without the
    replay the same loss is dropout noise (the defect this guards against)."""
    from fat_tf.methods import base

    if not replay:
        monkeypatch.setattr(base.DropoutMasks, "replay", lambda self: None)
    config = tiny_config(**{"train.method": "vat", "model.dropout1": 0.5,
                            "model.dropout2": 0.5, "method.vat_eps": 1e-6,
                            "method.vat_xi": 1e-6})
    method = build_method(config, CLASSES, total_steps=1)
    audio, labels = batch_data(config)
    mel = method.logmel(tf.constant(audio))
    loss = float(_vat_loss(method, mel[:4], tf.constant(labels[:4]), mel[4:]))
    if replay:
        assert loss < 1e-6
    else:
        assert loss > 1e-3
    # a real perturbation is still measured with the masks replayed
    if replay:
        strong = build_method(config.replace(**{"method.vat_eps": 5.0}), CLASSES,
                              total_steps=1)
        assert float(_vat_loss(strong, mel[:4], tf.constant(labels[:4]), mel[4:])) > 1e-4


@pytest.mark.parametrize("method_name", ["supervised", "mixup"])
def test_noisy_label_weight_and_curated_fine_tuning(method_name):
    """The noisy-flag column weights each clip's loss: 1 for curated, noisy_label_weight
    for noisy clips before noisy_label_until, 0 after it; mixup mixes the flag too."""
    config = tiny_config(**{"train.method": method_name, "method.noisy_label_weight": 0.25,
                            "method.noisy_label_until": 0.5})
    method = build_method(config, CLASSES, total_steps=100)
    rng = np.random.default_rng(0)
    targets = (rng.random((6, CLASSES)) < 0.3).astype(np.float32)
    flag = np.array([0, 0, 1, 1, 0.5, 0.2], np.float32)  # the last two: mixed clips
    logits = rng.normal(size=(6, CLASSES)).astype(np.float32)
    per_clip = -np.mean(targets * np.log(1 / (1 + np.exp(-logits)))
                        + (1 - targets) * np.log(1 - 1 / (1 + np.exp(-logits))), axis=1)
    labels = tf.constant(np.concatenate([targets, flag[:, None]], axis=1))
    for step, noisy_weight in ((10, 0.25), (49, 0.25), (50, 0.0), (99, 0.0)):
        method.optimizer.iterations.assign(step)
        expected = np.mean((1 - flag + flag * noisy_weight) * per_clip)
        assert float(method.supervised_loss(labels, tf.constant(logits))) == pytest.approx(
            expected, rel=1e-5)
    # plain labels: the unweighted mean, as before
    assert float(method.supervised_loss(tf.constant(targets), tf.constant(logits))) == (
        pytest.approx(per_clip.mean(), rel=1e-5))
    # a training step with the flag column runs (mixup mixes labels and flags alike)
    audio, clean = batch_data(config)
    flagged = np.concatenate([clean, (np.arange(len(clean)) % 2)[:, None]], 1)
    method.optimizer.iterations.assign(0)
    batch = tf.data.Dataset.from_tensors(({"audio": audio}, flagged.astype(np.float32)))
    history = method.fit(batch, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][-1])


def _bce(targets, logits):
    """Per-entry binary cross-entropy from logits, in numpy."""
    return np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))


def test_noisy_bootstrap_softens_only_noisy_targets_towards_the_prediction():
    """noisy_bootstrap=beta: a noisy clip's targets become beta*y + (1-beta)*sigmoid(z)
    (stop-gradient), a mixed clip's take 1 - flag*(1-beta), curated clips keep theirs."""
    config = tiny_config(**{"train.method": "supervised", "method.noisy_label_weight": 0.5,
                            "method.noisy_bootstrap": 0.8})
    method = build_method(config, CLASSES, total_steps=100)
    rng = np.random.default_rng(1)
    targets = (rng.random((5, CLASSES)) < 0.3).astype(np.float32)
    flag = np.array([0, 1, 1, 0.5, 0], np.float32)
    logits = rng.normal(size=(5, CLASSES)).astype(np.float32)
    beta = 1 - flag * 0.2
    soft = beta[:, None] * targets + (1 - beta[:, None]) / (1 + np.exp(-logits))
    expected = np.mean((1 - flag + flag * 0.5) * _bce(soft, logits).mean(1))
    labels = tf.constant(np.concatenate([targets, flag[:, None]], axis=1))
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = method.supervised_loss(labels, z)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # gradient of BCE with the soft targets held constant: (sigmoid(z) - target) * weight
    weight = (1 - flag + flag * 0.5)[:, None] / (5 * CLASSES)
    want = (1 / (1 + np.exp(-logits)) - soft) * weight
    np.testing.assert_allclose(tape.gradient(loss, z).numpy(), want, rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="noisy_bootstrap"):
        tiny_config(**{"method.noisy_bootstrap": 1.5})


def test_pseudolabel_loss_is_the_masked_bce_of_confident_guesses():
    """With dropout and augmentation on (as in real runs): the guesses come from the
    model in inference mode on the un-augmented unlabelled clips, each class kept when
    confident, and the term is sum(mask * BCE) / (B_u * C) on the training pass's
    logits of those clips; the supervised term is the BCE of the labelled part."""
    config = tiny_config(**{"train.method": "pseudolabel", "model.dropout1": 0.3,
                            "model.dropout2": 0.3, "augment.time_masks": 1,
                            "augment.freq_masks": 1, "method.pseudo_label_positive": 0.55,
                            "method.pseudo_label_negative": 0.45,
                            "method.pseudo_label_alignment": False})
    method = build_method(config, CLASSES, total_steps=10)
    audio, labels = batch_data(config)
    mel = method.logmel(tf.constant(audio[:4]))
    unlabelled = method.logmel(tf.constant(audio[4:]))
    seen = {}
    classify = method.classify_training

    def recording(features, labelled):
        seen["logits"] = classify(features, labelled)
        return seen["logits"]

    method.classify_training = recording
    guess = 1 / (1 + np.exp(-method.classifier(unlabelled, training=False).numpy()))
    with tf.GradientTape() as tape:
        terms = method.compute_losses(mel, tf.constant(labels[:4]), unlabelled, tape)
    logits = seen["logits"].numpy()
    positive = guess >= 0.55
    mask = positive | (guess <= 0.45)
    assert 0 < mask.sum() < mask.size  # some classes confident, some left out
    expected = np.sum(mask * _bce(positive.astype(np.float32), logits[4:])) / mask.size
    assert float(terms["pseudo_label"][0]) == pytest.approx(float(expected), rel=1e-5)
    assert float(terms["supervised"][0]) == pytest.approx(
        float(_bce(labels[:4], logits[:4]).mean()), rel=1e-5)
    # the training pass saw augmented clips: its logits differ from the guessing pass's
    assert np.abs(logits[4:] - np.log(guess / (1 - guess))).max() > 1e-3


def test_pseudolabel_alignment_scales_each_class_to_the_labelled_frequency():
    """With pseudo_label_alignment, each class's probability is scaled by its labelled
    frequency over the running mean guess before thresholding, so a class guessed for
    every clip is not made positive everywhere."""
    config = tiny_config(**{"train.method": "pseudolabel", "method.pseudo_label_positive": 0.6,
                            "method.pseudo_label_negative": 0.2})
    method = build_method(config, CLASSES, total_steps=10)
    audio, labels = batch_data(config)
    unlabelled = method.logmel(tf.constant(audio[4:]))
    raw = 1 / (1 + np.exp(-method.classifier(unlabelled, training=False).numpy()))
    targets, mask = method.guess(unlabelled, tf.constant(labels[:4]))
    np.testing.assert_allclose(method.label_prior.numpy(), labels[:4].mean(0), rtol=1e-5)
    np.testing.assert_allclose(method.mean_guess.numpy(), raw.mean(0), rtol=1e-4)
    prior = np.clip(labels[:4].mean(0), 1e-4, 1 - 1e-4)
    aligned = np.clip(raw * prior / raw.mean(0), 0, 1)
    np.testing.assert_array_equal(targets.numpy(), aligned >= 0.6)
    np.testing.assert_array_equal(mask.numpy(), (aligned >= 0.6) | (aligned <= 0.2))
    # a class the model guesses at 0.9 for every clip but no labelled clip has is no
    # positive anywhere after alignment
    assert not np.any(targets.numpy()[:, prior < 1e-3])


def test_pseudolabel_teacher_guesses_with_the_averaged_weights():
    """pseudo_label_teacher: the guesses are the teacher's (an EMA of the weights), not
    the current model's."""
    config = tiny_config(**{"train.method": "pseudolabel", "method.pseudo_label_positive": 0.55,
                            "method.pseudo_label_negative": 0.45,
                            "method.pseudo_label_alignment": False,
                            "method.pseudo_label_teacher": True})
    method = build_method(config, CLASSES, total_steps=10)
    audio, labels = batch_data(config)
    unlabelled = method.logmel(tf.constant(audio[4:]))
    # move the student away from its teacher, as training does
    rng = np.random.default_rng(3)
    method.tagger.set_weights([w + rng.normal(scale=0.5, size=w.shape).astype(w.dtype)
                               for w in method.tagger.get_weights()])
    teacher = 1 / (1 + np.exp(-method.teacher.get_layer("classifier")(
        unlabelled, training=False).numpy()))
    student = 1 / (1 + np.exp(-method.classifier(unlabelled, training=False).numpy()))
    targets, mask = method.guess(unlabelled, tf.constant(labels[:4]))
    np.testing.assert_array_equal(targets.numpy(), teacher >= 0.55)
    np.testing.assert_array_equal(mask.numpy(), (teacher >= 0.55) | (teacher <= 0.45))
    assert np.any((student >= 0.55) != (teacher >= 0.55))  # the student would differ


def test_mixmatch_teacher_guesses_with_the_averaged_weights_in_inference_mode():
    """mixmatch_teacher: each view is guessed by the EMA teacher without dropout (the
    mean over the K views, sharpened), not by the current weights."""
    config = tiny_config(**{"train.method": "mixmatch", "method.mixmatch_k": 2,
                            "method.mixmatch_alignment": False,
                            "method.mixmatch_teacher": True,
                            "method.evaluation_ema": False, "model.dropout1": 0.5})
    method = build_method(config, CLASSES, total_steps=10)
    audio, labels = batch_data(config)
    unlabelled = method.logmel(tf.constant(audio[4:]))
    rng = np.random.default_rng(4)
    for weight in method.tagger.trainable_weights:  # move the student away, as training does
        weight.assign(weight + rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    views, guess = method.guess_labels(unlabelled, tf.constant(labels[:4]))
    teacher = method.teacher.get_layer("classifier")
    mean = np.mean([1 / (1 + np.exp(-teacher(v, training=False).numpy())) for v in views],
                   axis=0)
    sharpened = mean ** 2 / (mean ** 2 + (1 - mean) ** 2)  # T = 0.5
    np.testing.assert_allclose(guess.numpy(), sharpened, rtol=1e-4, atol=1e-6)
    student = np.mean([1 / (1 + np.exp(-method.classifier(v, training=False).numpy()))
                       for v in views], axis=0)
    assert np.abs(student - mean).max() > 0.05  # the current weights would guess otherwise


@pytest.mark.parametrize("name, option, with_evaluation_average", [
    ("pseudolabel", "method.pseudo_label_teacher", {"method.evaluation_ema": True}),
    ("mixmatch", "method.mixmatch_teacher", {}),  # evaluation_ema=auto is on for MixMatch
])
def test_guessing_teacher_is_kept_by_a_callback_or_is_the_evaluated_average(
        name, option, with_evaluation_average):
    """The guessing methods' teacher option (GuessingTeacher): without an evaluation
    average the method keeps a teacher of its own, updated by one EMA callback at the
    run's decay; with one, that average guesses and no second copy is made; with the
    option off the current classifier guesses."""
    own = build_method(tiny_config(**{"train.method": name, option: True,
                                      "method.evaluation_ema": False}), CLASSES, 10)
    averaging = [c for c in own.extra_callbacks() if isinstance(c, ExponentialMovingAverage)]
    assert [(c.source, c.target) for c in averaging] == [(own.tagger, own.teacher)]
    assert averaging[0].decay == own.run_ema_decay
    assert own.guessing_classifier is own.teacher.get_layer("classifier")
    shared = build_method(tiny_config(**{"train.method": name, option: True,
                                         **with_evaluation_average}), CLASSES, 10)
    assert shared.teacher is None
    assert shared.guessing_classifier is shared.averaged.get_layer("classifier")
    assert len(shared.extra_callbacks()) == 1
    current = build_method(tiny_config(**{"train.method": name}), CLASSES, 10)
    assert current.guessing_classifier is current.classifier


def test_mixmatch_alignment_guesses_follow_the_labelled_class_frequencies():
    config = tiny_config(**{"train.method": "mixmatch", "method.mixmatch_k": 2,
                            "method.mixmatch_alignment": True})
    method = build_method(config, CLASSES, total_steps=10)
    audio, labels = batch_data(config)
    mel = method.logmel(tf.constant(audio))
    views, guess = method.guess_labels(mel, tf.constant(labels))
    probs = tf.add_n([tf.sigmoid(method.classifier(v, training=True)) for v in views]) / 2
    # the first update sets the running means to this batch's means
    np.testing.assert_allclose(method.label_prior.numpy(), labels.mean(0), rtol=1e-5)
    np.testing.assert_allclose(method.mean_guess.numpy(), probs.numpy().mean(0), rtol=1e-4)
    prior = np.clip(labels.mean(0), 1e-4, 1 - 1e-4)
    aligned = np.clip(probs.numpy() * prior / probs.numpy().mean(0), 0, 1)
    logit = lambda x: np.log(np.clip(x, 1e-7, 1 - 1e-7) / (1 - np.clip(x, 1e-7, 1 - 1e-7)))  # noqa: E731
    expected = 1 / (1 + np.exp(-((logit(aligned) - logit(prior)) / 0.5 + logit(prior))))
    np.testing.assert_allclose(guess.numpy(), expected, rtol=1e-3, atol=1e-5)
    # a second batch moves the running means half-way (two batches counted equally)
    method.guess_labels(mel, tf.constant(np.zeros_like(labels)))
    np.testing.assert_allclose(method.label_prior.numpy(), labels.mean(0) / 2, rtol=1e-5)
    assert method.alignment_updates.numpy() == 2


SSL_METHODS = sorted(name for name, cls in METHODS.items() if cls.uses_unlabelled)


@pytest.mark.parametrize("name", SSL_METHODS)
def test_unlabelled_terms_wait_for_unlabelled_start(name):
    """Before unlabelled_start the unlabelled term's weight is exactly 0 (labels train
    alone); it then ramps up over rampup_fraction to its full weight."""
    config = tiny_config(**{"train.method": name, "method.unlabelled_start": 0.2,
                            "method.rampup_fraction": 0.3})
    method = build_method(config, CLASSES, total_steps=100)
    audio, labels = batch_data(config)
    mel = method.logmel(tf.constant(audio))
    term = method.loss_terms[1]
    weights = []
    for step in (0, 19, 20, 35, 50, 99):
        method.optimizer.iterations.assign(step)
        with tf.GradientTape() as tape:
            weights.append(float(method.compute_losses(mel[:4], tf.constant(labels[:4]),
                                                       mel[4:], tape)[term][1]))
    full = {"vat": config.method.vat_weight, "meanteacher": config.method.consistency_weight,
            "mixmatch": config.method.mixmatch_weight,
            "pseudolabel": config.method.pseudo_label_weight}[name]
    assert weights[0] == weights[1] == 0.0
    assert 0.0 <= weights[2] < weights[3] < weights[4] == pytest.approx(full)
    assert weights[5] == pytest.approx(full)


@pytest.mark.parametrize("name", ["vat", "meanteacher", "pseudolabel"])
def test_batchnorm_statistics_from_labelled_clips_only(name):
    """batchnorm_statistics=labelled: a training step leaves BatchNorm's moving
    statistics as one clean pass over the labelled clips alone would, and the
    unlabelled clips are normalised by their own batch statistics."""
    config = tiny_config(**{"train.method": name, "augment.time_flip": False,
                            "method.batchnorm_statistics": "labelled"})
    method = build_method(config, CLASSES, total_steps=10)
    audio, labels = batch_data(config)
    unlabelled = 3.0 * batch_data(config, seed=1)[0]  # another "domain"
    mel, unlabelled_mel = method.logmel(tf.constant(audio)), method.logmel(unlabelled)
    start = moving_stats(method.classifier)
    method.classifier(mel, training=True)  # one clean pass over the labelled clips
    expected = moving_stats(method.classifier)
    for v, s in zip(frozen_batchnorm_statistics(method.classifier).variables, start):
        v.assign(s)
    both = tf.concat([mel, unlabelled_mel], 0)
    separate = method.classify_training(both, len(audio))
    for got, want in zip(moving_stats(method.classifier), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with frozen_batchnorm_statistics(method.classifier):
        alone = method.classifier(unlabelled_mel, training=True)
        joint = method.classifier(both, training=True)
    np.testing.assert_allclose(separate[len(audio):], alone, rtol=1e-4, atol=1e-5)
    assert np.abs(separate[len(audio):] - joint[len(audio):]).max() > 1e-3
    for v, s in zip(frozen_batchnorm_statistics(method.classifier).variables, start):
        v.assign(s)
    with tf.GradientTape() as tape:
        method.compute_losses(mel, tf.constant(labels), unlabelled_mel, tape)
    for got, want in zip(moving_stats(method.classifier), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="batchnorm_statistics"):
        tiny_config(**{"method.batchnorm_statistics": "unlabelled"})


@pytest.mark.parametrize("name", ["vat", "meanteacher", "pseudolabel"])
@pytest.mark.parametrize("statistics", ["all", "labelled"])
def test_semi_supervised_step_without_an_unlabelled_stream(name, statistics):
    """Without unlabelled clips (``data.noisy_usage=none``) every row is labelled: one
    training pass, whose BatchNorm moving statistics are those of a clean pass over
    the batch, under either ``batchnorm_statistics``."""
    config = tiny_config(**{"train.method": name, "augment.time_flip": False,
                            "method.batchnorm_statistics": statistics})
    method = build_method(config, CLASSES, total_steps=10)
    audio, labels = batch_data(config)
    mel = method.logmel(tf.constant(audio))
    start = moving_stats(method.classifier)
    method.classifier(mel, training=True)
    expected = moving_stats(method.classifier)
    for v, s in zip(frozen_batchnorm_statistics(method.classifier).variables, start):
        v.assign(s)
    with tf.GradientTape() as tape:
        losses = method.compute_losses(mel, tf.constant(labels), None, tape)
    for term, (value, _) in losses.items():
        assert np.isfinite(float(value)), term
    for got, want in zip(moving_stats(method.classifier), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SSL_METHODS)
def test_semi_supervised_methods_take_weighted_noisy_labels(name):
    """With data.noisy_usage=both (the default for these methods) the labelled stream
    carries the noisy-flag column: every method trains on it, and MixMatch's guesses
    count as curated targets (flag 0)."""
    config = tiny_config(**{"train.method": name, "method.noisy_label_weight": 0.3})
    method = build_method(config, CLASSES, total_steps=10)
    audio, labels = batch_data(config)
    flagged = np.concatenate([labels, (np.arange(len(labels)) % 2)[:, None]], 1)
    inputs = {"audio": audio, "unlabelled": batch_data(config, seed=1)[0]}
    batch = tf.data.Dataset.from_tensors((inputs, flagged.astype(np.float32))).repeat()
    history = method.fit(batch, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False,
                         callbacks=method.extra_callbacks())
    for term in ("loss", *(f"{t}_loss" for t in method.loss_terms)):
        assert np.all(np.isfinite(history.history[term])), term


def test_mean_teacher_validation_scores_the_student_and_keeps_the_better_model(tmp_path):
    """Validation scores the teacher (val_lwlrap) and the student (val_student_lwlrap);
    the best checkpoint is whichever of the two scored best, and says which."""
    from fat_tf.callbacks import SaveBestModel
    from fat_tf.metrics import lwlrap

    method, audio, labels, _ = _train_a_few_steps("meanteacher", steps=2)
    windows = {"windows": audio[:, None, :], "window_mask": np.ones((len(audio), 1), "float32")}
    scores = method.evaluate(tf.data.Dataset.from_tensors((windows, labels)), return_dict=True,
                             verbose=0)
    student = method.tagger(audio).numpy()
    assert scores["student_lwlrap"] == pytest.approx(lwlrap(labels, student), abs=1e-5)
    assert scores["lwlrap"] == pytest.approx(lwlrap(labels, method.teacher(audio).numpy()),
                                             abs=1e-5)
    best = SaveBestModel(str(tmp_path / "best.keras"))
    best.set_model(method)

    def saved_outputs():
        return keras.models.load_model(tmp_path / "best.keras")(audio).numpy()

    best.on_epoch_end(0, {"val_lwlrap": 0.5, "val_student_lwlrap": 0.7})
    assert best.best_state()["model"] == "student" and best.best() == 0.7
    np.testing.assert_allclose(saved_outputs(), student, rtol=1e-4, atol=1e-4)
    best.on_epoch_end(1, {"val_lwlrap": 0.6, "val_student_lwlrap": 0.65})  # no improvement
    assert best.best_state()["epoch"] == 1
    best.on_epoch_end(2, {"val_lwlrap": 0.8, "val_student_lwlrap": 0.65})
    assert best.best_state()["model"] == "evaluated" and best.best() == 0.8
    np.testing.assert_allclose(saved_outputs(), method.teacher(audio).numpy(), rtol=1e-4,
                               atol=1e-4)
