"""How good a trained run's pseudo-labels would be on a development benchmark's noisy clips.

The development benchmark's ``manifest.json`` keeps every noisy clip's true labels. This
scores a run's saved model on the first crop (``data.crop_frames``) of each noisy clip,
in batches of 32 with dropout off, twice: BatchNorm with its moving statistics (how
pseudo-labelling guesses) and with the batch's own statistics. It prints the label
ranking average precision against the true labels and, at the given thresholds, the
positives and negatives per clip, their precision and error rate.

Usage::

    python experiments/ssl_comparison/pseudo_label_quality.py RUN_DIR DEVBENCH/k20_shifted \\
        [--model final] [--positive 0.7] [--negative 0.05]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import tensorflow as tf
from sklearn.metrics import label_ranking_average_precision_score

from fat_tf.inference.loaded import TrainedRun, load_run
from fat_tf.methods.base import dropout_layers, frozen_batchnorm_statistics
from fat_tf.models.tagger import tagger_parts
from fat_tf.run_folder import DEFAULT_MODEL

BATCH = 32


def noisy_clips(data_dir: Path, classes: tuple[str, ...], samples: int, seed: int = 0):
    """The noisy clips' first ``samples`` samples (zero-padded) and true multi-hot labels
    (columns in the order of ``classes``, the run's output order)."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    clips = list(manifest["clips"]["train_noisy"])
    np.random.default_rng(seed).shuffle(clips)
    waves, truth = [], []
    for clip in clips:
        x, _ = sf.read(data_dir / "train_noisy" / clip["fname"], dtype="float32")
        waves.append(x[:samples] if len(x) >= samples else np.pad(x, (0, samples - len(x))))
        truth.append([c in clip["true_labels"] for c in classes])
    return np.stack(waves), np.array(truth, np.float64)


def guesses(run: TrainedRun, which: str, waves: np.ndarray) -> dict[str, np.ndarray]:
    """Sigmoid outputs per BatchNorm mode (``moving``, ``batch``), whole batches only."""
    logmel, _, classifier = tagger_parts(run.load_model(which))
    for layer in dropout_layers(classifier):
        layer.rate = 0.0
    out = {"moving": [], "batch": []}
    for start in range(0, len(waves) - BATCH + 1, BATCH):
        mel = logmel(tf.constant(waves[start:start + BATCH]))
        out["moving"].append(tf.sigmoid(classifier(mel, training=False)).numpy())
        with frozen_batchnorm_statistics(classifier):
            out["batch"].append(tf.sigmoid(classifier(mel, training=True)).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=["best", "final"])
    parser.add_argument("--positive", type=float, default=0.7)
    parser.add_argument("--negative", type=float, default=0.05)
    args = parser.parse_args(argv)
    run = load_run(args.run_dir)
    samples = run.config.data.crop_frames * run.config.frontend.hop_length
    waves, truth = noisy_clips(args.data_dir, run.class_names, samples)
    for mode, p in guesses(run, args.model, waves).items():
        y = truth[:len(p)]
        positive, negative = p >= args.positive, p <= args.negative
        nan = float("nan")
        print(f"{mode:7s} clips {len(p)}  LRAP {label_ranking_average_precision_score(y, p):.3f}"
              f"  positives/clip {positive.sum(1).mean():.2f}"
              f" (precision {y[positive].mean() if positive.any() else nan:.3f})"
              f"  negatives/clip {negative.sum(1).mean():.2f}"
              f" (true labels among them {y[negative].mean() if negative.any() else nan:.4f})")


if __name__ == "__main__":
    main()
