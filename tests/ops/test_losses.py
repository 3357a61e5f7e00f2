"""Hand-computed cases of the multi-label losses."""

import math

import numpy as np
import pytest

from fat_tf.ops.losses import get_loss, multilabel_margin, sigmoid_bce


def test_sigmoid_bce_hand_computed():
    logits = np.array([[0.0, 2.0, -1.0]], np.float32)
    labels = np.array([[1.0, 0.0, 1.0]], np.float32)

    def bce(y, x):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = (bce(1, 0.0) + bce(0, 2.0) + bce(1, -1.0)) / 3
    np.testing.assert_allclose(sigmoid_bce(labels, logits).numpy(), [expected], rtol=1e-6)


def test_sigmoid_bce_soft_labels_and_large_logits():
    out = sigmoid_bce(np.array([[0.3, 1.0]]), np.array([[0.0, 200.0]])).numpy()
    np.testing.assert_allclose(out, [(math.log(2) + 0.0) / 2], rtol=1e-6)


def test_multilabel_margin_hand_computed():
    # PyTorch's documented example: x = [0.1, 0.2, 0.4, 0.8], targets {3, 0} -> 0.85
    logits = np.array([[0.1, 0.2, 0.4, 0.8]], np.float32)
    labels = np.array([[1, 0, 0, 1]], np.float32)
    # pairs (j positive, i negative): (0,1),(0,2),(3,1),(3,2)
    # [1-(0.1-0.2)] + [1-(0.1-0.4)] + [1-(0.8-0.2)] + [1-(0.8-0.4)] = 1.1+1.3+0.4+0.6 = 3.4
    np.testing.assert_allclose(multilabel_margin(labels, logits).numpy(), [3.4 / 4], rtol=1e-6)


def test_multilabel_margin_clamps_and_edge_cases():
    logits = np.array([[5.0, -5.0], [1.0, 1.0], [0.0, 0.0]], np.float32)
    labels = np.array([[1, 0], [1, 1], [0, 0]], np.float32)
    # satisfied margin -> 0; all positive -> no pairs -> 0; no positive -> 0
    np.testing.assert_allclose(multilabel_margin(labels, logits).numpy(), [0.0, 0.0, 0.0])


def test_multilabel_margin_matches_pytorch_when_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 9)).astype(np.float32)
    labels = (rng.random((6, 9)) < 0.3).astype(np.float32)
    labels[0] = 0
    labels[0, 2] = 1
    targets = np.full((6, 9), -1, np.int64)
    for b in range(6):
        idx = np.flatnonzero(labels[b])
        targets[b, : len(idx)] = idx
    ref = torch.nn.MultiLabelMarginLoss(reduction="none")(
        torch.from_numpy(logits), torch.from_numpy(targets)
    ).numpy()
    np.testing.assert_allclose(multilabel_margin(labels, logits).numpy(), ref, rtol=1e-5)


def test_get_loss():
    assert get_loss("bce") is sigmoid_bce
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("softmax")
