"""Scoring whole clips with a trained tagger, shared by evaluate, predict and export.

A clip of any length is cut into the sliding windows of the evaluation pipeline, every
window is scored, and window logits are pooled per clip (mean or max). Optional
test-time augmentation adds the time-reversed clip and averages the two clip logits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import fat_tf.layers  # noqa: F401  (registers the custom layers for loading)
import fat_tf.models  # noqa: F401
from fat_tf.config import Config
from fat_tf.data import pipeline
from fat_tf.errors import FatTfError
from fat_tf.ops.pooling import clip_logits


@dataclass(frozen=True)
class TrainedRun:
    """A finished (or checkpointed) run folder.

    Args:
        run_dir: the folder.
        config: its resolved config.
        class_names: class names in output order.
        data_dir: the dataset it was trained on.
        validation_fnames: the held-out curated clips.
    """

    run_dir: Path
    config: Config
    class_names: tuple[str, ...]
    data_dir: Path
    validation_fnames: tuple[str, ...]

    def model_path(self, which: str = "best") -> Path:
        """Path of ``best.keras`` or ``model.keras`` (``which`` = best or final)."""
        name = {"best": "best.keras", "final": "model.keras"}.get(which)
        if name is None:
            raise FatTfError(f"--model must be best or final, got {which!r}")
        path = self.run_dir / name
        if not path.exists():
            raise FatTfError(f"{path}: no such model in the run folder (has training finished?)")
        return path

    def load_model(self, which: str = "best") -> keras.Model:
        """Load the run's tagger (waveform in, logits out)."""
        return keras.models.load_model(self.model_path(which), compile=False)


def load_run(run_dir: str | Path) -> TrainedRun:
    """Read a run folder written by :func:`fat_tf.training.train`.

    Args:
        run_dir: the run folder.
    """
    run_dir = Path(run_dir)
    for name in ("config.json", "data.json"):
        if not (run_dir / name).exists():
            raise FatTfError(f"{run_dir}: not a fat_tf run folder (no {name})")
    config = Config.from_json(run_dir / "config.json")
    with open(run_dir / "data.json", encoding="utf-8") as f:
        data = json.load(f)
    return TrainedRun(run_dir, config, tuple(data["class_names"]), Path(data["data_dir"]),
                      tuple(data["validation_fnames"]))


def score_clips(
    model: keras.Model,
    paths: Sequence[str],
    config: Config,
    pooling: str | None = None,
    tta: bool = False,
    batch_size: int | None = None,
    verbose: int | str = "auto",
) -> np.ndarray:
    """Clip logits ``[N, C]`` of whole clips, pooled over sliding windows.

    Args:
        model: tagger, waveform ``[B, L]`` -> logits ``[B, C]``.
        paths: WAV files (mono, at ``config.frontend.sample_rate``).
        config: the run config (window length, hop, window cap, pooling).
        pooling: ``mean`` or ``max`` (default: ``config.data.window_pooling``).
        tta: also score the time-reversed clips and average the two clip logits.
        batch_size: clips per batch (default: ``config.data.eval_batch_size``).
        verbose: Keras progress bar setting.
    """
    pooling = pooling or config.data.window_pooling
    window = config.crop_samples
    ds = pipeline.evaluation_dataset(
        paths, None, sample_rate=config.frontend.sample_rate, window_samples=window,
        hop_samples=max(1, int(window * config.data.eval_hop_fraction)),
        max_windows=config.data.max_eval_windows,
        batch_size=batch_size or config.data.eval_batch_size,
    )
    scorer = ClipScorer(model, pooling, tta)
    return np.asarray(scorer.predict(ds, verbose=verbose), np.float32)


class ClipScorer(keras.Model):
    """Wrap a tagger so ``predict`` on window batches returns pooled clip logits.

    Args:
        tagger: waveform-to-logits model.
        pooling: ``mean`` or ``max`` over windows.
        tta: average with the clip logits of the time-reversed windows.
    """

    def __init__(self, tagger: keras.Model, pooling: str = "mean", tta: bool = False):
        super().__init__()
        self.tagger = tagger
        self.pooling = pooling
        self.tta = tta

    def call(self, inputs):
        windows, mask = inputs["windows"], inputs["window_mask"]
        clip = clip_logits(self.tagger, windows, mask, self.pooling)
        if self.tta:
            reversed_clip = clip_logits(self.tagger, tf.reverse(windows, axis=[2]), mask,
                                        self.pooling)
            clip = 0.5 * (clip + reversed_clip)
        return clip
