"""Throughput of the log-mel front end (fat_tf.layers.LogMel) against librosa.

Both sides compute the same thing on the same clips: the FAT2019 recipe (44.1 kHz, n_fft 2560,
hop 694, 128 mels, 20 Hz to 22.05 kHz, power 2, dB with ref 1.0 and a per-clip 80 dB clamp,
per-clip standardisation; the librosa side is ``tools/librosa_reference.py``, which the
front end's golden test checks against too). Timings are warmed up and interleaved (one
round times every contender once), and the best of ``--repeats`` rounds is kept, so load
from other processes hurts every contender roughly alike (the script prints the load
average; on a busy machine rerun it and compare the ratios, not the absolute rates).

Contenders:
    * ``fat_tf tf.function``: the layer inside ``tf.function`` on a batch of clips.
    * ``fat_tf tf.function(jit_compile=True)``: the same under XLA.
    * ``librosa batch``: one call on a ``[batch, samples]`` array (librosa's fastest mode),
      with ``scipy.fft`` (librosa 0.11's FFT) on one worker (its default) and on every core.
    * ``librosa per clip``: one call per clip.
    The ratio is against the fastest librosa contender of the run.

The FLOP fraction divides achieved FLOP/s by a peak estimated from ``/proc/cpuinfo``:
``cores x GHz x SIMD fp32 lanes (avx512f: 16, avx2: 8, else 4) x 2 (FMA) x FMA units``
(2 units, as on AMD Zen 5 and Intel server cores; ``--fma-units`` to change). The ``cpu MHz``
field is usually the base clock, so boost can push a large matmul past this "peak"; the
script therefore also reports a measured float32 matmul rate as a practical ceiling.

Run: ``.venv/bin/python benchmarks/frontend.py --batch 32 --repeats 10 --clip-seconds 2``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import tensorflow as tf

from fat_tf.config import FrontEndConfig
from fat_tf.layers import LogMel
from fat_tf.layers.logmel import mel_bands, mel_filterbank

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
from librosa_reference import librosa_logmel  # noqa: E402  (tools/ is not a package)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options.

    Args:
        argv: argument list (``None`` = ``sys.argv``).

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32, help="clips per call")
    p.add_argument("--pad-mode", default=FrontEndConfig().pad_mode,
                   choices=["reflect", "constant"], help="centre padding (both libraries)")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds (best is kept)")
    p.add_argument(
        "--clip-seconds",
        type=float,
        default=2.0,
        help="clip length, rounded to whole hops (2 s -> 88138 samples = 128 frames)",
    )
    p.add_argument("--fma-units", type=int, default=2, help="FMA pipes per core (peak)")
    p.add_argument("--peak-gflops", type=float, default=None, help="override the peak")
    p.add_argument("--no-librosa", action="store_true", help="time fat_tf only")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    return p.parse_args(argv)


def make_clips(config: FrontEndConfig, batch: int, seconds: float) -> np.ndarray:
    """Deterministic clips: a chirp plus noise at a per-clip gain, float32 in [-1, 1].

    Args:
        config: front end settings (sample rate, hop).
        batch: number of clips.
        seconds: clip length before rounding to whole hops.

    Returns:
        ``[batch, samples]`` float32.
    """
    hops = max(1, round(seconds * config.sample_rate / config.hop_length))
    samples = config.samples_for_frames(hops + 1)
    rng = np.random.default_rng(0)
    t = np.arange(samples) / config.sample_rate
    chirp = np.sin(2 * np.pi * (200.0 + 2000.0 * t) * t)
    gains = 10.0 ** rng.uniform(-3, 0, size=(batch, 1))
    clips = gains * (0.5 * chirp + 0.1 * rng.standard_normal((batch, samples)))
    return clips.astype(np.float32)


# ----------------------------------------------------------------------------- contenders
def fat_tf_runner(config: FrontEndConfig, clips: np.ndarray, jit: bool):
    """A no-argument callable running the layer on the clips, plus its first output.

    Args:
        config: front end settings.
        clips: ``[batch, samples]`` float32.
        jit: compile the ``tf.function`` with XLA.

    Returns:
        ``(run, output)``.
    """
    layer = LogMel.from_frontend_config(config)
    fn = tf.function(layer, jit_compile=jit)
    x = tf.constant(clips)

    def run():
        return fn(x).numpy()

    return run, run()


def librosa_runners(config: FrontEndConfig, clips: np.ndarray) -> dict:
    """librosa contenders: batched (one and all FFT workers) and per clip.

    librosa 0.11 takes its FFT from ``scipy.fft`` (one worker unless told otherwise);
    ``scipy.fft.set_workers`` lets it use every core.

    Args:
        config: front end settings.
        clips: ``[batch, samples]`` float32.

    Returns:
        ``{name: run}`` of no-argument callables.
    """
    import scipy.fft

    workers = len(os.sched_getaffinity(0))

    def batch_one_worker():
        return librosa_logmel(clips, config, pad_mode=config.pad_mode)

    def batch_all_workers():
        with scipy.fft.set_workers(workers):
            return librosa_logmel(clips, config, pad_mode=config.pad_mode)

    def per_clip():
        with scipy.fft.set_workers(workers):
            return np.stack([librosa_logmel(c, config, pad_mode=config.pad_mode) for c in clips])

    return {
        "librosa batch (scipy.fft, 1 worker)": batch_one_worker,
        f"librosa batch (scipy.fft, {workers} workers)": batch_all_workers,
        f"librosa per clip (scipy.fft, {workers} workers)": per_clip,
    }


def time_interleaved(runners: dict, repeats: int) -> dict:
    """Best wall time of each runner over ``repeats`` interleaved rounds (after a warm-up).

    Args:
        runners: ``{name: callable}``.
        repeats: timed rounds.

    Returns:
        ``{name: seconds}``.
    """
    for run in runners.values():
        run()
    best = {name: math.inf for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


# ----------------------------------------------------------------------------- FLOPs and peak
def flops_per_clip(config: FrontEndConfig, samples: int, banded: bool) -> float:
    """Floating-point operations of the front end for one clip.

    FFT ``2.5 N log2 N`` per frame (real FFT, split-radix estimate), window ``N``, power
    ``3 * bins``, mel matmul ``2 * bins * mels`` (or the banded multiply-adds actually
    executed), dB/clamp/standardise ~``6`` per output value.

    Args:
        config: front end settings.
        samples: clip length.
        banded: count the banded mel matmul fat_tf executes instead of the dense one.

    Returns:
        FLOPs per clip.
    """
    n, frames = config.n_fft, config.num_frames(samples)
    bins = n // 2 + 1
    if banded:
        weights = mel_filterbank(config.sample_rate, n, config.n_mels, config.fmin, config.fmax)
        macs = sum((b1 - b0) * (m1 - m0) for b0, b1, m0, m1 in mel_bands(weights))
    else:
        macs = bins * config.n_mels
    per_frame = 2.5 * n * math.log2(n) + n + 3 * bins + 2 * macs + 6 * config.n_mels
    return frames * per_frame


def cpu_peak_gflops(fma_units: int) -> tuple[float, str]:
    """Peak float32 GFLOP/s of the cores this process may use, from ``/proc/cpuinfo``.

    Args:
        fma_units: FMA pipes per core.

    Returns:
        ``(gflops, explanation)``.
    """
    cores = len(os.sched_getaffinity(0))
    mhz, flags, model = 0.0, set(), "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "cpu MHz":
                mhz = max(mhz, float(value))
            elif key == "flags":
                flags = set(value.split())
            elif key == "model name":
                model = value.strip()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma = 2 if "fma" in flags else 1
    gflops = cores * mhz / 1000.0 * lanes * fma * fma_units
    why = (
        f"{model}: {cores} cores x {mhz / 1000:.2f} GHz (cpu MHz) x {lanes} fp32 lanes "
        f"x {fma} (FMA) x {fma_units} FMA units"
    )
    return gflops, why


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Measured float32 GFLOP/s of a square ``tf.linalg.matmul`` (a practical ceiling).

    Args:
        size: matrix side.
        repeats: timed calls (best kept).

    Returns:
        GFLOP/s.
    """
    a = tf.random.stateless_normal([size, size], seed=[1, 2])
    fn = tf.function(lambda m: tf.linalg.matmul(m, m))
    fn(a).numpy()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# ----------------------------------------------------------------------------- report
