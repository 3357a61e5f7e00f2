"""Split-half comparison of checkpoint-selection rules (:mod:`fat_tf.selection`)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from fat_tf.errors import FatTfError
from fat_tf.metrics import lwlrap
from fat_tf.selection import candidates_from_predictions, held_out_selection_scores


def labels_and_noise(n=30, classes=6, candidates=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, classes)) < 0.25).astype(np.float32)
    labels[np.arange(n), rng.integers(0, classes, n)] = 1.0  # every clip has a label
    return labels, rng.normal(size=(candidates, n, classes)).astype(np.float32)


def test_identical_checkpoints_score_the_same_under_both_rules():
    labels, noise = labels_and_noise()
    same = np.repeat(noise[:1], 4, axis=0)
    scores = held_out_selection_scores(same, final=3, labels=labels, splits=10)
    np.testing.assert_array_equal(scores["best"], scores["final"])
    assert len(scores["best"]) == 20
    assert set(scores["picked_index"]) == {0}  # ties go to the earliest


def test_best_rule_finds_a_good_checkpoint_that_is_not_the_last():
    labels, noise = labels_and_noise()
    candidates = noise.copy()
    candidates[1] = labels * 5 + 0.01 * noise[1]  # ranks every true label first
    scores = held_out_selection_scores(candidates, final=len(candidates) - 1, labels=labels,
                               splits=10)
    assert set(scores["picked_index"]) == {1}
    np.testing.assert_allclose(scores["best"], 1.0)
    assert scores["final"].mean() < 0.8  # noise


def test_each_pick_uses_one_half_and_is_scored_on_the_other():
    labels, candidates = labels_and_noise(n=21, candidates=6, seed=3)
    scores = held_out_selection_scores(candidates, final=5, labels=labels, splits=7, seed=11)
    rng = np.random.default_rng(11)  # the same splits, worked out independently
    k = 0
    for _ in range(7):
        order = rng.permutation(21)
        a, b = order[:11], order[11:]  # np.array_split's halves
        for pick, held_out in ((b, a), (a, b)):  # the first part is held out first
            on_pick = [lwlrap(labels[pick], c[pick]) for c in candidates]
            assert scores["picked_index"][k] == int(np.argmax(on_pick))
            best = candidates[int(np.argmax(on_pick))]
            assert scores["best"][k] == lwlrap(labels[held_out], best[held_out])
            assert scores["final"][k] == lwlrap(labels[held_out], candidates[5][held_out])
            k += 1


def test_noise_checkpoints_gain_nothing_from_the_best_rule_on_held_out_clips():
    # checkpoints that differ only by noise: the best rule's in-half maximum is biased
    # upward, its held-out score is not (means agree within their spread)
    labels, candidates = labels_and_noise(n=40, candidates=10, seed=5)
    scores = held_out_selection_scores(candidates, final=9, labels=labels, splits=200)
    assert abs(scores["best"].mean() - scores["final"].mean()) < 0.05


def test_candidates_are_ordered_validation_by_validation_evaluated_first(tmp_path):
    labels, noise = labels_and_noise(n=8, candidates=6)
    buffer = io.BytesIO()
    np.savez(buffer, epochs=np.array([1, 2, 3]), steps=np.array([10, 20, 30]),
             labels=labels, logits_evaluated=noise[:3], logits_student=noise[3:])
    path = tmp_path / "validation_predictions.npz"
    path.write_bytes(buffer.getvalue())
    candidates, final, steps, got_labels = candidates_from_predictions(path)
    order = [0, 3, 1, 4, 2, 5]
    np.testing.assert_array_equal(candidates, noise[order])
    assert final == 4 and list(steps) == [10, 10, 20, 20, 30, 30]
    np.testing.assert_array_equal(got_labels, labels)


def test_unreadable_predictions_name_the_file(tmp_path):
    path = tmp_path / "validation_predictions.npz"
    path.write_bytes(b"not an npz")
    with pytest.raises(FatTfError, match="validation_predictions.npz"):
        candidates_from_predictions(path)


def test_bad_shapes_are_refused():
    labels, noise = labels_and_noise()
    with pytest.raises(ValueError, match="do not match"):
        held_out_selection_scores(noise[:, :10], final=0, labels=labels)
    with pytest.raises(ValueError, match="final index"):
        held_out_selection_scores(noise, final=5, labels=labels)


def test_more_folds_pick_on_more_clips_and_hold_out_each_part_once():
    labels, candidates = labels_and_noise(n=24, candidates=4, seed=2)
    scores = held_out_selection_scores(candidates, final=3, labels=labels, splits=5,
                                       folds=4)
    assert len(scores["best"]) == len(scores["final"]) == 20
    rng = np.random.default_rng(0)
    parts = np.array_split(rng.permutation(24), 4)
    pick = np.concatenate(parts[1:])  # the first split, first part held out
    on_pick = [lwlrap(labels[pick], c[pick]) for c in candidates]
    assert scores["picked_index"][0] == int(np.argmax(on_pick))
    assert scores["final"][0] == lwlrap(labels[parts[0]], candidates[3][parts[0]])
    with pytest.raises(ValueError, match="cannot be split"):
        held_out_selection_scores(candidates, final=3, labels=labels, folds=13)
