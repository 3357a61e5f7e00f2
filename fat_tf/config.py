"""Every setting of fat_tf in one place: frozen dataclasses, checked overrides and the
names each string setting accepts.

A run is described by one :class:`Config`. It is built from a named preset
(:data:`fat_tf.presets.PRESETS`), optionally a JSON file, and ``key=value`` overrides
(``data.batch_size=16``, :func:`apply_overrides`), and every run writes its resolved
config as JSON so it can be reproduced exactly (``Config.from_json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from fat_tf.files import atomic_write_text


class ConfigError(ValueError):
    """A setting has an unknown name or a value of the wrong type or range."""


#: Keras dtype policies a run may train under.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

#: What train_noisy may be used for (``data.noisy_usage``).
NOISY_USAGES = ("auto", "labelled", "unlabelled", "both", "none")

# The names string settings accept. This is their one home: the modules that implement
# them (fat_tf.methods, fat_tf.ops.schedules, fat_tf.ops.losses, fat_tf.models) register
# exactly these, and a config naming anything else is refused when it is parsed, before
# TensorFlow is imported.

#: Training methods (``train.method``), each a class in :mod:`fat_tf.methods`.
METHOD_NAMES = ("supervised", "mixup", "vat", "meanteacher", "mixmatch", "pseudolabel")

#: Learning-rate schedules (``optim.lr_schedule``, :mod:`fat_tf.ops.schedules`).
LR_SCHEDULES = ("cosine", "cosine_restarts", "constant")

#: Supervised losses (``train.loss``, :mod:`fat_tf.ops.losses`).
LOSS_NAMES = ("bce", "hinge")

#: Optimisers (``optim.optimizer``).
OPTIMIZERS = ("adam", "adamw")

#: Backbones (``model.backbone``, :mod:`fat_tf.models.tagger`).
BACKBONES = ("cnn", "cnn_skip")

#: Orders of the head's global time-frequency pooling (``model.pooling``).
POOLING_ORDERS = ("time_mean_freq_max", "freq_mean_time_max")

#: Poolings of window logits into clip logits (``data.window_pooling``).
WINDOW_POOLINGS = ("mean", "max")

#: How the front end pads a centred waveform (``frontend.pad_mode``).
PAD_MODES = ("constant", "reflect")

#: Distribution strategies (``--strategy`` of train and tune, :mod:`fat_tf.distribute`;
#: not a config setting, so a run may resume under another). ``none``: default device.
STRATEGIES = ("none", "mirrored", "multiworker")


def check_true_false_auto(setting: str, value: object) -> None:
    """Refuse a ``true``/``false``/``auto`` setting holding anything else.

    Args:
        setting: the setting's dotted name, e.g. ``train.jit_compile``.
        value: its value.
    """
    if value not in (True, False, "auto"):
        raise ConfigError(f"{setting} must be true, false or auto, got {value!r}")


def check_name(setting: str, value: object, names: typing.Sequence[str]) -> None:
    """Refuse a string setting whose value is not one of ``names`` (ConfigError naming
    the setting, the valid names, and the closest one when the value looks like a typo).

    Args:
        setting: the setting's dotted name, e.g. ``optim.lr_schedule``.
        value: its value.
        names: the values it accepts.
    """
    if value in names:
        return
    import difflib

    close = difflib.get_close_matches(str(value), names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{setting} must be one of {', '.join(names)}, got {value!r}{hint}")


@dataclass(frozen=True)
class FrontEndConfig:
    """Log-mel front end parameters (the FAT2019 recipe by default).

    Args:
        sample_rate: expected audio sample rate in Hz; other rates are rejected.
        n_fft: FFT size and window length in samples (Hann window).
        hop_length: hop between frames in samples (694 gives 128 frames per ~2 s).
        n_mels: number of mel bands (Slaney mel scale, Slaney area normalisation).
        fmin: lowest mel band edge in Hz.
        fmax: highest mel band edge in Hz (``None`` means ``sample_rate / 2``).
        power: exponent of the magnitude spectrogram (2.0 = power).
        amin: floor applied before the logarithm.
        top_db: clamp each clip's dB values to ``max - top_db`` (per example, never
            per batch); ``None`` disables the clamp.
        center: pad the waveform by ``n_fft // 2`` on both sides (librosa's default)
            so frame ``t`` is centred on sample ``t * hop_length``.
        pad_mode: how ``center`` pads: ``reflect`` (librosa before 0.10, which the
            2019 recipe used) or ``constant`` (zeros, librosa 0.10 and later).
        standardize: subtract the mean and divide by the standard deviation of each
            clip's log-mel (per example).
    """

    sample_rate: int = 44100
    n_fft: int = 2560
    hop_length: int = 694
    n_mels: int = 128
    fmin: float = 20.0
    fmax: float | None = 22050.0
    power: float = 2.0
    amin: float = 1e-10
    top_db: float | None = 80.0
    center: bool = True
    pad_mode: str = "reflect"
    standardize: bool = True

    def __post_init__(self):
        check_name("frontend.pad_mode", self.pad_mode, PAD_MODES)

    def num_frames(self, num_samples: int) -> int:
        """Number of frames the front end yields for ``num_samples`` samples."""
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + max(0, num_samples - self.n_fft) // self.hop_length

    def samples_for_frames(self, num_frames: int) -> int:
        """Shortest waveform length that yields exactly ``num_frames`` frames."""
        if self.center:
            return self.hop_length * (num_frames - 1)
        return self.n_fft + self.hop_length * (num_frames - 1)


@dataclass(frozen=True)
class DataConfig:
    """Input pipeline settings.

    Args:
        crop_frames: training window length in front-end frames (128 ≈ 2 s).
        eval_hop_fraction: hop between evaluation windows as a fraction of the
            window (0.5 = half-overlapping windows covering the whole clip).
        max_eval_windows: cap on windows per clip at evaluation (longer clips get
            evenly spaced windows); keeps validation batches bounded.
        window_pooling: how window logits become clip logits at evaluation and
            prediction: ``mean`` or ``max``.
        batch_size: labelled clips per training batch.
        eval_batch_size: clips per evaluation batch.
        unlabelled_ratio: unlabelled clips per labelled clip in each batch
            (semi-supervised methods only).
        noisy_usage: what to do with train_noisy: ``labelled`` (noisy labels as extra
            labelled data, weighted by ``method.noisy_label_weight``), ``unlabelled``
            (audio only, for methods with an unlabelled stream), ``both``, ``none``, or
            ``auto``: ``labelled`` for supervised and mixup, ``both`` for the
            semi-supervised methods (see :func:`fat_tf.training.resolved_noisy_usage`).
        validation_split: fraction of curated clips held out for validation
            (stratified by label set).
        shuffle_buffer: shuffle buffer size in clips.
        cache: ``none``, ``memory`` (decoded audio kept in RAM) or a folder for an
            on-disk cache of decoded audio (one cache per file list, named by a hash of
            the files' paths, sizes and times, so changed files get a new cache).
        feature_cache: ``True`` computes the training clips' log-mel in the input
            pipeline (whole clips, then cropped in frames) and caches features instead of
            audio where ``cache`` says; the on-disk cache is named by a hash of the
            front-end settings and the files, so a changed front end gets a new cache.
            Standardisation is then per whole clip instead of per crop.
        parallel_calls: parallelism of the decode map (-1 = tf.data AUTOTUNE).
        labelled_fraction: keep only this fraction of the curated training clips
            (after the validation split), for label-scarcity studies.
    """

    crop_frames: int = 128
    eval_hop_fraction: float = 0.5
    max_eval_windows: int = 16
    window_pooling: str = "mean"
    batch_size: int = 32
    eval_batch_size: int = 16
    unlabelled_ratio: int = 1
    noisy_usage: str = "auto"
    validation_split: float = 0.2
    shuffle_buffer: int = 2048
    cache: str = "none"
    feature_cache: bool = False
    parallel_calls: int = -1
    labelled_fraction: float = 1.0

    def __post_init__(self):
        check_name("data.window_pooling", self.window_pooling, WINDOW_POOLINGS)
        if self.noisy_usage not in NOISY_USAGES:
            raise ConfigError(f"data.noisy_usage must be one of {', '.join(NOISY_USAGES)}, "
                              f"got {self.noisy_usage!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (inactive at inference).

    Only time flip is on by default: on the Kitchen20 development benchmark, adding time
    shift (32 frames) and SpecAugment (2 time, 2 frequency masks) lowered mean teacher's
    and MixMatch's validation and test lwlrap at 1,000 steps, though it makes their views
    of a clip more distinct (see experiments/ssl_comparison).

    Args:
        time_flip: flip the log-mel along time with probability 0.5.
        time_shift_frames: roll the log-mel along time by up to this many frames either
            way (0 disables).
        time_masks: number of SpecAugment time masks per example.
        time_mask_frames: maximum width of each time mask in frames.
        freq_masks: number of SpecAugment frequency masks per example.
        freq_mask_bins: maximum width of each frequency mask in mel bins.
    """

    time_flip: bool = True
    time_shift_frames: int = 0
    time_masks: int = 0
    time_mask_frames: int = 16
    freq_masks: int = 0
    freq_mask_bins: int = 8


@dataclass(frozen=True)
class ModelConfig:
    """Backbone and head of the tagger.

    Args:
        backbone: ``cnn`` (the reference 4-block CNN) or ``cnn_skip`` (DenseNet-like:
            each block's input concatenated with its output before pooling).
        channels: output channels of the four conv blocks.
        pooling: ``time_mean_freq_max`` (the reference kernel: mean over time, then
            max over frequency) or ``freq_mean_time_max`` (PANNs order).
        head_units: width of the hidden Dense layer of the head.
        dropout1: dropout before the hidden Dense layer.
        dropout2: dropout before the logits layer.
    """

    backbone: str = "cnn"
    channels: tuple[int, ...] = (64, 128, 256, 512)
    pooling: str = "time_mean_freq_max"
    head_units: int = 128
    dropout1: float = 0.2
    dropout2: float = 0.1

    def __post_init__(self):
        check_name("model.backbone", self.backbone, BACKBONES)
        check_name("model.pooling", self.pooling, POOLING_ORDERS)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    Args:
        optimizer: ``adam`` or ``adamw``.
        lr_schedule: ``cosine`` (one cosine annealing from ``lr_max`` to ``lr_min``
            over the whole run, per step), ``cosine_restarts`` (``cosine_cycles``
            equal annealing cycles with warm restarts) or ``constant``.
        lr_max: peak learning rate.
        lr_min: floor of the cosine schedules.
        cosine_cycles: number of cycles of ``cosine_restarts`` in the run.
        warmup_fraction: linear warm-up over this fraction of the run (0 disables).
        weight_decay: decoupled weight decay for ``adamw``.
    """

    optimizer: str = "adam"
    lr_schedule: str = "cosine"
    lr_max: float = 3e-3
    lr_min: float = 1e-5
    cosine_cycles: int = 3
    warmup_fraction: float = 0.0
    weight_decay: float = 1e-4

    def __post_init__(self):
        check_name("optim.optimizer", self.optimizer, OPTIMIZERS)
        check_name("optim.lr_schedule", self.lr_schedule, LR_SCHEDULES)


@dataclass(frozen=True)
class MethodConfig:
    """Hyperparameters of the training methods (each reads only its own).

    Args:
        mixup_alpha: Beta(alpha, alpha) parameter of mixup.
        vat_xi: size of the finite-difference step of the power iteration.
        vat_eps: norm of the adversarial perturbation (on the standardised log-mel).
        vat_ip: number of power iterations.
        vat_weight: weight of the VAT loss.
        ema_decay: long-run EMA decay of mean teacher's teacher and of the
            ``evaluation_ema`` average (warm-up ``min(1 - 1/(step+1), decay)``).
        ema_horizon_fraction: cap the EMA's averaging horizon ``1 / (1 - decay)`` at this
            fraction of the run's steps (0 = no cap), so a short run's teacher does not
            average the random start; 0.1 gives 0.99 for 1,000 steps, 0.999 for 10,000.
        evaluation_ema: validate, save and export an exponential moving average of the
            trained weights (``ema_decay``, ``ema_horizon_fraction``; BatchNorm statistics
            averaged too) instead of the weights of the last step, as the MixMatch and
            FixMatch reference implementations evaluate: ``true``, ``false`` or
            ``auto`` (on for MixMatch, off for the other methods). Any method; mean
            teacher's teacher already is such an average and gets no second one.
            ``auto`` from the Kitchen20 development benchmark: MixMatch's final
            validation lwlrap with the average was 0.599 against 0.590 without (seeds
            0-2; test lwlrap unchanged, 0.607 against 0.608), and the average is what its
            reference implementation evaluates; for VAT and supervised training
            validation did not favour it (see experiments/ssl_comparison).
        consistency_weight: final weight of the mean-teacher consistency loss. 1 from
            the Kitchen20 development benchmark: at 10 the student stayed anchored to its
            lagging teacher (supervised loss stalled, validation lwlrap 0.39 at mid-run
            against 0.60 at 1; 3 scored lower final validation lwlrap than 1 over seeds
            0-2, 0.599 against 0.615; see experiments/ssl_comparison).
        rampup_fraction: length of the ramp-up of the unlabelled terms' weights, as a
            fraction of the run's optimiser steps.
        unlabelled_start: fraction of the run trained on labels alone: the unlabelled
            terms (VAT, consistency, MixMatch's guesses) are 0 before it and ramp up over
            ``rampup_fraction`` after it, so they act on a model that has learned
            something instead of pulling a random one toward flat outputs.
        batchnorm_statistics: what BatchNorm normalises unlabelled clips with in the
            semi-supervised methods' training passes: ``labelled`` (the unlabelled
            clips pass separately with their own batch statistics and leave the moving
            statistics, used at inference, to the labelled clips) or ``all`` (labelled
            and unlabelled clips in one batch; moving statistics from both).
            ``labelled`` from the Kitchen20 development benchmark: with ``all``, VAT,
            mean teacher and MixMatch fell 0.04-0.05 below supervised training when the
            unlabelled audio came from other recordings than the test clips, and
            ``labelled`` removed that loss (see experiments/ssl_comparison).
        mixmatch_k: augmentations per unlabelled clip for MixMatch.
        mixmatch_temperature: sharpening temperature T of MixMatch (around the
            labelled class frequency when ``mixmatch_alignment`` is on; 1 = no
            sharpening). 0.5, the paper's, kept from the Kitchen20 development
            benchmark: 1 scored a lower final validation lwlrap over in-domain seeds
            0-4, 0.620 against 0.623 (test 0.595 against 0.603; see
            experiments/ssl_comparison).
        mixmatch_weight: final weight of MixMatch's unlabelled loss. 1 from the
            Kitchen20 development benchmark: at 10 the run collapsed once the weight was
            reached (validation lwlrap 0.26 at step 500, near random) where 1 scored 0.557
            test (seed 0; experiments/ssl_comparison).
        mixmatch_alpha: Beta(alpha, alpha) parameter of MixMatch's mixing.
        mixmatch_alignment: align MixMatch's guesses to the labelled class frequencies
            (per-class distribution alignment) and sharpen each class around its
            frequency instead of 0.5 (see :func:`fat_tf.ops.ssl.align_to_prior`).
        mixmatch_teacher: guess MixMatch's labels with an exponential moving average
            of the trained weights in inference mode (the ``evaluation_ema`` average,
            or a teacher of its own when that is off; ``ema_decay``,
            ``ema_horizon_fraction``), as interpolation consistency training guesses,
            instead of the current weights in training mode. Off from the Kitchen20
            development benchmark: final validation lwlrap 0.602 against 0.599 in-domain
            but 0.492 against 0.551 with shifted noisy audio (seeds 0-2); test 0.579
            against 0.607 in-domain (see experiments/ssl_comparison).
        export_student: export the student instead of the teacher (mean teacher).
        noisy_label_weight: weight of a train_noisy clip's supervised loss (a curated
            clip's is 1) when the noisy labels are used (``data.noisy_usage`` auto,
            labelled or both); mixed clips (mixup) get the mixed weight. 0.3 from the
            Kitchen20 development benchmark (weight 1 let the 25% wrong and shifted noisy
            labels dominate; see experiments/ssl_comparison).
        noisy_label_until: fraction of the run after which noisy labels get weight 0, so
            the rest of the run fine-tunes on the curated labels (1 = never).
        noisy_bootstrap: soft-bootstrapping weight beta of a noisy clip's own labels
            (Reed et al., 2015): its targets are ``beta * y + (1 - beta) * p`` with ``p``
            the model's stop-gradient prediction, so labels it confidently contradicts
            weigh less (1 = off; Reed et al. used 0.95).
        pseudo_label_weight: final weight of the pseudo-label loss (``pseudolabel``).
        pseudo_label_positive: probability at or above which a class of an unlabelled
            clip becomes a positive pseudo-label (UPS's multi-label setting: 0.7).
        pseudo_label_negative: probability at or below which it becomes a negative
            pseudo-label (0 = none: positive pseudo-labels only); classes in between
            are left out of the loss. 0 from the Kitchen20 development benchmark: at
            UPS's 0.05 (without UPS's uncertainty filter) about 16 of 20 classes per
            shifted noisy clip became confident negatives, true classes among them,
            the model learnt to deny them (label ranking precision of the noisy clips'
            true labels 0.35 for its final model, 0.73 for supervised training's) and
            validation lwlrap fell to 0.21 by mid-run; positive-only scored the best
            final validation of four fixes (seed 0; see experiments/ssl_comparison).
        pseudo_label_alignment: align the guessed probabilities to the labelled class
            frequencies before thresholding, per class, like MixMatch's guesses: without
            it, pseudo-labelling collapsed on Kitchen20 (validation lwlrap 0.21 by
            mid-run, seed 0; see experiments/ssl_comparison).
        pseudo_label_teacher: guess with an exponential moving average of the trained
            weights (a mean-teacher-style teacher: ``ema_decay``,
            ``ema_horizon_fraction``; the ``evaluation_ema`` average when that is on)
            instead of the weights of the current step, so the pseudo-labels change
            slowly and one step's swing is not fed back at once.
    """

    mixup_alpha: float = 1.0
    vat_xi: float = 10.0
    vat_eps: float = 1.0
    vat_ip: int = 1
    vat_weight: float = 1.0
    ema_decay: float = 0.999
    ema_horizon_fraction: float = 0.1
    evaluation_ema: bool | str = "auto"
    consistency_weight: float = 1.0
    rampup_fraction: float = 0.2
    unlabelled_start: float = 0.1
    batchnorm_statistics: str = "labelled"
    mixmatch_k: int = 2
    mixmatch_temperature: float = 0.5
    mixmatch_weight: float = 1.0
    mixmatch_alpha: float = 1.0
    mixmatch_alignment: bool = True
    mixmatch_teacher: bool = False
    export_student: bool = False
    noisy_label_weight: float = 0.3
    noisy_label_until: float = 1.0
    noisy_bootstrap: float = 1.0
    pseudo_label_weight: float = 1.0
    pseudo_label_positive: float = 0.7
    pseudo_label_negative: float = 0.0
    pseudo_label_alignment: bool = True
    pseudo_label_teacher: bool = False

    def __post_init__(self):
        check_true_false_auto("method.evaluation_ema", self.evaluation_ema)
        if self.batchnorm_statistics not in ("all", "labelled"):
            raise ConfigError(f"method.batchnorm_statistics must be all or labelled, got "
                              f"{self.batchnorm_statistics!r}")
        if not 0 <= self.unlabelled_start < 1:
            raise ConfigError(f"method.unlabelled_start must be in [0, 1), got "
                              f"{self.unlabelled_start!r}")
        if not self.noisy_label_weight >= 0:
            raise ConfigError(f"method.noisy_label_weight must be >= 0, got "
                              f"{self.noisy_label_weight!r}")
        if not 0 <= self.noisy_label_until <= 1:
            raise ConfigError(f"method.noisy_label_until must be in [0, 1], got "
                              f"{self.noisy_label_until!r}")
        if not 0 <= self.noisy_bootstrap <= 1:
            raise ConfigError(f"method.noisy_bootstrap must be in [0, 1], got "
                              f"{self.noisy_bootstrap!r}")
        if not 0 <= self.pseudo_label_negative < self.pseudo_label_positive <= 1:
            raise ConfigError(
                "method.pseudo_label_negative and pseudo_label_positive must satisfy "
                f"0 <= negative < positive <= 1, got {self.pseudo_label_negative!r} and "
                f"{self.pseudo_label_positive!r}")


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does.

    Args:
        method: training method name (see ``fat_tf.methods.registry``).
        steps: the run's budget in optimiser steps (used when ``epochs`` is None).
            Schedules and ramps are fractions of it, so its shape does not depend on
            the size of the labelled set. 4,000 for the ``fat2019`` preset (about the
            reference recipe's 30 passes over FAT2019's curated training clips);
            1,000 for ``small`` (chosen on the Kitchen20 development benchmark: the
            training loss has flattened by then on ~115 labelled clips, and longer runs
            scored no better; see experiments/recipe).
        epochs: give the budget in epochs instead (``None`` = use ``steps``): the run
            takes ``epochs * steps_per_epoch`` optimiser steps.
        steps_per_epoch: optimiser steps per epoch when ``epochs`` is set (``None`` =
            one pass over the labelled training clips).
        validate_every: optimiser steps between validations (and checkpoints); the
            budget is rounded to a whole number of them (at least one).
        loss: ``bce`` (sigmoid binary cross-entropy) or ``hinge`` (multi-label margin).
        seed: seed of every random choice (data order, crops, init, augmentation).
        jit_compile: compile the train step with XLA: ``true``, ``false`` or ``auto``
            (Keras' rule: on when a GPU is present and no tf.distribute strategy is
            used, off on CPU-only machines, where it measured 3.5x slower).
        jit_frontend: compile the log-mel of training batches with XLA even when the
            train step is not compiled (on CPU: ~5% less CPU per step on the small
            preset, measured; the exported model is unaffected).
        precision: Keras dtype policy: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``
            (loss scaling under ``mixed_float16``; logits, losses, the front end, EMA
            and VAT's direction stay float32).
        save_validation_predictions: after every validation, also write the clip logits
            of each scored model on the validation clips to
            ``validation_predictions.npz`` in the run folder (one extra pass over the
            validation clips each time), so that checkpoint-selection rules can be
            compared afterwards on validation alone (``fat_tf.selection``).
    """

    method: str = "supervised"
    steps: int = 4000
    epochs: int | None = None
    steps_per_epoch: int | None = None
    validate_every: int = 100
    loss: str = "bce"
    seed: int = 0
    jit_compile: bool | str = "auto"
    jit_frontend: bool = True
    precision: str = "float32"
    save_validation_predictions: bool = False

    def __post_init__(self):
        check_true_false_auto("train.jit_compile", self.jit_compile)
        check_name("train.method", self.method, METHOD_NAMES)
        check_name("train.loss", self.loss, LOSS_NAMES)
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"train.precision must be one of {', '.join(PRECISIONS)}, "
                f"got {self.precision!r}"
            )
        for name in ("steps", "validate_every", "epochs", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"train.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Config:
    """The complete, resolved description of a run.

    Args:
        preset: name of the preset this config started from.
        frontend: log-mel front end.
        data: input pipeline.
        augment: training augmentation.
        model: backbone and head.
        optim: optimiser and schedule.
        method: method hyperparameters.
        train: run settings.
    """

    preset: str = "fat2019"
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def crop_samples(self) -> int:
        """Training window length in samples."""
        return self.frontend.samples_for_frames(self.data.crop_frames)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), JSON-serialisable."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        """Indented JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON of every setting (formatting-independent)."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON atomically (temp file, then rename)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build a config from a nested dict; unknown keys raise ConfigError."""
        return _build(cls, data, "")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Config:
        """Load a config written by :meth:`save` (or any subset of its keys).

        Raises:
            OSError: the file cannot be opened (missing, a folder, a FIFO or device);
                ``filename`` names it.
            ConfigError: one line naming the file when its content is bad (empty, not
                UTF-8, not a JSON object, a bad setting).
        """
        from fat_tf.errors import FatTfError
        from fat_tf.files import open_regular, parse_json_object

        with open_regular(path) as f:  # never blocks on a FIFO
            raw = f.read()
        try:
            data = parse_json_object(raw, path)
        except FatTfError as e:
            raise ConfigError(str(e)) from None
        try:
            return cls.from_dict(data)
        except (ConfigError, TypeError, ValueError) as e:
            raise ConfigError(f"{os.fspath(path)}: {e}") from None

    def replace(self, **overrides: Any) -> Config:
        """Return a copy with dotted-key overrides, e.g. ``replace(**{"data.batch_size": 8})``."""
        return apply_overrides(self, overrides)


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Return ``config`` with dotted-key overrides applied and type-checked."""
    data = config.to_dict()
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) != 2 or parts[0] not in data or not isinstance(data[parts[0]], dict):
            raise ConfigError(f"unknown setting {key!r}; settings look like 'data.batch_size'")
        section, name = parts
        if name not in data[section]:
            known = ", ".join(sorted(data[section]))
            raise ConfigError(f"unknown setting {key!r}; {section} has: {known}")
        data[section][name] = value
    return Config.from_dict(data)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected an object, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)} in {where or 'config'}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert lists to tuples."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where + ".")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(item, v, where) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value
