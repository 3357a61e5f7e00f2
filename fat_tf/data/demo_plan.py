"""What the synthetic demo dataset holds, decided from a seed before any audio is made.

:func:`plan_demo_dataset` gives every clip of a dataset size (:data:`DEMO_SIZES`): its
file name, its true labels, the labels written to the CSV (a fixed fraction of the noisy
clips is mislabelled, preferring similar classes, :data:`SIMILAR_GROUPS`) and its length.
The audio of a planned clip is :func:`fat_tf.data.demo_sounds.synthesize_clip`; the
dataset as a whole, :mod:`fat_tf.data.demo`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 44100
MIN_DURATION = 0.3
MAX_DURATION = 10.0

#: Class names (a sorted subset of the FAT2019 vocabulary); also the submission column order.
DEMO_CLASSES: tuple[str, ...] = (
    "Accordion",
    "Bass_drum",
    "Bicycle_bell",
    "Buzz",
    "Chirp_and_tweet",
    "Church_bell",
    "Crackle",
    "Hiss",
    "Knock",
    "Stream",
    "Whispering",
    "Zipper_(clothing)",
)

#: Classes that sound alike; a noisy label that replaces a class prefers one of its group.
SIMILAR_GROUPS: tuple[tuple[str, ...], ...] = (
    ("Hiss", "Stream", "Whispering"),
    ("Bicycle_bell", "Chirp_and_tweet", "Church_bell"),
    ("Accordion", "Buzz"),
    ("Bass_drum", "Crackle", "Knock", "Zipper_(clothing)"),
)

SPLITS: tuple[str, ...] = ("train_curated", "train_noisy", "test")

MULTI_LABEL_FRACTION = 0.25
THREE_LABEL_FRACTION = 0.2  # of the multi-label clips
NOISY_FACTOR = 4
NOISY_CORRUPT_FRACTION = 0.35


@dataclass(frozen=True)
class DemoSize:
    """How big a demo dataset is.

    Args:
        curated_per_class: curated clips whose first label is each class.
        test_per_class: test clips whose first label is each class.
        max_duration: longest clip in seconds (the tiny size keeps clips short).
    """

    curated_per_class: int
    test_per_class: int
    max_duration: float = MAX_DURATION


DEMO_SIZES: dict[str, DemoSize] = {
    "tiny": DemoSize(curated_per_class=4, test_per_class=2, max_duration=3.0),
    "small": DemoSize(curated_per_class=10, test_per_class=8),
    "default": DemoSize(curated_per_class=25, test_per_class=22),
}


@dataclass(frozen=True)
class DemoClip:
    """One planned clip of the demo dataset.

    Args:
        split: ``train_curated``, ``train_noisy`` or ``test`` (also the audio folder).
        index: position of the clip in its split's plan (seeds its audio).
        fname: file name, 8 lowercase hex characters plus ``.wav``.
        labels: labels as written to the CSV (noisy clips may be wrong).
        true_labels: the events actually in the audio.
        num_samples: clip length in samples at 44.1 kHz.
    """

    split: str
    index: int
    fname: str
    labels: tuple[str, ...]
    true_labels: tuple[str, ...]
    num_samples: int

    @property
    def duration(self) -> float:
        """Clip length in seconds."""
        return self.num_samples / SAMPLE_RATE

    @property
    def corrupted(self) -> bool:
        """True when the written labels differ from the true ones."""
        return set(self.labels) != set(self.true_labels)



def plan_demo_dataset(seed: int = 0, size: str = "default") -> dict[str, list[DemoClip]]:
    """Decide every clip of a demo dataset (names, labels, lengths) without making audio.

    Cheap and deterministic: tests use it to get the true labels of the noisy clips.

    Args:
        seed: non-negative integer seed.
        size: a key of :data:`DEMO_SIZES` (``tiny``, ``small`` or ``default``).

    Returns:
        ``{split: [DemoClip, ...]}`` for the splits in :data:`SPLITS`, in generation order.
    """
    spec = size_spec(size)
    check_seed(seed)
    rng = np.random.default_rng([seed, 0])
    n_classes = len(DEMO_CLASSES)
    counts = {
        "train_curated": spec.curated_per_class * n_classes,
        "train_noisy": spec.curated_per_class * n_classes * NOISY_FACTOR,
        "test": spec.test_per_class * n_classes,
    }
    fnames = _unique_fnames(rng, sum(counts.values()))
    plan, start = {}, 0
    for split in SPLITS:
        count = counts[split]
        true_sets = _label_sets(rng, count)
        observed = _corrupt_labels(rng, true_sets) if split == "train_noisy" else true_sets
        lengths = _clip_lengths(rng, count, spec.max_duration)
        plan[split] = [
            DemoClip(
                split,
                i,
                fnames[start + i],
                _names(observed[i]),
                _names(true_sets[i]),
                int(lengths[i]),
            )
            for i in range(count)
        ]
        start += count
    return plan


def size_spec(size: str) -> DemoSize:
    """Look up a size name, with a readable error for unknown ones.

    Args:
        size: a key of :data:`DEMO_SIZES`.

    Raises:
        ValueError: an unknown size.
    """
    try:
        return DEMO_SIZES[size]
    except KeyError:
        raise ValueError(f"unknown demo size {size!r}; choose from {sorted(DEMO_SIZES)}") from None


def check_seed(seed: int) -> None:
    """Seeds must be non-negative integers (numpy SeedSequence entropy).

    Args:
        seed: the seed to check.

    Raises:
        ValueError: anything else.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _names(indices: Sequence[int]) -> tuple[str, ...]:
    """Class indices to class names, keeping the order."""
    return tuple(DEMO_CLASSES[i] for i in indices)


