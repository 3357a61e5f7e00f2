"""Memory and speed of the training input pipeline at 500 and 5,000 clips.

What it measures:

* **Peak RSS of one epoch** of :func:`fat_tf.data.pipeline.training_dataset` (the labelled
  stream ``python -m fat_tf.train`` builds: path shuffle, in-graph WAV decoding, random
  crop, batch, prefetch) over 500 and then 5,000 clips, each size in a fresh worker
  process, so one run's allocations cannot hide in the other's. The pipeline shuffles
  the path list, not decoded audio, so its memory should not grow with the dataset:
  **target: the two peaks within 10 %**. Peak RSS is the worker's ``ru_maxrss`` (it
  includes TensorFlow itself); the growth over the RSS measured after building the
  dataset, before the first element, is printed too.
* **Pipeline throughput** (clips/s over that epoch, first-element latency included),
  against the **train step's throughput** of the small preset (supervised, the method
  ``fat_tf.training.build_method`` builds, ``fit`` on random audio batches already in
  memory, warm-up steps excluded). **Target: the pipeline >= 3x the train step**, so the
  CPU spends its time training, not decoding.

The clips are 16-bit mono 44.1 kHz WAVs of FAT2019-like lengths (log-uniform 0.3-10 s,
noise plus a tone), listed with random labels in a ``train_curated.csv`` of the Kaggle
layout (read by :func:`fat_tf.data.manifest.read_manifest`), written once into a temporary
folder (~1.3 GB for 5,000 clips; the 500-clip run reads the first 500) and deleted at the
end. Freshly written files are mostly in the page cache, so the pipeline figures are for
decoding from RAM (as on a machine whose dataset fits its cache), not for a cold disk.

Run (from the repository root; ~3-5 min on a 2-core CPU):
    ``.venv/bin/python benchmarks/memory.py``
    ``.venv/bin/python benchmarks/memory.py --sizes 200,2000 --train-steps 3`` (quicker)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from common import (
    CLASSES,
    machine,
    peak_rss_mb,
    print_result,
    rss_mb,
    run_worker,
    train_step_worker,
    write_clips,
)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (``argv``: argument list, None = ``sys.argv``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="500,5000", help="clip counts, comma-separated")
    p.add_argument("--min-seconds", type=float, default=0.3, help="shortest clip")
    p.add_argument("--max-seconds", type=float, default=10.0, help="longest clip")
    p.add_argument("--train-steps", type=int, default=5, help="timed train steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed train steps first")
    p.add_argument("--dir", default=None,
                   help="folder for the clips (default: a temporary folder, deleted after)")
    p.add_argument("--seed", type=int, default=0, help="seed of lengths, audio and labels")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--worker", choices=("pipeline", "train_step"), help=argparse.SUPPRESS)
    p.add_argument("--clips", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ============================================================================ workers
def pipeline_worker(root: str, clips: int) -> dict:
    """One epoch of the training stream over the first ``clips`` clips of ``root``.

    Args:
        root: folder written by :func:`common.write_clips`.
        clips: how many of its clips to read.

    Returns:
        clips/s, epoch time, RSS before the first element and peak RSS.
    """
    from fat_tf.data import pipeline
    from fat_tf.data.manifest import read_manifest
    from fat_tf.presets import get_preset

    config = get_preset("small")
    manifest = read_manifest(os.path.join(root, "train_curated.csv"),
                             os.path.join(root, "train_curated"), CLASSES, check_audio=False)
    manifest = manifest.subset(np.arange(clips))
    batch = config.data.batch_size
    ds = pipeline.training_dataset(
        manifest.paths, manifest.labels, sample_rate=config.frontend.sample_rate,
        crop_samples=config.crop_samples, batch_size=batch, seed=0,
        cache=config.data.cache, shuffle_buffer=config.data.shuffle_buffer,
        parallel_calls=config.data.parallel_calls,
    )
    before = rss_mb()
    started = time.time()
    seen = 0
    for inputs, _ in ds:
        seen += int(inputs["audio"].shape[0])
    seconds = time.time() - started
    return {"clips": clips, "batch": batch, "crop_samples": config.crop_samples,
            "clips_seen": seen, "seconds": seconds, "clips_per_s": seen / seconds,
            "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}


# ============================================================================ main
def main(argv=None) -> int:
    """Run the benchmark and print a Markdown table."""
    args = parse_args(argv)
    if args.worker == "pipeline":
        print_result(pipeline_worker(args.dir, args.clips))
        return 0
    if args.worker == "train_step":
        from fat_tf.presets import get_preset

        batch = get_preset("small").data.batch_size
        print_result(train_step_worker("small", "supervised", batch, args.train_steps,
                                       args.warmup))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    root = args.dir or tempfile.mkdtemp(prefix="fat_tf-memory-")
    try:
        print(f"machine: {machine()}", flush=True)
        data = write_clips(root, max(sizes), args.min_seconds, args.max_seconds, args.seed)
        print(f"wrote {data['clips']} clips ({data['hours']:.2f} h, "
              f"{data['bytes'] / 1e9:.2f} GB) in {data['seconds']:.0f} s", flush=True)
        results = []
        for n in sizes:
            results.append(run_worker(__file__, ["--worker", "pipeline", "--dir", root,
                                                 "--clips", str(n)]))
            r = results[-1]
            print(f"  pipeline, {n} clips: {r['clips_per_s']:.0f} clips/s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MiB", flush=True)
        step = run_worker(__file__, ["--worker", "train_step",
                                     "--train-steps", str(args.train_steps),
                                     "--warmup", str(args.warmup)])
        print(f"  train step: {step['clips_per_s']:.1f} clips/s", flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)

    base = results[0]["peak_rss_mb"]
    print()
    print(f"Training input pipeline, small preset (batch {results[0]['batch']}, crops of "
          f"{results[0]['crop_samples']} samples); {machine()}")
    print()
    print("| clips | epoch time (s) | pipeline clips/s | x train step | RSS before (MiB) "
          "| peak RSS (MiB) | peak vs first |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['clips']:,} | {r['seconds']:.1f} | {r['clips_per_s']:.0f} | "
              f"{r['clips_per_s'] / step['clips_per_s']:.1f}x | {r['rss_before_mb']:.0f} | "
              f"{r['peak_rss_mb']:.0f} | {100 * (r['peak_rss_mb'] / base - 1):+.1f}% |")
    print()
    print(f"Train step (small preset, supervised, batch {step['batch']}, {step['steps']} timed "
          f"steps): {step['clips_per_s']:.1f} clips/s.")
    growth = max(abs(r["peak_rss_mb"] / base - 1) for r in results)
    ratio = min(r["clips_per_s"] for r in results) / step["clips_per_s"]
    print(f"Targets: peak RSS within 10% across sizes: {'met' if growth <= 0.10 else 'MISSED'} "
          f"({100 * growth:.1f}%); pipeline >= 3x train step: "
          f"{'met' if ratio >= 3 else 'MISSED'} ({ratio:.1f}x).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": data, "pipeline": results, "train_step": step,
                       "machine": machine()}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
