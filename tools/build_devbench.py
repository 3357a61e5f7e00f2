"""Build a real-audio development benchmark in the FAT2019 layout from Kitchen20.

    python tools/build_devbench.py --source KITCHEN20 --out DIR [--seed 0]
        [--variant indomain|shifted] [--noisy-corruption 0.4]

KITCHEN20 is a checkout of ``marc-moreaux/kitchen20`` (``kitchen20.csv`` and ``audio/``:
20 classes, 1,070 clips of mostly 5 s, 16-bit mono 44.1 kHz; see
``../shared/devdata_kitchen20.md``). Never commit the output: the audio is not ours to
redistribute. The same source, seed and options give byte-identical folders.

Design (the numbers are written to ``DIR/manifest.json`` under ``design``):

1. Splits by source recording (``usr_id``), never by clip, so no recording is in two
   splits. About 25% of the sources go to test, stratified: each class gets
   ``round(0.25 * its sources)`` test sources (at least 1, leaving at least 2 for training).
   From the rest, sources are taken into curated until each class has about 8 there, and
   curated keeps ONE take of each (the small clean set, ~160 clips: FAT2019's curated
   clips come from distinct uploads, and fat_tf's validation split is by clip, so several
   takes of a recording would leak between training and validation); at least one source
   of each class stays in noisy. The remaining sources, with all their takes, are the
   noisy set, so curated:noisy is about 1:4 as in FAT2019. Every other take of a curated
   source is left out; every take of a test or noisy source goes to its source's split.
2. One output clip per source clip: an excerpt of it whose length is the full clip for 25%
   of clips and otherwise log-uniform between 1 s and the clip's length (a source shorter
   than 1 s would be kept whole). An excerpt always holds at least one 50 ms frame within
   6 dB of the source clip's loudest frame, so a short excerpt does not miss the event.
3. Mixtures: 22% of the clips of every split get a second clip of another class from the
   same split: an excerpt of 40-100% of the first clip's length, 10 ms fades, at a random
   offset, its active level (RMS of the frames within 10 dB of its loudest) set -6..0 dB
   relative to the first clip's; the sum is scaled down if its peak exceeds 0.98. Labels
   are both classes, the first clip's first. All other clips have one label; none is empty.
4. Noisy labels: ``--noisy-corruption`` (default 0.4) of the noisy clips, chosen exactly,
   get wrong labels: 70% have one true label replaced by a uniformly drawn other class,
   30% get a spurious extra label. ``train_noisy.csv`` holds the corrupted labels; the
   true labels are only in ``manifest.json``, with the measured label precision
   (FAT2019's noisy set is estimated at ~60%).
5. ``--variant shifted``: the same splits, labels and curated/test files as ``indomain``
   for the same seed; every noisy clip goes through a different channel, as FAT2019's
   noisy (Flickr video) set differs from its curated (Freesound) set: coloured background
   noise at 6-18 dB SNR, a 2nd-order high-pass at 150-400 Hz, a 4th-order low-pass at
   3.5-5.5 kHz, a peak level of -20..-1 dBFS and, on 40% of clips, tanh compression
   (drive 1.5-4).
6. Output: 16-bit PCM mono 44.1 kHz WAV with random 8-hex names; ``train_curated.csv``,
   ``train_noisy.csv``, ``sample_submission.csv`` (fname + sorted class names; Kitchen20's
   names such as ``stove-fan`` are valid as they are), ``test_post_competition.csv``
   (``fname,labels,usage``), written by :mod:`fat_tf.data.layout`, and ``manifest.json``:
   seed, variant, source (repository, commit when the CSV is the known one, CSV sha256),
   design, counts per split and class, mixture counts, noisy-label corruption and
   precision, every clip's provenance (source file, excerpt, partner, true labels), the
   sha256 of every file and one overall hash of them.
7. The folder is built in a temporary sibling and renamed at the end. An existing ``--out``
   is replaced only when it is an earlier build (``manifest.json`` with a ``devbench``
   key) holding nothing but the files that manifest lists; anything else is refused.

Randomness: numpy ``default_rng`` streams derived from the seed, one per decision and one
per clip, so the variants share everything but the noisy audio.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
import wave
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.signal

from fat_tf.data.layout import (
    LayoutError,
    error_line,
    staged_folder,
    validate_class_names,
    write_labels_csv,
    write_sample_submission,
    write_test_labels_csv,
    write_wav,
)
from fat_tf.data.wav import check_wav
from fat_tf.errors import DataError

BUILDER_VERSION = 2
SAMPLE_RATE = 44100
SPLITS = ("train_curated", "train_noisy", "test")
VARIANTS = ("indomain", "shifted")

TEST_SOURCE_FRACTION = 0.25
CURATED_PER_CLASS = 8
MIX_FRACTION = 0.22
MIN_SECONDS = 1.0
FULL_CLIP_FRACTION = 0.25
PARTNER_LENGTH = (0.4, 1.0)  # of the first clip's length
MIX_GAIN_DB = (-6.0, 0.0)
PEAK_LIMIT = 0.98
NOISY_CORRUPTION = 0.4
ADD_LABEL_FRACTION = 0.3  # of the corrupted clips: a spurious label added (else replaced)
LOUD_DB = 6.0  # an excerpt holds a frame within this of the source's loudest frame
ACTIVE_DB = 10.0  # frames within this of the loudest count for the active level
FRAME, HOP = 2205, 441  # 50 ms frames every 10 ms
FADE = 441  # 10 ms fades on a mixed-in excerpt
SHIFT = {
    "snr_db": (6.0, 18.0),
    "noise_slope": (0.5, 1.5),  # noise power ~ 1 / f ** slope
    "highpass_hz": (150.0, 400.0),
    "lowpass_hz": (3500.0, 5500.0),
    "peak_dbfs": (-20.0, -1.0),
    "compress_fraction": 0.4,
    "drive": (1.5, 4.0),
}

#: kitchen20.csv sha256 -> the snapshot it was read from (../shared/devdata_kitchen20.md).
KNOWN_SOURCES = {
    "6de631ef4747c6d66352c7d40fc26294f56c6902be85f042cade9d8b52436912": (
        "marc-moreaux/kitchen20",
        "8bc9544507e8c3477eb8fcd3a6c841b661121220",
    ),
}


class DevbenchError(LayoutError):
    """The source or destination cannot be used; the message is one line."""


@dataclass(frozen=True)
class SourceClip:
    """One row of ``kitchen20.csv``.

    Args:
        row: position in the CSV.
        path: audio path relative to the source folder.
        category: the class.
        usr_id: the source recording.
        num_samples: length in samples.
    """

    row: int
    path: str
    category: str
    usr_id: str
    num_samples: int


@dataclass
class PlannedClip:
    """One output clip, decided before any audio is read (excerpt starts come later)."""

    split: str
    index: int
    fname: str
    source: SourceClip
    length: int
    true_labels: tuple[str, ...]
    labels: tuple[str, ...]
    partner: SourceClip | None = None
    partner_length: int = 0
    partner_offset: int = 0
    partner_gain_db: float = 0.0
    corruption: str | None = None


# ------------------------------------------------------------------------------ source


def read_sources(source_dir: Path) -> tuple[list[SourceClip], str]:
    """Read ``kitchen20.csv`` and check every clip's WAV header.

    Returns:
        The clips in CSV order and the CSV's sha256.
    """
    csv_path = source_dir / "kitchen20.csv"
    try:
        raw = csv_path.read_bytes()
    except OSError as e:
        raise DevbenchError(f"{csv_path}: cannot be read ({e.strerror or e})") from None
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    need = ("category", "path", "usr_id")
    if not rows or any(k not in rows[0] for k in need):
        raise DevbenchError(f"{csv_path}: need columns {', '.join(need)} and at least one row")
    clips = []
    for i, r in enumerate(rows):
        path = source_dir / r["path"]
        try:
            info = check_wav(path, SAMPLE_RATE)
        except DataError as e:
            raise DevbenchError(" ".join(str(e).split())) from None
        clips.append(SourceClip(i, r["path"], r["category"], r["usr_id"], info.num_frames))
    return clips, hashlib.sha256(raw).hexdigest()


def read_audio(source_dir: Path, clip: SourceClip) -> np.ndarray:
    """A source clip's samples as float64 in [-1, 1)."""
    with wave.open(str(source_dir / clip.path), "rb") as f:
        data = f.readframes(f.getnframes())
    return np.frombuffer(data, "<i2").astype(np.float64) / 32768.0


