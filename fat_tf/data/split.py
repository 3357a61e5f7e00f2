"""Deterministic, label-stratified splits of a multi-label clip set."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split clips into (train, held-out) indices, stratified on each clip's label set.

    Clips are grouped by their exact set of labels; from each group, ``fraction`` of
    the clips (rounded, with the fractional part resolved by a seeded coin so small
    groups are not all kept or all held out) go to the held-out part. Every class that
    has at least two clips keeps at least one in the training part.

    Args:
        labels: ``[N, C]`` multi-hot array.
        fraction: share of clips to hold out, in [0, 1).
        seed: seed of the random choice.

    Returns:
        ``(train_indices, held_out_indices)``, each sorted int64 arrays.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, row in enumerate(np.asarray(labels) > 0.5):
        groups[np.packbits(row).tobytes()].append(i)
    held_out: list[int] = []
    for key in sorted(groups):
        members = np.array(groups[key])
        rng.shuffle(members)
        exact = fraction * len(members)
        count = int(exact) + int(rng.random() < exact - int(exact))
        held_out.extend(members[:count].tolist())
    kept = np.ones(len(labels), bool)
    kept[held_out] = False
    _cover_every_class(np.asarray(labels) > 0.5, kept, min_members=2)
    return np.flatnonzero(kept), np.flatnonzero(~kept)


def _cover_every_class(labels: np.ndarray, chosen: np.ndarray, min_members: int) -> None:
    """Add one clip to ``chosen`` for every class with ``min_members`` clips but none chosen."""
    for c in range(labels.shape[1]):
        members = np.flatnonzero(labels[:, c])
        if len(members) >= min_members and not chosen[members].any():
            chosen[members[0]] = True


def subsample(indices: np.ndarray, fraction: float, labels: np.ndarray, seed: int) -> np.ndarray:
    """Keep a stratified ``fraction`` of ``indices`` (for label-scarcity studies).

    Args:
        indices: candidate clip indices.
        fraction: share to keep, in (0, 1].
        labels: ``[N, C]`` multi-hot array indexed by ``indices``.
        seed: seed of the random choice.

    Returns:
        sorted subset of ``indices``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labelled fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.sort(indices)
    _, picked = stratified_split(labels[indices], fraction, seed)
    chosen = np.zeros(len(indices), bool)
    chosen[picked] = True
    _cover_every_class(np.asarray(labels)[indices] > 0.5, chosen, min_members=1)
    return np.sort(indices[chosen])
