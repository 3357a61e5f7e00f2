"""The audio of the demo dataset: a synthetic sound event per class and the clip mix.

:data:`SYNTHESIZERS` holds one synthesiser per class of
:data:`~fat_tf.data.demo_plan.DEMO_CLASSES`; :func:`synthesize_clip` renders a planned
clip (coloured background noise plus one event per true label, and for the noisy set a
band-limited channel with mains hum on some clips) from its own random stream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

from fat_tf.data.demo_plan import SAMPLE_RATE, SPLITS, DemoClip, loguniform, seconds_to_samples

SNR_DB = (-2.0, 16.0)  # event-to-background ratio of curated and test clips
NOISY_SNR_SHIFT_DB = -5.0


def _time(n: int) -> np.ndarray:
    """Sample times in seconds."""
    return np.arange(n) / SAMPLE_RATE


def _rfft_freqs(n: int) -> tuple[int, np.ndarray]:
    """A fast FFT length >= ``n`` and its real-FFT bin frequencies in Hz."""
    m = scipy.fft.next_fast_len(n, real=True)
    return m, np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE)


def _shaped_noise(rng: np.random.Generator, n: int, gain: Callable[[np.ndarray], np.ndarray]):
    """Gaussian noise of length ``n`` with magnitude response ``gain(freqs_hz)``, unit RMS.

    The spectrum is drawn directly (complex Gaussian bins), so one inverse FFT suffices.
    """
    m, freqs = _rfft_freqs(n)
    spectrum = rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)
    noise = scipy.fft.irfft(spectrum * gain(freqs), m)[:n]
    return _unit_rms(noise)


def _band_gain(centres, octaves, weights=None) -> Callable[[np.ndarray], np.ndarray]:
    """Sum of Gaussian bands on a log-frequency axis.

    Args:
        centres: band centres in Hz.
        octaves: band widths (standard deviation) in octaves.
        weights: band amplitudes (default all 1).
    """
    centres = np.atleast_1d(np.asarray(centres, dtype=float))
    octaves = np.broadcast_to(np.asarray(octaves, dtype=float), centres.shape)
    weights = np.ones_like(centres) if weights is None else np.asarray(weights, dtype=float)

    def gain(freqs: np.ndarray) -> np.ndarray:
        logf = np.log2(np.maximum(freqs, 10.0))[None, :]
        z = (logf - np.log2(centres)[:, None]) / octaves[:, None]
        return (weights[:, None] * np.exp(-0.5 * z**2)).sum(axis=0)

    return gain


def _tilt_gain(beta: float) -> Callable[[np.ndarray], np.ndarray]:
    """Power spectrum ``1/f**beta`` (0 white, 1 pink, 2 brown), flat below 20 Hz."""
    return lambda freqs: np.maximum(freqs, 20.0) ** (-beta / 2)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale ``x`` to unit RMS (silence stays silence)."""
    rms = np.sqrt(np.mean(x**2))
    return x / rms if rms > 0 else x


def _slow_noise(rng: np.random.Generator, n: int, rate_hz: float) -> np.ndarray:
    """Smooth random modulation: unit Gaussian knots at ``rate_hz``, linearly interpolated."""
    knots = rng.standard_normal(int(n * rate_hz / SAMPLE_RATE) + 2)
    return np.interp(np.arange(n) * (rate_hz / SAMPLE_RATE), np.arange(knots.size), knots)


def _regular_onsets(rng: np.random.Generator, n: int, rate: float, jitter: float = 0.2):
    """Roughly periodic onset samples at ``rate`` per second, timing jittered by ``jitter``.

    The first onset falls in the first half of the span, so there is always at least one.
    """
    count = int(n / SAMPLE_RATE * rate) + 2
    gaps = (1.0 + jitter * rng.uniform(-1, 1, count)) / rate
    first = rng.uniform(0, min(0.3 / rate, 0.5 * n / SAMPLE_RATE))
    times = first + np.concatenate([[0.0], np.cumsum(gaps)[:-1]])
    onsets = (times * SAMPLE_RATE).astype(np.int64)
    return onsets[onsets < n]