# ------------------------------------------------------------------------------ planning


def split_sources(
    clips: list[SourceClip], seed: int, test_fraction: float, curated_per_class: int
) -> dict[str, str]:
    """Assign each source recording (``usr_id``) to a split; see the module docstring."""
    rng = np.random.default_rng([seed, 1])
    counts: dict[str, Counter] = {}
    for c in clips:
        counts.setdefault(c.usr_id, Counter())[c.category] += 1
    order = [sorted(counts)[i] for i in rng.permutation(len(counts))]
    classes = sorted({c.category for c in clips})
    n_sources = {k: sum(k in counts[g] for g in order) for k in classes}
    split: dict[str, str] = {}

    test_have: Counter = Counter()
    for k in sorted(classes, key=lambda k: (n_sources[k], k)):
        quota = max(1, round(test_fraction * n_sources[k]))
        for g in order:
            if test_have[k] >= quota:
                break
            if k not in counts[g] or g in split:
                continue
            # keep at least two training sources of every class the source has
            left = {j: n_sources[j] - test_have[j] - 1 for j in counts[g]}
            if min(left.values()) < 2:
                continue
            split[g] = "test"
            test_have.update(counts[g].keys())

    rest = [g for g in order if g not in split]
    rest_sources = {k: sum(k in counts[g] for g in rest) for k in classes}
    rest_clips = {k: sum(counts[g][k] for g in rest) for k in classes}
    have: Counter = Counter()
    taken: Counter = Counter()  # curated sources per class
    for k in sorted(classes, key=lambda k: (rest_clips[k], k)):
        for g in rest:
            if have[k] >= curated_per_class:
                break
            if k not in counts[g] or g in split:
                continue
            if any(taken[j] + 1 >= rest_sources[j] for j in counts[g]):
                continue  # leave at least one source of each class to the noisy set
            split[g] = "train_curated"  # one take of it (see curated_takes)
            taken.update(counts[g].keys())
            have.update(counts[g].keys())
    for g in rest:
        split.setdefault(g, "train_noisy")
    return split


