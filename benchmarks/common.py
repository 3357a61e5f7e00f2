"""Helpers shared by the benchmark scripts: synthetic FAT2019-like data, worker processes,
memory and machine descriptions, and the train-step measurement of one preset and method.

The scripts are run as files (``python benchmarks/pipeline.py``), so this folder is on
``sys.path`` and they import this module as ``common``.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

RESULT_MARK = "@@result "
RATE = 44100
CLASSES = [f"class_{i:02d}" for i in range(80)]


# ============================================================================ data
def write_clips(root: str, count: int, min_s: float, max_s: float, seed: int,
                subset: str = "train_curated") -> dict:
    """Write ``count`` WAV clips into ``root/<subset>/`` and list them in ``<subset>.csv``.

    Clips are 16-bit mono 44.1 kHz WAVs of FAT2019-like lengths (log-uniform between
    ``min_s`` and ``max_s``; noise plus a tone) with 1-3 random labels of :data:`CLASSES`.

    Args:
        root: dataset folder (created).
        count: number of clips.
        min_s: shortest clip in seconds.
        max_s: longest clip in seconds.
        seed: random seed.
        subset: ``train_curated``, ``train_noisy`` or ``test`` (the folder and CSV name).

    Returns:
        ``{"clips", "hours", "bytes", "seconds"}`` (seconds: time spent writing).
    """
    from fat_tf.data.demo import write_wav

    started = time.time()
    rng = np.random.default_rng(seed)
    audio_dir = os.path.join(root, subset)
    os.makedirs(audio_dir, exist_ok=True)
    lengths = np.exp(rng.uniform(np.log(min_s), np.log(max_s), count))
    rows, total_bytes = [], 0
    for i, seconds in enumerate(lengths):
        n = max(1, int(seconds * RATE))
        t = np.arange(n, dtype=np.float32) / RATE
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
        wave += rng.normal(0, 0.05, n).astype(np.float32)
        name = f"{i:08x}.wav"
        write_wav(os.path.join(audio_dir, name), (wave * 32767).astype(np.int16))
        total_bytes += 44 + 2 * n
        labels = rng.choice(len(CLASSES), size=rng.integers(1, 4), replace=False)
        rows.append((name, ",".join(CLASSES[j] for j in sorted(labels))))
    with open(os.path.join(root, f"{subset}.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["fname", "labels"])
        writer.writerows(rows)
    return {"clips": count, "hours": float(lengths.sum() / 3600), "bytes": total_bytes,
            "seconds": time.time() - started}


def write_dataset(root: str, curated: int, noisy: int, min_s: float, max_s: float,
                  seed: int) -> dict:
    """A FAT2019-layout folder that :func:`fat_tf.data.manifest.load_dataset` accepts.

    ``train_curated`` and ``train_noisy`` get :func:`write_clips` clips (different seeds);
    ``test`` gets one clip listed in ``sample_submission.csv``, whose header names the
    classes.

    Args:
        root: dataset folder (created).
        curated: curated (labelled) clips.
        noisy: noisy clips (the unlabelled side of semi-supervised methods); 0 = none.
        min_s: shortest clip in seconds.
        max_s: longest clip in seconds.
        seed: random seed.

    Returns:
        per subset, the :func:`write_clips` summary.
    """
    out = {"train_curated": write_clips(root, curated, min_s, max_s, seed)}
    if noisy:
        out["train_noisy"] = write_clips(root, noisy, min_s, max_s, seed + 1, "train_noisy")
    write_clips(root, 1, 1.0, 1.0, seed + 2, "test")
    with open(os.path.join(root, "sample_submission.csv"), "w", newline="",
              encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["fname", *CLASSES])
        writer.writerow([f"{0:08x}.wav", *([0] * len(CLASSES))])
    return out


# ============================================================================ processes
def rss_mb() -> float:
    """Current resident set size in MiB (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(script: str, args: list[str]) -> dict:
    """Run ``script`` as a worker process and return the result it prints.

    The worker prints one line ``RESULT_MARK + json``; anything else it writes is ignored
    unless it fails, when its stderr tail is raised.

    Args:
        script: path of the benchmark script.
        args: its command-line arguments (``--worker ...``).

    Returns:
        the decoded result.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, os.path.abspath(script), *args],
                          capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")


def print_result(result: dict) -> None:
    """Print a worker's result for :func:`run_worker`.

    Args:
        result: JSON-serialisable result.
    """
    print(RESULT_MARK + json.dumps(result), flush=True)


def train_step_worker(preset: str, method: str, batch: int, steps: int, warmup: int,
                      features: bool = False, repeats: int = 3) -> dict:
    """Clips/s of one method's train step on in-memory random audio (or log-mel).

    Uses ``train_step.TFBackend``: the method built and compiled by
    :func:`fat_tf.training.build_method` as training does, ``fit`` on one repeated batch
    (the unlabelled side included for semi-supervised methods), warm-up steps excluded,
    threads = the cores this process may use. The median of ``repeats`` timed ``fit``
    calls is reported (the first calls after tracing can be several times slower).

    Args:
        preset: ``small`` or ``fat2019``.
        method: training method.
        batch: labelled clips per step.
        steps: timed steps.
        warmup: untimed steps after the first (tracing) step.
        features: feed log-mel crops as the pipeline does with ``data.feature_cache``.
        repeats: timed ``fit`` calls of ``steps`` steps each.

    Returns:
        ``{"preset", "method", "features", "batch", "steps", "seconds", "clips_per_s",
        "runs"}``: labelled clips per second (median run), seconds of that run, and the
        clips/s of every run.
    """
    from train_step import TFBackend

    backend = TFBackend(preset, batch, len(CLASSES), len(os.sched_getaffinity(0)),
                        features=features)
    backend.setup(method)
    if warmup:
        backend.run(method, warmup)
    runs = sorted(backend.run(method, steps) for _ in range(max(1, repeats)))
    seconds = runs[len(runs) // 2]
    return {"preset": preset, "method": method, "features": features, "batch": batch,
            "steps": steps, "seconds": seconds, "clips_per_s": steps * batch / seconds,
            "runs": [steps * batch / s for s in runs]}


# ============================================================================ machine
def machine() -> str:
    """One line about the CPU and its load."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPU cores, load average {load} (1, 5, 15 min)"


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    """Total RAM in GiB (``/proc/meminfo``; NaN where unreadable)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")
