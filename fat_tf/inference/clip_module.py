"""The whole-clip scorer that exports are made of: a ``tf.Module`` around a Keras tagger.

:class:`ClipModule` scores whole clips with the windows, hop, cap, pooling and TTA of its
:class:`~fat_tf.inference.scoring.ScoringSettings` in one graph
(:func:`fat_tf.inference.windows.waveform_clip_logits`). ``python -m fat_tf.export``
saves it as the SavedModel (and converts its TFLite variant); ``predict`` and the Python
API run the same module around a run folder's tagger
(:class:`fat_tf.inference.loaded.RunModel`), so all of them run one computation.

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
  layers, :func:`fat_tf.inference.windows.window_embedder`; ``D`` = the last block's
  channels, 512 in the FAT2019 recipe) pooled over the clip's windows like the logits.
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
The TFLite variant computes the log-mel from TFLite builtin ops only
(:func:`fat_tf.layers.tflite_logmel.tflite_logmel`: no Flex delegate needed) and scores
all windows of a call at once (no control flow); WAV decoding has no builtin, so the
TFLite model takes waveforms only.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from fat_tf.inference.scoring import ScoringSettings
from fat_tf.inference.windows import waveform_clip_logits, window_embedder, window_outputs
from fat_tf.layers.tflite_logmel import tflite_logmel
from fat_tf.ops.pooling import pool_windows

#: Signatures of the SavedModel and which of them the TFLite models have.
SIGNATURES = ("serving_default", "waveform_with_lengths", "wav_bytes", "class_names", "metadata",
              "embeddings", "frames")
TFLITE_SIGNATURES = ("serving_default", "waveform_with_lengths", "class_names", "metadata")


class ClipModule(tf.Module):
    """Whole-clip scoring around a Keras tagger, with explicit ``TensorSpec`` s.

    Args:
        tagger: Keras tagger, waveform ``[N, window]`` -> logits ``[N, C]``.
        class_names: class names in output order.
        settings: a :class:`~fat_tf.inference.scoring.ScoringSettings`.
        tflite: use the TFLite-builtin log-mel
            (:func:`fat_tf.layers.tflite_logmel.tflite_logmel`).
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
        :func:`fat_tf.inference.windows.window_embedder`); a clip's is pooled over its
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
        tflite: compute the log-mel with TFLite builtins only
            (:func:`fat_tf.layers.tflite_logmel.tflite_logmel`); needs a tagger built
            by :func:`fat_tf.models.build_tagger`.
        class_map_path: a text file of class names to store as a SavedModel asset.

    Returns:
        a :class:`ClipModule` (its functions are described in this module's docstring).
    """
    return ClipModule(tagger, class_names, settings, tflite=tflite,
                      class_map_path=class_map_path)


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
