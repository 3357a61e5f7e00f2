"""Score audio clips with a trained run or an exported model: ``python -m fat_tf.predict``.

What is scored:

* ``python -m fat_tf.predict RUN_DIR`` (or ``--data DIR``): every test clip listed in a
  FAT2019-layout dataset's ``sample_submission.csv`` (default: the dataset the run was
  trained on), written as a Kaggle submission;
* ``python -m fat_tf.predict MODEL a.wav b.flac folder/ --files-from list.txt``: audio
  files, folders of audio files (:data:`fat_tf.data.audio_io.AUDIO_EXTENSIONS`, not
  recursive) and files listed one per line in a text file (``-`` reads the list from
  stdin).

``MODEL`` is a run folder (``python -m fat_tf.train``) or an export folder
(``python -m fat_tf.export``, a SavedModel), opened by
:func:`fat_tf.inference.loaded.load_model`. Every clip is scored whole, whatever its
length: sliding windows, window logits pooled (mean or max), optional time-reversal TTA,
then the sigmoid (:func:`fat_tf.inference.windows.waveform_clip_logits`, the computation
inside the exported SavedModel).

Any format libsndfile reads is accepted (WAV of any sample format, FLAC, Ogg Vorbis/Opus,
MP3...): 16-bit PCM mono WAV at the model's sample rate is decoded as in training, anything
else is averaged to mono and resampled to the model's rate (see :mod:`fat_tf.data.audio_io`).
Each file is checked before it is decoded; a bad file is
reported (its path and the problem) and skipped, the others are written, and the exit
status is then 1.

Output: ``--format csv`` (default) writes the submission format (``fname`` then one
probability column per class, in class order); ``--format json`` writes the ``--top-k``
labels of each clip, ranked by logit, and the list of files that failed. ``--threshold P``
adds the multi-label decisions: the classes with probability >= P, in a last CSV column
``labels`` (comma-separated and quoted, like ``train_curated.csv``) or a ``labels`` list
per clip in JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from fat_tf.cli import HelpFormatter, probability_threshold, prog, run_cli
from fat_tf.inference.loaded import load_model
from fat_tf.inference.scoring import (
    MAX_BATCH_SAMPLES,
    Clip,
    checked_waveform,
    collect_clips,
    padded_batches,
    sigmoid,
)
from fat_tf.run_folder import DEFAULT_MODEL, MODEL_FILES

DEFAULT_OUT = {"csv": "submission.csv", "json": "predictions.json"}


def submission_csv(fnames, class_names, probabilities: np.ndarray,
                   threshold: float | None = None) -> str:
    """The text of a submission: ``fname`` then one probability column per class.

    Args:
        fnames: clip file names, in row order.
        class_names: column names after ``fname``.
        probabilities: ``[N, C]`` probabilities.
        threshold: if given, a last column ``labels`` lists the classes whose probability
            is at least ``threshold``, comma-separated (quoted, as in
            ``train_curated.csv``; empty when none is).
    """
    out = io.StringIO()
    header = ["fname", *class_names]
    if threshold is not None:
        if "labels" in class_names:
            from fat_tf.errors import FatTfError

            raise FatTfError("a class is called 'labels', the name of --threshold's column")
        header.append("labels")
    out.write(",".join(header) + "\n")
    for fname, row in zip(fnames, probabilities):
        out.write(fname + "," + ",".join(f"{p:.6g}" for p in row))
        if threshold is not None:
            labels = ",".join(decided_labels(class_names, row, threshold))
            if "," in labels or '"' in labels:  # quoted as a CSV cell
                labels = '"' + labels.replace('"', '""') + '"'
            out.write("," + labels)
        out.write("\n")
    return out.getvalue()


def decided_labels(class_names: Sequence[str], probabilities, threshold: float) -> list[str]:
    """The multi-label decision of one clip: the classes with ``probability >= threshold``,
    most probable first.

    Args:
        class_names: the C class names.
        probabilities: ``[C]`` probabilities of the clip.
        threshold: the decision threshold.
    """
    probabilities = np.asarray(probabilities, np.float64)
    order = np.argsort(-probabilities, kind="stable")
    return [class_names[j] for j in order if probabilities[j] >= threshold]


def top_k_json(
    items: Sequence[Clip],
    class_names: Sequence[str],
    logits: np.ndarray,
    k: int,
    errors: Sequence[tuple[str, str]] = (),
    model: str = "",
    threshold: float | None = None,
) -> str:
    """JSON text with the ``k`` best labels of every clip (ranked by logit) and the errors.

    Args:
        items: the scored clips, in row order.
        class_names: the C class names.
        logits: ``[N, C]`` clip logits.
        k: labels per clip (``k <= 0`` or ``k >= C``: all, ranked).
        errors: ``(file, message)`` of the files that could not be scored.
        model: the model folder, recorded in the output.
        threshold: if given, each prediction also has ``labels``: every class with
            ``probability >= threshold``, most probable first (not limited to ``k``),
            and the output records ``threshold``.

    Returns:
        ``{"model", "classes", "top_k", "predictions": [{"file", "fname", "top": [{"label",
        "probability", "logit"}]}], "errors": [{"file", "error"}]}`` as indented JSON.
    """
    logits = np.asarray(logits, np.float64).reshape(len(items), len(class_names))
    k = len(class_names) if k <= 0 else min(k, len(class_names))
    predictions = []
    for item, row in zip(items, logits):
        order = np.argsort(-row, kind="stable")[:k]
        predictions.append({
            "file": item.path,
            "fname": item.name,
            "top": [{"label": class_names[j], "probability": float(sigmoid(row[j])),
                     "logit": float(row[j])} for j in order],
        })
        if threshold is not None:
            predictions[-1]["labels"] = decided_labels(class_names, sigmoid(row), threshold)
    result = {
        "model": model,
        "classes": len(class_names),
        "top_k": k,
        **({} if threshold is None else {"threshold": threshold}),
        "predictions": predictions,
        "errors": [{"file": f, "error": m} for f, m in errors],
    }
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- inputs
def dataset_clips(data_dir: str | os.PathLike, class_names: Sequence[str]
                  ) -> tuple[list[Clip], list[tuple[str, str]]]:
    """The test clips of a FAT2019-layout dataset, in ``sample_submission.csv`` order.

    Listed clips whose file is missing are reported and left out.

    Args:
        data_dir: the dataset folder.
        class_names: the model's classes; ``sample_submission.csv`` must have them.

    Returns:
        ``(clips, errors)``.
    """
    from fat_tf.data.manifest import DatasetLayout, DataWarning, read_test_manifest
    from fat_tf.errors import DataError, FatTfError

    layout = DatasetLayout(os.fspath(data_dir))
    sub = layout.sample_submission_csv
    if not os.path.isfile(sub):
        raise FatTfError(f"{sub}: not found ({data_dir} is not a FAT2019-layout dataset "
                         "folder with sample_submission.csv and test/)")
    errors = []
    try:
        test = read_test_manifest(sub, layout.test_dir, check_audio=False)
    except DataError:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            test = read_test_manifest(sub, layout.test_dir, check_audio=False, skip_bad=True)
        errors += [(sub, str(w.message)) for w in caught if issubclass(w.category, DataWarning)]
    if tuple(test.class_names) != tuple(class_names):
        raise FatTfError("the dataset's classes (sample_submission.csv) differ from the "
                         "classes the model was trained on")
    return [Clip(p, f) for p, f in zip(test.paths, test.fnames)], errors


# ----------------------------------------------------------------------------- scoring
def score(model, clips: Sequence[Clip], batch_size: int = 16, progress: bool = False,
          max_batch_samples: int | None = None
          ) -> tuple[list[Clip], np.ndarray, list[tuple[str, str]]]:
    """Read and score clips in batches; unreadable files are collected, not raised.

    A batch is padded to its longest clip, so batches are limited by their padded size
    as well as by clip count (:func:`fat_tf.inference.scoring.padded_batches`): one
    10-minute clip among short ones is scored on its own instead of padding every other
    clip of its batch to 10 minutes.

    Args:
        model: a :class:`~fat_tf.inference.loaded.RunModel` or
            :class:`~fat_tf.inference.loaded.ExportedModel`.
        clips: the clips.
        batch_size: most clips per call of the model.
        progress: show a Keras progress bar (on stdout).
        max_batch_samples: most samples in a padded batch, ``clips * longest`` (default
            :data:`MAX_BATCH_SAMPLES`); a longer clip is scored alone.

    Returns:
        ``(scored clips, logits [N, C], errors as (path, message))``.
    """
    from fat_tf.data.audio_io import load_audio
    from fat_tf.errors import AudioFormatError

    bar = None
    if progress:
        import keras

        # one line at the end when stdout is not a terminal (no line per update in logs)
        bar = keras.utils.Progbar(len(clips), unit_name="clip",
                                  verbose=1 if sys.stdout.isatty() else 2)
    done, rows, errors = [], [], []

    def readable():
        for i, clip in enumerate(clips):
            try:
                wave = checked_waveform(load_audio(clip.path, model.settings.sample_rate),
                                        clip.path)
            except AudioFormatError as e:
                errors.append((clip.path, str(e)))
            else:
                yield clip, wave
            if bar is not None:
                bar.update(i + 1)

    budget = max_batch_samples or MAX_BATCH_SAMPLES
    for batch, waveform, lengths in padded_batches(readable(), batch_size, budget):
        rows.append(model.logits(waveform, lengths))
        done.extend(batch)
    n_classes = len(model.class_names)
    logits = np.concatenate(rows) if rows else np.zeros((0, n_classes), np.float32)
    return done, logits, errors


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``fat-tf predict``."""
    from fat_tf.config import WINDOW_POOLINGS

    parser = argparse.ArgumentParser(
        prog=prog("predict"),
        description="Score whole audio clips with a trained run or an exported model and "
                    "write a Kaggle-format CSV (fname + one probability column per class) "
                    "or JSON with the top-k labels. Without AUDIO arguments, scores the "
                    "test clips of a FAT2019-layout dataset (--data, default: the run's). "
                    "Bad files are reported and skipped; the exit status is then 1.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("run_dir", metavar="MODEL_DIR",
                        help="run folder (python -m fat_tf.train) or export folder "
                             "(python -m fat_tf.export)")
    parser.add_argument("inputs", nargs="*", metavar="AUDIO",
                        help="audio files and folders of audio files (WAV, FLAC, Ogg "
                             "Vorbis/Opus, MP3, AIFF; any rate, mono or not: converted to "
                             "mono at the model's rate)")
    parser.add_argument("--files-from", default=None, metavar="LIST",
                        help="text file listing audio files, one per line ('-': stdin)")
    parser.add_argument("--data", default=None,
                        help="dataset folder with test/ and sample_submission.csv "
                             "(default without AUDIO: the one the run was trained on)")
    parser.add_argument("--out", default=None,
                        help="file to write ('-': stdout; default: submission.csv, or "
                             "predictions.json with --format json)")
    parser.add_argument("--format", default=None, choices=["csv", "json"],
                        help="csv: submission format; json: top-k labels per clip and the "
                             "errors (default: from --out's extension, else csv)")
    parser.add_argument("--top-k", type=int, default=5,
                        help="labels per clip in JSON output (0: all, ranked)")
    parser.add_argument("--threshold", type=probability_threshold, default=None,
                        metavar="P",
                        help="multi-label decisions: the classes with probability >= P "
                             "are a clip's labels, in a last CSV column 'labels' "
                             "(comma-separated, as in train_curated.csv) or a 'labels' "
                             "list per clip in JSON (default: probabilities only)")
    parser.add_argument("--model", default=None, choices=list(MODEL_FILES),
                        help="which saved model of a run folder to use "
                             f"(default: {DEFAULT_MODEL})")
    parser.add_argument("--pooling", default=None, choices=WINDOW_POOLINGS,
                        help="window pooling (default: the run's config; fixed in exports)")
    parser.add_argument("--tta", action="store_true",
                        help="average with the time-reversed clips (run folders)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="most clips per model call (batches are also limited to "
                             f"{MAX_BATCH_SAMPLES} samples once padded to their longest "
                             "clip, so long clips are scored in smaller batches)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: on for more than two batches, unless "
                             "--out is stdout)")
    return parser


def output_format(fmt: str | None, out: str | None) -> str:
    """The output format: ``fmt``, else from ``out``'s extension, else ``csv``.

    Args:
        fmt: ``--format`` (``csv``, ``json`` or None).
        out: ``--out`` (None for the default).
    """
    if fmt:
        return fmt
    return "json" if out and out.lower().endswith(".json") else "csv"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_intermixed_args(argv)  # options may follow AUDIO paths

    def run() -> int:
        from fat_tf.errors import FatTfError
        from fat_tf.files import atomic_write_text

        if args.batch_size < 1:
            raise FatTfError("--batch-size must be at least 1")
        fmt = output_format(args.format, args.out)
        out = args.out or DEFAULT_OUT[fmt]
        to_stdout = out == "-"
        model = load_model(args.run_dir, args.model, args.pooling, args.tta)
        if args.inputs or args.files_from:
            if args.data:
                raise FatTfError("give either AUDIO files/folders or --data, not both")
            clips, errors = collect_clips(args.inputs, args.files_from)
        else:
            data = args.data or getattr(getattr(model, "run", None), "data_dir", None)
            if data is None:
                raise FatTfError("give audio files or folders to score, --files-from, or "
                                 "--data DIR (an exported model has no dataset of its own)")
            clips, errors = dataset_clips(data, model.class_names)
        progress = args.progress
        if progress is None:
            progress = len(clips) > 2 * args.batch_size and not to_stdout
        scored, logits, read_errors = score(model, clips, args.batch_size, progress)
        errors += read_errors
        for _, message in errors:
            print(f"error: {message}", file=sys.stderr)
        if not scored:
            print("error: no clip could be scored; nothing written", file=sys.stderr)
            return 1
        if fmt == "json":
            text = top_k_json(scored, model.class_names, logits, args.top_k, errors,
                              str(model.path), threshold=args.threshold)
        else:
            text = submission_csv([c.name for c in scored], model.class_names,
                                  sigmoid(logits), threshold=args.threshold)
        if to_stdout:
            sys.stdout.write(text)
        else:
            atomic_write_text(out, text)
        n_classes = len(model.class_names)
        if fmt == "csv":
            summary = f"wrote {len(scored)} rows x {n_classes} classes to {out}"
        else:
            k = n_classes if args.top_k <= 0 else min(args.top_k, n_classes)
            summary = f"wrote the top {k} labels of {len(scored)} clips to {out}"

        if errors:
            summary += f"; {len(errors)} file(s) failed (see the errors above)"
        print(summary, file=sys.stderr if to_stdout else sys.stdout)
        return 1 if errors else 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
