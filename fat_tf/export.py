"""Export a trained run for serving: ``python -m fat_tf.export RUN_DIR --out DIR``.

The export folder is a TensorFlow SavedModel (load it with ``tf.saved_model.load(DIR)``,
no fat_tf needed) with the other formats beside it::

    DIR/saved_model.pb, variables/     SavedModel: whole clips in, clip probabilities out
    DIR/assets/class_names.txt         class names, one per line, in output order
    DIR/model.keras                    the Keras tagger (one window in, logits out)
    DIR/model.tflite                   TFLite, float32, builtin ops only
    DIR/model_quantized.tflite         TFLite, dynamic-range quantised (with --quantize)
    DIR/class_names.txt                the class names again, for TFLite users
    DIR/config.json                    the run's resolved config
    DIR/export.json                    scoring settings, files, signatures, check results

Every SavedModel and TFLite signature scores *whole clips* the way ``fat_tf.predict``
and the Python API (``fat_tf.load``) do: each clip is cut into sliding windows of
``config.crop_samples`` samples spaced at most ``eval_hop_fraction`` of a window apart
(the first at the clip's start, the last ending at its end; one zero-padded window for a
clip shorter than a window), *every* window is scored, however long the clip, window
logits are pooled (mean or max) and the sigmoid gives probabilities. The SavedModel
scores the windows :data:`CHUNK_WINDOWS` at a time (a ``tf.while_loop``), so an hour-long
recording needs the memory of its samples and of one chunk, not of all its windows; the
TFLite model scores all windows of a call at once (no control flow). Validation during
training and ``fat_tf.evaluate`` cap windows at ``data.max_eval_windows`` (16, spread
evenly over a clip longer than about 17 s) to bound batch memory, so their scores of
longer clips can differ slightly; exports written before version 2 used that cap too
(``metadata``'s ``max_windows``; 0 means every window).

Signatures (SavedModel and TFLite unless noted; ``B`` clips, ``T`` samples, ``C`` classes):

* ``serving_default``: ``waveform`` float32 ``[B, T]`` at the model's sample rate, any
  ``T >= 0``; every row is a whole clip of ``T`` samples. Returns ``probabilities`` and
  ``logits``, float32 ``[B, C]``.
* ``waveform_with_lengths``: ``waveform`` float32 ``[B, T]`` and ``lengths`` int32 ``[B]``:
  row ``i`` holds a clip of ``lengths[i]`` samples followed by anything (it is ignored),
  so clips of different lengths share one batch. Same outputs.
* ``wav_bytes`` (SavedModel only): ``wav_bytes`` string ``[B]``, whole WAV files
  (16-bit PCM, mono, at the model's sample rate; anything else fails with a message
  naming the batch index). Same outputs.
* ``class_names``: no input; ``class_names`` string ``[C]``.
* ``metadata``: no input; ``sample_rate``, ``window_samples``, ``hop_samples``,
  ``max_windows`` (int32 scalars; ``max_windows`` 0: every window), ``pooling`` (string
  scalar), ``tta`` (bool scalar).
* ``embeddings`` (SavedModel only): ``waveform`` and ``lengths`` as
  ``waveform_with_lengths``; returns ``embeddings`` float32 ``[B, D]``, the clip
  embedding: each window's pooled backbone features (the head's input before its dense
  layers, :func:`fat_tf.inference.window_embedder`; ``D`` = the last block's channels,
  512 in the FAT2019 recipe) pooled over the clip's windows like the logits.
* ``frames`` (SavedModel only): ``waveform`` and ``lengths`` as
  ``waveform_with_lengths``; returns every window's ``logits`` and ``probabilities``
  float32 ``[B, W, C]``, ``starts`` and ``ends`` int32 ``[B, W]`` (samples) and ``mask``
  bool ``[B, W]`` (real windows; ``W`` is the batch's largest window count, padding is
  zeros): the sound-event-detection view. Pooling the real windows' logits gives the clip
  logits (except with max pooling and TTA).

The same functions are attributes of the loaded object (``loaded.waveform(x)``,
``loaded.waveform_with_lengths(x, lengths)``, ``loaded.wav_bytes(b)``,
``loaded.embeddings(x, lengths)``, ``loaded.frames(x, lengths)``,
``loaded.class_names()``, ``loaded.class_map_path()`` as in YAMNet).

TFLite: inputs are resizable (``shape_signature`` ``[-1, -1]``); a signature runner
resizes them on each call (``interpreter.get_signature_runner("waveform_with_lengths")
(waveform=x, lengths=n)``), or call ``resize_tensor_input`` then ``allocate_tensors``.
TFLite's RFFT kernel only takes power-of-two lengths, so the TFLite graph computes the
``n_fft``-point spectrum (2560 = 512 * 5 in the FAT2019 recipe) from power-of-two RFFTs
of the decimated frames and one small DFT (:func:`power_spectrum_pow2`); every op is a
TFLite builtin (no Flex delegate needed). WAV decoding has no builtin, so the TFLite
model takes waveforms only.

Export writes everything to a temporary folder beside ``DIR``, reloads what it wrote,
checks that the SavedModel, the ``.keras`` file and the TFLite models give the clip
probabilities of :func:`fat_tf.inference.score_clips` on a few clips, and only then
renames the folder to ``DIR``. An existing ``DIR`` is replaced only with ``--overwrite``
and only if it is a previous export (its ``export.json`` says so, and it holds no run
files); a run folder, the run being exported, a folder holding it or inside it, and any
other file or folder are refused before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fat_tf.cli import HelpFormatter, prog, run_cli
from fat_tf.errors import FatTfError
from fat_tf.files import honour_umask

EXPORT_FORMAT = "fat_tf-export"
#: 2: every window of a clip is scored (``max_windows`` 0), ``embeddings`` and ``frames``
#: signatures; version 1 exports (16 windows at most) load and score as before.
EXPORT_VERSION = 2
#: Largest accepted |difference| of clip probabilities between the Keras model and a
#: float32 export (SavedModel, .keras, TFLite); measured differences are ~1e-6.
FLOAT_TOLERANCE = 1e-4
#: Largest accepted |difference| of clip probabilities for the dynamic-range quantised
#: TFLite model (int8 weights); a larger one is reported as a warning, not an error.
QUANTIZED_TOLERANCE = 0.05
#: Signatures of the SavedModel and which of them the TFLite models have.
SIGNATURES = ("serving_default", "waveform_with_lengths", "wav_bytes", "class_names", "metadata",
              "embeddings", "frames")
TFLITE_SIGNATURES = ("serving_default", "waveform_with_lengths", "class_names", "metadata")
#: Most windows the SavedModel scores in one call of the tagger; longer inputs are scored
#: in chunks of this many windows (64 windows of the FAT2019 CNN: about 1 GB of
#: activations on CPU).
CHUNK_WINDOWS = 64


# ----------------------------------------------------------------------------- the module
def split_power_of_two(n: int) -> tuple[int, int]:
    """``n = p * m`` with ``p`` the largest power of two dividing ``n`` and ``m`` odd.

    Args:
        n: a positive integer.

    Returns:
        ``(p, m)``.
    """
    p = 1
    while n % (2 * p) == 0:
        p *= 2
    return p, n // p


def power_spectrum_pow2(frames, n_fft: int, power: float = 2.0):
    """``|rfft(frames[..., :n_fft])| ** power`` using only power-of-two RFFTs.

    TFLite's RFFT2D kernel requires power-of-two lengths. With ``n_fft = P * m`` (``P`` a
    power of two, ``m`` odd) this is one decimation-in-time step of the Cooley-Tukey FFT:
    the ``m`` sub-sequences ``x[q::m]`` get a ``P``-point RFFT each (mirrored to all ``P``
    bins by conjugate symmetry), are multiplied by twiddle factors, and an ``m``-point DFT
    (a small matmul) across them gives bin ``l * P + p``. Float32 accuracy is that of
    ``tf.signal.rfft`` (~3e-7 relative). When ``n_fft`` is a power of two this is just
    the RFFT.

    Args:
        frames: float32 ``[..., L]`` windowed frames, ``L >= n_fft`` (cropped to
            ``n_fft``), static rank.
        n_fft: FFT length (even).
        power: exponent of the magnitude (2 = power spectrum).

    Returns:
        float32 ``[..., n_fft // 2 + 1]``.
    """
    import tensorflow as tf


    p_len, m = split_power_of_two(n_fft)
    bins = n_fft // 2 + 1
    x = frames[..., :n_fft]
    if m == 1:
        spec = tf.signal.rfft(x, fft_length=[n_fft])
        real, imag = tf.math.real(spec), tf.math.imag(spec)
        energy = tf.math.square(real) + tf.math.square(imag)
    else:
        lead = tf.shape(x)[:-1]
        rank = x.shape.rank
        x = tf.reshape(x, tf.concat([lead, [p_len, m]], 0))
        x = tf.transpose(x, list(range(rank - 1)) + [rank, rank - 1])  # [..., m, P]
        half = tf.signal.rfft(x, fft_length=[p_len])  # [..., m, P/2 + 1]
        mirror = np.concatenate([np.arange(p_len // 2 + 1), np.arange(p_len // 2 - 1, 0, -1)])
        sign = np.where(np.arange(p_len) > p_len // 2, -1.0, 1.0).astype(np.float32)
        y_re = tf.gather(tf.math.real(half), mirror.astype(np.int32), axis=-1)
        y_im = tf.gather(tf.math.imag(half), mirror.astype(np.int32), axis=-1) * sign
        theta = 2.0 * np.pi * np.outer(np.arange(m), np.arange(p_len)) / n_fft
        cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
        z_re = y_re * cos + y_im * sin  # Y_q[p] * exp(-2 pi i q p / n_fft)
        z_im = y_im * cos - y_re * sin
        phi = 2.0 * np.pi * np.outer(np.arange(m), np.arange(m)) / m
        dft_cos, dft_sin = np.cos(phi).astype(np.float32), np.sin(phi).astype(np.float32)

        def across(z, matrix):  # sum_q z[..., q, p] * matrix[q, l] -> [..., l, p]
            return tf.einsum("...qp,ql->...lp", z, matrix)

        x_re = across(z_re, dft_cos) + across(z_im, dft_sin)
        x_im = across(z_im, dft_cos) - across(z_re, dft_sin)
        energy = tf.math.square(x_re) + tf.math.square(x_im)
        energy = tf.reshape(energy, tf.concat([lead, [n_fft]], 0))[..., :bins]
    if power == 2.0:
        return energy
    if power == 1.0:
        return tf.math.sqrt(energy)
    return tf.math.pow(energy, power / 2.0)


def sparse_mel_projection(weights: np.ndarray) -> Callable:
    """``power @ weights`` over the filterbank's nonzero entries only, with no constant
    matrix operand.

    Gathers the bins each mel reads, scales them by their weights and sums them per mel
    (``unsorted_segment_sum``). Same values as the dense or banded matmul up to float
    summation order, ~13x fewer multiply-adds than the banded one for the FAT2019
    filterbank, and, having no matmul with a constant weight, it is left in float32 by
    TFLite's dynamic-range quantisation (which quantises matmul weights of 1024 elements
    or more to int8, ruining the log-mel: measured errors of ~6 standard deviations).

    Args:
        weights: ``[bins, mels]`` filterbank.

    Returns:
        ``f(power [B, F, bins]) -> mel power [B, F, mels]``.
    """
    import tensorflow as tf

    bins, mels = np.nonzero(weights)
    values = weights[bins, mels].astype(np.float32)

    def project(power):
        picked = tf.gather(power, bins.astype(np.int32), axis=-1) * values  # [B, F, nnz]
        summed = tf.math.unsorted_segment_sum(tf.transpose(picked, [2, 0, 1]),
                                              mels.astype(np.int32), weights.shape[1])
        return tf.transpose(summed, [1, 2, 0])

    return project


def tflite_logmel(layer) -> Callable:
    """A function computing ``layer(x)`` (a :class:`~fat_tf.layers.LogMel`) from TFLite
    builtin ops: the layer's own steps with :func:`power_spectrum_pow2` as the FFT and
    :func:`sparse_mel_projection` as the mel filterbank.

    Args:
        layer: the tagger's ``LogMel`` layer.

    Returns:
        ``f(waveform [B, T]) -> log-mel [B, frames, n_mels]``.
    """
    import tensorflow as tf

    from fat_tf.layers import logmel as lm

    window = lm.periodic_hann(layer.n_fft)
    weights = lm.mel_filterbank(layer.sample_rate, layer.n_fft, layer.n_mels, layer.fmin,
                                layer.fmax)
    mel = sparse_mel_projection(weights)

    def call(x):
        x = tf.cast(x, tf.float32)
        pad = layer.n_fft // 2 if layer.center else 0
        blocks, frames = lm.to_blocks(x, layer.n_fft, layer.hop_length, pad, layer.pad_mode)
        spec = power_spectrum_pow2(lm.windowed_frames(blocks, frames, window), layer.n_fft,
                                   layer.power)
        out = lm.power_to_db(mel(spec), layer.amin, layer.top_db)
        if layer.standardize:
            out = lm.standardize(out)
        return tf.cast(out, layer.compute_dtype)

    return call


@dataclasses.dataclass(frozen=True)
class ScoringSettings:
    """How whole clips are scored (the run config's evaluation settings).

    Args:
        sample_rate: audio sample rate in Hz.
        window_samples: window length (``config.crop_samples``).
        hop_samples: largest spacing between windows.
        max_windows: cap on windows per clip (evenly spread over longer clips); ``0``:
            every window, however long the clip (what ``predict``, the Python API and
            exports do).
        pooling: ``mean`` or ``max`` over window logits.
        tta: average with the logits of the time-reversed windows.
        chunk_windows: most windows the SavedModel scores at once (a ``tf.while_loop``
            over chunks), bounding its memory for long recordings; results do not
            depend on it.
    """

    sample_rate: int
    window_samples: int
    hop_samples: int
    max_windows: int
    pooling: str = "mean"
    tta: bool = False
    chunk_windows: int = CHUNK_WINDOWS

    @classmethod
    def from_config(cls, config, pooling: str | None = None, tta: bool = False,
                    max_windows: int = 0):
        """Inference settings of ``config``: its window, hop and pooling, and every
        window of a clip scored (``max_windows=0``; validation during training caps
        windows at ``config.data.max_eval_windows`` instead).

        Args:
            config: a run's :class:`~fat_tf.config.Config`.
            pooling: ``mean`` or ``max`` (default: ``config.data.window_pooling``).
            tta: time-reversal test-time augmentation.
            max_windows: cap on windows per clip (``0``: every window).
        """
        window = config.crop_samples
        return cls(
            sample_rate=config.frontend.sample_rate,
            window_samples=window,
            hop_samples=max(1, int(window * config.data.eval_hop_fraction)),
            max_windows=max_windows,
            pooling=pooling or config.data.window_pooling,
            tta=tta,
        )


@functools.cache
def _clip_module_class():
    """The :class:`ClipModule` class, defined on first use (importing this module for
    ``--help`` needs no TensorFlow)."""
    import tensorflow as tf

    from fat_tf.inference import waveform_clip_logits, window_embedder, window_outputs
    from fat_tf.ops.pooling import pool_windows

    class ClipModule(tf.Module):
        """Whole-clip scoring around a Keras tagger, with explicit ``TensorSpec`` s.

        Args:
            tagger: Keras tagger, waveform ``[N, window]`` -> logits ``[N, C]``.
            class_names: class names in output order.
            settings: a :class:`ScoringSettings`.
            tflite: use the TFLite-builtin log-mel (see :func:`tflite_logmel`).
            class_map_path: text file of class names stored as an asset.
        """

        def __init__(self, tagger, class_names, settings, *, tflite=False, class_map_path=None):
            super().__init__(name="fat_tf_clip_tagger")
            # Keras 3 variables are not found by tf.Module's tracking: list them (as
            # keras.export.ExportArchive does). The model itself is only captured by the
            # functions, so the SavedModel holds no Keras objects.
            self._variables = [getattr(v, "value", v) for v in tagger.variables]
            self._settings = settings
            self._names = list(class_names)
            if tflite:
                from fat_tf.errors import FatTfError
                from fat_tf.models.tagger import tagger_parts

                try:
                    logmel, augment, classifier = tagger_parts(tagger)
                except ValueError as e:
                    raise FatTfError(
                        "TFLite export needs a tagger built by fat_tf.models.build_tagger "
                        f"(layers 'logmel', 'augment', 'classifier'): {e}"
                    ) from None
                front = tflite_logmel(logmel)

                def window_logits(x, training=False):
                    return classifier(augment(front(x), training=False), training=False)
            else:

                def window_logits(x, training=False):
                    return tagger(x, training=False)

            self._window_logits = window_logits
            # TFLite: every window at once (no control flow, which TFLite's delegates
            # handle poorly); the SavedModel: chunks of windows (bounded memory).
            self._chunk = None if tflite else settings.chunk_windows
            try:
                self._window_embeddings = window_embedder(tagger)
            except ValueError:  # not a build_tagger tagger: no embeddings signature
                self._window_embeddings = None
            if class_map_path is not None:
                self.class_map_asset = tf.saved_model.Asset(class_map_path)

        def _outputs(self, waveform, lengths):
            s = self._settings
            logits = waveform_clip_logits(
                self._window_logits, waveform, lengths, window=s.window_samples,
                hop=s.hop_samples, max_windows=s.max_windows, pooling=s.pooling, tta=s.tta,
                chunk_windows=self._chunk,
            )
            return {"probabilities": tf.math.sigmoid(logits), "logits": logits}

        @property
        def has_embeddings(self) -> bool:
            """Whether the tagger has the parts :meth:`embeddings` needs."""
            return self._window_embeddings is not None

        def _per_window(self, fn, waveform, lengths):
            """``fn``'s outputs ``[B, W, D]`` on every window (and on the time-reversed
            windows with TTA), the window starts and the real-window mask."""
            s = self._settings
            fns = [fn]
            if s.tta:
                fns.append(lambda x: fn(tf.reverse(x, axis=[1])))
            return window_outputs(fns, waveform, lengths, window=s.window_samples,
                                  hop=s.hop_samples, max_windows=s.max_windows,
                                  chunk_windows=self._chunk)

        @tf.function(input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="waveform"),
            tf.TensorSpec([None], tf.int32, name="lengths"),
        ])
        def embeddings(self, waveform, lengths):
            """Clip embeddings ``{"embeddings": [B, D]}`` of clips of different lengths.

            A window's embedding is the head's pooled input (see
            :func:`fat_tf.inference.window_embedder`); a clip's is pooled over its
            windows as the logits are (mean or max; TTA averages the two directions).
            Same input contract as :meth:`waveform_with_lengths`.

            Args:
                waveform: float32 ``[B, T]``.
                lengths: int32 ``[B]``, each in ``[1, T]``.
            """
            if self._window_embeddings is None:
                raise ValueError("embeddings need a tagger built by "
                                 "fat_tf.models.build_tagger (a head with a 'pool' layer)")
            with tf.control_dependencies(input_checks(waveform, lengths, "embeddings")):
                waveform = tf.identity(waveform)
            outputs, _, mask = self._per_window(self._window_embeddings, waveform, lengths)
            pooled = [pool_windows(o, mask, self._settings.pooling) for o in outputs]
            clip = pooled[0] if len(pooled) == 1 else 0.5 * (pooled[0] + pooled[1])
            return {"embeddings": clip}

        @tf.function(input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="waveform"),
            tf.TensorSpec([None], tf.int32, name="lengths"),
        ])
        def frames(self, waveform, lengths):
            """Window-level scores (sound-event detection view) of clips of different
            lengths: every window that clip scoring pools.

            Returns ``logits`` and ``probabilities`` float32 ``[B, W, C]`` (TTA: the
            logits averaged with the time-reversed window's), ``starts`` and ``ends``
            int32 ``[B, W]`` (the window's first sample and one past its last, at most
            the clip's length) and ``mask`` bool ``[B, W]`` (real windows; ``W`` is the
            largest window count of the batch, and padded entries hold zeros). Pooling
            the logits of the real windows (mean or max) gives the clip logits of
            :meth:`waveform_with_lengths`, except with max pooling and TTA. Same input
            contract as :meth:`waveform_with_lengths`.

            Args:
                waveform: float32 ``[B, T]``.
                lengths: int32 ``[B]``, each in ``[1, T]``.
            """
            with tf.control_dependencies(input_checks(waveform, lengths, "frames")):
                waveform = tf.identity(waveform)
            outputs, starts, mask = self._per_window(
                lambda x: self._window_logits(x, training=False), waveform, lengths)
            logits = outputs[0] if len(outputs) == 1 else 0.5 * (outputs[0] + outputs[1])
            real = mask[:, :, None]
            ends = tf.minimum(starts + self._settings.window_samples, lengths[:, None])
            return {
                "logits": logits,
                "probabilities": tf.where(real, tf.math.sigmoid(logits), 0.0),
                "starts": starts,
                "ends": tf.where(mask, ends, 0),
                "mask": mask,
            }

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="waveform")])
        def waveform(self, waveform):
            """Clips sharing one length -> ``{"probabilities", "logits"}`` ``[B, C]``.

            Args:
                waveform: float32 ``[B, T]`` at the model's sample rate, ``T >= 1``.
            """
            shape = tf.shape(waveform)
            return self.waveform_with_lengths(waveform, tf.fill(shape[:1], shape[1]))

        @tf.function(input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="waveform"),
            tf.TensorSpec([None], tf.int32, name="lengths"),
        ])
        def waveform_with_lengths(self, waveform, lengths):
            """Clips of different lengths -> ``{"probabilities", "logits"}`` ``[B, C]``.

            The other scoring functions call this one, so the tagger is traced once.
            Bad input fails (``InvalidArgumentError``) instead of giving wrong rows; see
            :func:`input_checks`.

            Args:
                waveform: float32 ``[B, T]``; row ``i`` holds clip ``i`` in its first
                    ``lengths[i]`` samples, all finite (the rest is ignored).
                lengths: int32 ``[B]``, one per row, each in ``[1, T]``.
            """
            with tf.control_dependencies(input_checks(waveform, lengths)):
                waveform = tf.identity(waveform)
            return self._outputs(waveform, lengths)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="wav_bytes")])
        def wav_bytes(self, wav_bytes):
            """Whole WAV files -> ``{"probabilities", "logits"}`` ``[B, C]``.

            Args:
                wav_bytes: string ``[B]``, 16-bit PCM mono WAV files at the model's rate
                    (anything else fails, naming the batch index).
            """
            rate = self._settings.sample_rate

            def decode(item):
                index, data = item
                audio, file_rate = tf.audio.decode_wav(data)
                where = tf.strings.join(["wav_bytes[", tf.strings.as_string(index), "]: "])
                checks = [
                    tf.debugging.Assert(tf.equal(file_rate, rate), [tf.strings.join([
                        where, "sample rate is ", tf.strings.as_string(file_rate),
                        f" Hz but the model expects {rate} Hz"])]),
                    tf.debugging.Assert(tf.equal(tf.shape(audio)[1], 1), [tf.strings.join([
                        where, "has ", tf.strings.as_string(tf.shape(audio)[1]),
                        " channels but mono audio is expected"])]),
                ]
                with tf.control_dependencies(checks):
                    return tf.identity(audio[:, 0])

            count = tf.shape(wav_bytes)[0]
            ragged = tf.map_fn(decode, (tf.range(count), wav_bytes),
                               fn_output_signature=tf.RaggedTensorSpec([None], tf.float32))
            lengths = tf.cast(ragged.row_lengths(), tf.int32)
            return self.waveform_with_lengths(ragged.to_tensor(), lengths)

        @tf.function(input_signature=[])
        def class_names(self):
            """``{"class_names": string [C]}``."""
            return {"class_names": tf.constant(self._names, tf.string)}

        @tf.function(input_signature=[])
        def metadata(self):
            """The scoring settings: sample rate, window, hop, cap, pooling, tta."""
            s = self._settings
            return {
                "sample_rate": tf.constant(s.sample_rate, tf.int32),
                "window_samples": tf.constant(s.window_samples, tf.int32),
                "hop_samples": tf.constant(s.hop_samples, tf.int32),
                "max_windows": tf.constant(s.max_windows, tf.int32),
                "pooling": tf.constant(s.pooling),
                "tta": tf.constant(s.tta),
            }

        @tf.function(input_signature=[])
        def class_map_path(self):
            """Path of the class-names asset (YAMNet style); empty when there is none."""
            asset = getattr(self, "class_map_asset", None)
            return asset.asset_path if asset is not None else tf.constant("")

        def signatures(self, keys: Sequence[str] = SIGNATURES) -> dict:
            """Concrete functions for ``tf.saved_model.save(signatures=...)``.

            Args:
                keys: signature names (from :data:`SIGNATURES`).
            """
            functions = {
                "serving_default": self.waveform,
                "waveform_with_lengths": self.waveform_with_lengths,
                "wav_bytes": self.wav_bytes,
                "class_names": self.class_names,
                "metadata": self.metadata,
                "embeddings": self.embeddings,
                "frames": self.frames,
            }
            if self._window_embeddings is None:  # a tagger without the build_tagger parts
                keys = [k for k in keys if k != "embeddings"]
            return {k: functions[k].get_concrete_function() for k in keys}

    return ClipModule


def input_checks(waveform, lengths, name: str = "waveform_with_lengths") -> list:
    """In-graph checks of ``waveform_with_lengths``' input (the contract in the README).

    ``lengths`` must hold one entry per waveform row, each ``>= 1`` (an empty clip has
    nothing to score) and ``<= T``, the waveform's samples; the samples of every clip
    (its first ``lengths[i]``) must be finite. Each failed check raises
    ``InvalidArgumentError`` saying what is wrong.

    Args:
        waveform: float32 ``[B, T]``.
        lengths: int32 ``[B]``.
        name: the signature named in the messages.

    Returns:
        the assert ops, for ``tf.control_dependencies``.
    """
    import tensorflow as tf

    rows, samples = tf.shape(waveform)[0], tf.shape(waveform)[1]
    count = tf.shape(lengths)[0]
    same = tf.debugging.Assert(tf.equal(count, rows), [tf.strings.join([
        f"{name}: lengths has ", tf.strings.as_string(count),
        " entries but waveform has ", tf.strings.as_string(rows),
        " rows; give one length per row"])])
    with tf.control_dependencies([same]):  # the checks below index rows by lengths
        shortest = tf.reduce_min(tf.concat([lengths, [1]], 0))
        longest = tf.reduce_max(tf.concat([lengths, [0]], 0))
        inside = tf.range(samples)[None, :] < lengths[:, None]
        finite = tf.reduce_all(tf.math.is_finite(waveform) | ~inside)
    return [
        same,
        tf.debugging.Assert(shortest >= 1, [tf.strings.join([
            f"{name}: a length is ", tf.strings.as_string(shortest),
            "; every clip needs at least 1 sample (lengths must be > 0)"])]),
        tf.debugging.Assert(longest <= samples, [tf.strings.join([
            f"{name}: a length is ", tf.strings.as_string(longest),
            " but waveform has only ", tf.strings.as_string(samples),
            " samples per row (lengths must be <= samples)"])]),
        tf.debugging.Assert(finite, [
            f"{name}: waveform holds NaN or infinite samples"]),
    ]


def __getattr__(name: str):
    """Module attribute ``ClipModule`` (built on first access).

    Args:
        name: the attribute.
    """
    if name == "ClipModule":
        return _clip_module_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_clip_module(
    tagger,
    class_names: Sequence[str],
    settings: ScoringSettings,
    *,
    tflite: bool = False,
    class_map_path: str | None = None,
):
    """Build the ``tf.Module`` that scores whole clips with ``tagger``.

    Args:
        tagger: Keras tagger, waveform ``[N, window]`` -> logits ``[N, C]``.
        class_names: the ``C`` class names in output order.
        settings: window, hop, cap, pooling and TTA.
        tflite: compute the log-mel with TFLite builtins only (:func:`tflite_logmel`);
            needs a tagger built by :func:`fat_tf.models.build_tagger`.
        class_map_path: a text file of class names to store as a SavedModel asset.

    Returns:
        a :class:`ClipModule` (its functions are described in this module's docstring).
    """

    return _clip_module_class()(tagger, class_names, settings, tflite=tflite,
                                class_map_path=class_map_path)


# ----------------------------------------------------------------------------- writing
def write_saved_model(module, folder: str | Path, keys: Sequence[str] = SIGNATURES) -> None:
    """Save a :class:`ClipModule` as a SavedModel with the signatures ``keys``.

    Args:
        module: the module.
        folder: the SavedModel folder to write.
        keys: signature names to export.
    """
    import tensorflow as tf


    tf.saved_model.save(module, str(folder), signatures=module.signatures(keys))


def convert_tflite(saved_model_dir: str | Path, quantize: bool = False) -> bytes:
    """Convert a SavedModel written from a TFLite-variant :class:`ClipModule` to TFLite.

    Only TFLite builtin ops are allowed (no Flex delegate). Variables are frozen into
    constants (converting from the SavedModel is what makes Keras 3 variables freeze).

    Args:
        saved_model_dir: SavedModel with the :data:`TFLITE_SIGNATURES`.
        quantize: dynamic-range quantisation (int8 weights, float activations).

    Returns:
        the flatbuffer.
    """
    import tensorflow as tf


    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=list(TFLITE_SIGNATURES))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Float64 logistic function (as :mod:`fat_tf.predict` computes probabilities).

    Args:
        logits: array of logits.
    """
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def tflite_interpreter_class() -> tuple[type, str]:
    """The TFLite interpreter to use: LiteRT's (``pip install ai-edge-litert``, the
    runtime that replaces ``tf.lite.Interpreter``, which TF 2.21 deprecates) when it is
    installed, else TensorFlow's own.

    Returns:
        ``(Interpreter class, "ai_edge_litert" or "tf.lite")``.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite"
    return Interpreter, "ai_edge_litert"


def tflite_runner(path: str | Path, signature: str = "waveform_with_lengths"):
    """A TFLite signature runner (LiteRT's ``ai_edge_litert`` when installed, else
    ``tf.lite``; see :func:`tflite_interpreter_class`).

    Args:
        path: a ``.tflite`` file.
        signature: signature name.

    Returns:
        callable taking the signature's inputs as keyword numpy arrays.
    """
    interpreter_class, _ = tflite_interpreter_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = interpreter_class(model_path=str(path))
    return interpreter.get_signature_runner(signature)


# ----------------------------------------------------------------------------- checking
def check_clips(folder: Path, settings: ScoringSettings, data_dir: Path | None,
                real_clips: int = 3) -> list[str]:
    """Write synthetic check clips (16-bit WAV) and pick a few real ones.

    The synthetic clips cover every windowing case: shorter than a window, exactly one
    window, one sample more (two windows), and long enough to hit the window cap (with
    no cap: to be scored in more than one chunk of ``chunk_windows`` windows).

    Args:
        folder: where to write the synthetic WAV files.
        settings: the scoring settings (window, hop, cap, sample rate).
        data_dir: the run's dataset; up to ``real_clips`` of its ``test/`` WAVs are added.
        real_clips: how many real clips to add when available.

    Returns:
        the WAV paths.
    """
    import wave

    w, h, rate = settings.window_samples, settings.hop_samples, settings.sample_rate
    many = settings.max_windows or settings.chunk_windows
    lengths = [max(1, w // 3), w, w + 1, w + h * (many + 2)]
    rng = np.random.default_rng(0)
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(lengths):
        t = np.arange(n) / rate
        tone = 0.3 * np.sin(2 * np.pi * (220.0 * (i + 1)) * t) * np.sin(np.pi * t / t[-1] + 0.1)
        audio = tone + 0.05 * rng.standard_normal(n)
        pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2")
        path = folder / f"check_{i}_{n}.wav"
        with wave.open(str(path), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes(pcm.tobytes())
        paths.append(str(path))
    if data_dir is not None and (data_dir / "test").is_dir():
        from fat_tf.data.wav import check_wav
        from fat_tf.errors import AudioFormatError

        for p in sorted((data_dir / "test").glob("*.wav")):
            if len(paths) >= len(lengths) + real_clips:
                break
            try:
                check_wav(p, rate)
            except AudioFormatError:
                continue
            paths.append(str(p))
    return paths


def read_waveforms(paths: Sequence[str], sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode WAV files (as the pipeline does) into a zero-padded batch and lengths.

    Args:
        paths: 16-bit mono WAV files.
        sample_rate: their sample rate.

    Returns:
        float32 ``[N, T]`` and int32 ``[N]``.
    """
    import tensorflow as tf

    from fat_tf.data import pipeline

    waves = [pipeline.decode_wav(tf.constant(p), sample_rate).numpy() for p in paths]
    return pad_batch(waves)


def pad_batch(waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad 1-D waveforms into ``[N, max length]`` and their lengths.

    Args:
        waves: float waveforms.

    Returns:
        float32 ``[N, T]`` and int32 ``[N]``.
    """
    lengths = np.array([len(w) for w in waves], np.int32)
    batch = np.zeros((len(waves), int(lengths.max(initial=0))), np.float32)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    return batch, lengths


def pool_frames(logits: np.ndarray, mask: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """Clip logits ``[B, C]`` from window logits ``[B, W, C]``, as the clip scoring pools
    them (NumPy; :func:`fat_tf.ops.pooling.pool_windows` in the graph).

    Args:
        logits: window logits (the ``frames`` signature's).
        mask: bool ``[B, W]`` real windows.
        pooling: ``mean`` or ``max``.
    """
    logits = np.asarray(logits, np.float64)
    mask = np.asarray(mask, bool)[..., None]
    if pooling == "max":
        return np.where(mask, logits, -np.inf).max(axis=1)
    return (logits * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)


def windows_text(settings: ScoringSettings) -> str:
    """``every window`` or ``up to N windows`` (spread evenly over longer clips).

    Args:
        settings: the scoring settings.
    """
    if not settings.max_windows:
        return "every window"
    return f"up to {settings.max_windows} windows (spread evenly over longer clips)"


def check_export(folder: Path, reference: np.ndarray, paths: Sequence[str],
                 settings: ScoringSettings, config,
                 embeddings: np.ndarray | None = None) -> dict[str, float]:
    """Reload every written format and measure its largest probability difference.

    Args:
        folder: the (temporary) export folder.
        reference: ``[N, C]`` probabilities of :func:`fat_tf.inference.score_clips` with
            the Keras model on ``paths``.
        paths: the check clips.
        settings: the scoring settings.
        config: the run config (for re-scoring the reloaded ``.keras`` file).
        embeddings: ``[N, D]`` clip embeddings of the Keras model on ``paths`` (adds
            ``saved_model_embeddings``, their largest difference relative to the
            largest embedding value).

    Returns:
        ``{format: max |p - reference|}`` for ``saved_model`` (padded batch with
        lengths), ``saved_model_default`` (one clip at a time), ``saved_model_wav_bytes``,
        ``keras``, ``tflite`` (and ``tflite_default``), ``tflite_quantized`` when present,
        ``saved_model_frames`` (the ``frames`` signature's window logits pooled as the
        clip's; not with max pooling and TTA).
    """
    import keras
    import tensorflow as tf

    from fat_tf.inference import score_clips

    waveform, lengths = read_waveforms(paths, settings.sample_rate)
    diffs: dict[str, float] = {}

    def record(name, probabilities):
        diffs[name] = float(np.max(np.abs(np.asarray(probabilities, np.float64) - reference)))

    loaded = tf.saved_model.load(str(folder))
    batch = loaded.signatures["waveform_with_lengths"](
        waveform=tf.constant(waveform), lengths=tf.constant(lengths))
    record("saved_model", batch["probabilities"].numpy())
    single = [loaded.signatures["serving_default"](
        waveform=tf.constant(waveform[i : i + 1, : lengths[i]]))["probabilities"].numpy()[0]
        for i in range(len(paths))]
    record("saved_model_default", np.stack(single))
    data = [Path(p).read_bytes() for p in paths]
    record("saved_model_wav_bytes",
           loaded.signatures["wav_bytes"](wav_bytes=tf.constant(data))["probabilities"].numpy())
    if not (settings.tta and settings.pooling == "max"):
        frames = loaded.signatures["frames"](waveform=tf.constant(waveform),
                                             lengths=tf.constant(lengths))
        record("saved_model_frames", sigmoid(pool_frames(
            frames["logits"].numpy(), frames["mask"].numpy(), settings.pooling)))
    if embeddings is not None:
        got = loaded.signatures["embeddings"](waveform=tf.constant(waveform),
                                              lengths=tf.constant(lengths))["embeddings"]
        scale = max(1.0, float(np.max(np.abs(embeddings), initial=0.0)))
        diffs["saved_model_embeddings"] = float(
            np.max(np.abs(got.numpy() - embeddings), initial=0.0)) / scale
    names = [n.decode() for n in loaded.signatures["class_names"]()["class_names"].numpy()]
    reloaded = keras.models.load_model(folder / "model.keras", compile=False)
    record("keras", sigmoid(score_clips(reloaded, paths, config, settings.pooling,
                                        settings.tta, verbose=0, batch_size=1,
                                        max_windows=settings.max_windows)))
    for name, file in (("tflite", "model.tflite"), ("tflite_quantized", "model_quantized.tflite")):
        if (folder / file).exists():
            runner = tflite_runner(folder / file)
            record(name, runner(waveform=waveform, lengths=lengths)["probabilities"])
            if name == "tflite":
                default = tflite_runner(folder / file, "serving_default")
                record("tflite_default", np.stack([
                    default(waveform=waveform[i : i + 1, : lengths[i]])["probabilities"][0]
                    for i in range(len(paths))]))
    diffs["_class_names_ok"] = float(names == json.loads(
        (folder / "export.json").read_text())["class_names"])
    return diffs


# ----------------------------------------------------------------------------- export
class ExportError(Exception):
    """The export failed its reload check or cannot be written."""


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    which: str = "best",
    quantize: bool = False,
    tflite: bool = True,
    pooling: str | None = None,
    tta: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Export a run folder's model (see the module docstring for what is written).

    Args:
        run_dir: run folder written by ``python -m fat_tf.train``.
        out: export folder to create.
        which: ``best`` (``best.keras``) or ``final`` (``model.keras``).
        quantize: also write the dynamic-range quantised TFLite model.
        tflite: write TFLite models at all.
        pooling: window pooling baked into the export (default: the run's config).
        tta: bake time-reversal test-time augmentation into the export.
        overwrite: replace ``out`` if it is a previous export (see
            :func:`is_previous_export`); any other existing ``out`` is refused.
        log: where progress lines go.

    Returns:
        the ``export.json`` content (settings, files, check results).

    Raises:
        FatTfError: bad run folder, or an ``out`` that may not be written (see
        :func:`check_out`); ExportError: a reloaded format disagrees with the Keras model.
    """
    import keras
    import tensorflow as tf

    import fat_tf
    from fat_tf.inference import load_run, score_clips

    out = Path(out).absolute()
    check_out(out, run_dir, overwrite)  # before anything is written
    trained = load_run(run_dir)
    model_path = trained.model_path(which)
    model = trained.load_model(which)
    settings = ScoringSettings.from_config(trained.config, pooling, tta)
    names = list(trained.class_names)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-export-scratch-", dir=out.parent))
    try:
        class_file = scratch / "class_names.txt"
        class_file.write_text("\n".join(names) + "\n", encoding="utf-8")
        log(f"writing SavedModel ({len(names)} classes, window {settings.window_samples} "
            f"samples, hop {settings.hop_samples}, {windows_text(settings)}, "
            f"{settings.pooling} pooling{', TTA' if tta else ''})")
        module = make_clip_module(model, names, settings, class_map_path=str(class_file))
        write_saved_model(module, tmp)
        model.save(tmp / "model.keras")
        shutil.copyfile(class_file, tmp / "class_names.txt")
        shutil.copyfile(trained.run_dir / "config.json", tmp / "config.json")
        files = {"saved_model": ".", "keras": "model.keras", "class_names": "class_names.txt",
                 "config": "config.json"}
        if tflite:
            lite_src = scratch / "tflite_saved_model"
            lite_module = make_clip_module(model, names, settings, tflite=True)
            write_saved_model(lite_module, lite_src, TFLITE_SIGNATURES)
            for quantized in [False, True] if quantize else [False]:
                file = "model_quantized.tflite" if quantized else "model.tflite"
                kind = "dynamic-range quantised" if quantized else "float32"
                log(f"converting to TFLite ({kind})")
                try:
                    blob = convert_tflite(lite_src, quantized)
                except Exception as e:  # converter errors come in several types
                    first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                    raise ExportError(f"TFLite conversion failed ({first}); export without "
                                      "TFLite with --no-tflite") from e
                (tmp / file).write_bytes(blob)
                files["tflite_quantized" if quantized else "tflite"] = file
        info = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "fat_tf_version": fat_tf.__version__,
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "source": {"run_dir": str(trained.run_dir.absolute()), "model": which,
                       "keras_file": model_path.name},
            "class_names": names,
            **dataclasses.asdict(settings),
            "files": files,
            "signatures": signature_table(tflite),
        }
        (tmp / "export.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

        log("checking the exported models against the Keras model")
        paths = check_clips(scratch / "clips", settings, trained.data_dir)
        # one clip per batch: the long check clip's windows are all scored at once here
        reference = sigmoid(score_clips(model, paths, trained.config, settings.pooling, tta,
                                        max_windows=settings.max_windows, batch_size=1,
                                        verbose=0))
        embeddings = None
        if module.has_embeddings:
            waveform, lengths = read_waveforms(paths, settings.sample_rate)
            embeddings = module.embeddings(waveform, lengths)["embeddings"].numpy()
        diffs = check_export(tmp, reference, paths, settings, trained.config, embeddings)
        if not diffs.pop("_class_names_ok"):
            raise ExportError("the SavedModel's class_names signature differs from the run's")
        bad = {k: v for k, v in diffs.items()
               if k != "tflite_quantized" and not v <= FLOAT_TOLERANCE}
        if bad:
            raise ExportError(
                "exported model disagrees with the Keras model: " + ", ".join(
                    f"{k} max |dp| = {v:.3g}" for k, v in bad.items())
                + f" (tolerance {FLOAT_TOLERANCE})")
        info["check"] = {
            "clips": len(paths),
            "float_tolerance": FLOAT_TOLERANCE,
            "quantized_tolerance": QUANTIZED_TOLERANCE,
            "max_abs_diff_probabilities": diffs,
        }
        if tflite:  # which runtime ran the TFLite check
            info["check"]["tflite_interpreter"] = tflite_interpreter_class()[1]
        quantized_diff = diffs.get("tflite_quantized")
        if quantized_diff is not None and not quantized_diff <= QUANTIZED_TOLERANCE:
            info["check"]["warning"] = (
                f"quantised TFLite differs by up to {quantized_diff:.3g} in probability "
                f"(more than {QUANTIZED_TOLERANCE}); prefer model.tflite")
            log(f"warning: {info['check']['warning']}")
        (tmp / "export.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        honour_umask(tmp, folder=True)  # not mkdtemp's 0700
        _replace_folder(tmp, out, overwrite)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(k) for k in diffs)
    for k, v in diffs.items():
        log(f"  {k:<{width}}  max |p - p_keras| = {v:.2e}")
    return info


def signature_table(tflite: bool = True) -> dict:
    """Inputs and outputs of each signature, as written to ``export.json``.

    Args:
        tflite: whether TFLite models are exported (adds which signatures they have).
    """
    outputs = {"probabilities": "float32 [batch, n_classes]",
               "logits": "float32 [batch, n_classes]"}
    table = {
        "serving_default": {"inputs": {"waveform": "float32 [batch, samples]"},
                            "outputs": outputs},
        "waveform_with_lengths": {"inputs": {"waveform": "float32 [batch, samples]",
                                             "lengths": "int32 [batch]"},
                                  "outputs": outputs},
        "wav_bytes": {"inputs": {"wav_bytes": "string [batch]"}, "outputs": outputs},
        "class_names": {"inputs": {}, "outputs": {"class_names": "string [n_classes]"}},
        "metadata": {"inputs": {}, "outputs": {
            "sample_rate": "int32 []", "window_samples": "int32 []", "hop_samples": "int32 []",
            "max_windows": "int32 []", "pooling": "string []", "tta": "bool []"}},
        "embeddings": {"inputs": {"waveform": "float32 [batch, samples]",
                                  "lengths": "int32 [batch]"},
                       "outputs": {"embeddings": "float32 [batch, embedding_size]"}},
        "frames": {"inputs": {"waveform": "float32 [batch, samples]",
                              "lengths": "int32 [batch]"},
                   "outputs": {"logits": "float32 [batch, windows, n_classes]",
                               "probabilities": "float32 [batch, windows, n_classes]",
                               "starts": "int32 [batch, windows]",
                               "ends": "int32 [batch, windows]",
                               "mask": "bool [batch, windows]"}},
    }
    for key, entry in table.items():
        entry["tflite"] = tflite and key in TFLITE_SIGNATURES
    return table


#: Files and folders of a run folder; a folder holding any of them is not an export.
RUN_FOLDER_NAMES = ("data.json", "metrics.csv", "summary.json", "backup", "best.keras",
                    "tensorboard", "workers", ".lock")


def is_previous_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`export_run`: the only kind of
    folder ``--overwrite`` replaces.

    Its marker is ``export.json`` with ``"format": "fat_tf-export"``; a folder that also
    holds a run folder's files (:data:`RUN_FOLDER_NAMES`) does not count.

    Args:
        path: a file or folder.
    """
    path = Path(path)
    if not path.is_dir() or any((path / name).exists() for name in RUN_FOLDER_NAMES):
        return False
    try:
        info = json.loads((path / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("format") == EXPORT_FORMAT


def check_out(out: str | Path, run_dir: str | Path, overwrite: bool) -> None:
    """Refuse an export folder that would lose data, before anything is written.

    ``out`` may not be the run folder being exported, a folder that holds it, or a folder
    inside it; if it exists it must be a previous export (:func:`is_previous_export`) and
    ``overwrite`` must be set.

    Args:
        out: the export folder asked for.
        run_dir: the run folder being exported.
        overwrite: whether an existing previous export may be replaced.

    Raises:
        FatTfError: one line naming ``out`` and what to do instead.
    """
    out, source = Path(out), Path(run_dir).resolve()
    target = out.resolve()
    instead = "choose a new --out folder (or a previous export, with --overwrite)"
    if target == source:
        raise FatTfError(f"{out} is the run folder being exported; {instead}")
    if target in source.parents:
        raise FatTfError(f"{out} holds the run folder being exported ({source}); {instead}")
    if source in target.parents:
        raise FatTfError(f"{out} is inside the run folder being exported ({source}); "
                         "choose an --out folder outside it")
    if not (out.exists() or out.is_symlink()):
        return
    if is_previous_export(out):
        if not overwrite:
            raise FatTfError(f"{out} already exists; pass --overwrite to replace it")
        return
    if not out.is_dir():
        what = "a file" if out.is_file() else "not a folder"
    elif (out / "config.json").exists() and (out / "data.json").exists():
        what = "a run folder"
    else:
        what = "not a fat_tf export"
    raise FatTfError(f"{out} already exists and is {what}; --overwrite only replaces a "
                     f"previous export, so {instead}")


def _replace_folder(tmp: Path, out: Path, overwrite: bool = False) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` (a previous export, checked again
    here in case it appeared or changed while exporting) is moved aside, then deleted."""
    old = None
    if out.exists() or out.is_symlink():
        if not (overwrite and is_previous_export(out)):
            raise FatTfError(f"{out} appeared or changed while exporting and is not a "
                             "previous export; nothing was replaced")
        old = Path(tempfile.mkdtemp(prefix=f".old-{out.name}-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- loading
@dataclasses.dataclass
class ExportedModel:
    """A loaded export folder (SavedModel), scoring whole clips.

    Args:
        path: the export folder.
        module: the object ``tf.saved_model.load`` returned.
        class_names: class names in output order.
        settings: the scoring settings baked into the model.
    """

    path: Path
    module: object
    class_names: tuple[str, ...]
    settings: ScoringSettings

    def logits(self, waveform: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Clip logits ``[B, C]`` of a padded batch.

        Args:
            waveform: float32 ``[B, T]``.
            lengths: int32 ``[B]``.
        """
        return self._call("waveform_with_lengths", waveform, lengths)["logits"]

    def embeddings(self, waveform: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Clip embeddings ``[B, D]`` of a padded batch (the ``embeddings`` signature).

        Args:
            waveform: float32 ``[B, T]``.
            lengths: int32 ``[B]``.
        """
        return self._call("embeddings", waveform, lengths)["embeddings"]

    def frames(self, waveform: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """Window-level outputs of a padded batch (the ``frames`` signature): ``logits``,
        ``probabilities`` ``[B, W, C]``, ``starts``, ``ends``, ``mask`` ``[B, W]``.

        Args:
            waveform: float32 ``[B, T]``.
            lengths: int32 ``[B]``.
        """
        return self._call("frames", waveform, lengths)

    def _call(self, signature: str, waveform: np.ndarray, lengths: np.ndarray) -> dict:
        import tensorflow as tf

        from fat_tf.errors import FatTfError

        fn = self.module.signatures.get(signature)
        if fn is None:
            raise FatTfError(f"{self.path}: this export has no {signature!r} signature "
                             "(written by an older fat_tf); export the run again with "
                             "python -m fat_tf.export")
        out = fn(waveform=tf.constant(waveform, tf.float32),
                 lengths=tf.constant(lengths, tf.int32))
        return {k: v.numpy() for k, v in out.items()}


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` is a SavedModel folder (holds ``saved_model.pb``).

    Args:
        path: a folder.
    """
    return (Path(path) / "saved_model.pb").is_file()


def load_exported(path: str | Path) -> ExportedModel:
    """Load an export folder written by :func:`export_run` (or any SavedModel with its
    ``waveform_with_lengths``, ``class_names`` and ``metadata`` signatures).

    Args:
        path: the folder.
    """
    import tensorflow as tf

    from fat_tf.errors import FatTfError

    path = Path(path)
    module = tf.saved_model.load(str(path))
    missing = [k for k in ("waveform_with_lengths", "class_names", "metadata")
               if k not in module.signatures]
    if missing:
        raise FatTfError(f"{path}: not a fat_tf export (SavedModel lacks the signature(s) "
                         f"{', '.join(missing)}); export a run with python -m fat_tf.export")
    names = tuple(n.decode() for n in module.signatures["class_names"]()["class_names"].numpy())
    meta = {k: v.numpy() for k, v in module.signatures["metadata"]().items()}
    settings = ScoringSettings(
        sample_rate=int(meta["sample_rate"]), window_samples=int(meta["window_samples"]),
        hop_samples=int(meta["hop_samples"]), max_windows=int(meta["max_windows"]),
        pooling=meta["pooling"].decode(), tta=bool(meta["tta"]),
    )
    return ExportedModel(path, module, names, settings)


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``fat-tf export``."""
    from fat_tf.config import WINDOW_POOLINGS

    parser = argparse.ArgumentParser(
        prog=prog("export"),
        description="Export a trained run as a SavedModel that scores whole clips (raw "
                    "waveform or WAV bytes in, per-class probabilities out), a .keras file "
                    "and TFLite models; the export is reloaded and checked against the "
                    "Keras model before it is put in place.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("run_dir", help="run folder written by fat-tf train")
    parser.add_argument("--out", required=True, help="export folder to create")
    parser.add_argument("--model", default="best", choices=["best", "final"],
                        help="which saved model of the run to export")
    parser.add_argument("--quantize", action="store_true",
                        help="also write a dynamic-range quantised TFLite model")
    parser.add_argument("--no-tflite", dest="tflite", action="store_false",
                        help="skip the TFLite models")
    parser.add_argument("--pooling", default=None, choices=WINDOW_POOLINGS,
                        help="window pooling baked into the export (default: the run's config)")
    parser.add_argument("--tta", action="store_true",
                        help="bake time-reversal test-time augmentation into the export")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out that is a previous export (never a "
                             "run folder or any other file or folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)

    def run() -> int:
        try:
            export_run(args.run_dir, args.out, which=args.model, quantize=args.quantize,
                       tflite=args.tflite, pooling=args.pooling, tta=args.tta,
                       overwrite=args.overwrite)
        except ExportError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"exported to {args.out}")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
