"""Whole-clip inference throughput of the exported formats on this CPU (clips per second).

A tagger of the chosen preset (``small`` by default) with random weights is exported the
way ``python -m fat_tf.export`` does it
(:func:`fat_tf.inference.clip_module.make_clip_module`,
:func:`fat_tf.export.write_saved_model`, :func:`~fat_tf.export.convert_tflite`) and every
format scores the same 10 s clips (sliding windows of ``crop_frames``, half-overlapping,
pooled per clip: 10 windows per 10 s clip with the 2 s windows of both presets):

* ``SavedModel serving_default``: ``tf.saved_model.load`` then the signature, ``--batch``
  clips per call;
* ``SavedModel waveform_with_lengths``: the same with a lengths input;
* ``TFLite float32`` and ``TFLite dynamic-range``: the TFLite signature runner
  (``waveform_with_lengths``) with ``--threads`` threads (XNNPACK delegate);
* ``Keras score_clips``: what :func:`fat_tf.inference.scoring.score_clips` runs (the tf.data
  pipeline decoding 16-bit WAV files, ``ClipScorer.predict`` on padded window batches),
  built once, for reference.

Each contender is warmed up (two calls) and the rounds are interleaved (one round times
every contender once); the best of ``--repeats`` rounds is kept, so load from other
processes hurts every contender roughly alike. The load average is printed: on a busy
machine rerun and compare ratios rather than absolute rates; the CPU time per clip (process
time over all threads, best round) is less sensitive to other processes than wall time.

Run: ``.venv/bin/python benchmarks/inference.py --clips 8 --batch 8 --repeats 5``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
import wave
from pathlib import Path

import numpy as np
import tensorflow as tf

from fat_tf import export
from fat_tf.inference.clip_module import TFLITE_SIGNATURES, make_clip_module
from fat_tf.inference.scoring import ScoringSettings, window_cap
from fat_tf.inference.windows import ClipScorer, batch_window_starts
from fat_tf.models import build_tagger
from fat_tf.presets import get_preset


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options.

    Args:
        argv: argument list (``None`` = ``sys.argv``).

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small", choices=["small", "fat2019"])
    p.add_argument("--classes", type=int, default=80, help="output classes")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="clip length")
    p.add_argument("--clips", type=int, default=8, help="clips per timed round")
    p.add_argument("--batch", type=int, default=8, help="clips per call")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (best is kept)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="TFLite interpreter threads")
    p.add_argument("--no-keras", action="store_true", help="skip the score_clips reference")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    return p.parse_args(argv)


def make_clips(n: int, samples: int, rate: int) -> np.ndarray:
    """Deterministic clips: a few tones plus noise, float32 ``[n, samples]``.

    Args:
        n: number of clips.
        samples: samples per clip.
        rate: sample rate in Hz.
    """
    rng = np.random.default_rng(0)
    t = np.arange(samples) / rate
    clips = [0.2 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(samples)
             for i in range(n)]
    # quantise to 16 bits so the WAV files of the Keras reference hold the same audio
    return (np.round(np.stack(clips) * 32767) / 32768).astype(np.float32)


def write_wavs(folder: Path, clips: np.ndarray, rate: int) -> list[str]:
    """Write clips as 16-bit mono WAV files.

    Args:
        folder: destination folder.
        clips: ``[n, samples]`` float32 in [-1, 1).
        rate: sample rate.

    Returns:
        the paths.
    """
    paths = []
    for i, clip in enumerate(clips):
        path = folder / f"clip{i}.wav"
        with wave.open(str(path), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes(np.round(clip * 32768).astype("<i2").tobytes())
        paths.append(str(path))
    return paths


def in_batches(fn, clips: np.ndarray, batch: int):
    """A callable scoring every clip, ``batch`` clips per call of ``fn(waveform, lengths)``."""
    lengths = np.full(len(clips), clips.shape[1], np.int32)

    def run():
        for i in range(0, len(clips), batch):
            fn(clips[i : i + batch], lengths[i : i + batch])

    return run


def main(argv=None) -> None:
    """Export a random-weight tagger, time every format, print a table.

    Args:
        argv: argument list (``None`` = ``sys.argv``).
    """
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="fat_tf-bench-"))
    try:
        run_benchmark(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_benchmark(args: argparse.Namespace, tmp: Path) -> None:
    """Export into ``tmp``, time every format and print the table.

    Args:
        args: the parsed options.
        tmp: scratch folder (SavedModels, WAV files).
    """
    config = get_preset(args.preset)
    rate = config.frontend.sample_rate
    samples = int(round(args.clip_seconds * rate))
    names = [f"class_{i:02d}" for i in range(args.classes)]
    settings = ScoringSettings.from_config(config)
    tagger = build_tagger(config, args.classes)
    clips = make_clips(args.clips, samples, rate)
    _, mask = batch_window_starts(tf.constant([samples]), settings.window_samples,
                                  settings.hop_samples, window_cap(settings.max_windows))
    windows = int(tf.reduce_sum(tf.cast(mask, tf.int32)))
    sm_dir, lite_dir = tmp / "saved_model", tmp / "tflite_src"
    export.write_saved_model(make_clip_module(tagger, names, settings), sm_dir)
    export.write_saved_model(make_clip_module(tagger, names, settings, tflite=True),
                             lite_dir, TFLITE_SIGNATURES)
    lite = {"TFLite float32": export.convert_tflite(lite_dir),
            "TFLite dynamic-range": export.convert_tflite(lite_dir, quantize=True)}
    loaded = tf.saved_model.load(str(sm_dir))
    serving = loaded.signatures["serving_default"]
    with_lengths = loaded.signatures["waveform_with_lengths"]

    contenders = {
        "SavedModel serving_default": in_batches(
            lambda x, n: serving(waveform=tf.constant(x)), clips, args.batch),
        "SavedModel waveform_with_lengths": in_batches(
            lambda x, n: with_lengths(waveform=tf.constant(x), lengths=tf.constant(n)),
            clips, args.batch),
    }
    sizes = {}
    for name, blob in lite.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_content=blob, num_threads=args.threads)
        runner = interpreter.get_signature_runner("waveform_with_lengths")
        contenders[name] = in_batches(lambda x, n, r=runner: r(waveform=x, lengths=n), clips,
                                      args.batch)
        sizes[name] = len(blob)
    if not args.no_keras:
        paths = write_wavs(tmp, clips, rate)
        dataset = settings.evaluation_dataset(paths, batch_size=args.batch)
        scorer = ClipScorer(tagger, settings.pooling)
        contenders["Keras score_clips (WAV files)"] = lambda: scorer.predict(dataset, verbose=0)

    reference = with_lengths(waveform=tf.constant(clips[:2]),
                             lengths=tf.constant([samples, samples]))["probabilities"].numpy()
    diffs = {}
    for name, blob in lite.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_content=blob)
        out = interpreter.get_signature_runner("waveform_with_lengths")(
            waveform=clips[:2], lengths=np.array([samples, samples], np.int32))
        diffs[name] = float(np.abs(out["probabilities"] - reference).max())
        print(f"{name}: max |p - p_SavedModel| = {diffs[name]:.2e}, "
              f"{sizes[name] / 1e6:.2f} MB")

    for run in contenders.values():  # warm-up
        run()
        run()
    best = {name: float("inf") for name in contenders}
    cpu = {name: float("inf") for name in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)

    load = os.getloadavg()
    print(f"\npreset {args.preset} ({args.classes} classes), {args.clips} clips of "
          f"{args.clip_seconds:g} s, {args.batch} clips per call, window "
          f"{settings.window_samples} samples, hop {settings.hop_samples} ({windows} windows per "
          f"clip), TFLite threads "
          f"{args.threads}; {os.cpu_count()} CPUs, load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}; TensorFlow {tf.__version__}")
    print(f"{'contender':36s} {'clips/s':>9s} {'ms/clip':>9s} {'x real time':>12s} "
          f"{'CPU ms/clip':>12s}")
    figures = {"preset": args.preset, "classes": args.classes, "clips": args.clips,
               "clip_seconds": args.clip_seconds, "batch": args.batch,
               "windows_per_clip": windows, "tflite_threads": args.threads,
               "tensorflow": tf.__version__, "load": list(load),
               "max_diff_vs_saved_model": diffs, "model_bytes": sizes, "contenders": {}}
    for name, seconds in best.items():
        rate_clips = args.clips / seconds
        print(f"{name:36s} {rate_clips:9.2f} {1000 / rate_clips:9.1f} "
              f"{rate_clips * args.clip_seconds:12.1f} {1000 * cpu[name] / args.clips:12.1f}")
        figures["contenders"][name] = {
            "seconds": seconds, "clips_per_s": rate_clips,
            "real_time_factor": rate_clips * args.clip_seconds,
            "cpu_ms_per_clip": 1000 * cpu[name] / args.clips}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