def _unique_fnames(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct random names of 8 lowercase hex characters plus ``.wav``."""
    codes = rng.choice(16**8, size=count, replace=False)
    return [f"{int(code):08x}.wav" for code in codes]


def _label_sets(rng: np.random.Generator, count: int) -> list[list[int]]:
    """Balanced first labels; a fixed fraction of clips get 1-2 extra distinct classes.

    Args:
        rng: random stream.
        count: number of clips (a multiple of the class count).

    Returns:
        one list of class indices per clip, in event order (not sorted).
    """
    n_classes = len(DEMO_CLASSES)
    first = rng.permutation(np.resize(np.arange(n_classes), count))
    n_multi = round(MULTI_LABEL_FRACTION * count)
    multi = set(rng.choice(count, size=n_multi, replace=False).tolist())
    label_sets = []
    for i, cls in enumerate(first.tolist()):
        labels = [cls]
        if i in multi:
            extra = 2 if rng.random() < THREE_LABEL_FRACTION else 1
            others = [c for c in range(n_classes) if c != cls]
            labels += rng.choice(others, size=extra, replace=False).tolist()
        label_sets.append(labels)
    return label_sets


def _corrupt_labels(rng: np.random.Generator, true_sets: list[list[int]]) -> list[list[int]]:
    """Return noisy copies of ``true_sets`` where a fixed fraction of clips is wrong.

    Each corrupted clip gets one of: a label replaced by a wrong class (half the time a
    similar one), a label dropped (multi-label clips only), or a spurious label added.
    """
    count = len(true_sets)
    n_bad = round(NOISY_CORRUPT_FRACTION * count)
    bad = set(rng.choice(count, size=n_bad, replace=False).tolist())
    return [
        _corrupt_one(rng, labels) if i in bad else list(labels)
        for i, labels in enumerate(true_sets)
    ]


def _corrupt_one(rng: np.random.Generator, labels: list[int]) -> list[int]:
    """One corruption of a label list (never empty, always different as a set)."""
    labels = list(labels)
    kinds, weights = ["replace", "add"], [0.5, 0.25]
    if len(labels) > 1:
        kinds, weights = kinds + ["drop"], weights + [0.25]
    kind = rng.choice(kinds, p=np.array(weights) / sum(weights))
    pos = int(rng.integers(len(labels)))
    if kind == "drop":
        del labels[pos]
    elif kind == "replace":
        labels[pos] = _wrong_class(rng, exclude=labels, near=labels[pos])
    else:
        wrong = _wrong_class(rng, exclude=labels, near=labels[pos])
        labels.insert(int(rng.integers(len(labels) + 1)), wrong)
    return labels


def _wrong_class(rng: np.random.Generator, exclude: list[int], near: int) -> int:
    """A class not in ``exclude``; half the time from the group of class ``near``."""
    candidates = [c for c in range(len(DEMO_CLASSES)) if c not in exclude]
    group = next((g for g in SIMILAR_GROUPS if DEMO_CLASSES[near] in g), ())
    similar = [c for c in candidates if DEMO_CLASSES[c] in group]
    pool = similar if similar and rng.random() < 0.5 else candidates
    return int(rng.choice(pool))


def _clip_lengths(rng: np.random.Generator, count: int, max_duration: float) -> np.ndarray:
    """Log-uniform clip lengths in samples between 0.3 s and ``max_duration``."""
    seconds = loguniform(rng, MIN_DURATION, max_duration, count)
    low, high = seconds_to_samples(MIN_DURATION), seconds_to_samples(max_duration)
    return np.clip(np.round(seconds * SAMPLE_RATE), low, high).astype(np.int64)


def seconds_to_samples(seconds: float) -> int:
    """Seconds to a whole number of samples at 44.1 kHz.

    Args:
        seconds: a duration.
    """
    return int(round(seconds * SAMPLE_RATE))


def loguniform(rng: np.random.Generator, low: float, high: float, size=None):
    """Draw from a log-uniform distribution on [low, high].

    Args:
        rng: random stream.
        low: the smallest value (> 0).
        high: the largest value.
        size: output shape (None: one float).
    """
    return np.exp(rng.uniform(np.log(low), np.log(high), size))