def check_agreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Largest absolute difference of the standardised log-mels (sanity check).

    Args:
        ours: fat_tf output.
        theirs: librosa output.

    Returns:
        The maximum absolute difference.
    """
    return float(np.max(np.abs(ours - theirs)))


def main(argv=None) -> None:
    """Run the benchmark and print the table."""
    args = parse_args(argv)
    config = FrontEndConfig(pad_mode=args.pad_mode)
    clips = make_clips(config, args.batch, args.clip_seconds)
    samples = clips.shape[1]
    print(f"config: {dataclasses.asdict(config)}")
    print(
        f"batch {args.batch} clips x {samples} samples ({samples / config.sample_rate:.3f} s,"
        f" {config.num_frames(samples)} frames); best of {args.repeats} interleaved rounds"
    )
    load_before = os.getloadavg()[0]
    print(f"load average before: {load_before:.2f} (other work on the CPU slows all)")
    print(
        f"tensorflow {tf.__version__}, intra-op threads "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default (all cores)'}"
    )

    runners, outputs, diffs = {}, {}, {}
    for jit in (False, True):
        name = "fat_tf tf.function" + ("(jit_compile=True)" if jit else "")
        runners[name], outputs[name] = fat_tf_runner(config, clips, jit)
    if not args.no_librosa:
        warnings.filterwarnings("ignore", category=UserWarning)
        lib = librosa_runners(config, clips)
        runners.update(lib)
        reference = librosa_logmel(clips, config, pad_mode=config.pad_mode)
        for name, out in outputs.items():
            diffs[name] = check_agreement(out, reference)
            print(f"max |{name} - librosa| (standardised units): {diffs[name]:.2e}")
    best = time_interleaved(runners, args.repeats)

    peak, why = cpu_peak_gflops(args.fma_units)
    if args.peak_gflops:
        peak, why = args.peak_gflops, "given with --peak-gflops"
    gemm = matmul_gflops()
    flops_dense = flops_per_clip(config, samples, banded=False)
    flops_banded = flops_per_clip(config, samples, banded=True)
    print(f"peak estimate: {peak:.0f} GFLOP/s ({why}); measured 2048^3 matmul: {gemm:.0f}")
    print(
        f"FLOPs per clip: {flops_dense / 1e6:.1f} M with a dense mel matmul, "
        f"{flops_banded / 1e6:.1f} M as fat_tf executes it (banded mel)"
    )
    lib_best = min((v for k, v in best.items() if k.startswith("librosa")), default=None)
    figures = {"config": dataclasses.asdict(config), "batch": args.batch, "samples": samples,
               "repeats": args.repeats, "tensorflow": tf.__version__,
               "load_before": load_before, "load_after": os.getloadavg()[0],
               "peak_gflops": peak, "peak_why": why, "matmul_gflops": gemm,
               "flops_per_clip": {"dense": flops_dense, "banded": flops_banded},
               "max_diff_vs_librosa": diffs, "contenders": {}}
    print(
        "\nGFLOP/s (dense) counts the dense-formula FLOPs for everyone (useful work); "
        "GFLOP/s (executed) counts what each one computes (fat_tf: banded mel matmul)."
    )
    print(
        f"{'contender':44s} {'clips/s':>9s} {'vs librosa':>10s} {'GFLOP/s':>8s} {'% peak':>7s}"
        f" {'GFLOP/s':>8s} {'% peak':>7s} {'% matmul':>8s}"
    )
    print(f"{'':44s} {'':>9s} {'(best)':>10s} {'(dense)':>8s} {'':>7s} {'(exec.)':>8s}")
    for name, seconds in best.items():
        rate = args.batch / seconds
        dense = rate * flops_dense / 1e9
        executed = rate * (flops_banded if name.startswith("fat_tf") else flops_dense) / 1e9
        ratio = f"{lib_best / seconds:.2f}x" if lib_best else "-"
        print(
            f"{name:44s} {rate:9.1f} {ratio:>10s} {dense:8.1f} {100 * dense / peak:6.1f}%"
            f" {executed:8.1f} {100 * executed / peak:6.1f}% {100 * executed / gemm:7.1f}%"
        )
        figures["contenders"][name] = {
            "seconds": seconds, "clips_per_s": rate,
            "vs_librosa_best": lib_best / seconds if lib_best else None,
            "gflops_dense": dense, "gflops_executed": executed}
    if lib_best:
        figures["librosa_best_clips_per_s"] = args.batch / lib_best
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
