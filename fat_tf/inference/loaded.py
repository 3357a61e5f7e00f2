"""Opening a trained run or an export for scoring.

* :func:`load_run` reads a run folder (:class:`TrainedRun`: its config, classes, dataset
  and saved models); :func:`checkpoint_label` names the saved model a score comes from;
* :class:`RunModel` scores whole clips with a run's Keras tagger inside the export's
  :class:`~fat_tf.inference.clip_module.ClipModule`; :class:`ExportedModel` with an
  export folder's SavedModel (:func:`load_exported`). Both have the same ``logits``,
  ``embeddings`` and ``frames`` methods, ``class_names`` and ``settings``;
* :func:`load_model` opens either kind of folder (``predict`` and :func:`fat_tf.load`).

This module imports no TensorFlow until a model is loaded.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fat_tf.config import Config
from fat_tf.errors import FatTfError
from fat_tf.files import keras_file_problem, read_json_object
from fat_tf.inference.scoring import ScoringSettings
from fat_tf.run_folder import CONFIG, DATA, DEFAULT_MODEL, MODEL_FILES, checkpoint_step

if TYPE_CHECKING:
    import keras


# ----------------------------------------------------------------------------- run folders
#: How each saved model of a run is named in tables and messages.
MODEL_NAMES = {"best": "best checkpoint", "final": "final model"}


def checkpoint_label(run_dir: str | os.PathLike, which: str = DEFAULT_MODEL) -> str:
    """Which saved model of a run a figure comes from: ``best checkpoint, step 700``
    (``best.keras``) or ``final model, step 1000`` (``model.keras``); without the step
    when the run does not record it.

    Args:
        run_dir: the run folder.
        which: ``best`` or ``final``.
    """
    step = checkpoint_step(run_dir, which)
    name = MODEL_NAMES.get(which, f"{which} model")
    return name if step is None else f"{name}, step {step}"


@dataclasses.dataclass(frozen=True)
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

    def model_path(self, which: str = DEFAULT_MODEL) -> Path:
        """Path of ``best.keras`` or ``model.keras`` (``which`` = best or final)."""
        name = MODEL_FILES.get(which)
        if name is None:
            raise FatTfError(f"--model must be best or final, got {which!r}")
        path = self.run_dir / name
        if not path.exists():
            raise FatTfError(f"{path}: no such model in the run folder (has training finished?)")
        return path

    def load_model(self, which: str = DEFAULT_MODEL) -> keras.Model:
        """Load the run's tagger (waveform in, logits out).

        Args:
            which: ``best`` (``best.keras``) or ``final`` (``model.keras``).

        Raises:
            FatTfError: the file is empty, truncated or damaged (one line naming it and
                what to do), rather than Keras' own error.
        """
        import keras

        import fat_tf.layers  # noqa: F401  (registers the custom layers for loading)
        import fat_tf.models  # noqa: F401

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
    for name in (CONFIG, DATA):
        if not (run_dir / name).exists():
            raise FatTfError(f"{run_dir}: not a fat_tf run folder (no {name})")
    config = Config.from_json(run_dir / CONFIG)
    path = run_dir / DATA
    advice = "copy the run folder again from where it was trained"
    data = read_json_object(path, advice)
    missing = [k for k in ("class_names", "data_dir", "validation_fnames") if k not in data]
    if missing:
        raise FatTfError(f"{path}: lacks {', '.join(missing)} (not written by fat_tf.train, "
                         f"or damaged); {advice}")
    trained_with = data.get("config_sha256")  # absent in runs written before it existed
    if trained_with is not None and trained_with != config.fingerprint():
        raise FatTfError(
            f"{run_dir / CONFIG}: differs from the settings the weights were trained "
            "with (its hash no longer matches data.json's config_sha256), so scores would "
            "silently change; restore the original config.json or retrain")
    return TrainedRun(run_dir, config, tuple(data["class_names"]), Path(data["data_dir"]),
                      tuple(data["validation_fnames"]))


# ----------------------------------------------------------------------------- models
class RunModel:
    """A run folder's Keras tagger scoring whole clips (the exported computation).

    Args:
        run_dir: the run folder.
        which: ``best`` or ``final``.
        pooling: ``mean`` or ``max`` (default: the run's config).
        tta: time-reversal test-time augmentation.
    """

    def __init__(self, run_dir, which: str = DEFAULT_MODEL, pooling: str | None = None,
                 tta: bool = False):
        from fat_tf.inference.clip_module import make_clip_module

        self.run = load_run(run_dir)
        self.path = self.run.run_dir
        self.class_names = self.run.class_names
        self.settings = ScoringSettings.from_config(self.run.config, pooling, tta)
        self._module = make_clip_module(self.run.load_model(which), self.class_names,
                                        self.settings)

    def logits(self, waveform: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Clip logits ``[B, C]`` of a padded batch.

        Args:
            waveform: float32 ``[B, T]``.
            lengths: int32 ``[B]``.
        """
        return self._module.waveform_with_lengths(waveform, lengths)["logits"].numpy()

    def embeddings(self, waveform: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Clip embeddings ``[B, D]`` (the head's input pooled over windows) of a batch."""
        return self._module.embeddings(waveform, lengths)["embeddings"].numpy()

    def frames(self, waveform: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """Window-level outputs of a batch (the export's ``frames`` signature)."""
        return {k: v.numpy() for k, v in self._module.frames(waveform, lengths).items()}


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
    """Load an export folder written by :func:`fat_tf.export.export_run` (or any
    SavedModel with its ``waveform_with_lengths``, ``class_names`` and ``metadata``
    signatures).

    Args:
        path: the folder.
    """
    import tensorflow as tf

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


def load_model(path: str, which: str | None, pooling: str | None, tta: bool, *,
               option: str = "--model", instead: str = "predict with the run folder"
               ) -> RunModel | ExportedModel:
    """Open a run folder (:class:`RunModel`) or an export folder (:class:`ExportedModel`).

    Args:
        path: the folder.
        which: ``best`` or ``final`` (run folders only; ``None``:
            :data:`fat_tf.run_folder.DEFAULT_MODEL`).
        pooling: window pooling (run folders; an export has its own, fixed at export).
        tta: time-reversal TTA (run folders; fixed at export for exports).
        option: how the caller spells ``which`` in messages (``--model``, ``model=``).
        instead: what to do instead of asking an export for other settings.

    Raises:
        FatTfError: not such a folder, or settings an export cannot honour.
    """
    if not os.path.isdir(path):
        raise FatTfError(f"{path}: no such folder (give a run folder or an export folder)")
    if not is_export_dir(path):
        return RunModel(path, which or DEFAULT_MODEL, pooling, tta)
    if which is not None:
        raise FatTfError(f"{path} is an exported model: {option} applies to run folders only")
    model = load_exported(path)
    fixed = model.settings
    if (pooling is not None and pooling != fixed.pooling) or (tta and not fixed.tta):
        raise FatTfError(
            f"{path} was exported with {fixed.pooling} pooling"
            f"{' and TTA' if fixed.tta else ' and no TTA'}; these are fixed in an export "
            f"(export again with --pooling/--tta, or {instead})")
    return model
