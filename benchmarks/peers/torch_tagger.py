"""A PyTorch peer of fat_tf's tagger and training methods, written for benchmarking.

The network and every method do the same work per step as fat_tf (``fat_tf/models`` and
``fat_tf/methods``), written the way a PyTorch user would write them:

* front end :class:`LogMel`: ``torch.stft`` (periodic Hann, ``n_fft``, ``hop``, centre
  padding by reflection or zeros as ``FrontEndConfig.pad_mode`` says), power,
  Slaney mel matrix (a dense matmul, as torchaudio does), ``10 log10(max(S, amin))``, a
  per-example ``max - top_db`` clamp and per-example standardisation;
* :class:`TimeFlip` augmentation (per example, probability 0.5, training only);
* :class:`Classifier`: 4 blocks of [conv3x3 (no bias), BatchNorm, ReLU] x 2 + avg-pool 2,
  then mean over time, max over frequency, dropout, Linear, PReLU, BatchNorm1d, dropout,
  Linear (logits). BatchNorm uses fat_tf's settings (Keras ``epsilon=1e-3``, Keras
  ``momentum=0.9`` = PyTorch ``momentum=0.1``), Adam uses Keras' ``epsilon=1e-7``;
* methods (:data:`METHODS`): supervised, mixup, VAT, mean teacher, MixMatch, each one
  :class:`TorchMethod` subclass whose :meth:`TorchMethod.train_step` is one Adam step.

Nothing here imports TensorFlow: the mel matrix is recomputed in numpy
(:func:`slaney_mel_filterbank`). ``benchmarks/train_step.py`` (unless ``--no-check``)
checks it, the log-mel and the logits against fat_tf, with fat_tf's weights copied into
the peer by :func:`load_keras_weights`.
"""

from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------- front end


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    lin = f / (200.0 / 3.0)
    logstep = math.log(6.4) / 27.0
    log = 15.0 + np.log(np.maximum(f, 1000.0) / 1000.0) / logstep
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    m = np.asarray(m, np.float64)
    lin = m * (200.0 / 3.0)
    logstep = math.log(6.4) / 27.0
    log = 1000.0 * np.exp(logstep * (np.maximum(m, 15.0) - 15.0))
    return np.where(m >= 15.0, log, lin)


