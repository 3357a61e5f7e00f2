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
scores the windows :data:`~fat_tf.inference.scoring.CHUNK_WINDOWS` at a time (a
``tf.while_loop``), so an hour-long recording needs the memory of its samples and of one
chunk, not of all its windows; the TFLite model scores all windows of a call at once (no
control flow). Validation during training and ``fat_tf.evaluate`` cap windows at
``data.max_eval_windows`` (16, spread evenly over a clip longer than about 17 s) to
bound batch memory, so their scores of longer clips can differ slightly; exports written
before version 2 used that cap too (``metadata``'s ``max_windows``; 0 means every
window).

The signatures (``serving_default``, ``waveform_with_lengths``, ``wav_bytes``,
``class_names``, ``metadata``, ``embeddings`` and ``frames``; the TFLite models have
``serving_default``, ``waveform_with_lengths``, ``class_names`` and ``metadata``) are
those of :class:`fat_tf.inference.clip_module.ClipModule`, described in that module and
listed with their inputs and outputs in ``export.json``. The TFLite models compute the
log-mel from TFLite builtin ops only (:mod:`fat_tf.layers.tflite_logmel`).

Export writes everything to a temporary folder beside ``DIR``, reloads what it wrote,
checks that the SavedModel, the ``.keras`` file and the TFLite models give the clip
probabilities of :func:`fat_tf.inference.scoring.score_clips` on a few clips, and only
then renames the folder to ``DIR``. An existing ``DIR`` is replaced only with ``--overwrite``
and only if it is a previous export (its ``export.json`` says so, and it holds no run
files); a run folder, the run being exported, a folder holding it or inside it, and any
other file or folder are refused before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fat_tf import run_folder as rf
from fat_tf.cli import HelpFormatter, prog, run_cli
from fat_tf.errors import FatTfError
from fat_tf.files import honour_umask
from fat_tf.inference.loaded import load_run
from fat_tf.inference.scoring import (
    ScoringSettings,
    pad_batch,
    pool_frames,
    score_clips,
    sigmoid,
)
from fat_tf.run_folder import RUN_FOLDER_NAMES

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


# ----------------------------------------------------------------------------- writing
def write_saved_model(module, folder: str | Path, keys: Sequence[str] | None = None) -> None:
    """Save a :class:`~fat_tf.inference.clip_module.ClipModule` as a SavedModel with the
    signatures ``keys``.

    Args:
        module: the module.
        folder: the SavedModel folder to write.
        keys: signature names to export (default: all of
            :data:`~fat_tf.inference.clip_module.SIGNATURES`).
    """
    import tensorflow as tf

    from fat_tf.inference.clip_module import SIGNATURES

    keys = SIGNATURES if keys is None else keys
    tf.saved_model.save(module, str(folder), signatures=module.signatures(keys))


def convert_tflite(saved_model_dir: str | Path, quantize: bool = False) -> bytes:
    """Convert a SavedModel written from a TFLite-variant
    :class:`~fat_tf.inference.clip_module.ClipModule` to TFLite.

    Only TFLite builtin ops are allowed (no Flex delegate). Variables are frozen into
    constants (converting from the SavedModel is what makes Keras 3 variables freeze).

    Args:
        saved_model_dir: SavedModel with the
            :data:`~fat_tf.inference.clip_module.TFLITE_SIGNATURES`.
        quantize: dynamic-range quantisation (int8 weights, float activations).

    Returns:
        the flatbuffer.
    """
    import tensorflow as tf

    from fat_tf.inference.clip_module import TFLITE_SIGNATURES

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=list(TFLITE_SIGNATURES))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


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

    from fat_tf.data.decode import decode_wav

    waves = [decode_wav(tf.constant(p), sample_rate).numpy() for p in paths]
    return pad_batch(waves)


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
        reference: ``[N, C]`` probabilities of
            :func:`~fat_tf.inference.scoring.score_clips` with the Keras model on ``paths``.
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
    which: str = rf.DEFAULT_MODEL,
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
    from fat_tf.inference.clip_module import TFLITE_SIGNATURES, make_clip_module, signature_table

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
        shutil.copyfile(trained.run_dir / rf.CONFIG, tmp / "config.json")
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


def is_previous_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`export_run`: the only kind of
    folder ``--overwrite`` replaces.

    Its marker is ``export.json`` with ``"format": "fat_tf-export"``; a folder that also
    holds a run folder's files (:data:`fat_tf.run_folder.RUN_FOLDER_NAMES`) does not count.

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
    elif (out / rf.CONFIG).exists() and (out / rf.DATA).exists():
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
    parser.add_argument("--model", default=rf.DEFAULT_MODEL, choices=list(rf.MODEL_FILES),
                        help="which saved model of the run to export: the final model "
                             "(model.keras) or the best validation checkpoint (best.keras)")
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
