"""How whole clips are scored, and scoring files with a run's Keras tagger.

:class:`ScoringSettings` is the one place where a run's config becomes scoring settings:
window length (``config.crop_samples``), hop (``data.eval_hop_fraction`` of a window),
window cap, pooling and TTA. Validation during training, :func:`score_clips`,
``evaluate``, ``predict``, the Python API and exports all take them from here.

A clip of any length is cut into sliding windows, every window is scored, and window
logits are pooled per clip (mean or max). Optional test-time augmentation adds the
time-reversed clip and averages the two clip logits. :func:`score_clips` does it through
the tf.data evaluation pipeline (a Keras ``predict``); :mod:`fat_tf.inference.clip_module`
does it in one TensorFlow graph from padded waveforms (what ``predict``, the API and
exports run). :func:`score_run` scores a run on a labelled split (``evaluate``,
``report``).

This module imports no TensorFlow until a function that scores is called.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from fat_tf.run_folder import DEFAULT_MODEL

#: Most windows the SavedModel scores in one call of the tagger; longer inputs are scored
#: in chunks of this many windows (64 windows of the FAT2019 CNN: about 1 GB of
#: activations on CPU).
CHUNK_WINDOWS = 64

#: ``max_windows`` meaning "every window": larger than any clip's window count.
NO_CAP = 2**30

#: Most samples in one padded batch ``[clips, longest clip]`` (64 MB of float32, 6.3 min
#: at 44.1 kHz): a long clip is scored with fewer others, or alone if longer.
MAX_BATCH_SAMPLES = 2**24


def window_cap(max_windows: int | None) -> int:
    """The window cap to compute with: ``max_windows``, or :data:`NO_CAP` for ``None``
    or ``0`` (score every window).

    Args:
        max_windows: a cap on windows per clip, or ``None``/``0`` for none.
    """
    return int(max_windows) if max_windows and max_windows > 0 else NO_CAP


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
                    max_windows: int | None = 0):
        """Scoring settings of ``config``: its window, hop and pooling, and by default
        every window of a clip scored (``max_windows=0``, as inference does).

        Args:
            config: a run's :class:`~fat_tf.config.Config`.
            pooling: ``mean`` or ``max`` (default: ``config.data.window_pooling``).
            tta: time-reversal test-time augmentation.
            max_windows: cap on windows per clip; ``0``: every window; ``None``:
                ``config.data.max_eval_windows`` (validation during training and
                ``evaluate``, which bound the memory of their padded window batches).
        """
        window = config.crop_samples
        return cls(
            sample_rate=config.frontend.sample_rate,
            window_samples=window,
            hop_samples=max(1, int(window * config.data.eval_hop_fraction)),
            max_windows=config.data.max_eval_windows if max_windows is None else max_windows,
            pooling=pooling or config.data.window_pooling,
            tta=tta,
        )

    def evaluation_dataset(self, paths: Sequence[str], labels: np.ndarray | None = None, *,
                           batch_size: int, **options):
        """:func:`fat_tf.data.pipeline.evaluation_dataset` cutting these settings'
        windows: whole clips as padded batches of sliding windows.

        Args:
            paths: audio files.
            labels: ``[N, C]`` multi-hot array, or None.
            batch_size: clips per batch.
            **options: ``cache`` and ``parallel_calls`` of the pipeline.
        """
        from fat_tf.data import pipeline

        return pipeline.evaluation_dataset(
            paths, labels, sample_rate=self.sample_rate, window_samples=self.window_samples,
            hop_samples=self.hop_samples, max_windows=window_cap(self.max_windows),
            batch_size=batch_size, **options)


# --------------------------------------------------------------------------- NumPy helpers
def sigmoid(logits) -> np.ndarray:
    """Float64 logistic function: clip probabilities from logits (``predict``,
    ``evaluate``, the API and the export check compute them with it).

    Args:
        logits: array of logits.
    """
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


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


# --------------------------------------------------------------------------- clips
@dataclasses.dataclass(frozen=True)
class Clip:
    """One audio file to score.

    Args:
        path: where it is.
        name: the name written in the output (``fname``).
    """

    path: str
    name: str


def collect_clips(inputs: Sequence[str], files_from: str | None = None
                  ) -> tuple[list[Clip], list[tuple[str, str]]]:
    """Expand files, folders and a list file into clips.

    A folder gives its audio files (:data:`fat_tf.data.audio_io.AUDIO_EXTENSIONS`, sorted,
    not recursive) named by file name; a file is named as given. Paths that do not exist
    are kept (reading them reports the problem).

    Args:
        inputs: files and folders.
        files_from: text file with one path per line (``-``: stdin); blank lines and
            lines starting with ``#`` are skipped.

    Returns:
        ``(clips, errors)``; errors are ``(path, message)`` (e.g. a folder without audio).
    """
    from fat_tf.data.audio_io import AUDIO_EXTENSIONS, is_audio_file
    from fat_tf.errors import FatTfError

    paths = list(inputs)
    if files_from is not None:
        try:
            text = sys.stdin.read() if files_from == "-" else Path(files_from).read_text("utf-8")
        except OSError as e:
            raise FatTfError(f"{files_from}: cannot read the file list ({e.strerror or e})"
                             ) from None
        paths += [line.strip() for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    clips, errors = [], []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path)
                           if is_audio_file(n) and os.path.isfile(os.path.join(path, n)))
            if not names:
                errors.append((path, f"{path}: folder holds no audio files "
                                     f"({' '.join(AUDIO_EXTENSIONS)})"))
            clips += [Clip(os.path.join(path, n), n) for n in names]
        else:
            clips.append(Clip(path, path))
    return clips, errors


def checked_waveform(wave: np.ndarray, where: str) -> np.ndarray:
    """``wave`` if it can be scored: at least one sample, all finite.

    Args:
        wave: a decoded mono waveform.
        where: the file or input named in the error.

    Raises:
        AudioFormatError: it is empty or holds NaN or infinite samples.
    """
    from fat_tf.errors import AudioFormatError

    if not len(wave):
        raise AudioFormatError(f"{where}: no audio (zero samples)")
    if not np.isfinite(wave).all():
        raise AudioFormatError(f"{where}: holds NaN or infinite samples")
    return wave


Item = TypeVar("Item")


def padded_batches(items: Iterable[tuple[Item, np.ndarray]], batch_size: int,
                   max_batch_samples: int | None = None
                   ) -> Iterator[tuple[list[Item], np.ndarray, np.ndarray]]:
    """Group waveforms into zero-padded batches, limited by clip count and padded size.

    A batch is padded to its longest clip, so batches are limited by their padded size
    (``clips * longest``) as well as by clip count: one 10-minute clip among short ones
    is scored on its own instead of padding every other clip of its batch to 10 minutes.

    Args:
        items: ``(item, waveform)`` pairs, in order.
        batch_size: most clips per batch.
        max_batch_samples: most samples in a padded batch (default
            :data:`MAX_BATCH_SAMPLES`); a longer clip makes a batch alone.

    Yields:
        ``(items, waveform [B, T], lengths [B])`` (:func:`pad_batch`), in input order.
    """
    budget = max_batch_samples or MAX_BATCH_SAMPLES
    pending: list[tuple[Item, np.ndarray]] = []
    longest = 0

    def flush():
        waveform, lengths = pad_batch([w for _, w in pending])
        batch = [item for item, _ in pending]
        pending.clear()
        return batch, waveform, lengths

    for item, wave in items:
        if pending and (len(pending) + 1) * max(longest, len(wave)) > budget:
            yield flush()
            longest = 0
        pending.append((item, wave))
        longest = max(longest, len(wave))
        if len(pending) >= batch_size:
            yield flush()
            longest = 0
    if pending:
        yield flush()


# --------------------------------------------------------------------------- scoring files
def score_clips(
    model,
    paths: Sequence[str],
    config,
    pooling: str | None = None,
    tta: bool = False,
    batch_size: int | None = None,
    verbose: int | str = "auto",
    max_windows: int | None = None,
) -> np.ndarray:
    """Clip logits ``[N, C]`` of whole clips, pooled over sliding windows.

    Args:
        model: Keras tagger, waveform ``[B, L]`` -> logits ``[B, C]``.
        paths: audio files (any format :mod:`fat_tf.data.audio_io` reads, converted as in
            training).
        config: the run's :class:`~fat_tf.config.Config` (window length, hop, window cap,
            pooling).
        pooling: ``mean`` or ``max`` (default: ``config.data.window_pooling``).
        tta: also score the time-reversed clips and average the two clip logits.
        batch_size: clips per batch (default: ``config.data.eval_batch_size``).
        verbose: Keras progress bar setting.
        max_windows: cap on windows per clip (default: ``config.data.max_eval_windows``,
            as validation during training); ``0``: every window, as ``predict``, the
            Python API and the export score clips.
    """
    from fat_tf.inference.windows import ClipScorer

    settings = ScoringSettings.from_config(config, pooling, tta, max_windows)
    ds = settings.evaluation_dataset(paths, batch_size=batch_size or config.data.eval_batch_size)
    scorer = ClipScorer(model, settings.pooling, settings.tta)
    return np.asarray(scorer.predict(ds, verbose=verbose), np.float32)


@dataclasses.dataclass(frozen=True)
class Scores:
    """Clip-level scores of one run's model on a labelled split.

    Args:
        split: the split scored (``validation``, ``test``, ``curated`` or ``noisy``).
        model: ``best`` or ``final``.
        tta: whether time-reversal test-time augmentation was used.
        class_names: class names in column order.
        labels: ``[N, C]`` multi-hot labels.
        logits: ``[N, C]`` clip logits.
        checkpoint: the model's :func:`~fat_tf.inference.loaded.checkpoint_label`
            (``best checkpoint, step 700``).
    """

    split: str
    model: str
    tta: bool
    class_names: tuple[str, ...]
    labels: np.ndarray
    logits: np.ndarray
    checkpoint: str = ""

    @property
    def lwlrap(self) -> float:
        """Clip-level lwlrap of the logits."""
        from fat_tf.metrics import lwlrap

        return float(lwlrap(self.labels, self.logits))

    def average_precision(self) -> np.ndarray:
        """Average precision per class ``[C]`` (NaN for a class without positives)."""
        from fat_tf.metrics import average_precision

        return np.array([average_precision(self.labels[:, c], self.logits[:, c])
                         for c in range(self.labels.shape[1])])


def split_manifest(dataset, split: str, validation_fnames: Sequence[str]):
    """The labelled manifest of ``split`` in a loaded dataset.

    Args:
        dataset: a :class:`~fat_tf.data.manifest.FatDataset`.
        split: ``validation`` (the run's held-out curated clips), ``test``, ``curated``
            or ``noisy``.
        validation_fnames: the run's held-out curated clips.

    Raises:
        FatTfError: the dataset lacks the run's validation clips or a labelled ``split``.
    """
    from fat_tf.errors import FatTfError

    if split == "validation":
        index = {f: i for i, f in enumerate(dataset.curated.fnames)}
        missing = [f for f in validation_fnames if f not in index]
        if missing:
            raise FatTfError(f"{dataset.curated.csv_path}: validation clips of the run are "
                             f"missing, e.g. {missing[0]}; is this the run's dataset?")
        return dataset.curated.subset(np.array([index[f] for f in validation_fnames]))
    manifest = {"test": dataset.test, "curated": dataset.curated, "noisy": dataset.noisy}[split]
    if manifest is None or manifest.labels is None:
        raise FatTfError(f"the dataset has no labelled {split} set")
    return manifest


def score_run(run_dir: str | os.PathLike, split: str = "validation", model: str = DEFAULT_MODEL,
              tta: bool = False, pooling: str | None = None,
              data_dir: str | os.PathLike | None = None,
              verbose: int | str = 0) -> Scores:
    """Score a run's saved model on a labelled split (``evaluate`` and ``report`` do).

    Clips are scored by :func:`score_clips` with the run's window cap
    (``data.max_eval_windows``), as validation during training scores them.

    Args:
        run_dir: the run folder.
        split: ``validation`` (the run's held-out curated clips), ``test``, ``curated`` or
            ``noisy``.
        model: ``final`` (the final model, as ``evaluate``, ``predict`` and ``export``
            use by default) or ``best`` (the best-validation checkpoint).
        tta: average with the time-reversed clips.
        pooling: window pooling (default: the run's config).
        data_dir: dataset folder (default: the one the run was trained on).
        verbose: Keras progress bar setting (default: none).
    """
    import keras

    from fat_tf.data.manifest import load_dataset
    from fat_tf.inference.loaded import checkpoint_label, load_run

    trained = load_run(run_dir)
    dataset = load_dataset(data_dir or trained.data_dir,
                           sample_rate=trained.config.frontend.sample_rate)
    manifest = split_manifest(dataset, split, trained.validation_fnames)
    tagger = trained.load_model(model)
    logits = score_clips(tagger, manifest.paths, trained.config, pooling, tta, verbose=verbose)
    keras.backend.clear_session()
    return Scores(split, model, tta, trained.class_names, np.asarray(manifest.labels),
                  np.asarray(logits), checkpoint_label(run_dir, model))
