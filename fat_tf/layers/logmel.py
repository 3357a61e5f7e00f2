"""Log-mel spectrogram front end as a Keras layer (raw waveform in, log-mel out).

The layer reproduces ``librosa.power_to_db(librosa.feature.melspectrogram(...))`` with
librosa's defaults for everything :class:`~fat_tf.config.FrontEndConfig` does not set:
periodic Hann window of ``n_fft`` samples, ``win_length == n_fft``, Slaney mel scale with
Slaney area normalisation, ``ref=1.0``. It runs entirely in TensorFlow ops that have CPU and
GPU kernels, so it works eagerly, inside ``tf.function``, under XLA (``jit_compile=True``)
and in an exported SavedModel that takes raw waveforms.

Design notes (measured on a 2-core AVX-512 CPU with ``benchmarks/frontend.py``):
    * One copy pads the waveform and reshapes it into rows of ``hop`` samples; a frame is
      ``ceil(n_fft / hop)`` consecutive rows. Frames are then cut and windowed in one pass
      (``tf.gather`` of whole rows outside XLA, fused slices under XLA, see
      :func:`windowed_frames`). For the FAT2019 recipe that is ~3x faster than
      ``tf.signal.frame`` (a gather of 2-sample sub-frames, as ``gcd(2560, 694) = 2``) plus a
      window multiply outside XLA, and ~15% faster under XLA.
    * The FFT is ``tf.signal.rfft`` with ``fft_length=n_fft`` (``tf.signal.stft`` defaults to
      the next power of two, 4096 for the FAT2019 recipe, which would change the bins).
    * The power spectrum is ``re**2 + im**2`` (no square root), and the mel projection is a
      few dense matmuls over contiguous bands of mels that skip the all-zero part of the
      filterbank (98.5% of the FAT2019 filterbank is zeros: bins below ``fmin`` or above
      ``fmax`` are never read, and low mels only read a few bins): 4 matmuls doing 4.9x fewer
      multiply-adds than the dense ``[1281, 128]`` one.
    * Everything is computed in float32, whatever the dtype policy (see :class:`LogMel`).
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from fat_tf.config import PAD_MODES, FrontEndConfig

_MAX_SLICED_PIECES = 8
STD_EPSILON = 1e-6
_DB_PER_NEPER = 10.0 / math.log(10.0)


# ----------------------------------------------------------------------------- numpy helpers
def hz_to_mel(frequencies: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale (librosa's ``htk=False``): linear below 1 kHz, logarithmic above.

    Args:
        frequencies: frequencies in Hz.

    Returns:
        The mel values as a float64 array.
    """
    f = np.asarray(frequencies, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    linear = f / f_sp
    log_part = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, linear)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`.

    Args:
        mels: mel values (Slaney scale).

    Returns:
        The frequencies in Hz as a float64 array.
    """
    m = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    linear = m * f_sp
    log_part = min_log_hz * np.exp(logstep * (np.maximum(m, min_log_mel) - min_log_mel))
    return np.where(m >= min_log_mel, log_part, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Triangular mel filterbank, Slaney scale and Slaney area normalisation.

    Equal to ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
    fmax=fmax).T`` (librosa's defaults ``htk=False, norm='slaney'``): filter ``m`` is a
    triangle over FFT bin frequencies with corners at mel points ``m, m+1, m+2`` of
    ``n_mels + 2`` points evenly spaced on the mel scale between ``fmin`` and ``fmax``,
    scaled by ``2 / (f[m+2] - f[m])`` so each filter has (roughly) unit area in Hz.
    Computed in float64, returned as float32.

    Args:
        sample_rate: audio sample rate in Hz.
        n_fft: FFT size; the filterbank has ``n_fft // 2 + 1`` rows.
        n_mels: number of mel bands (columns).
        fmin: lowest band edge in Hz.
        fmax: highest band edge in Hz; ``None`` means ``sample_rate / 2``.

    Returns:
        A ``[n_fft // 2 + 1, n_mels]`` float32 array; ``power_spectrum @ filterbank`` gives
        the mel spectrogram.
    """
    if fmax is None:
        fmax = sample_rate / 2.0
    if not 0.0 <= fmin < fmax:
        raise ValueError(f"need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel_points = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    hz_points = mel_to_hz(mel_points)
    widths = np.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return weights.T.astype(np.float32)


def periodic_hann(n: int) -> np.ndarray:
    """Periodic Hann window, as ``scipy.signal.get_window('hann', n, fftbins=True)``.

    Args:
        n: window length in samples.

    Returns:
        A float32 array of length ``n``.
    """
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def mel_bands(weights: np.ndarray, max_groups: int = 4, overhead: int = 4096) -> list[tuple]:
    """Split a banded filterbank into contiguous groups of mels for cheaper matmuls.

    Each group ``(bin_start, bin_stop, mel_start, mel_stop)`` covers every nonzero weight
    of its mels, so ``concat([P[..., b0:b1] @ W[b0:b1, m0:m1] for each group])`` equals
    ``P @ W`` exactly. Groups minimise ``sum(bins * mels) + overhead * groups`` (dynamic
    programming), i.e. the multiply-adds plus a fixed cost per extra matmul.

    Args:
        weights: ``[bins, mels]`` filterbank.
        max_groups: upper bound on the number of groups.
        overhead: cost of one extra group, in multiply-adds per frame.

    Returns:
        The list of groups, ordered by mel.
    """
    n_bins, n_mels = weights.shape
    nonzero = weights > 0
    used = nonzero.any(axis=0)
    lo = np.where(used, np.argmax(nonzero, axis=0), n_bins)
    hi = np.where(used, n_bins - np.argmax(nonzero[::-1], axis=0), 0)

    def spans(b: int) -> tuple[np.ndarray, np.ndarray]:
        """Bin ranges of the groups ``a:b`` for every ``a < b`` (all-zero mels: one bin)."""
        start = np.minimum.accumulate(lo[:b][::-1])[::-1]
        stop = np.maximum.accumulate(hi[:b][::-1])[::-1]
        empty = stop <= start
        return np.where(empty, 0, start), np.where(empty, 1, stop)

    # best[g, b]: cheapest split of mels [0, b) into g groups; choice[g, b]: start of the last.
    best = np.full((max_groups + 1, n_mels + 1), np.inf)
    best[0, 0] = 0.0
    choice = np.zeros((max_groups + 1, n_mels + 1), dtype=int)
    for b in range(1, n_mels + 1):
        start, stop = spans(b)
        cost = (stop - start) * (b - np.arange(b)) + overhead
        for g in range(1, max_groups + 1):
            total = best[g - 1, :b] + cost
            choice[g, b] = int(np.argmin(total))
            best[g, b] = total[choice[g, b]]
    groups, b, g = [], n_mels, int(np.argmin(best[1:, n_mels])) + 1
    while g > 0:
        a = int(choice[g, b])
        start, stop = spans(b)
        groups.append((int(start[a]), int(stop[a]), a, b))
        b, g = a, g - 1
    return groups[::-1]


# ----------------------------------------------------------------------------- tensor helpers
def in_xla_context() -> bool:
    """Whether ops are being traced for XLA (``tf.function(jit_compile=True)``, any depth).

    Uses TensorFlow's internal ``control_flow_util`` (what Keras 2 used); if it ever goes
    away this answers ``True``, which selects the framing that is good everywhere.

    Returns:
        ``True`` inside an XLA compilation context (or when unsure).
    """
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - depends on TensorFlow internals
        return True
    graph = tf.compat.v1.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


def reflect_indices(length: tf.Tensor, pad: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Source indices of ``numpy.pad(x, pad, mode='reflect')`` for the two padded edges.

    ``numpy`` (and therefore librosa) keeps reflecting when ``pad >= length``; that is a
    triangle wave of period ``2 * (length - 1)`` over the original indices, which this
    computes directly, so any length works (length 1 repeats its only sample).

    Args:
        length: number of samples of the unpadded signal (scalar int32 tensor, >= 1).
        pad: samples added on each side.

    Returns:
        ``(left, right)`` int32 index vectors of length ``pad`` each.
    """
    period = tf.maximum(2 * (length - 1), 1)

    def fold(i: tf.Tensor) -> tf.Tensor:
        m = tf.math.floormod(i, period)
        return tf.where(m >= length, period - m, m)

    offsets = tf.range(pad, dtype=tf.int32)
    return fold(offsets - pad), fold(length + offsets)


def to_blocks(x: tf.Tensor, n_fft: int, hop: int, pad: int, mode: str) -> tuple:
    """Pad ``[batch, samples]`` and reshape it into rows of ``hop`` samples.

    One copy does the centre padding (``pad`` samples each side, zeros or reflection), the
    zeros needed to fill the last row, and drops samples no frame reads. Frame ``t`` then
    starts at row ``t``, and its ``n_fft`` samples run over ``ceil(n_fft / hop)`` rows.

    Args:
        x: float32 waveforms ``[batch, samples]``, ``samples >= 1``.
        n_fft: frame length.
        hop: hop between frames.
        pad: samples added on each side (``n_fft // 2`` when centring, else 0).
        mode: ``constant`` (zeros) or ``reflect`` (numpy/librosa reflection, defined for
            every length including ``samples <= pad``, see :func:`reflect_indices`).

    Returns:
        ``(blocks, frames)``: float32 ``[batch, frames + pieces - 1, hop]`` and the number
        of frames ``1 + max(0, samples + 2 * pad - n_fft) // hop`` (a scalar tensor). A
        padded signal shorter than ``n_fft`` is zero-filled to one frame.
    """
    batch, length = tf.shape(x)[0], tf.shape(x)[1]
    frames = 1 + tf.maximum(length + 2 * pad - n_fft, 0) // hop
    rows = frames + _pieces(n_fft, hop) - 1
    tail = tf.maximum(rows * hop - length - 2 * pad, 0)
    if mode == "reflect" and pad > 0:
        left, right = reflect_indices(length, pad)
        parts = [tf.gather(x, left, axis=1), x, tf.gather(x, right, axis=1)]
        x = tf.concat([*parts, tf.zeros([batch, tail], x.dtype)], axis=1)
    else:
        x = tf.pad(x, [[0, 0], [pad, pad + tail]])
    return tf.reshape(x[:, : rows * hop], [batch, rows, hop]), frames


def windowed_frames(blocks: tf.Tensor, frames: tf.Tensor, window: np.ndarray) -> tf.Tensor:
    """Windowed frames from :func:`to_blocks` rows, in one pass over memory.

    Frame ``t`` is rows ``t .. t + pieces - 1`` laid end to end. Two formulations, chosen by
    measurement: without XLA, one ``tf.gather`` of whole rows and a multiply by the window
    zero-extended to ``pieces * hop`` samples (the FFT then crops the frame to ``n_fft``,
    which costs nothing, see :func:`rfft_cropped`); under XLA, whose gather is slow on CPU,
    strided slices each multiplied by their part of the window and concatenated (one fused
    loop).

    Args:
        blocks: float32 ``[batch, rows, hop]``.
        frames: number of frames (``rows - pieces + 1``).
        window: float32 window of length ``n_fft``.

    Returns:
        float32 ``[batch, frames, L]`` with ``L = n_fft`` (XLA) or ``pieces * hop``; only
        the first ``n_fft`` samples of each frame are nonzero.
    """
    n_fft, hop = len(window), blocks.shape[-1]
    pieces = _pieces(n_fft, hop)
    if pieces > _MAX_SLICED_PIECES or not in_xla_context():
        extended = np.zeros(pieces * hop, np.float32)
        extended[:n_fft] = window
        rows = tf.range(frames)[:, None] + tf.range(pieces)[None, :]
        gathered = tf.gather(blocks, rows, axis=1)
        return tf.reshape(gathered, [tf.shape(blocks)[0], frames, pieces * hop]) * extended
    parts = []
    for i in range(pieces):
        width = min(hop, n_fft - i * hop)
        parts.append(blocks[:, i : i + frames, :width] * window[i * hop : i * hop + width])
    return tf.concat(parts, axis=-1) if pieces > 1 else parts[0]


def _pieces(n_fft: int, hop: int) -> int:
    """Rows of ``hop`` samples that one frame of ``n_fft`` samples touches."""
    return -(-n_fft // hop)


def power_spectrum(frames: tf.Tensor, n_fft: int, power: float) -> tf.Tensor:
    """``|rfft(frames[..., :n_fft])| ** power`` over the last axis (``n_fft // 2 + 1`` bins).

    Args:
        frames: float32 ``[..., L]`` windowed frames, ``L >= n_fft`` (cropped to ``n_fft``).
        n_fft: FFT length.
        power: exponent of the magnitude (2 = power, 1 = magnitude).

    Returns:
        float32 ``[..., n_fft // 2 + 1]``.
    """
    spec = rfft_cropped(frames, n_fft)
    energy = tf.math.square(tf.math.real(spec)) + tf.math.square(tf.math.imag(spec))
    if power == 2.0:
        return energy
    if power == 1.0:
        return tf.math.sqrt(energy)
    return tf.math.pow(energy, power / 2.0)


def rfft_cropped(frames: tf.Tensor, n_fft: int) -> tf.Tensor:
    """``tf.signal.rfft(frames[..., :n_fft])`` without materialising the crop.

    The RFFT kernel crops inputs longer than ``fft_length`` for free, but TensorFlow's
    registered RFFT gradient does not handle that case, so this supplies the gradient:
    the gradient of the cropped transform, zero-padded back to the input's length.

    Args:
        frames: float32 ``[..., L]`` with ``L >= n_fft``.
        n_fft: FFT length.

    Returns:
        complex64 ``[..., n_fft // 2 + 1]``.
    """
    if frames.shape[-1] == n_fft:
        return tf.signal.rfft(frames, fft_length=[n_fft])

    @tf.custom_gradient
    def forward(x):
        def grad(dspec):
            cropped = x[..., :n_fft]
            with tf.GradientTape() as tape:
                tape.watch(cropped)
                spec = tf.signal.rfft(cropped, fft_length=[n_fft])
            dcropped = tape.gradient(spec, cropped, output_gradients=dspec)
            padding = [[0, 0]] * (x.shape.rank - 1) + [[0, tf.shape(x)[-1] - n_fft]]
            return tf.pad(dcropped, padding)

        return tf.signal.rfft(x, fft_length=[n_fft]), grad

    return forward(frames)


def apply_mel(power: tf.Tensor, weights: np.ndarray, bands: list[tuple]) -> tf.Tensor:
    """Project ``[batch, frames, bins]`` onto mels with one matmul per band of mels.

    Args:
        power: float32 power spectrogram ``[batch, frames, bins]``.
        weights: float32 ``[bins, mels]`` filterbank.
        bands: groups from :func:`mel_bands`.

    Returns:
        float32 ``[batch, frames, mels]``.
    """
    outputs = []
    for b0, b1, m0, m1 in bands:
        part = power if (b0, b1) == (0, power.shape[-1]) else power[..., b0:b1]
        outputs.append(tf.linalg.matmul(part, tf.constant(weights[b0:b1, m0:m1])))
    return tf.concat(outputs, axis=-1) if len(outputs) > 1 else outputs[0]


def power_to_db(mel: tf.Tensor, amin: float, top_db: float | None) -> tf.Tensor:
    """``10 * log10(max(S, amin))`` (ref 1.0), clamped to each example's ``max - top_db``.

    Args:
        mel: float32 ``[batch, frames, mels]`` power values.
        amin: floor before the logarithm.
        top_db: dynamic range kept below each example's maximum; ``None`` keeps all.

    Returns:
        float32 dB values of the same shape.
    """
    db = _DB_PER_NEPER * tf.math.log(tf.maximum(mel, amin))
    if top_db is None:
        return db
    peak = tf.reduce_max(db, axis=[1, 2], keepdims=True)
    return tf.maximum(db, peak - top_db)


def standardize(x: tf.Tensor, epsilon: float = STD_EPSILON) -> tf.Tensor:
    """Per-example ``(x - mean) / (std + epsilon)`` over all non-batch axes.

    Args:
        x: float32 ``[batch, frames, mels]``.
        epsilon: added to the standard deviation (a constant clip maps to zeros).

    Returns:
        The standardised tensor.
    """
    mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    return (x - mean) / (tf.math.sqrt(variance) + epsilon)


# ----------------------------------------------------------------------------- the layer
@keras.saving.register_keras_serializable(package="fat_tf")
class LogMel(keras.layers.Layer):
    """Waveform ``[batch, samples]`` to log-mel ``[batch, frames, n_mels]``.

    Pipeline (all per example, no statistic ever crosses the batch): optional centre
    padding by ``n_fft // 2``; periodic Hann window; real FFT of ``n_fft`` points;
    ``|X| ** power``; Slaney mel filterbank; ``10 * log10(max(S, amin))``; clamp to the
    example's ``max - top_db``; optional standardisation to zero mean and unit variance.

    Frames: ``frames = 1 + samples // hop_length`` with ``center=True`` (librosa's
    convention, :meth:`FrontEndConfig.num_frames`), any ``samples >= 1``. With
    ``center=False`` a clip shorter than ``n_fft`` is zero-padded at the end to one frame
    (librosa raises instead).

    Padding: ``pad_mode='constant'`` (zeros) is the default because it is what librosa
    0.10+ uses by default (``librosa.feature.melspectrogram(pad_mode='constant')`` in 0.11),
    so the golden tests compare against librosa's defaults. ``'reflect'`` reproduces
    librosa < 0.10 (the era of the public FAT2019 kernels) exactly, for every length: numpy's
    reflection is continued past the signal's ends when the clip is shorter than
    ``n_fft // 2`` (see :func:`reflect_indices`), so no fallback is needed.

    Precision: the front end always computes in float32 (a float16 power spectrum
    overflows above 65504 and dB values near 100 would only keep ~0.06 dB of resolution).
    By default the layer's dtype policy is ``float32`` whatever the global policy, so it
    outputs float32 and the next layer casts to its own compute dtype (under
    ``mixed_float16`` that is the first convolution). Pass an explicit ``dtype`` policy
    (e.g. ``"mixed_bfloat16"``) to get the output cast to that policy's compute dtype; the
    inputs are never autocast (``autocast=False``), so the waveform keeps float32 precision.

    Args:
        sample_rate: sample rate in Hz (used for the filterbank only).
        n_fft: FFT size and window length (even when ``center=True``).
        hop_length: hop between frames in samples.
        n_mels: number of mel bands.
        fmin: lowest mel band edge in Hz.
        fmax: highest mel band edge in Hz (``None`` = ``sample_rate / 2``).
        power: exponent of the magnitude spectrogram (2 = power).
        amin: floor before the logarithm.
        top_db: per-example dynamic range clamp in dB (``None`` disables).
        center: pad ``n_fft // 2`` samples on both sides so frame ``t`` is centred on
            sample ``t * hop_length``.
        standardize: per-example zero mean, unit standard deviation.
        pad_mode: ``constant`` (zeros, librosa >= 0.10 default) or ``reflect``.
        **kwargs: base layer arguments (``name``, ``dtype``, ``trainable``).
    """

    def __init__(
        self,
        sample_rate: int = 44100,
        n_fft: int = 2560,
        hop_length: int = 694,
        n_mels: int = 128,
        fmin: float = 20.0,
        fmax: float | None = 22050.0,
        power: float = 2.0,
        amin: float = 1e-10,
        top_db: float | None = 80.0,
        center: bool = True,
        standardize: bool = True,
        pad_mode: str = "constant",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        _validate(n_fft, hop_length, n_mels, center, pad_mode, amin, top_db, power)
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.fmin = float(fmin)
        self.fmax = None if fmax is None else float(fmax)
        self.power = float(power)
        self.amin = float(amin)
        self.top_db = None if top_db is None else float(top_db)
        self.center = bool(center)
        self.standardize = bool(standardize)
        self.pad_mode = pad_mode
        self._window = periodic_hann(self.n_fft)
        self._weights = mel_filterbank(
            self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax
        )
        self._bands = tuple(mel_bands(self._weights))

    @classmethod
    def from_frontend_config(cls, config: FrontEndConfig, **kwargs) -> LogMel:
        """Build the layer from a :class:`~fat_tf.config.FrontEndConfig`.

        Args:
            config: the front end settings.
            **kwargs: layer arguments that override the config or add to it
                (``pad_mode``, ``name``, ``dtype``...).

        Returns:
            The layer.
        """
        return cls(**{**dataclasses.asdict(config), **kwargs})

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples.

        Args:
            num_samples: waveform length.

        Returns:
            The number of output frames (as :meth:`FrontEndConfig.num_frames`).
        """
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + max(0, num_samples - self.n_fft) // self.hop_length

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        if x.shape.rank != 2:
            raise ValueError(f"LogMel expects [batch, samples] waveforms, got shape {x.shape}")
        x = tf.cast(x, tf.float32)
        pad = self.n_fft // 2 if self.center else 0
        blocks, frames = to_blocks(x, self.n_fft, self.hop_length, pad, self.pad_mode)
        spec = power_spectrum(windowed_frames(blocks, frames, self._window), self.n_fft, self.power)
        out = power_to_db(apply_mel(spec, self._weights, self._bands), self.amin, self.top_db)
        if self.standardize:
            out = standardize(out)
        return tf.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        batch, samples = input_shape[0], input_shape[1]
        frames = None if samples is None else self.num_frames(samples)
        return (batch, frames, self.n_mels)

    def get_config(self):
        config = super().get_config()
        config.update(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            power=self.power,
            amin=self.amin,
            top_db=self.top_db,
            center=self.center,
            standardize=self.standardize,
            pad_mode=self.pad_mode,
        )
        return config


def _validate(n_fft, hop_length, n_mels, center, pad_mode, amin, top_db, power) -> None:
    """Reject settings the layer cannot honour, with a message naming the setting."""
    if n_fft < 2 or hop_length < 1 or n_mels < 1:
        raise ValueError(
            f"need n_fft >= 2, hop_length >= 1, n_mels >= 1; got {n_fft}, {hop_length}, {n_mels}"
        )
    if center and n_fft % 2:
        raise ValueError(
            f"n_fft={n_fft} is odd: with center=True the frame count would be "
            "1 + (samples - 1) // hop, not FrontEndConfig.num_frames; use an even n_fft"
        )
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    if amin <= 0 or power <= 0 or (top_db is not None and top_db < 0):
        raise ValueError(f"need amin > 0, power > 0, top_db >= 0; got {amin}, {power}, {top_db}")