def slaney_mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None
) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters (librosa's default), ``[bins, mels]``.

    Args:
        sample_rate: sample rate in Hz.
        n_fft: FFT size (``n_fft // 2 + 1`` bins).
        n_mels: number of mel bands.
        fmin: lowest band edge in Hz.
        fmax: highest band edge in Hz (``None`` = Nyquist).

    Returns:
        float32 ``[n_fft // 2 + 1, n_mels]``.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - left) / (centre - left)
    falling = (right - bins[None, :]) / (right - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (right - left))
    return weights.T.astype(np.float32)


class LogMel(nn.Module):
    """Waveform ``[B, L]`` to standardised log-mel ``[B, frames, n_mels]`` (no parameters).

    Args:
        sample_rate: sample rate in Hz.
        n_fft: FFT size and window length (periodic Hann).
        hop_length: hop between frames.
        n_mels: mel bands.
        fmin: lowest band edge in Hz.
        fmax: highest band edge in Hz.
        power: exponent of the magnitude (2 = power).
        amin: floor before the logarithm.
        top_db: per-example dynamic range clamp (``None`` disables).
        center: pad ``n_fft // 2`` on both sides.
        standardize: per-example zero mean, unit (population) standard deviation.
        pad_mode: ``reflect`` (numpy-style, fat_tf's default) or ``constant`` (zeros).
    """

    def __init__(self, sample_rate=44100, n_fft=2560, hop_length=694, n_mels=128, fmin=20.0,
                 fmax=22050.0, power=2.0, amin=1e-10, top_db=80.0, center=True,
                 standardize=True, pad_mode="reflect"):
        super().__init__()
        self.n_fft, self.hop_length, self.power = n_fft, hop_length, power
        self.amin, self.top_db, self.center = amin, top_db, center
        self.standardize, self.pad_mode = standardize, pad_mode
        # plain attributes, not buffers: constants, kept out of state_dict and the EMA
        self.window = torch.hann_window(n_fft, periodic=True)
        self.mel = torch.from_numpy(
            slaney_mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, self.n_fft, self.hop_length, window=self.window,
                          center=self.center, pad_mode=self.pad_mode, return_complex=True)
        energy = torch.view_as_real(spec).square().sum(-1)  # [B, bins, frames]
        if self.power != 2.0:
            energy = energy.pow(self.power / 2.0)
        mel = torch.matmul(energy.transpose(1, 2), self.mel)  # [B, frames, mels]
        db = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
        if self.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.top_db)
        if self.standardize:
            std, mean = torch.std_mean(db, dim=(1, 2), keepdim=True, correction=0)
            db = (db - mean) / (std + 1e-6)
        return db


class TimeFlip(nn.Module):
    """Reverse each example of ``[B, frames, mels]`` along time with probability ``rate``.

    Args:
        rate: flip probability per example.
    """

    def __init__(self, rate: float = 0.5):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        flip = torch.rand(x.shape[0]) < self.rate
        return torch.where(flip[:, None, None], x.flip(1), x)


# ----------------------------------------------------------------------------- network


BN_EPSILON = 1e-3  # Keras' default, which fat_tf keeps
BN_MOMENTUM = 0.1  # PyTorch convention; fat_tf's Keras momentum 0.9


def batch_norm(kind, channels: int) -> nn.Module:
    """A BatchNorm with fat_tf's settings (:data:`BN_EPSILON`, :data:`BN_MOMENTUM`).

    Args:
        kind: ``nn.BatchNorm1d`` or ``nn.BatchNorm2d``.
        channels: features.
    """
    return kind(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


class ConvBlock(nn.Module):
    """[conv3x3 (no bias) - BatchNorm - ReLU] x 2, then 2x2 average pooling.

    Args:
        cin: input channels.
        cout: output channels.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = batch_norm(nn.BatchNorm2d, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = batch_norm(nn.BatchNorm2d, cout)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, 2)


class Classifier(nn.Module):
    """Backbone + head: log-mel ``[B, frames, mels]`` to logits ``[B, n_classes]``.

    Feature maps are ``[B, C, time, freq]``; pooling is mean over time, then max over
    frequency (fat_tf's default ``time_mean_freq_max``).

    Args:
        channels: output channels of the four blocks.
        n_classes: logits.
        head_units: hidden width of the head.
        dropout1: dropout before the hidden Linear.
        dropout2: dropout before the logits Linear.
        channels_last: keep 4-D activations in ``torch.channels_last`` memory format.
    """

    def __init__(self, channels=(64, 128, 256, 512), n_classes=80, head_units=128,
                 dropout1=0.2, dropout2=0.1, channels_last=False):
        super().__init__()
        cins = (1, *channels[:-1])
        self.blocks = nn.Sequential(*[ConvBlock(a, b) for a, b in zip(cins, channels)])
        self.drop1 = nn.Dropout(dropout1)
        self.hidden = nn.Linear(channels[-1], head_units)
        self.prelu = nn.PReLU(1, init=0.25)
        self.bn = batch_norm(nn.BatchNorm1d, head_units)
        self.drop2 = nn.Dropout(dropout2)
        self.logits = nn.Linear(head_units, n_classes)
        self.channels_last = channels_last
        if channels_last:
            self.blocks.to(memory_format=torch.channels_last)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.unsqueeze(1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.blocks(x)
        x = x.mean(dim=2).amax(dim=2)  # mean over time, then max over frequency
        x = self.bn(self.prelu(self.hidden(self.drop1(x))))
        return self.logits(self.drop2(x))


class Tagger(nn.Module):
    """Waveform ``[B, L]`` -> log-mel -> time flip -> classifier -> logits.

    Args:
        frontend: keyword arguments of :class:`LogMel`.
        classifier: keyword arguments of :class:`Classifier`.
        time_flip: use the time-flip augmentation.
    """

    def __init__(self, frontend: dict, classifier: dict, time_flip: bool = True):
        super().__init__()
        self.logmel = LogMel(**frontend)
        self.augment = TimeFlip() if time_flip else nn.Identity()
        self.classifier = Classifier(**classifier)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-mel with a fresh draw of the augmentation (when in training mode)."""
        return self.augment(self.logmel(audio))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(audio))


def tagger_from_config(config, n_classes: int, channels_last: bool = False) -> Tagger:
    """The peer of ``fat_tf.models.build_tagger(config, n_classes)``.

    Args:
        config: a ``fat_tf.config.Config`` (front end, augment and model are read).
        n_classes: logits.
        channels_last: ``torch.channels_last`` activations in the CNN.
    """
    fe, m = config.frontend, config.model
    if m.backbone != "cnn" or m.pooling != "time_mean_freq_max":
        raise ValueError("the peer implements backbone 'cnn' with 'time_mean_freq_max' pooling")
    if config.augment.time_masks or config.augment.freq_masks:
        raise ValueError("the peer implements time flip only (no SpecAugment)")
    frontend = dict(sample_rate=fe.sample_rate, n_fft=fe.n_fft, hop_length=fe.hop_length,
                    n_mels=fe.n_mels, fmin=fe.fmin, fmax=fe.fmax, power=fe.power,
                    amin=fe.amin, top_db=fe.top_db, center=fe.center,
                    standardize=fe.standardize, pad_mode=getattr(fe, "pad_mode", "constant"))
    classifier = dict(channels=tuple(m.channels), n_classes=n_classes, head_units=m.head_units,
                      dropout1=m.dropout1, dropout2=m.dropout2, channels_last=channels_last)
    return Tagger(frontend, classifier, time_flip=config.augment.time_flip)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """``(trainable parameters, BatchNorm running-statistic values)`` of ``model``."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    stats = sum(b.numel() for n, b in model.named_buffers()
                if n.endswith(("running_mean", "running_var")))
    return trainable, stats


def load_keras_weights(tagger: Tagger, keras_tagger) -> None:
    """Copy the weights of a fat_tf tagger (``build_tagger``) into the peer.

    Keras convolutions see ``[B, time, freq, C]`` with kernels ``[kt, kf, cin, cout]``; the
    peer sees ``[B, C, time, freq]`` with weights ``[cout, cin, kt, kf]``.

    Args:
        tagger: the peer (same config).
        keras_tagger: a built fat_tf tagger.
    """
    def put(param: torch.Tensor, value) -> None:
        value = torch.as_tensor(np.asarray(value), dtype=param.dtype)
        if value.shape != param.shape:
            raise ValueError(f"shape {tuple(value.shape)} != {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(value)

    def put_bn(bn: nn.Module, kbn) -> None:
        put(bn.weight, kbn.gamma.numpy())
        put(bn.bias, kbn.beta.numpy())
        put(bn.running_mean, kbn.moving_mean.numpy())
        put(bn.running_var, kbn.moving_variance.numpy())

    kclf = keras_tagger.get_layer("classifier")
    backbone, head = kclf.get_layer("backbone"), kclf.get_layer("head")
    for i, block in enumerate(tagger.classifier.blocks):
        kblock = backbone.get_layer(f"block{i + 1}")
        for conv, bn, kconv, kbn in zip((block.conv1, block.conv2), (block.bn1, block.bn2),
                                        kblock.convs, kblock.norms):
            put(conv.weight, np.transpose(kconv.kernel.numpy(), (3, 2, 0, 1)))
            put_bn(bn, kbn)
    clf = tagger.classifier
    put(clf.hidden.weight, head.get_layer("hidden").kernel.numpy().T)
    put(clf.hidden.bias, head.get_layer("hidden").bias.numpy())
    put(clf.prelu.weight, head.get_layer("prelu").alpha.numpy().reshape(-1))
    put_bn(clf.bn, head.get_layer("bn"))
    put(clf.logits.weight, head.get_layer("logits").kernel.numpy().T)
    put(clf.logits.bias, head.get_layer("logits").bias.numpy())


# ----------------------------------------------------------------------------- loss pieces


def binary_kl(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid(target)) || Bernoulli(sigmoid(logits))) summed over classes.

    Args:
        target_logits: ``[B, C]`` reference logits.
        logits: ``[B, C]`` compared logits.

    Returns:
        ``[B]`` divergences.
    """
    p = torch.sigmoid(target_logits)
    per_class = (p * (F.logsigmoid(target_logits) - F.logsigmoid(logits))
                 + (1 - p) * (F.logsigmoid(-target_logits) - F.logsigmoid(-logits)))
    return per_class.sum(-1)


def normalize_per_example(d: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit L2 norm per example over all non-batch axes (max-scaled first, as fat_tf).

    Args:
        d: ``[B, ...]``.
        eps: floor of the norms.
    """
    dims = tuple(range(1, d.dim()))
    d = d / (d.abs().amax(dim=dims, keepdim=True) + eps)
    return d / (d.square().sum(dim=dims, keepdim=True).sqrt() + eps)


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-class ``p^(1/T) / (p^(1/T) + (1-p)^(1/T))`` computed as ``sigmoid(logit(p)/T)``."""
    p = p.clamp(1e-7, 1 - 1e-7)
    return torch.sigmoid(torch.logit(p) / temperature)


def mix(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``lam * a + (1 - lam) * b`` with one ``lam`` per example."""
    lam = lam.reshape(-1, *([1] * (a.dim() - 1)))
    return lam * a + (1 - lam) * b


def sigmoid_rampup(position: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)``, ``t = clip(position / length, 0, 1)``."""
    if length == 0:
        return 1.0
    t = min(max(position / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def linear_rampup(position: float, length: float) -> float:
    """``clip(position / length, 0, 1)``."""
    return 1.0 if length == 0 else min(max(position / length, 0.0), 1.0)


@contextlib.contextmanager
def frozen_batchnorm_statistics(model: nn.Module):
    """BatchNorm layers of ``model`` use batch statistics but keep their running ones.

    Sets every BatchNorm's momentum to 0 inside the block (``running = 1 * running +
    0 * batch`` leaves the statistics bit-identical), then restores it.

    Args:
        model: the protected module.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum


# ----------------------------------------------------------------------------- methods


class TorchMethod:
    """One training method: Adam on the tagger, :meth:`losses` gives the loss terms.

    Args:
        tagger: the peer tagger.
        hparams: a ``fat_tf.config.MethodConfig`` (or anything with the same fields).
        lr: Adam learning rate (constant; a schedule costs nothing measurable).
        total_steps: optimiser steps of the run (ramps are fractions of it).
        adam: extra ``torch.optim.Adam`` options (``foreach``, ``fused``).
    """

    name = "supervised"
    uses_unlabelled = False

    def __init__(self, tagger: Tagger, hparams, lr: float = 3e-3, total_steps: int = 100,
                 adam: dict | None = None):
        self.tagger = tagger
        self.hp = hparams
        self.total_steps = total_steps
        self.optimizer = torch.optim.Adam(tagger.parameters(), lr=lr, eps=1e-7, **(adam or {}))
        self.step = 0

    @property
    def classifier(self) -> Classifier:
        return self.tagger.classifier

    def progress(self) -> float:
        """Fraction of the run done."""
        return self.step / self.total_steps

    def losses(self, audio, labels, unlabelled) -> dict[str, tuple[torch.Tensor, float]]:
        """``{term: (loss, weight)}`` of one batch.

        Args:
            audio: ``[B, L]`` labelled waveforms.
            labels: ``[B, C]`` multi-hot targets.
            unlabelled: ``[B_u, L]`` unlabelled waveforms or None.
        """
        logits = self.tagger(audio)
        return {"supervised": (F.binary_cross_entropy_with_logits(logits, labels), 1.0)}

    def after_step(self) -> None:
        """Work done after each optimiser step (mean teacher's EMA)."""

    def train_step(self, audio, labels, unlabelled=None) -> dict[str, float]:
        """One optimiser step; returns the loss terms as floats.

        Args:
            audio: ``[B, L]`` labelled waveforms.
            labels: ``[B, C]`` multi-hot targets.
            unlabelled: ``[B_u, L]`` unlabelled waveforms or None.
        """
        self.tagger.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.losses(audio, labels, unlabelled)
        total = sum(weight * loss for loss, weight in terms.values())
        total.backward()
        self.optimizer.step()
        self.after_step()
        self.step += 1
        return {"loss": total.item(), **{k: v[0].item() for k, v in terms.items()}}


class Supervised(TorchMethod):
    """Plain supervised learning on the labelled batch."""


class Mixup(TorchMethod):
    """mixup of log-mels and labels with a per-example ``lambda ~ Beta(alpha, alpha)``."""

    name = "mixup"

    def losses(self, audio, labels, unlabelled):
        features = self.tagger.features(audio)
        b = features.shape[0]
        alpha = self.hp.mixup_alpha
        lam = torch.distributions.Beta(alpha, alpha).sample((b,))
        partner = torch.randperm(b)
        logits = self.classifier(mix(features, features[partner], lam))
        targets = mix(labels, labels[partner], lam)
        return {"mixup": (F.binary_cross_entropy_with_logits(logits, targets), 1.0)}


class VAT(TorchMethod):
    """Virtual adversarial training on labelled + unlabelled log-mels (sigmoid, binary KL).

    One clean pass (trains, updates BatchNorm), ``ip`` perturbed passes with a gradient
    w.r.t. the perturbation only, one adversarial pass; perturbed passes leave the
    BatchNorm statistics untouched.
    """

    name = "vat"
    uses_unlabelled = True

    def losses(self, audio, labels, unlabelled):
        b = audio.shape[0]
        both = audio if unlabelled is None else torch.cat([audio, unlabelled])
        features = self.tagger.features(both)
        logits = self.classifier(features)
        target = logits.detach()
        d = normalize_per_example(torch.randn_like(features))
        with frozen_batchnorm_statistics(self.classifier):
            for _ in range(self.hp.vat_ip):
                d.requires_grad_(True)
                divergence = binary_kl(target, self.classifier(features + self.hp.vat_xi * d))
                (grad,) = torch.autograd.grad(divergence.mean(), d)
                d = normalize_per_example(grad)
            adv_logits = self.classifier(features + self.hp.vat_eps * d)
        vat = binary_kl(target, adv_logits).mean()
        weight = self.hp.vat_weight * sigmoid_rampup(self.progress(), self.hp.rampup_fraction)
        return {
            "supervised": (F.binary_cross_entropy_with_logits(logits[:b], labels), 1.0),
            "vat": (vat, weight),
        }


class MeanTeacher(TorchMethod):
    """Student + EMA teacher (all parameters and buffers), consistency MSE of sigmoids.

    The student sees one augmentation draw of labelled + unlabelled log-mels, the teacher
    (eval mode, no gradient) another; the teacher is updated after every step with
    ``alpha = min(1 - 1/(step + 1), decay)``.
    """

    name = "meanteacher"
    uses_unlabelled = True

    def __init__(self, tagger: Tagger, *args, **kwargs):
        super().__init__(tagger, *args, **kwargs)
        self.teacher = copy.deepcopy(tagger).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        pairs = list(zip(self.teacher.state_dict().values(), tagger.state_dict().values()))
        self.ema_float = [(t, s) for t, s in pairs if t.is_floating_point()]
        self.ema_copy = [(t, s) for t, s in pairs if not t.is_floating_point()]

    def losses(self, audio, labels, unlabelled):
        b = audio.shape[0]
        both = audio if unlabelled is None else torch.cat([audio, unlabelled])
        mel = self.tagger.logmel(both)
        student = self.classifier(self.tagger.augment(mel))
        with torch.no_grad():
            teacher_view = self.tagger.augment(mel)  # an independent augmentation draw
            teacher = self.teacher.classifier(teacher_view)
        consistency = F.mse_loss(torch.sigmoid(student), torch.sigmoid(teacher))
        weight = self.hp.consistency_weight * sigmoid_rampup(self.progress(),
                                                             self.hp.rampup_fraction)
        return {
            "supervised": (F.binary_cross_entropy_with_logits(student[:b], labels), 1.0),
            "consistency": (consistency, weight),
        }

    def after_step(self):
        alpha = min(1.0 - 1.0 / (self.step + 1), self.hp.ema_decay)
        with torch.no_grad():
            targets = [t for t, _ in self.ema_float]
            torch._foreach_lerp_(targets, [s for _, s in self.ema_float], 1.0 - alpha)
            for t, s in self.ema_copy:
                t.copy_(s)


class MixMatch(TorchMethod):
    """MixMatch: K views of the unlabelled clips, sharpened per-class guesses, mixing,
    one forward of labelled + unlabelled mixes together."""

    name = "mixmatch"
    uses_unlabelled = True

    def losses(self, audio, labels, unlabelled):
        k = self.hp.mixmatch_k
        labelled_view = self.tagger.features(audio)
        b = labelled_view.shape[0]
        umel = self.tagger.logmel(unlabelled)
        views = [self.tagger.augment(umel) for _ in range(k)]
        with torch.no_grad(), frozen_batchnorm_statistics(self.classifier):
            mean = sum(torch.sigmoid(self.classifier(v)) for v in views) / k
            guess = sharpen(mean, self.hp.mixmatch_temperature)
        inputs = torch.cat([labelled_view, *views])
        targets = torch.cat([labels, *([guess] * k)])
        total = inputs.shape[0]
        partner = torch.randperm(total)
        alpha = self.hp.mixup_alpha
        lam = torch.distributions.Beta(alpha, alpha).sample((total,))
        lam = torch.maximum(lam, 1 - lam)
        logits = self.classifier(mix(inputs, inputs[partner], lam))
        mixed_targets = mix(targets, targets[partner], lam)
        supervised = F.binary_cross_entropy_with_logits(logits[:b], mixed_targets[:b])
        unlabelled_loss = F.mse_loss(torch.sigmoid(logits[b:]), mixed_targets[b:])
        weight = self.hp.mixmatch_weight * linear_rampup(self.progress(), self.hp.rampup_fraction)
        return {"supervised": (supervised, 1.0), "unlabelled": (unlabelled_loss, weight)}


METHODS: dict[str, type[TorchMethod]] = {
    cls.name: cls for cls in (Supervised, Mixup, VAT, MeanTeacher, MixMatch)
}
