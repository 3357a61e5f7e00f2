"""Scoring whole clips with a trained tagger, shared by evaluate, predict and export.

A clip of any length is cut into the sliding windows of the evaluation pipeline, every
window is scored, and window logits are pooled per clip (mean or max). Optional
test-time augmentation adds the time-reversed clip and averages the two clip logits.
"""

from __future__ import annotations

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
from fat_tf.files import keras_file_problem, read_json_object
from fat_tf.ops.pooling import clip_logits, pool_windows


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
        """Load the run's tagger (waveform in, logits out).

        Raises:
            FatTfError: the file is empty, truncated or damaged (one line naming it and
                what to do), rather than Keras' own error.
        """
        path = self.model_path(which)
        other = {"best": "final", "final": "best"}.get(which)
        advice = ("copy it again from where the run was trained, or use the run's other "
                  f"model (--model {other})")
        problem = keras_file_problem(path)
        if problem:
            raise FatTfError(f"{path}: {problem}; {advice}")
        try:
            return keras.models.load_model(path, compile=False)
        except Exception as e:  # a whole archive with bad content (e.g. a damaged .h5)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise FatTfError(f"{path}: cannot be loaded as a Keras model ({first}); "
                             f"{advice}") from None


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
    path = run_dir / "data.json"
    advice = "copy the run folder again from where it was trained"
    data = read_json_object(path, advice)
    missing = [k for k in ("class_names", "data_dir", "validation_fnames") if k not in data]
    if missing:
        raise FatTfError(f"{path}: lacks {', '.join(missing)} (not written by fat_tf.train, "
                         f"or damaged); {advice}")
    trained_with = data.get("config_sha256")  # absent in runs written before it existed
    if trained_with is not None and trained_with != config.fingerprint():
        raise FatTfError(
            f"{run_dir / 'config.json'}: differs from the settings the weights were trained "
            "with (its hash no longer matches data.json's config_sha256), so scores would "
            "silently change; restore the original config.json or retrain")
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
    max_windows: int | None = None,
) -> np.ndarray:
    """Clip logits ``[N, C]`` of whole clips, pooled over sliding windows.

    Args:
        model: tagger, waveform ``[B, L]`` -> logits ``[B, C]``.
        paths: audio files (any format :mod:`fat_tf.audio_io` reads, converted as in training).
        config: the run config (window length, hop, window cap, pooling).
        pooling: ``mean`` or ``max`` (default: ``config.data.window_pooling``).
        tta: also score the time-reversed clips and average the two clip logits.
        batch_size: clips per batch (default: ``config.data.eval_batch_size``).
        verbose: Keras progress bar setting.
        max_windows: cap on windows per clip (default: ``config.data.max_eval_windows``,
            as validation during training); ``0``: every window, as ``predict``, the
            Python API and the export score clips.
    """
    pooling = pooling or config.data.window_pooling
    window = config.crop_samples
    cap = config.data.max_eval_windows if max_windows is None else window_cap(max_windows)
    ds = pipeline.evaluation_dataset(
        paths, None, sample_rate=config.frontend.sample_rate, window_samples=window,
        hop_samples=max(1, int(window * config.data.eval_hop_fraction)),
        max_windows=cap,
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


# --------------------------------------------------------------------------- in-graph scoring
def batch_window_starts(
    lengths: tf.Tensor, length: int, hop: int, max_windows: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`fat_tf.data.pipeline.window_starts` for a batch of clip lengths at once.

    Gives exactly the offsets of ``window_starts`` (same float32 ``linspace`` arithmetic and
    rounding) for every clip, padded to the largest window count of the batch. Uses only
    element-wise ops, so it exports to SavedModel and TFLite without loops.

    Args:
        lengths: int ``[batch]`` clip lengths in samples (>= 0).
        length: window length in samples.
        hop: largest spacing between consecutive windows.
        max_windows: upper bound on windows per clip.

    Returns:
        ``(starts, mask)``: int32 ``[batch, W]`` start offsets (0 where padded) and bool
        ``[batch, W]`` real-window mask; ``W = max(1, largest window count)``.
    """
    lengths = tf.cast(lengths, tf.int32)
    slack = tf.maximum(lengths - length, 0)
    count = tf.minimum(1 + (slack + hop - 1) // hop, max_windows)
    width = tf.reduce_max(tf.concat([count, tf.ones([1], tf.int32)], axis=0))
    index = tf.range(width)[None, :]
    slack_f = tf.cast(slack, tf.float32)[:, None]
    # tf.linspace(0, slack, count): j * (slack / max(count - 1, 1)), the last one exactly slack.
    delta = slack_f / tf.cast(tf.maximum(count - 1, 1), tf.float32)[:, None]
    positions = delta * tf.cast(index, tf.float32)
    last = (index == count[:, None] - 1) & (count[:, None] > 1)
    positions = tf.where(last, slack_f, positions)
    mask = index < count[:, None]
    starts = tf.where(mask, tf.cast(tf.round(positions), tf.int32), 0)
    return starts, mask


#: ``max_windows`` meaning "every window": larger than any clip's window count.
NO_CAP = 2**30


def window_cap(max_windows: int | None) -> int:
    """The window cap to compute with: ``max_windows``, or :data:`NO_CAP` for ``None``
    or ``0`` (score every window).

    Args:
        max_windows: a cap on windows per clip, or ``None``/``0`` for none.
    """
    return int(max_windows) if max_windows and max_windows > 0 else NO_CAP


def window_outputs(
    fns: Sequence,
    waveform: tf.Tensor,
    lengths: tf.Tensor,
    *,
    window: int,
    hop: int,
    max_windows: int | None,
    chunk_windows: int | None = None,
) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor]:
    """Per-window outputs of a padded batch of waveforms, computed in one graph.

    Every clip is cut into the sliding windows of :func:`batch_window_starts` (zero-padded
    when a clip is shorter than a window); only the real windows of the batch are cut
    (``tf.gather``) and given to every function of ``fns``, and their outputs are
    scattered back to ``[batch, W, D]`` (zeros where a clip has fewer than ``W``
    windows).

    With ``chunk_windows`` the real windows are scored ``chunk_windows`` at a time in a
    ``tf.while_loop``, so memory is bounded by one chunk's activations, whatever the
    length of the clips (a long recording scored window by window); without, all of them
    in one call (no control flow, for TFLite).

    Args:
        fns: callables, windows ``[N, window]`` -> float ``[N, D_k]``.
        waveform: float32 ``[batch, samples]``; row ``i`` holds clip ``i`` in its first
            ``lengths[i]`` samples (what follows is ignored).
        lengths: int32 ``[batch]`` real lengths, clipped to ``[0, samples]``.
        window: window length in samples.
        hop: largest spacing between windows.
        max_windows: cap on windows per clip (evenly spread over longer clips);
            ``None`` or ``0``: every window.
        chunk_windows: most windows per call of a function (``None``: all at once).

    Returns:
        ``(outputs, starts, mask)``: one float32 ``[batch, W, D_k]`` per function, int32
        ``[batch, W]`` window start offsets (0 where padded) and the bool ``[batch, W]``
        real-window mask.

    Windows are cut with ``tf.gather`` from the flattened batch, so a batch may hold up
    to ``2**31`` samples in all (13 h at 44.1 kHz).
    """
    waveform = tf.cast(waveform, tf.float32)
    samples = tf.shape(waveform)[1]
    lengths = tf.clip_by_value(tf.cast(lengths, tf.int32), 0, samples)
    # Zero what lies past each clip's end (a short clip's window reads into it), and pad
    # so that a window starting at 0 fits.
    inside = tf.range(samples)[None, :] < lengths[:, None]
    waveform = tf.where(inside, waveform, tf.zeros_like(waveform))
    padded = tf.maximum(samples, window)
    waveform = tf.pad(waveform, [[0, 0], [0, padded - samples]])
    starts, mask = batch_window_starts(lengths, window, hop, window_cap(max_windows))
    real = tf.where(mask)  # [N, 2] (clip, window), row-major
    clip_index = tf.cast(real[:, 0], tf.int32)
    offsets = clip_index * padded + tf.gather_nd(starts, real)
    flat = tf.reshape(waveform, [-1])
    count = tf.shape(offsets)[0]

    def score(part):
        windows = tf.gather(flat, part[:, None] + tf.range(window)[None, :])
        # An empty batch has no windows; some kernels fail on empty inputs, so score one
        # dummy zero window then (no control flow, which TFLite's delegates handle poorly).
        n = tf.shape(windows)[0]
        windows = tf.pad(windows, [[0, tf.maximum(1 - n, 0)], [0, 0]])
        return [tf.cast(fn(windows), tf.float32)[:n] for fn in fns]

    if not chunk_windows:
        outputs = score(offsets)
    else:
        chunk = int(chunk_windows)
        steps = tf.maximum(1, (count + chunk - 1) // chunk)
        arrays = [tf.TensorArray(tf.float32, size=steps, infer_shape=False,
                                 element_shape=tf.TensorShape([None, None])) for _ in fns]

        def body(i, *arrays):
            parts = score(offsets[i * chunk : (i + 1) * chunk])
            return (i + 1, *[a.write(i, p) for a, p in zip(arrays, parts)])

        _, *arrays = tf.while_loop(lambda i, *_: i < steps, body, [tf.constant(0), *arrays])
        outputs = [a.concat() for a in arrays]
    batch_shape = tf.shape(mask, out_type=tf.int64)
    scattered = [tf.scatter_nd(real, out, tf.concat([batch_shape, tf.shape(out, tf.int64)[1:]],
                                                    0)) for out in outputs]
    return scattered, starts, mask


def waveform_clip_logits(
    tagger,
    waveform: tf.Tensor,
    lengths: tf.Tensor,
    *,
    window: int,
    hop: int,
    max_windows: int | None,
    pooling: str = "mean",
    tta: bool = False,
    chunk_windows: int | None = None,
) -> tf.Tensor:
    """Clip logits of a padded batch of waveforms, computed in one graph.

    The same scoring as :func:`score_clips` (sliding windows of :func:`window_starts`,
    zero-padded when a clip is shorter than a window, logits pooled over the real windows,
    optional time-reversal TTA) but from tensors instead of files: the window logits of
    :func:`window_outputs` are pooled with :func:`fat_tf.ops.pooling.pool_windows`.

    Args:
        tagger: callable, waveform ``[N, window]`` -> logits ``[N, C]`` (called with
            ``training=False``).
        waveform: float32 ``[batch, samples]``; row ``i`` holds clip ``i`` in its first
            ``lengths[i]`` samples (what follows is ignored).
        lengths: int32 ``[batch]`` real lengths, clipped to ``[0, samples]``.
        window: window length in samples.
        hop: largest spacing between windows.
        max_windows: cap on windows per clip; ``None`` or ``0``: every window.
        pooling: ``mean`` or ``max`` over windows.
        tta: average with the logits of the time-reversed windows.
        chunk_windows: most windows scored per call of ``tagger`` (see
            :func:`window_outputs`; ``None``: all at once).

    Returns:
        float32 ``[batch, C]`` clip logits.
    """
    fns = [lambda x: tagger(x, training=False)]
    if tta:
        fns.append(lambda x: tagger(tf.reverse(x, axis=[1]), training=False))
    outputs, _, mask = window_outputs(fns, waveform, lengths, window=window, hop=hop,
                                      max_windows=max_windows, chunk_windows=chunk_windows)
    clip = pool_windows(outputs[0], mask, pooling)
    if tta:
        clip = 0.5 * (clip + pool_windows(outputs[1], mask, pooling))
    return clip


def window_embedder(tagger: keras.Model):
    """The clip-embedding function of a tagger built by :func:`fat_tf.models.build_tagger`.

    The embedding of a window is the head's pooled input: the backbone's feature map
    ``[frames, mels, channels]`` pooled by the head's first layer
    (:class:`fat_tf.models.GlobalTimeFreqPool`, layer ``pool``) to ``[channels]``, the
    vector the head's dense layers turn into logits (512 values in the FAT2019 recipe).

    Args:
        tagger: the tagger (layers ``logmel``, ``augment``, ``classifier``; the classifier
            has ``backbone`` and ``head``, the head a ``pool`` layer).

    Returns:
        callable, waveform ``[N, window]`` -> float ``[N, channels]`` (inference mode).

    Raises:
        ValueError: the tagger lacks these layers.
    """
    from fat_tf.models.tagger import tagger_parts

    logmel, augment, classifier = tagger_parts(tagger)
    backbone = classifier.get_layer("backbone")
    pool = classifier.get_layer("head").get_layer("pool")

    def embed(x, training=False):
        features = backbone(augment(logmel(x), training=False), training=False)
        return pool(features)

    return embed
