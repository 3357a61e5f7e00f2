"""``python -m fat_tf.data check DIR``: validate a FAT2019 folder and summarise it.

Every CSV row and every audio file's header is checked
(:func:`~fat_tf.data.manifest.load_dataset` with ``check_audio=True``); the summary gives,
per set, the clip count, total and min/median/max duration, the labels-per-clip histogram
and clips per class, and which clips are converted when read (another format, sample
format, channel count or rate than 16-bit PCM mono WAV at the model's rate), counted by
reason.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from typing import TextIO

import numpy as np

from fat_tf.data.manifest import DataWarning, FatDataset, Manifest, load_dataset
from fat_tf.errors import FatTfError

_RAREST = 5  # rarest classes listed per set


def check_dataset(
    root: str | os.PathLike, *, skip_bad: bool = False, sample_rate: int = 44100
) -> tuple[FatDataset, list[str]]:
    """Load and fully validate a dataset folder, collecting the warnings it raises.

    Args:
        root: the dataset folder.
        skip_bad: leave bad rows and clips out (reported as warnings) instead of failing.
        sample_rate: the model's sample rate (clips at other rates are resampled).

    Returns:
        The dataset and the messages of the :class:`DataWarning` s emitted.

    Raises:
        DataError: the folder is not a valid FAT2019 dataset.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        dataset = load_dataset(root, skip_bad=skip_bad, check_audio=True, sample_rate=sample_rate)
    messages = []
    for w in caught:
        if issubclass(w.category, DataWarning):
            messages.append(str(w.message))
        else:  # not ours: pass it on unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return dataset, messages


def format_duration(seconds: float) -> str:
    """Short human-readable duration: ``42.0 s``, ``12.5 min`` or ``10.5 h``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def summarize(dataset: FatDataset, messages: list[str] | None = None) -> str:
    """The text summary printed by the ``check`` command.

    Args:
        dataset: a loaded dataset (durations must have been read: ``check_audio=True``).
        messages: warnings to list at the end.
    """
    names = dataset.class_names
    lines = [f"FAT2019 dataset: {dataset.root}"]
    shown = ", ".join(names[:3]) + (f", ..., {names[-1]}" if len(names) > 3 else "")
    lines.append(f"classes: {len(names)} ({shown})")
    lines.append("")
    lines.append(
        f"{'set':<8} {'clips':>7} {'total':>9} {'min':>7} {'median':>7} {'max':>7}  labels"
    )
    for name, manifest in dataset.sets().items():
        lines.append(_set_row(name, manifest))
    for name, manifest in dataset.sets().items():
        if manifest.labels is not None and len(manifest):
            lines.append("")
            lines += _label_stats(name, manifest)
    conversion = _conversion_lines(dataset)
    if conversion:
        lines.append("")
        lines += conversion
    lines.append("")
    if messages:
        lines.append(f"warnings ({len(messages)}):")
        lines += [f"  - {m}" for m in messages]
    else:
        lines.append("warnings: none")
    return "\n".join(lines)


def _set_row(name: str, manifest: Manifest) -> str:
    source = os.path.basename(manifest.csv_path)
    labels = f"from {source}" if manifest.labels is not None else "none (unlabelled)"
    if name == "test" and manifest.labels is not None:
        labels = "from test_post_competition.csv"
    d = manifest.durations
    if d is None or not len(d):
        stats = f"{'-':>9} {'-':>7} {'-':>7} {'-':>7}"
    else:
        stats = (
            f"{format_duration(float(d.sum())):>9} {d.min():>6.2f}s "
            f"{np.median(d):>6.2f}s {d.max():>6.2f}s"
        )
    return f"{name:<8} {len(manifest):>7} {stats}  {labels}"


def _conversion_lines(dataset: FatDataset) -> list[str]:
    """What is converted when read, per set and by reason (empty when nothing is)."""
    from fat_tf.data.audio_io import CONVERSION

    total = sum(len(m) for m in dataset.sets().values())
    lines = []
    converted = 0
    for name, manifest in dataset.sets().items():
        if not manifest.conversions:
            continue
        reasons = Counter(r for clip in manifest.conversions for r in clip)
        clips = sum(1 for clip in manifest.conversions if clip)
        if clips:
            converted += clips
            by_reason = ", ".join(f"{reason}: {n}" for reason, n in reasons.most_common())
            lines.append(f"{name}: {clips} of {len(manifest)} clip(s) converted ({by_reason})")
    if not lines:
        return []
    return [
        f"converted when read: {converted} of {total} clip(s) are not 16-bit PCM mono WAV at "
        f"the model's rate ({CONVERSION}); train with --set data.cache=DIR to convert "
        "them once",
        *lines,
    ]


def _label_stats(name: str, manifest: Manifest) -> list[str]:
    labels = manifest.labels
    per_clip = Counter(int(k) for k in labels.sum(axis=1))
    hist = ", ".join(f"{k}: {per_clip[k]}" for k in sorted(per_clip))
    per_class = labels.sum(axis=0).astype(int)
    order = np.argsort(per_class, kind="stable")
    names = manifest.class_names
    lo, hi = order[0], order[-1]
    rare = ", ".join(f"{names[i]} {per_class[i]}" for i in order[:_RAREST])
    out = [
        f"{name}: labels per clip {hist} (mean {labels.sum() / len(labels):.3f})",
        f"{name}: clips per class min {per_class[lo]} ({names[lo]}), "
        f"max {per_class[hi]} ({names[hi]}); rarest: {rare}",
    ]
    empty = [names[i] for i in order if per_class[i] == 0]
    if empty:
        out.append(f"{name}: {len(empty)} class(es) with no clips: {', '.join(empty)}")
    return out


def run_check(
    root: str | os.PathLike,
    *,
    skip_bad: bool = False,
    sample_rate: int = 44100,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Validate ``root``, print the summary or the error, and return the exit code.

    Args:
        root: the dataset folder.
        skip_bad: leave bad rows and clips out instead of failing.
        sample_rate: the model's sample rate (clips at other rates are resampled).
        out: where the summary goes (stdout by default).
        err: where the error goes (stderr by default).

    Returns:
        0 when the folder is valid, 1 otherwise.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        dataset, messages = check_dataset(root, skip_bad=skip_bad, sample_rate=sample_rate)
    except FatTfError as e:
        print(f"error: {e}", file=err)
        print(f"{root}: INVALID", file=err)
        return 1
    print(summarize(dataset, messages), file=out)
    print(f"\n{root}: OK", file=out)
    return 0
