"""Checkpoint-selection rules compared on held-out validation clips, without the test set.

A run validates several times, and the run folder keeps two of the models it scored:
``best.keras`` (the best validation lwlrap of any scored model) and ``model.keras`` (the
last). Whether the best-validation pick beats the last model cannot be read off the same
validation scores: the pick is the maximum of several noisy estimates, so its score is
biased upward, more so the fewer validation clips there are. With every validation's
clip logits saved (``train.save_validation_predictions``), the rules can be compared
without touching the test set:

1. split the validation clips at random into ``folds`` parts (halves by default);
2. each rule picks a checkpoint using every part but one (``best``: the highest lwlrap
   there, ties to the earliest, as :class:`fat_tf.callbacks.SaveBestModel` breaks them;
   ``final``: the last evaluated model, whatever the scores say);
3. the picked checkpoint is scored on the part left out, which played no part in the
   pick;
4. each part is left out in turn, and the whole is repeated over many random splits.

The mean held-out score of each rule estimates how well that rule's model does on new
clips. The ``best`` rule picks from ``(folds - 1) / folds`` of the clips, so its pick is
somewhat noisier than one made on every clip; more folds narrow that gap (and score
each pick on fewer clips).

* :func:`candidates_from_predictions` — the candidates and the final model of one
  ``validation_predictions.npz``;
* :func:`held_out_selection_scores` — held-out lwlrap of each rule over random splits.
"""

from __future__ import annotations

import os

import numpy as np

from fat_tf.errors import FatTfError
from fat_tf.metrics import lwlrap

#: Rules :func:`held_out_selection_scores` compares.
SELECTION_RULES = ("best", "final")


def candidates_from_predictions(path: str | os.PathLike
                                ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Read one run's ``validation_predictions.npz``.

    Args:
        path: the file (:class:`fat_tf.callbacks.SaveValidationPredictions`).

    Returns:
        ``(candidates, final, steps, labels)``: every scored model's clip logits at every
        validation, ``[K, N, C]`` in the order the best-model rule sees them (validation
        by validation, the evaluated model first); the index in it of the last evaluated
        model; the optimiser step of each candidate ``[K]``; the labels ``[N, C]``.
    """
    try:
        with np.load(path) as saved:
            names = ["logits_evaluated"] + sorted(
                k for k in saved.files if k.startswith("logits_") and k != "logits_evaluated")
            logits = np.stack([saved[k] for k in names], axis=1)  # [E, M, N, C]
            steps, labels = saved["steps"], saved["labels"]
    except (KeyError, ValueError, OSError) as e:
        raise FatTfError(f"{path}: not a readable validation_predictions.npz "
                         f"({type(e).__name__}: {e})") from None
    epochs, models = logits.shape[:2]
    candidates = logits.reshape(epochs * models, *logits.shape[2:])
    return candidates, (epochs - 1) * models, np.repeat(steps, models), labels


def held_out_selection_scores(candidates: np.ndarray, final: int, labels: np.ndarray,
                      splits: int = 100, seed: int = 0, folds: int = 2
                      ) -> dict[str, np.ndarray]:
    """Held-out validation lwlrap of each selection rule over random splits.

    Args:
        candidates: clip logits ``[K, N, C]`` of every checkpoint the rules may pick, in
            the order the best-model rule sees them (ties go to the earliest).
        final: index in ``candidates`` of the last evaluated model.
        labels: ``[N, C]`` multi-hot labels of the validation clips.
        splits: random splits; each is scored ``folds`` times (each part held out once).
        seed: seed of the splits.
        folds: parts per split (2: halves, each picking for the other).

    Returns:
        ``{rule: [folds * splits] held-out lwlrap}`` for each of :data:`SELECTION_RULES`, and
        ``"picked_index"``: the ``best`` rule's picks (indices into ``candidates``).
    """
    candidates, labels = np.asarray(candidates), np.asarray(labels)
    if candidates.ndim != 3 or candidates.shape[1:] != labels.shape:
        raise ValueError(f"candidates {candidates.shape} do not match labels {labels.shape}")
    if not 0 <= final < len(candidates):
        raise ValueError(f"final index {final} outside 0..{len(candidates) - 1}")
    n = len(labels)
    if folds < 2 or n < 2 * folds:
        raise ValueError(f"{n} validation clips cannot be split into {folds} scored parts")
    rng = np.random.default_rng(seed)
    scores: dict[str, list] = {rule: [] for rule in SELECTION_RULES}
    picks = []
    for _ in range(splits):
        parts = np.array_split(rng.permutation(n), folds)
        for held_out in range(folds):
            held_out_part = parts[held_out]
            pick_part = np.concatenate([p for i, p in enumerate(parts) if i != held_out])
            on_pick = [lwlrap(labels[pick_part], c[pick_part]) for c in candidates]
            best = int(np.argmax(on_pick))
            picks.append(best)
            scores["best"].append(lwlrap(labels[held_out_part], candidates[best][held_out_part]))
            scores["final"].append(lwlrap(labels[held_out_part], candidates[final][held_out_part]))
    return {**{rule: np.asarray(v) for rule, v in scores.items()},
            "picked_index": np.asarray(picks)}