def curated_takes(clips: list[SourceClip], split_of: dict[str, str],
                  seed: int) -> list[SourceClip]:
    """``clips`` with one take (drawn with ``seed``) of each curated recording; the other
    takes of a curated recording are left out of the benchmark.

    FAT2019's curated clips come from distinct uploads, and fat_tf's validation split is
    by clip: several takes of one recording in curated would put the same recording on
    both sides of it, and validation would measure memorisation.

    Args:
        clips: every source clip.
        split_of: the split of each recording (``usr_id``).
        seed: the build's seed.
    """
    rng = np.random.default_rng([seed, 2])
    takes: dict[str, list[SourceClip]] = {}
    for c in clips:
        if split_of[c.usr_id] == "train_curated":
            takes.setdefault(c.usr_id, []).append(c)
    keep = {id(group[int(rng.integers(len(group)))]) for _, group in sorted(takes.items())}
    return [c for c in clips if split_of[c.usr_id] != "train_curated" or id(c) in keep]


def _loguniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def plan_clips(
    clips: list[SourceClip],
    split_of: dict[str, str],
    class_names: tuple[str, ...],
    seed: int,
    *,
    mix_fraction: float = MIX_FRACTION,
    corruption: float = NOISY_CORRUPTION,
) -> dict[str, list[PlannedClip]]:
    """Decide every output clip: names, lengths, mixtures and (noisy) label corruption."""
    total = len(clips)
    codes = np.random.default_rng([seed, 3]).choice(16**8, size=total, replace=False)
    names = iter(f"{int(c):08x}.wav" for c in codes)
    min_len = round(MIN_SECONDS * SAMPLE_RATE)
    plan: dict[str, list[PlannedClip]] = {}
    for si, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 4, si])
        members = [c for c in clips if split_of[c.usr_id] == split]
        n = len(members)
        u_full, u_len = rng.random(n), rng.random(n)
        planned = []
        for i, src in enumerate(members):
            length = src.num_samples
            if length > min_len and u_full[i] >= FULL_CLIP_FRACTION:
                low, high = np.log(min_len), np.log(length)
                length = int(round(np.exp(low + u_len[i] * (high - low))))
            labels = (src.category,)
            planned.append(PlannedClip(split, i, next(names), src, length, labels, labels))
        n_mix = round(mix_fraction * n)
        for i in sorted(rng.choice(n, size=n_mix, replace=False).tolist()):
            clip = planned[i]
            others = [j for j in range(n) if members[j].category != clip.source.category]
            if not others:
                continue
            partner = members[int(rng.choice(others))]
            room = min(clip.length, partner.num_samples)
            clip.partner = partner
            clip.partner_length = max(1, int(round(room * rng.uniform(*PARTNER_LENGTH))))
            clip.partner_offset = int(rng.integers(0, clip.length - clip.partner_length + 1))
            clip.partner_gain_db = float(rng.uniform(*MIX_GAIN_DB))
            clip.true_labels = clip.labels = (clip.source.category, partner.category)
        plan[split] = planned
    _corrupt(plan["train_noisy"], class_names, seed, corruption)
    return plan