def _poisson_onsets(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """At least one onset, Poisson-distributed at ``rate`` per second."""
    count = max(1, int(rng.poisson(rate * n / SAMPLE_RATE)))
    return np.sort(rng.integers(0, n, count))


def _contour_onsets(rate: np.ndarray) -> np.ndarray:
    """Onsets of a pulse train whose instantaneous rate (Hz) is ``rate`` per sample."""
    cycles = np.floor(np.cumsum(rate) / SAMPLE_RATE)
    return np.flatnonzero(np.diff(cycles, prepend=-1.0) > 0)


def _excite(n: int, onsets: np.ndarray, amps, kernel: np.ndarray) -> np.ndarray:
    """Place ``kernel`` at every onset with amplitude ``amps`` (FFT convolution)."""
    impulses = np.zeros(n)
    np.add.at(impulses, onsets, amps)
    kernel = kernel[:n]
    m = scipy.fft.next_fast_len(n + kernel.size - 1, real=True)
    return scipy.fft.irfft(scipy.fft.rfft(impulses, m) * scipy.fft.rfft(kernel, m), m)[:n]


def _modal_kernel(freqs, amps, taus, max_length: int) -> np.ndarray:
    """Sum of exponentially decaying sinusoids (one per mode).

    Args:
        freqs: mode frequencies in Hz.
        amps: mode amplitudes.
        taus: mode decay time constants in seconds.
        max_length: longest kernel in samples (it stops anyway after 5 time constants).
    """
    length = min(max_length, int(5 * np.max(taus) * SAMPLE_RATE) + 1)
    t = _time(length)[None, :]
    freqs, amps, taus = (np.asarray(v, dtype=float)[:, None] for v in (freqs, amps, taus))
    return (amps * np.exp(-t / taus) * np.sin(2 * np.pi * freqs * t)).sum(axis=0)


def _noise_click(rng: np.random.Generator, tau: float, bright: bool) -> np.ndarray:
    """A short decaying noise burst (time constant ``tau`` s); ``bright`` high-passes it."""
    length = max(8, int(6 * tau * SAMPLE_RATE))
    click = rng.standard_normal(length) * np.exp(-_time(length) / tau)
    return np.diff(click, prepend=0.0) if bright else click


def _hann_gate(n: int, onsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sum of Hann windows starting at ``onsets`` with ``lengths`` samples, clipped to [0, 1]."""
    gate = np.zeros(n)
    for start, length in zip(onsets.tolist(), lengths.tolist(), strict=True):
        window = np.hanning(max(int(length), 3))[: n - start]
        gate[start : start + window.size] += window
    return np.minimum(gate, 1.0)


def _chirps(
    rng: np.random.Generator, n: int, onsets: np.ndarray, f_range, ratio_range, dur_range
) -> np.ndarray:
    """Upward exponential sine sweeps starting at ``onsets`` (vectorised over all chirps).

    Args:
        rng: random stream.
        n: output length in samples.
        onsets: chirp start samples (sorted).
        f_range: range of start frequencies in Hz (log-uniform).
        ratio_range: range of end/start frequency ratios.
        dur_range: range of chirp durations in seconds.
    """
    k = onsets.size
    f_start = loguniform(rng, *f_range, k)
    dur = rng.uniform(*dur_range, k)
    speed = np.log(rng.uniform(*ratio_range, k)) / dur
    index = np.arange(n)
    seg = np.maximum(np.searchsorted(onsets, index, side="right") - 1, 0)
    tau = (index - onsets[seg]) / SAMPLE_RATE
    inside = (tau >= 0) & (tau < dur[seg])
    phase = 2 * np.pi * f_start[seg] * np.expm1(speed[seg] * tau) / speed[seg]
    envelope = np.where(inside, np.sin(np.pi * np.clip(tau / dur[seg], 0, 1)) ** 2, 0.0)
    return envelope * (np.sin(phase) + rng.uniform(0, 0.4) * np.sin(2 * phase))


def _attack_release(n: int, attack: float, release: float) -> np.ndarray:
    """Linear fade-in over ``attack`` s and fade-out over ``release`` s."""
    t = _time(n)
    rise = np.clip(t / max(attack, 1e-3), 0, 1)
    fall = np.clip((t[-1] - t) / max(release, 1e-3), 0, 1)
    return np.minimum(rise, fall)


# ---------------------------------------------------------------------- sound event classes


def _accordion(rng: np.random.Generator, n: int) -> np.ndarray:
    """Harmonic reed tone: 1-3 notes, vibrato, musette tremolo, soft attack."""
    t = _time(n)
    notes = rng.choice([-5, -3, 0, 2, 4, 5, 7], size=int(rng.integers(1, 4)))
    note = np.minimum((t / t[-1] * notes.size).astype(int), notes.size - 1)
    pitch = loguniform(rng, 180, 650) * 2.0 ** (notes[note] / 12)
    vibrato = 1 + rng.uniform(0.002, 0.012) * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    phase = 2 * np.pi * np.cumsum(pitch * vibrato) / SAMPLE_RATE
    harmonics = np.arange(1, int(rng.integers(5, 11)) + 1)
    harmonics = harmonics[harmonics * pitch.max() < 16000]
    amps = harmonics ** -rng.uniform(0.5, 1.5) * rng.uniform(0.5, 1.0, harmonics.size)
    tone = (amps[:, None] * np.sin(harmonics[:, None] * phase[None, :])).sum(axis=0)
    tremolo = 1 + rng.uniform(0.05, 0.25) * np.sin(2 * np.pi * rng.uniform(1, 6) * t)
    return tone * tremolo * _attack_release(n, rng.uniform(0.02, 0.2), rng.uniform(0.05, 0.3))


def _buzz(rng: np.random.Generator, n: int) -> np.ndarray:
    """Buzzing pulse train (insect / electric): wandering pitch, resonances, AM flutter."""
    rate = loguniform(rng, 80, 250) * (1 + 0.04 * _slow_noise(rng, n, 3.0))
    onsets = _contour_onsets(rate)
    modes = int(rng.integers(2, 4))
    kernel = _modal_kernel(
        loguniform(rng, 400, 5000, modes),
        rng.uniform(0.3, 1, modes),
        rng.uniform(0.001, 0.005, modes),
        n,
    )
    pulses = _excite(n, onsets, 1 + 0.15 * rng.standard_normal(onsets.size), kernel)
    flutter = 1 + rng.uniform(0.3, 0.9) * np.sin(2 * np.pi * rng.uniform(3, 25) * _time(n))
    return pulses * flutter


def _bicycle_bell(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bright bell of 3 partials; 1-4 rings, each a quick trill of clapper strikes."""
    rings = _regular_onsets(rng, n, rng.uniform(1.2, 3.5), jitter=0.2)[: int(rng.integers(1, 5))]
    trill_rate, trill_len = rng.uniform(12, 25), rng.uniform(0.0, 0.4)
    strikes = np.concatenate(
        [r + np.arange(0, trill_len + 1e-9, 1 / trill_rate) * SAMPLE_RATE for r in rings]
    ).astype(np.int64)
    strikes = strikes[strikes < n]
    f1 = loguniform(rng, 2000, 5000)
    freqs = f1 * np.array([1.0, rng.uniform(1.35, 1.65), rng.uniform(2.3, 3.0)])
    taus = rng.uniform(0.15, 0.7) * np.array([1.0, 0.7, 0.5])
    kernel = _modal_kernel(freqs, [1.0, rng.uniform(0.2, 0.7), rng.uniform(0.1, 0.5)], taus, n)
    return _excite(n, strikes, rng.uniform(0.5, 1.0, strikes.size), kernel)


def _church_bell(rng: np.random.Generator, n: int) -> np.ndarray:
    """Low bell with inharmonic partials (hum, prime, tierce, quint, nominal...), long decay."""
    ratios = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01])
    freqs = loguniform(rng, 180, 700) * ratios * (1 + 0.015 * rng.standard_normal(ratios.size))
    taus = rng.uniform(0.6, 2.5) / np.sqrt(ratios)
    kernel = _modal_kernel(freqs, rng.uniform(0.2, 1.0, ratios.size), taus, n)
    strikes = _regular_onsets(rng, n, rng.uniform(0.5, 1.2), jitter=0.1)[: int(rng.integers(1, 4))]
    return _excite(n, strikes, rng.uniform(0.7, 1.0, strikes.size), kernel)


