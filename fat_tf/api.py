"""The Python API: ``tagger = fat_tf.load(PATH)``, then predict, embed and frames.

::

    import fat_tf

    tagger = fat_tf.load("runs/demo")          # a run folder, or an export folder
    tagger.class_names                         # the classes, in column order
    tagger.predict("clip.flac")                # DataFrame: one row, one column per class
    tagger.predict(["a.wav", "b.mp3"])         # files, a folder, or NumPy waveforms
    tagger.predict(waveform, sample_rate=16000)
    tagger.embed("songs/")                     # DataFrame [clips, D]: clip embeddings
    tagger.frames("long_recording.wav")        # one row per window: input, start, end, classes

Inputs (``inputs`` of every method):

* a path (``str`` or ``os.PathLike``) to an audio file, named by the path as given;
* a path to a folder: its audio files (:data:`fat_tf.data.audio_io.AUDIO_EXTENSIONS`, sorted,
  not recursive), each named by its file name (as ``python -m fat_tf.predict`` names them);
* a NumPy array: a 1-D mono waveform, or a 2-D ``[clips, samples]`` batch (one clip per
  row, like the SavedModel's ``waveform``), named by position (``0``, ``1``...);
  floats in [-1, 1], or integer PCM (scaled by ``2**(bits - 1)``);
* a list or tuple of any of these (an array in a list is named by its list position).

Files are read exactly as ``python -m fat_tf.predict`` reads them
(:func:`fat_tf.data.audio_io.load_audio`: any format libsndfile reads, averaged to mono and
resampled with soxr to the model's rate). Arrays are at ``sample_rate`` (default: the
model's, :attr:`Tagger.sample_rate`) and resampled with the same soxr conversion when it
differs.

Scoring is the project's clip scoring, the computation inside the exported SavedModel
(:func:`fat_tf.inference.windows.waveform_clip_logits`): every clip is cut into sliding
windows (:attr:`Tagger.window_seconds` long, at most :attr:`Tagger.hop_seconds` apart),
every window is scored however long the clip (in chunks, so memory stays bounded),
window logits are pooled (mean or max) and the sigmoid gives probabilities. ``predict``
gives the probabilities ``python -m fat_tf.predict`` writes for the same files and model.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fat_tf.config import WINDOW_POOLINGS
from fat_tf.run_folder import MODEL_FILES

#: Most clips per call of the model (as ``python -m fat_tf.predict --batch-size``).
BATCH_SIZE = 16


@dataclass(frozen=True)
class _Input:
    """One clip to score: a file (``path``) or an in-memory waveform (``wave``)."""

    name: object
    path: str | None = None
    wave: np.ndarray | None = None
    rate: int | None = None


class Tagger:
    """A trained tagger (run folder or export folder) scoring audio from Python.

    Made by :func:`fat_tf.load`. Every method takes the inputs described in
    :mod:`fat_tf.api` and these keyword arguments:

    * ``sample_rate``: the rate of NumPy inputs in Hz (default: the model's); files carry
      their own.
    * ``batch_size``: most clips per call of the model (a batch is also kept under
      :data:`fat_tf.inference.scoring.MAX_BATCH_SAMPLES` samples once padded, as in
      ``predict``).
    * ``errors``: ``raise`` (default): an unreadable file raises
      :class:`fat_tf.errors.AudioFormatError` naming it; ``skip``: it is left out with a
      warning.

    Attributes:
        path: the run or export folder.
        class_names: the classes, in output (column) order.
    """

    def __init__(self, backend, source: str):
        self._backend = backend
        self.source = source
        self.path = Path(backend.path)
        self.class_names: list[str] = list(backend.class_names)

    def __repr__(self) -> str:
        s = self._backend.settings
        return (f"<fat_tf.Tagger {self.source} {str(self.path)!r}: "
                f"{len(self.class_names)} classes, {s.sample_rate} Hz, {s.pooling} pooling"
                f"{', TTA' if s.tta else ''}>")

    # ------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        """The model's sample rate in Hz (NumPy inputs default to it)."""
        return int(self._backend.settings.sample_rate)

    @property
    def window_seconds(self) -> float:
        """Length of a scored window in seconds."""
        return self._backend.settings.window_samples / self.sample_rate

    @property
    def hop_seconds(self) -> float:
        """Largest spacing between consecutive windows in seconds."""
        return self._backend.settings.hop_samples / self.sample_rate

    @property
    def pooling(self) -> str:
        """How window logits become clip logits: ``mean`` or ``max``."""
        return self._backend.settings.pooling

    @property
    def tta(self) -> bool:
        """Whether time-reversal test-time augmentation is applied."""
        return bool(self._backend.settings.tta)

    # ------------------------------------------------------------------ methods
    def predict(self, inputs, sample_rate: int | None = None, *, logits: bool = False,
                batch_size: int = BATCH_SIZE, errors: str = "raise"):
        """Clip-level probabilities: one row per input, one column per class.

        Args:
            inputs: files, folders, arrays or a list of them (see :mod:`fat_tf.api`).
            sample_rate: rate of array inputs in Hz (default: the model's).
            logits: return the pooled logits instead of probabilities.
            batch_size: most clips per model call.
            errors: ``raise`` or ``skip`` unreadable files.

        Returns:
            ``pandas.DataFrame`` indexed by input name (``input``), columns
            :attr:`class_names`, float64 probabilities (the sigmoid of the clip logits,
            as ``python -m fat_tf.predict`` computes them).
        """
        import pandas as pd

        from fat_tf.inference.scoring import sigmoid

        names, rows = [], []
        for batch, out in self._run(self._backend.logits, inputs, sample_rate, batch_size,
                                    errors):
            names += [item.name for item in batch]
            rows.append(out)
        values = _rows(rows, len(self.class_names))
        if not logits:
            values = sigmoid(values)
        return pd.DataFrame(values, index=_index(names), columns=list(self.class_names))

    def embed(self, inputs, sample_rate: int | None = None, *,
              batch_size: int = BATCH_SIZE, errors: str = "raise"):
        """Clip embeddings: the head's input, pooled over the clip's windows.

        A window's embedding is the backbone's feature map pooled by the head's first
        layer (``GlobalTimeFreqPool``: mean over time, max over frequency by default),
        the vector the head's dense layers turn into logits; its size is the last CNN
        block's channels (512 in the FAT2019 recipe). A clip's embedding pools its
        windows' as the logits are pooled (:attr:`pooling`; with TTA, averaged with the
        time-reversed windows').

        Args:
            inputs: files, folders, arrays or a list of them (see :mod:`fat_tf.api`).
            sample_rate: rate of array inputs in Hz (default: the model's).
            batch_size: most clips per model call.
            errors: ``raise`` or ``skip`` unreadable files.

        Returns:
            ``pandas.DataFrame`` ``[clips, D]`` (float32) indexed by input name, columns
            ``0 .. D-1``; ``.to_numpy()`` gives the ``[N, D]`` array.
        """
        import pandas as pd

        names, rows = [], []
        for batch, out in self._run(self._backend.embeddings, inputs, sample_rate,
                                    batch_size, errors):
            names += [item.name for item in batch]
            rows.append(out)
        values = _rows(rows, None)
        return pd.DataFrame(values, index=_index(names))

    def frames(self, inputs, sample_rate: int | None = None, *, logits: bool = False,
               batch_size: int = BATCH_SIZE, errors: str = "raise"):
        """Window-level scores with start and end times: the sound-event-detection view.

        Every window the clip scoring pools, in time order: a clip shorter than a window
        has one (zero-padded) window; a longer one windows of :attr:`window_seconds`,
        the first at 0 and the last ending at the clip's end, spaced evenly at most
        :attr:`hop_seconds` apart. Pooling a clip's window logits (mean or max) gives
        its :meth:`predict` logits (except with max pooling and TTA).

        Args:
            inputs: files, folders, arrays or a list of them (see :mod:`fat_tf.api`).
            sample_rate: rate of array inputs in Hz (default: the model's).
            logits: window logits instead of probabilities.
            batch_size: most clips per model call.
            errors: ``raise`` or ``skip`` unreadable files.

        Returns:
            long ``pandas.DataFrame``, one row per window: ``input`` (the input's name),
            ``start`` and ``end`` (seconds from the clip's start; ``end`` is at most the
            clip's length), then one column per class.
        """
        import pandas as pd

        rate = float(self.sample_rate)
        parts = []
        for batch, out in self._run(self._backend.frames, inputs, sample_rate, batch_size,
                                    errors):
            values = out["logits"] if logits else out["probabilities"]
            for i, item in enumerate(batch):
                real = np.asarray(out["mask"][i], bool)
                scores = np.asarray(values[i][real], np.float64)
                part = pd.DataFrame(scores, columns=list(self.class_names))
                part.insert(0, "input", [item.name] * len(scores))
                part.insert(1, "start", out["starts"][i][real] / rate)
                part.insert(2, "end", out["ends"][i][real] / rate)
                parts.append(part)
        if not parts:
            return pd.DataFrame(columns=["input", "start", "end", *self.class_names])
        return pd.concat(parts, ignore_index=True)

    # ------------------------------------------------------------------ internals
    def _run(self, fn: Callable, inputs, sample_rate: int | None, batch_size: int,
             errors: str) -> Iterator[tuple[list[_Input], object]]:
        """Read the inputs and call ``fn(waveform, lengths)`` on padded batches, batched
        as :func:`fat_tf.predict.score` batches files
        (:func:`fat_tf.inference.scoring.padded_batches`)."""
        from fat_tf.errors import AudioFormatError
        from fat_tf.inference.scoring import padded_batches

        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        items = self._inputs(inputs, sample_rate, errors)

        def readable():
            for item in items:
                try:
                    wave = self._read(item)
                except AudioFormatError as e:
                    if errors == "raise":
                        raise
                    # warn at the user's call: above here are padded_batches, _run and
                    # the public method
                    warnings.warn(f"skipped: {e}", stacklevel=5)
                    continue
                yield item, wave

        for batch, waveform, lengths in padded_batches(readable(), batch_size):
            yield batch, fn(waveform, lengths)

    def _read(self, item: _Input) -> np.ndarray:
        """The item's mono float32 waveform at the model's rate."""
        from fat_tf.data.audio_io import load_audio, resample
        from fat_tf.inference.scoring import checked_waveform

        if item.path is not None:
            # as fat_tf.predict reads files
            return checked_waveform(load_audio(item.path, self.sample_rate), item.path)
        return checked_waveform(resample(item.wave, item.rate, self.sample_rate),
                                f"input {item.name!r}")

    def _inputs(self, inputs, sample_rate: int | None, errors: str) -> list[_Input]:
        """Expand ``inputs`` into clips (files listed, arrays checked)."""
        from fat_tf.errors import FatTfError
        from fat_tf.inference.scoring import collect_clips

        if sample_rate is not None:
            if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() \
                    or sample_rate <= 0:
                raise ValueError(f"sample_rate must be a positive integer (Hz), got "
                                 f"{sample_rate!r}")
            sample_rate = int(sample_rate)
        rate = sample_rate or self.sample_rate
        single = _is_path(inputs) or isinstance(inputs, np.ndarray) or (
            not isinstance(inputs, (list, tuple)) and hasattr(inputs, "__array__"))
        entries = [inputs] if single else list(inputs)
        items: list[_Input] = []
        arrays = False
        for position, entry in enumerate(entries):
            if _is_path(entry):
                clips, problems = collect_clips([os.fspath(entry)])
                for _, message in problems:
                    if errors == "raise":
                        raise FatTfError(message)
                    warnings.warn(f"skipped: {message}", stacklevel=4)
                items += [_Input(c.name, path=c.path) for c in clips]
                continue
            arrays = True
            array = _waveforms(entry, position)
            if array.ndim == 1:
                items.append(_Input(position, wave=array, rate=rate))
            elif single:  # a top-level [clips, samples] batch: rows named 0, 1...
                items += [_Input(i, wave=row, rate=rate) for i, row in enumerate(array)]
            else:
                raise ValueError(f"inputs[{position}]: a waveform in a list must be 1-D "
                                 f"(got shape {array.shape}); pass a 2-D [clips, samples] "
                                 "array on its own, or a list of 1-D arrays")
        if sample_rate is not None and not arrays:
            raise ValueError("sample_rate applies to NumPy waveforms; audio files carry "
                             "their own rate and are converted to the model's")
        return items


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def _waveforms(x, position: int) -> np.ndarray:
    """A 1-D waveform or 2-D ``[clips, samples]`` batch as float32, checked."""
    try:
        array = np.asarray(x)
    except Exception as e:
        raise TypeError(f"inputs[{position}]: not a path or an array ({type(x).__name__})"
                        ) from e
    if array.dtype.kind not in "fiu":
        raise TypeError(f"inputs[{position}]: expected a path (str or os.PathLike) or a "
                        f"numeric NumPy waveform, got {type(x).__name__} of "
                        f"{array.dtype}")
    if array.dtype.kind in "iu":  # integer PCM, scaled as WAV decoders do
        bits = 8 * array.dtype.itemsize
        offset = 2 ** (bits - 1) if array.dtype.kind == "u" else 0
        array = (array.astype(np.float64) - offset) / 2 ** (bits - 1)
    array = np.ascontiguousarray(array, np.float32)
    if array.ndim not in (1, 2):
        raise ValueError(f"inputs[{position}]: a waveform must be 1-D [samples] or 2-D "
                         f"[clips, samples], got shape {array.shape}")
    if array.ndim == 2 and array.shape[1] <= 8 < array.shape[0]:
        raise ValueError(f"inputs[{position}]: shape {array.shape} looks like [samples, "
                         "channels]; pass a mono waveform (e.g. x.mean(axis=1)) or "
                         "[clips, samples]")
    return array


def _rows(rows: Sequence[np.ndarray], width: int | None) -> np.ndarray:
    if rows:
        return np.concatenate([np.asarray(r) for r in rows])
    return np.zeros((0, width or 0), np.float32)


def _index(names: list):
    import pandas as pd

    return pd.Index(names, name="input")


def load(path, model: str | None = None, *, pooling: str | None = None,
         tta: bool = False) -> Tagger:
    """Open a run folder or an export folder as a :class:`Tagger`
    (:func:`fat_tf.load` calls this).

    Args:
        path: a run folder (``python -m fat_tf.train``; its final model ``model.keras``
            unless ``model="best"``) or an export folder
            (``python -m fat_tf.export``, a SavedModel: needs its ``embeddings`` and
            ``frames`` signatures, written since export version 2, for :meth:`Tagger.embed`
            and :meth:`Tagger.frames`).
        model: ``final`` or ``best`` (run folders only; default ``final``).
        pooling: ``mean`` or ``max`` (default: the run's config; fixed in an export).
        tta: time-reversal test-time augmentation (fixed in an export).

    Raises:
        fat_tf.errors.FatTfError: not such a folder, or options an export cannot honour.
    """
    from fat_tf.inference.loaded import ExportedModel, load_model

    path = os.fspath(path)
    if model is not None and model not in MODEL_FILES:
        raise ValueError(f"model must be 'best' or 'final', got {model!r}")
    if pooling is not None and pooling not in WINDOW_POOLINGS:
        raise ValueError(f"pooling must be {' or '.join(map(repr, WINDOW_POOLINGS))}, "
                         f"got {pooling!r}")
    backend = load_model(path, model, pooling, bool(tta), option="model=",
                         instead="load the run folder")
    return Tagger(backend, "export" if isinstance(backend, ExportedModel) else "run")