def _corrupt(noisy: list[PlannedClip], class_names: tuple[str, ...], seed: int, fraction: float):
    """Give exactly ``round(fraction * N)`` noisy clips wrong labels (never empty)."""
    rng = np.random.default_rng([seed, 5])
    n_bad = round(fraction * len(noisy))
    for i in sorted(rng.choice(len(noisy), size=n_bad, replace=False).tolist()):
        clip = noisy[i]
        labels = list(clip.true_labels)
        wrong = str(rng.choice([c for c in class_names if c not in labels]))
        if rng.random() < ADD_LABEL_FRACTION:
            labels.insert(int(rng.integers(len(labels) + 1)), wrong)
            clip.corruption = "add"
        else:
            labels[int(rng.integers(len(labels)))] = wrong
            clip.corruption = "replace"
        clip.labels = tuple(labels)


# ----------------------------------------------------------------------------- rendering


def _frame_energy(x: np.ndarray) -> np.ndarray:
    """Mean square of 50 ms frames every 10 ms (one frame for a shorter clip)."""
    n = x.size
    cum = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(1 + max(0, n - FRAME) // HOP) * HOP
    ends = np.minimum(starts + FRAME, n)
    return (cum[ends] - cum[starts]) / np.maximum(ends - starts, 1)


def _active_rms(x: np.ndarray) -> float:
    e = _frame_energy(x)
    top = e[e >= e.max() * 10 ** (-ACTIVE_DB / 10)]
    return float(np.sqrt(top.mean())) if top.size else 0.0


def loud_excerpt_start(rng: np.random.Generator, x: np.ndarray, length: int) -> int:
    """A random start (on the 10 ms grid) of an excerpt holding a frame within 6 dB of the
    loudest frame of ``x``; the excerpt centred on the loudest frame when none exists."""
    n = x.size
    if length >= n:
        return 0
    e = _frame_energy(x)
    loud = e >= e.max() * 10 ** (-LOUD_DB / 10)
    js = np.arange((n - length) // HOP + 1)
    last = np.minimum((js * HOP + length - FRAME) // HOP, e.size - 1)
    cum = np.concatenate([[0], np.cumsum(loud)])
    ok = (last >= js) & (cum[np.maximum(last, js - 1) + 1] - cum[js] > 0)
    if ok.any():
        return int(rng.choice(js[ok])) * HOP
    centre = int(np.argmax(e)) * HOP + min(FRAME, n) // 2
    return int(np.clip(centre - length // 2, 0, n - length))


def _fade(n: int) -> np.ndarray:
    ramp = min(FADE, n // 2)
    w = np.ones(n)
    if ramp:
        r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        w[:ramp], w[n - ramp :] = r, r[::-1]
    return w


def _coloured_noise(rng: np.random.Generator, n: int, slope: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 20.0)
    noise = np.fft.irfft(spec * freqs ** (-slope / 2), n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def shift_channel(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """The noisy set's channel in the ``shifted`` variant (see the module docstring)."""
    s = SHIFT
    params = {
        "snr_db": rng.uniform(*s["snr_db"]),
        "noise_slope": rng.uniform(*s["noise_slope"]),
        "highpass_hz": rng.uniform(*s["highpass_hz"]),
        "lowpass_hz": _loguniform(rng, *s["lowpass_hz"]),
        "peak_dbfs": rng.uniform(*s["peak_dbfs"]),
        "drive": rng.uniform(*s["drive"]) if rng.random() < s["compress_fraction"] else None,
    }
    noise = _coloured_noise(rng, x.size, params["noise_slope"])
    y = x + noise * _active_rms(x) / 10 ** (params["snr_db"] / 20)
    for order, kind, cutoff in ((2, "highpass", "highpass_hz"), (4, "lowpass", "lowpass_hz")):
        sos = scipy.signal.butter(order, params[cutoff], kind, fs=SAMPLE_RATE, output="sos")
        y = scipy.signal.sosfilt(sos, y)
    if params["drive"] is not None:
        drive = params["drive"]
        y = np.tanh(drive * y / (np.max(np.abs(y)) + 1e-12)) / np.tanh(drive)
    y = y * 10 ** (params["peak_dbfs"] / 20) / (np.max(np.abs(y)) + 1e-12)
    return y, {k: (round(float(v), 3) if v is not None else None) for k, v in params.items()}


def render_clip(
    clip: PlannedClip, source_dir: Path, seed: int, variant: str
) -> tuple[np.ndarray, dict]:
    """The clip's int16 samples and its provenance record for the manifest."""
    rng = np.random.default_rng([seed, 10, SPLITS.index(clip.split), clip.index])
    x = read_audio(source_dir, clip.source)
    start = loud_excerpt_start(rng, x, clip.length)
    y = x[start : start + clip.length].copy()
    record = {
        "fname": clip.fname,
        "labels": list(clip.labels),
        "true_labels": list(clip.true_labels),
        "source": clip.source.path,
        "usr_id": clip.source.usr_id,
        "start": start,
        "length": clip.length,
        "mix": None,
    }
    if clip.partner is not None:
        xb = read_audio(source_dir, clip.partner)
        sb = loud_excerpt_start(rng, xb, clip.partner_length)
        b = xb[sb : sb + clip.partner_length] * _fade(clip.partner_length)
        gain = 10 ** (clip.partner_gain_db / 20) * _active_rms(y) / max(_active_rms(b), 1e-9)
        gain = min(gain, 100.0)
        y[clip.partner_offset : clip.partner_offset + b.size] += gain * b
        record["mix"] = {
            "source": clip.partner.path,
            "usr_id": clip.partner.usr_id,
            "start": sb,
            "length": clip.partner_length,
            "offset": clip.partner_offset,
            "gain_db": round(clip.partner_gain_db, 3),
        }
    if clip.corruption:
        record["corruption"] = clip.corruption
    if variant == "shifted" and clip.split == "train_noisy":
        y, record["shift"] = shift_channel(np.random.default_rng([seed, 11, clip.index]), y)
    peak = float(np.max(np.abs(y)))
    if peak > PEAK_LIMIT:
        y *= PEAK_LIMIT / peak
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype("<i2"), record


# ------------------------------------------------------------------------------- writing


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _listed_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def is_previous_build(out: Path) -> bool:
    """Whether ``out`` is an earlier devbench build holding only the files it lists."""
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or "devbench" not in manifest:
        return False
    listed = set(manifest.get("files", {})) | {"manifest.json"}
    dirs = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_dir()}
    return _listed_files(out) == listed and dirs <= set(SPLITS)


def _check_destination(out: Path) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise DevbenchError(f"{out}: exists and is not a folder")
    if not (out / "manifest.json").is_file():
        raise DevbenchError(
            f"{out}: folder exists and is not a devbench build (no manifest.json); choose a "
            "new --out"
        )
    if not is_previous_build(out):
        raise DevbenchError(
            f"{out}: folder holds files that its manifest.json does not list as a devbench "
            "build's; refusing to replace it, choose a new --out"
        )


def _counts(clips: list[PlannedClip], class_names: tuple[str, ...], noisy: bool) -> dict:
    true = Counter(label for c in clips for label in c.true_labels)
    out = {
        "clips": len(clips),
        "sources": len({c.source.usr_id for c in clips}),
        "mixtures": sum(c.partner is not None for c in clips),
        "seconds": round(sum(c.length for c in clips) / SAMPLE_RATE, 2),
        "per_class": {k: true[k] for k in class_names},
    }
    if noisy:
        written = Counter(label for c in clips for label in c.labels)
        out["per_class_written"] = {k: written[k] for k in class_names}
    return out


def _noisy_stats(noisy: list[PlannedClip], fraction: float) -> dict:
    written = sum(len(c.labels) for c in noisy)
    right = sum(len(set(c.labels) & set(c.true_labels)) for c in noisy)
    true = sum(len(c.true_labels) for c in noisy)
    kinds = Counter(c.corruption for c in noisy if c.corruption)
    return {
        "corruption_fraction": fraction,
        "corrupted_clips": sum(kinds.values()),
        "measured_corruption_fraction": round(sum(kinds.values()) / max(len(noisy), 1), 4),
        "corruption_kinds": dict(sorted(kinds.items())),
        "label_precision": round(right / max(written, 1), 4),
        "label_recall": round(right / max(true, 1), 4),
    }


def build(
    source_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    variant: str = "indomain",
    noisy_corruption: float = NOISY_CORRUPTION,
    test_fraction: float = TEST_SOURCE_FRACTION,
    curated_per_class: int = CURATED_PER_CLASS,
    mix_fraction: float = MIX_FRACTION,
) -> dict:
    """Build the benchmark folder ``out`` from the Kitchen20 folder ``source_dir``.

    Returns:
        The manifest (also written to ``out/manifest.json``).

    Raises:
        DevbenchError: bad options, a bad source, or an ``out`` that may not be replaced.
    """
    source_dir, out = Path(source_dir), Path(out)
    if variant not in VARIANTS:
        raise DevbenchError(f"--variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if seed < 0:
        raise DevbenchError(f"--seed must be a non-negative integer, got {seed}")
    if not 0.0 < test_fraction < 1.0:
        raise DevbenchError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if curated_per_class < 1:
        raise DevbenchError(f"--curated-per-class must be at least 1, got {curated_per_class}")
    if not 0.0 <= noisy_corruption <= 1.0:
        raise DevbenchError(f"--noisy-corruption must be in [0, 1], got {noisy_corruption}")
    _check_destination(out)
    clips, csv_sha = read_sources(source_dir)
    class_names = validate_class_names(c.category for c in clips)
    split_of = split_sources(clips, seed, test_fraction, curated_per_class)
    clips = curated_takes(clips, split_of, seed)
    plan = plan_clips(
        clips, split_of, class_names, seed, mix_fraction=mix_fraction, corruption=noisy_corruption
    )
    for split in ("train_curated", "test"):
        missing = set(class_names) - {c.source.category for c in plan[split]}
        if missing:
            raise DevbenchError(
                f"{source_dir}: too few source recordings to put every class in {split} "
                f"(missing {', '.join(sorted(missing))})"
            )
    repository, commit = KNOWN_SOURCES.get(csv_sha, ("marc-moreaux/kitchen20", None))
    with staged_folder(out, replaceable=is_previous_build) as root:
        records = {}
        for split in SPLITS:
            (root / split).mkdir()
            records[split] = []
            for clip in plan[split]:
                samples, record = render_clip(clip, source_dir, seed, variant)
                write_wav(root / split / clip.fname, samples)
                records[split].append(record)
            records[split].sort(key=lambda r: r["fname"])
        pairs = {s: [(c.fname, c.labels) for c in plan[s]] for s in SPLITS}
        write_labels_csv(root / "train_curated.csv", pairs["train_curated"])
        write_labels_csv(root / "train_noisy.csv", pairs["train_noisy"])
        write_sample_submission(
            root / "sample_submission.csv", [c.fname for c in plan["test"]], class_names
        )
        write_test_labels_csv(root / "test_post_competition.csv", pairs["test"])
        files = {rel: _sha256(root / rel) for rel in sorted(_listed_files(root))}
        overall = hashlib.sha256(
            "".join(f"{sha}  {rel}\n" for rel, sha in files.items()).encode()
        ).hexdigest()
        manifest = {
            "devbench": {"builder": "tools/build_devbench.py", "version": BUILDER_VERSION},
            "seed": seed,
            "variant": variant,
            "source": {
                "name": "Kitchen20",
                "repository": repository,
                "commit": commit,
                "csv_sha256": csv_sha,
                "clips": len(clips),
                "recordings": len(split_of),
            },
            "design": {
                "split_by": "usr_id",
                "test_source_fraction": test_fraction,
                "curated_per_class": curated_per_class,
                "min_seconds": MIN_SECONDS,
                "full_clip_fraction": FULL_CLIP_FRACTION,
                "excerpt_loud_frame_db": LOUD_DB,
                "mix_fraction": mix_fraction,
                "mix_partner_length": list(PARTNER_LENGTH),
                "mix_gain_db": list(MIX_GAIN_DB),
                "peak_limit": PEAK_LIMIT,
                "noisy_corruption": noisy_corruption,
                "noisy_add_label_fraction": ADD_LABEL_FRACTION,
                "shift": SHIFT if variant == "shifted" else None,
            },
            "classes": list(class_names),
            "counts": {s: _counts(plan[s], class_names, s == "train_noisy") for s in SPLITS},
            "noisy_labels": _noisy_stats(plan["train_noisy"], noisy_corruption),
            "recordings": {s: sorted(g for g, v in split_of.items() if v == s) for s in SPLITS},
            "clips": records,
            "files": files,
            "hash": overall,
        }
        text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
        (root / "manifest.json").write_text(text, encoding="utf-8")
    return manifest


def summary(manifest: dict) -> str:
    """A few lines: clips, sources, mixtures and seconds per split, and the noisy labels."""
    lines = [f"{'split':<14}{'clips':>6}{'sources':>8}{'mixtures':>9}{'minutes':>8}"]
    for split, c in manifest["counts"].items():
        lines.append(
            f"{split:<14}{c['clips']:>6}{c['sources']:>8}{c['mixtures']:>9}"
            f"{c['seconds'] / 60:>8.1f}"
        )
    n = manifest["noisy_labels"]
    lines.append(
        f"noisy labels: {n['corrupted_clips']} clips corrupted "
        f"({n['measured_corruption_fraction']:.1%}), label precision {n['label_precision']:.1%}"
    )
    lines.append(f"hash {manifest['hash']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status (2 with a one-line error)."""
    parser = argparse.ArgumentParser(
        prog="python tools/build_devbench.py",
        description="Build a FAT2019-layout development benchmark from Kitchen20, "
        "deterministically from a seed (design in this file's docstring and the manifest).",
    )
    parser.add_argument(
        "--source", required=True, type=Path, help="Kitchen20 folder (kitchen20.csv and audio/)"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder (new, empty, or an earlier build to replace)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="indomain",
        help="shifted: the noisy clips go through another channel (default: %(default)s)",
    )
    parser.add_argument(
        "--noisy-corruption",
        type=float,
        default=NOISY_CORRUPTION,
        metavar="F",
        help="fraction of noisy clips with wrong labels (default: %(default)s)",
    )
    parser.add_argument(
        "--curated-per-class",
        type=int,
        default=CURATED_PER_CLASS,
        metavar="N",
        help="target curated clips per class (default: %(default)s)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=TEST_SOURCE_FRACTION,
        metavar="F",
        help="fraction of each class's recordings in test (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        manifest = build(
            args.source,
            args.out,
            seed=args.seed,
            variant=args.variant,
            noisy_corruption=args.noisy_corruption,
            test_fraction=args.test_fraction,
            curated_per_class=args.curated_per_class,
        )
    except (DataError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    print(
        f"wrote {args.out} ({args.variant}, seed {args.seed}) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    print(summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