def _chirp_and_tweet(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bird-like upward FM chirps, 3-12 per second."""
    onsets = _regular_onsets(rng, n, rng.uniform(3, 12), jitter=0.35)
    low = loguniform(rng, 1500, 4000)
    return _chirps(rng, n, onsets, (low, low * 1.3), (1.3, 2.5), (0.03, 0.15))


def _bass_drum(rng: np.random.Generator, n: int) -> np.ndarray:
    """Low thumps with a falling pitch and a faint click, at a steady beat."""
    f_start, f_end = rng.uniform(80, 170), rng.uniform(40, 70)
    tau_pitch, tau_amp = rng.uniform(0.015, 0.06), rng.uniform(0.08, 0.4)
    t = _time(min(n, int(5 * tau_amp * SAMPLE_RATE)))
    phase = 2 * np.pi * (f_end * t + (f_start - f_end) * tau_pitch * -np.expm1(-t / tau_pitch))
    kernel = np.exp(-t / tau_amp) * np.sin(phase)
    click = _noise_click(rng, 0.0015, bright=True) * rng.uniform(0.0, 0.3)
    kernel[: click.size] += click
    onsets = _regular_onsets(rng, n, rng.uniform(1.2, 4.0), jitter=0.08)
    return _excite(n, onsets, rng.uniform(0.6, 1.0, onsets.size), kernel)


def _knock(rng: np.random.Generator, n: int) -> np.ndarray:
    """Groups of 2-5 knocks on wood: short damped resonances."""
    groups = _regular_onsets(rng, n, rng.uniform(0.5, 1.5), jitter=0.3)
    per_group, knock_gap = int(rng.integers(2, 6)), rng.uniform(0.11, 0.25)
    onsets = (groups[:, None] + np.arange(per_group)[None, :] * knock_gap * SAMPLE_RATE).ravel()
    onsets = np.sort(onsets[onsets < n]).astype(np.int64)
    modes = int(rng.integers(2, 4))
    kernel = _modal_kernel(
        loguniform(rng, 150, 1800, modes),
        rng.uniform(0.3, 1.0, modes),
        rng.uniform(0.008, 0.05, modes),
        n,
    )
    click = _noise_click(rng, 0.001, bright=False) * rng.uniform(0.0, 0.5)
    kernel[: click.size] += click
    return _excite(n, onsets, rng.uniform(0.5, 1.0, onsets.size), kernel)


def _crackle(rng: np.random.Generator, n: int) -> np.ndarray:
    """Irregular crackles (fire, vinyl): Poisson clicks with heavy-tailed amplitudes."""
    onsets = _poisson_onsets(rng, n, loguniform(rng, 8, 150))
    amps = (1 + rng.pareto(2.0, onsets.size)) * rng.choice([-1.0, 1.0], onsets.size)
    density = np.exp(0.7 * _slow_noise(rng, n, 1.0))[onsets]
    kernel = _noise_click(rng, rng.uniform(0.0002, 0.002), bright=rng.random() < 0.6)
    return _excite(n, onsets, amps * density, kernel)


def _zipper(rng: np.random.Generator, n: int) -> np.ndarray:
    """Zipper strokes: fast trains of tooth clicks whose rate sweeps within each stroke."""
    stroke_onsets = _regular_onsets(rng, n, rng.uniform(0.8, 2.5), jitter=0.3)
    stroke_onsets = stroke_onsets[: int(rng.integers(1, 5))]
    stroke_len = (rng.uniform(0.15, 0.7) * SAMPLE_RATE * np.ones(stroke_onsets.size)).astype(int)
    gate = _hann_gate(n, stroke_onsets, stroke_len) ** 0.5
    rate = loguniform(rng, 60, 400) * (1 + rng.uniform(-0.5, 0.8) * gate)
    onsets = _contour_onsets(rate)
    onsets = onsets[gate[onsets] > 0.05]
    amps = gate[onsets] * rng.lognormal(0.0, 0.4, onsets.size)
    kernel = _noise_click(rng, rng.uniform(0.0003, 0.0015), bright=True)
    return _excite(n, onsets, amps, kernel)


def _hiss(rng: np.random.Generator, n: int) -> np.ndarray:
    """Steady high band noise (steam, gas leak) with a slight slow swell."""
    noise = _shaped_noise(rng, n, _band_gain(loguniform(rng, 2500, 9000), rng.uniform(0.6, 1.6)))
    swell = np.exp(0.15 * _slow_noise(rng, n, 0.7))
    return noise * swell * _attack_release(n, rng.uniform(0.01, 0.3), rng.uniform(0.01, 0.3))


def _stream(rng: np.random.Generator, n: int) -> np.ndarray:
    """Running water: mid band noise with fast random fluctuation and bubble blips."""
    noise = _shaped_noise(rng, n, _band_gain(loguniform(rng, 300, 2500), rng.uniform(0.7, 1.6)))
    babble = np.exp(rng.uniform(0.2, 0.6) * _slow_noise(rng, n, rng.uniform(6, 25)))
    bubbles = _chirps(
        rng, n, _poisson_onsets(rng, n, rng.uniform(2, 20)), (500, 2500), (1.2, 2.0), (0.01, 0.04)
    )
    return noise * babble + rng.uniform(0.0, 0.8) * bubbles


def _whispering(rng: np.random.Generator, n: int) -> np.ndarray:
    """Whispered speech: formant-shaped noise in syllables, some with sibilant bursts."""
    syllables = _regular_onsets(rng, n, rng.uniform(2.5, 6.0), jitter=0.4)
    lengths = (rng.uniform(0.08, 0.3, syllables.size) * SAMPLE_RATE).astype(int)
    formants = [
        loguniform(rng, 300, 900),
        loguniform(rng, 1000, 2500),
        loguniform(rng, 2300, 3500),
    ]
    voiced = _shaped_noise(rng, n, _band_gain(formants, rng.uniform(0.12, 0.35), [1, 0.7, 0.4]))
    sibilant_on = rng.random(syllables.size) < rng.uniform(0.2, 0.5)
    sibilant = _shaped_noise(
        rng, n, _band_gain(loguniform(rng, 3500, 8000), rng.uniform(0.3, 0.8))
    )
    return voiced * _hann_gate(n, syllables, lengths) + rng.uniform(
        0.3, 1.0
    ) * sibilant * _hann_gate(n, syllables[sibilant_on], lengths[sibilant_on])


#: One synthesiser per class: ``f(rng, num_samples) -> waveform``.
SYNTHESIZERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "Accordion": _accordion,
    "Bass_drum": _bass_drum,
    "Bicycle_bell": _bicycle_bell,
    "Buzz": _buzz,
    "Chirp_and_tweet": _chirp_and_tweet,
    "Church_bell": _church_bell,
    "Crackle": _crackle,
    "Hiss": _hiss,
    "Knock": _knock,
    "Stream": _stream,
    "Whispering": _whispering,
    "Zipper_(clothing)": _zipper,
}


# ----------------------------------------------------------------------------- clip mixing


def synthesize_clip(clip: DemoClip, seed: int) -> np.ndarray:
    """Render one planned clip: background noise plus one event per true label.

    Args:
        clip: the planned clip.
        seed: the dataset seed (the clip's own stream is derived from it, its split and
            its index, so clips can be rendered in any order).

    Returns:
        int16 samples, mono, 44.1 kHz.
    """
    split_id = SPLITS.index(clip.split)
    rng = np.random.default_rng([seed, 1, split_id, clip.index])
    n = clip.num_samples
    mix = _shaped_noise(rng, n, _tilt_gain(rng.uniform(0.0, 2.0)))
    snr_shift = NOISY_SNR_SHIFT_DB if clip.split == "train_noisy" else 0.0
    for label in clip.true_labels:
        start, event = _place_event(rng, n, SYNTHESIZERS[label])
        snr_db = rng.uniform(*SNR_DB) + snr_shift
        mix[start : start + event.size] += 10 ** (snr_db / 20) * event
    if clip.split == "train_noisy":
        mix = _flickr_channel(rng, mix)
    return _to_int16(mix, peak_db=rng.uniform(-20.0, -1.0))


def _place_event(rng: np.random.Generator, n: int, synth) -> tuple[int, np.ndarray]:
    """Synthesise an event over a random span of the clip (often shorter than it).

    Returns:
        the start sample and the event (unit RMS over its span, 5 ms fades at the ends).
    """
    fraction = 1.0 if rng.random() < 0.3 else rng.uniform(0.15, 1.0)
    length = min(n, max(seconds_to_samples(0.25), int(fraction * n)))
    start = int(rng.integers(0, n - length + 1))
    event = synth(rng, length) * _attack_release(length, 0.005, 0.005)
    return start, _unit_rms(event)


def _flickr_channel(rng: np.random.Generator, mix: np.ndarray) -> np.ndarray:
    """Domain shift of the noisy set: band-limited (video audio) and sometimes mains hum."""
    n = mix.size
    m, freqs = _rfft_freqs(n)
    cutoff = loguniform(rng, 4000, 12000)
    lowpass = 1.0 / np.sqrt(1.0 + (freqs / cutoff) ** 8)
    out = scipy.fft.irfft(scipy.fft.rfft(mix, m) * lowpass, m)[:n]
    if rng.random() < 0.3:
        mains = rng.choice([50.0, 60.0]) * np.arange(1, 4)[:, None]
        hum = (np.sin(2 * np.pi * mains * _time(n)[None, :]) / np.arange(1, 4)[:, None]).sum(0)
        out += rng.uniform(0.1, 0.5) * hum
    return out


def _to_int16(x: np.ndarray, peak_db: float) -> np.ndarray:
    """Normalise the peak to ``peak_db`` dBFS and quantise to 16-bit integers."""
    peak = np.max(np.abs(x))
    scale = 10 ** (peak_db / 20) * 32767 / peak if peak > 0 else 0.0
    return np.round(x * scale).astype("<i2")
