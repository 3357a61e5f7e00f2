"""Clip scoring in a TensorFlow graph: cutting clips into windows, scoring and pooling them.

* :class:`ClipScorer` pools the window batches of the evaluation pipeline
  (:func:`fat_tf.inference.scoring.score_clips`);
* :func:`window_outputs` and :func:`waveform_clip_logits` cut the windows of a padded
  batch of waveforms inside the graph (:func:`batch_window_starts` gives exactly the
  pipeline's offsets) and score them, all at once or in chunks: the computation inside
  the exported SavedModel and TFLite models (:mod:`fat_tf.inference.clip_module`);
* :func:`window_embedder` gives a window's embedding (the head's pooled input).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from fat_tf.inference.scoring import window_cap
from fat_tf.ops.pooling import clip_logits, pool_windows


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

    The same scoring as :func:`~fat_tf.inference.scoring.score_clips` (sliding windows of
    :func:`~fat_tf.data.pipeline.window_starts`, zero-padded when a clip is shorter than a
    window, logits pooled over the real windows, optional time-reversal TTA) but from
    tensors instead of files: the window logits of :func:`window_outputs` are pooled with
    :func:`fat_tf.ops.pooling.pool_windows`.

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
