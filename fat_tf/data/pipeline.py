"""tf.data input pipelines: training crops, evaluation windows, caches, endless streams.

Three kinds of stream, all built from lists of audio paths (and multi-hot labels):

* :func:`training_dataset` — labelled clips, shuffled, one random fixed-length crop
  per clip (zero-padded at a random offset when the clip is shorter), batched.
* :func:`unlabelled_dataset` — the same without labels, repeated forever, to be zipped
  with the labelled stream at a chosen ratio (:func:`semi_supervised_dataset`).
* :func:`training_stream` and :func:`unlabelled_stream` — the same two as endless
  streams that can start at any batch, each pass's order and crops drawn from the seed
  and the pass's number alone: what training reads, so that a resumed run sees the
  batches an uninterrupted one would.
* :func:`evaluation_dataset` — every clip cut into deterministic sliding windows that
  cover the whole clip (one zero-padded window when the clip is shorter than a window),
  padded to a common window count per batch with a mask, so clip scores can be pooled.

Element formats (what a model's ``train_step`` / ``test_step`` receives):

* training: ``({"audio": [B, L]}, labels [B, C])``; semi-supervised adds
  ``"unlabelled": [B * ratio, L]`` to the dict.
* evaluation: ``({"windows": [B, W, L], "window_mask": [B, W]}, labels [B, C])``
  (labels are omitted when none are given).

Randomness (shuffle order and crop offsets) comes only from ``seed``: the same seed
gives the same batches, and each epoch draws new ones. Each file's way in is decided
when a stream is built (:mod:`fat_tf.data.decode`): 16-bit PCM mono WAV at the stream's
rate is decoded in-graph, any other file on the host (through ``tf.numpy_function``). An
on-disk or memory ``cache`` makes that conversion a one-time cost. A file that cannot be
read raises ``InvalidArgumentError`` whose message
(:func:`fat_tf.data.decode.pipeline_error`) names the file; run the dataset check
(:func:`fat_tf.data.load_dataset`) first to get these errors before training.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from fat_tf.data import audio_io
from fat_tf.data.decode import converted_on_host, decode_converted, decode_wav
from fat_tf.files import atomic_write_text

AUTOTUNE = tf.data.AUTOTUNE


def random_crop_or_pad(wave: tf.Tensor, length: int, seed: tf.Tensor) -> tf.Tensor:
    """Cut a random window of ``length`` samples, or zero-pad at a random offset.

    Works along the first axis, so it also crops log-mel ``[frames, mels]`` in time.

    Args:
        wave: ``[samples]`` (or ``[frames, mels]``) float tensor.
        length: output length along the first axis.
        seed: shape ``[2]`` int tensor for the stateless random offset.

    Returns:
        ``[length]`` (or ``[length, mels]``) tensor.
    """
    n = tf.shape(wave)[0]
    pad = tf.maximum(length - n, 0)
    pad_seed, crop_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    left = tf.random.stateless_uniform([], pad_seed, 0, pad + 1, dtype=tf.int32)
    inner = tf.zeros([tf.rank(wave) - 1, 2], tf.int32)  # feature axes are not padded
    wave = tf.pad(wave, tf.concat([[[left, pad - left]], inner], axis=0))
    slack = tf.shape(wave)[0] - length
    start = tf.random.stateless_uniform([], crop_seed, 0, slack + 1, dtype=tf.int32)
    return tf.ensure_shape(wave[start : start + length], [length, *wave.shape[1:]])


def window_starts(num_samples: tf.Tensor, length: int, hop: int, max_windows: int) -> tf.Tensor:
    """Start offsets of evaluation windows that cover a whole clip.

    The first window starts at 0 and the last ends at the clip's end; windows are evenly
    spaced no further apart than ``hop`` (unless ``max_windows`` caps their number).
    A clip no longer than one window has a single window at 0.

    Args:
        num_samples: scalar int tensor, the clip length.
        length: window length in samples.
        hop: largest spacing between consecutive windows.
        max_windows: upper bound on the number of windows.

    Returns:
        int32 tensor ``[W]`` of start offsets, ``1 <= W <= max_windows``.
    """
    slack = tf.maximum(num_samples - length, 0)
    count = 1 + (slack + hop - 1) // hop
    count = tf.minimum(count, max_windows)
    positions = tf.linspace(0.0, tf.cast(slack, tf.float32), count)
    return tf.cast(tf.round(positions), tf.int32)


def sliding_windows(wave: tf.Tensor, length: int, hop: int, max_windows: int) -> tf.Tensor:
    """Cut ``wave`` into the windows of :func:`window_starts` (zero-padded if short).

    Args:
        wave: ``[samples]`` tensor.
        length: window length in samples.
        hop: largest spacing between windows.
        max_windows: upper bound on the number of windows.

    Returns:
        ``[W, length]`` tensor.
    """
    n = tf.shape(wave)[0]
    wave = tf.pad(wave, [[0, tf.maximum(length - n, 0)]])
    starts = window_starts(n, length, hop, max_windows)
    index = starts[:, None] + tf.range(length)[None, :]
    return tf.gather(wave, index)


def _source(paths: Sequence[str], labels: np.ndarray | None) -> tf.data.Dataset:
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no audio files given to the input pipeline")
    if labels is None:
        return tf.data.Dataset.from_tensor_slices(paths)
    labels = np.asarray(labels, np.float32)
    if labels.ndim != 2 or labels.shape[0] != len(paths):
        raise ValueError(f"labels must be [{len(paths)}, classes], got {labels.shape}")
    return tf.data.Dataset.from_tensor_slices((paths, labels))


def cache_file(folder: str, paths: Sequence[str], what: dict) -> str:
    """Path prefix of an on-disk ``tf.data`` cache, unique to its content.

    The name hashes ``what`` (e.g. the front-end settings) with every file's path, size
    and modification time, so a changed setting or file gets a fresh cache instead of
    stale data, and different streams (labelled, unlabelled, validation) never collide.
    Lock files left by a killed run are removed (one run per cache at a time).

    Args:
        folder: the cache folder.
        paths: the files the stream reads, in order.
        what: settings that change the cached content.
    """
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    key = digest.hexdigest()[:20]
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, f"{key}*.lockfile")):
        os.unlink(stale)
    description = os.path.join(folder, f"{key}.json")
    if not os.path.exists(description):
        atomic_write_text(description, json.dumps({**what, "files": len(paths)}, indent=2))
    return os.path.join(folder, key)


def _decoded(
    paths: Sequence[str],
    labels: np.ndarray | None,
    sample_rate: int,
    cache: str,
    shuffle_seed: int | None,
    shuffle_buffer: int,
    parallel_calls: int,
    features=None,
) -> tf.data.Dataset:
    """Paths (and labels) -> decoded waveforms (or their log-mel), shuffled when
    ``shuffle_seed`` is set.

    Without a cache the cheap path list is shuffled before decoding, so memory stays
    bounded by the prefetch depth. With a cache, clips are cached in their file order
    and the shuffle buffer then holds decoded clips (``shuffle_buffer`` of them).
    ``features``, a :class:`fat_tf.layers.LogMel`, turns each whole clip into its
    log-mel ``[frames, mels]`` before caching. Files that are not 16-bit mono WAV at
    ``sample_rate`` are converted on the host (see the module docstring).
    """
    host = converted_on_host([str(p) for p in paths], sample_rate)
    ds = tf.data.Dataset.zip((tf.data.Dataset.from_tensor_slices(host),
                              _source(paths, labels)))
    shuffle_paths = shuffle_seed is not None and cache == "none"
    if shuffle_paths:
        ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)

    def read(path, on_host):
        if host.all():
            return decode_converted(path, sample_rate)
        if not host.any():
            return decode_wav(path, sample_rate)
        return tf.cond(on_host, lambda: decode_converted(path, sample_rate),
                       lambda: decode_wav(path, sample_rate))

    def decode(on_host, item):
        path, *label = item if isinstance(item, tuple) else (item,)
        wave = read(path, on_host)
        if features is not None:
            wave = features(wave[None, :])[0]
        return (wave, *label) if label else wave

    ds = ds.map(decode, num_parallel_calls=parallel_calls)
    if cache == "memory":
        ds = ds.cache()
    elif cache != "none":
        what = {"sample_rate": sample_rate}
        if features is not None:
            what = {"logmel": features.get_config()}
            what["logmel"].pop("name", None)
        if host.any():  # converted audio: the decoder is part of the content
            what["converted"] = audio_io.CONVERSION
        ds = ds.cache(cache_file(cache, list(paths), json.loads(json.dumps(what, default=str))))
    if shuffle_seed is not None and not shuffle_paths:
        ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds


def _with_crop_seeds(ds: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Zip each element with a fresh per-element stateless seed (new each epoch)."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds))


def _options(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.map_parallelization = True
    return ds.with_options(options)


def training_dataset(
    paths: Sequence[str],
    labels: np.ndarray,
    *,
    sample_rate: int,
    crop_samples: int,
    batch_size: int,
    seed: int,
    cache: str = "none",
    shuffle_buffer: int = 2048,
    parallel_calls: int = AUTOTUNE,
    drop_remainder: bool = True,
    logmel=None,
) -> tf.data.Dataset:
    """Labelled training stream: shuffled clips, one random crop each, batched.

    Args:
        paths: audio file paths.
        labels: ``[N, C]`` multi-hot float array.
        sample_rate: the model's rate (files at other rates are resampled).
        crop_samples: crop length in samples.
        batch_size: clips per batch.
        seed: seed of shuffle order and crop offsets.
        cache: ``none``, ``memory`` or a folder for an on-disk cache of decoded audio.
        shuffle_buffer: shuffle buffer (in decoded clips) when caching.
        parallel_calls: decode parallelism (``tf.data.AUTOTUNE`` by default).
        drop_remainder: drop the last incomplete batch (keeps shapes static).
        logmel: a :class:`fat_tf.layers.LogMel` to turn each whole clip into features
            in the pipeline (then cached, if ``cache`` is set); crops are then
            ``crop_samples`` *frames* long and the batch key is ``logmel``.

    Returns:
        dataset of ``({"audio": [B, crop_samples]}, labels [B, C])``, or
        ``({"logmel": [B, frames, mels]}, labels)`` with ``logmel``.
    """
    ds = _decoded(paths, labels, sample_rate, cache, seed, shuffle_buffer, parallel_calls,
                  logmel)
    ds = _with_crop_seeds(ds, seed + 1)
    key = "audio" if logmel is None else "logmel"

    def crop(item, crop_seed):
        wave, label = item
        return {key: random_crop_or_pad(wave, crop_samples, crop_seed)}, label

    ds = ds.map(crop, num_parallel_calls=parallel_calls)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return _options(ds.prefetch(AUTOTUNE))


def unlabelled_dataset(
    paths: Sequence[str],
    *,
    sample_rate: int,
    crop_samples: int,
    batch_size: int,
    seed: int,
    cache: str = "none",
    shuffle_buffer: int = 2048,
    parallel_calls: int = AUTOTUNE,
    logmel=None,
) -> tf.data.Dataset:
    """Endless unlabelled stream of random crops (labels, if any, are never read).

    Args:
        paths: audio file paths.
        sample_rate: the model's rate (files at other rates are resampled).
        crop_samples: crop length in samples.
        batch_size: clips per batch.
        seed: seed of shuffle order and crop offsets.
        cache: ``none``, ``memory`` or a folder for an on-disk cache of decoded audio.
        shuffle_buffer: shuffle buffer (in decoded clips) when caching.
        parallel_calls: decode parallelism.
        logmel: as in :func:`training_dataset` (features cropped to ``crop_samples``
            frames).

    Returns:
        dataset of ``[B, crop_samples]`` float32 batches (``[B, frames, mels]`` with
        ``logmel``), repeating forever.
    """
    ds = _decoded(paths, None, sample_rate, cache, seed, shuffle_buffer, parallel_calls,
                  logmel)
    ds = _with_crop_seeds(ds.repeat(), seed + 1)
    ds = ds.map(
        lambda wave, s: random_crop_or_pad(wave, crop_samples, s),
        num_parallel_calls=parallel_calls,
    )
    return _options(ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE))


#: Passes an endless stream can run through (more than any run takes).
_ENDLESS_PASSES = 2**62


def _pass_seeds(seed: int, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Shuffle and crop seeds of pass ``index`` of a stream seeded by ``seed``: a
    function of the two numbers alone, so a pass is the same whenever it is built."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
    seeds = tf.random.stateless_uniform([2], seed=key, minval=0, maxval=2**31 - 1,
                                        dtype=tf.int64)
    return seeds[0], seeds[1]


def _endless(
    paths: Sequence[str],
    labels: np.ndarray | None,
    sample_rate: int,
    cache: str,
    seed: int,
    shuffle_buffer: int,
    parallel_calls: int,
    features,
    pass_length: int,
    start: int,
) -> tf.data.Dataset:
    """Endless ``(clip[, label]), crop seed`` elements, from element ``start`` on.

    Pass ``p`` is the first ``pass_length`` clips of a shuffle of all of them, zipped
    with per-clip crop seeds, both drawn from ``(seed, p)`` alone (:func:`_pass_seeds`):
    the stream from ``start`` is exactly the tail of the stream from 0. It starts at the
    pass holding ``start`` and reads and drops that pass's earlier elements (at most one
    pass of decoding). Decoding and caching are as in :func:`_decoded`: without a cache
    each pass shuffles the paths before decoding; with one, the clips are decoded and
    cached once and each pass shuffles the cached clips through ``shuffle_buffer``.
    """
    if pass_length < 1:
        raise ValueError("a pass of the stream must hold at least one clip")
    cached = None if cache == "none" else _decoded(
        paths, labels, sample_rate, cache, None, shuffle_buffer, parallel_calls, features)

    @tf.autograph.experimental.do_not_convert
    def one_pass(index):
        # The pass's seeds are complete on their own, so this function's graph takes no
        # global seed: TensorFlow's seed helper would compare a symbolic seed with 0 in
        # Python (and fail) when the global seed is 0 (train.seed's default).
        tf.compat.v1.get_default_graph().seed = None
        shuffle_seed, crop_seed = _pass_seeds(seed, index)
        if cached is None:
            clips = _decoded(paths, labels, sample_rate, cache, shuffle_seed, shuffle_buffer,
                             parallel_calls, features)
        else:
            clips = cached.shuffle(shuffle_buffer, seed=shuffle_seed)
        clips = _with_crop_seeds(clips, crop_seed)
        if pass_length >= len(paths):
            return clips
        # read to the end of the pass (so a cache under it completes), keep its head
        return clips.enumerate().filter(lambda i, _: i < pass_length).map(lambda _, x: x)

    first_pass, skip = divmod(int(start), pass_length)
    passes = tf.data.Dataset.range(first_pass, _ENDLESS_PASSES)
    return passes.flat_map(one_pass).skip(skip)


def training_stream(
    paths: Sequence[str],
    labels: np.ndarray,
    *,
    sample_rate: int,
    crop_samples: int,
    batch_size: int,
    seed: int,
    start_batch: int = 0,
    cache: str = "none",
    shuffle_buffer: int = 2048,
    parallel_calls: int = AUTOTUNE,
    logmel=None,
) -> tf.data.Dataset:
    """Endless labelled training stream that can start at any batch (what training
    reads: a resumed run continues it where the interrupted one stopped).

    Pass after pass over the clips, like ``training_dataset(...).repeat()``: each pass
    a new shuffle and new crops, its incomplete last batch dropped. Unlike that stream,
    pass ``p``'s order and crops depend only on ``seed`` and ``p``, so the stream
    started at ``start_batch`` yields exactly the batches the stream started at 0
    yields from that batch on.

    Args:
        paths, labels, sample_rate, crop_samples, batch_size, seed, cache,
            shuffle_buffer, parallel_calls, logmel: as in :func:`training_dataset`.
        start_batch: batches of the stream (from its start) to leave out.

    Returns:
        an endless dataset of the batches of :func:`training_dataset`.
    """
    per_pass = len(paths) // batch_size
    if per_pass < 1:
        raise ValueError(f"{len(paths)} clips cannot fill one batch of {batch_size}")
    ds = _endless(paths, labels, sample_rate, cache, seed, shuffle_buffer, parallel_calls,
                  logmel, per_pass * batch_size, start_batch * batch_size)
    key = "audio" if logmel is None else "logmel"

    def crop(item, crop_seed):
        wave, label = item
        return {key: random_crop_or_pad(wave, crop_samples, crop_seed)}, label

    ds = ds.map(crop, num_parallel_calls=parallel_calls)
    return _options(ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE))


def unlabelled_stream(
    paths: Sequence[str],
    *,
    sample_rate: int,
    crop_samples: int,
    batch_size: int,
    seed: int,
    start_batch: int = 0,
    cache: str = "none",
    shuffle_buffer: int = 2048,
    parallel_calls: int = AUTOTUNE,
    logmel=None,
) -> tf.data.Dataset:
    """:func:`unlabelled_dataset` that can start at any batch, as
    :func:`training_stream` is to :func:`training_dataset` (a batch may span two
    passes, as there).

    Args:
        paths, sample_rate, crop_samples, batch_size, seed, cache, shuffle_buffer,
            parallel_calls, logmel: as in :func:`unlabelled_dataset`.
        start_batch: batches of the stream (from its start) to leave out.
    """
    ds = _endless(paths, None, sample_rate, cache, seed, shuffle_buffer, parallel_calls,
                  logmel, len(paths), start_batch * batch_size)
    ds = ds.map(
        lambda wave, s: random_crop_or_pad(wave, crop_samples, s),
        num_parallel_calls=parallel_calls,
    )
    return _options(ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE))


def semi_supervised_dataset(
    labelled: tf.data.Dataset, unlabelled: tf.data.Dataset
) -> tf.data.Dataset:
    """Zip a labelled stream with an endless unlabelled stream.

    The epoch length is the labelled stream's; the unlabelled batch size (set when the
    unlabelled stream was built) fixes the ratio of unlabelled to labelled clips.

    Args:
        labelled: from :func:`training_dataset`.
        unlabelled: from :func:`unlabelled_dataset`.

    Returns:
        dataset of ``({"audio": [B, L], "unlabelled": [B_u, L]}, labels [B, C])``; with
        log-mel streams the keys are ``logmel`` and ``unlabelled_logmel``.
    """

    def merge(item, unlabelled_batch):
        inputs, label = item
        key = "unlabelled" if "audio" in inputs else "unlabelled_logmel"
        return {**inputs, key: unlabelled_batch}, label

    ds = tf.data.Dataset.zip((labelled, unlabelled)).map(merge)
    return _options(ds.prefetch(AUTOTUNE))


def evaluation_dataset(
    paths: Sequence[str],
    labels: np.ndarray | None,
    *,
    sample_rate: int,
    window_samples: int,
    hop_samples: int,
    max_windows: int,
    batch_size: int,
    cache: str = "none",
    parallel_calls: int = AUTOTUNE,
) -> tf.data.Dataset:
    """Whole clips as sliding windows, in file order, for evaluation and prediction.

    Args:
        paths: audio file paths.
        labels: ``[N, C]`` multi-hot array, or None (prediction).
        sample_rate: the model's rate (files at other rates are resampled).
        window_samples: window length in samples (the training crop length).
        hop_samples: largest spacing between windows.
        max_windows: cap on windows per clip (evenly spread over long clips).
        batch_size: clips per batch.
        cache: ``none``, ``memory`` or a folder for an on-disk cache of decoded audio.
        parallel_calls: decode parallelism.

    Returns:
        dataset of ``({"windows": [B, W, L], "window_mask": [B, W]}, labels [B, C])``,
        without the labels when ``labels`` is None. ``W`` is the largest window count
        in the batch; padded windows have mask 0.
    """
    ds = _decoded(paths, labels, sample_rate, cache, None, 0, parallel_calls)

    def windows(wave, *label):
        w = sliding_windows(wave, window_samples, hop_samples, max_windows)
        inputs = {"windows": w, "window_mask": tf.ones(tf.shape(w)[:1], tf.float32)}
        return (inputs, *label) if label else inputs

    ds = ds.map(windows, num_parallel_calls=parallel_calls)
    ds = ds.padded_batch(batch_size)
    return _options(ds.prefetch(AUTOTUNE))
