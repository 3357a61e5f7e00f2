"""Input pipeline clips/s against train-step clips/s, per preset, stream and cache option.

What it measures, for each preset (``--presets``, default ``small,fat2019``):

* **Pipeline**: the training stream exactly as :func:`fat_tf.training.make_datasets`
  builds it for ``python -m fat_tf.train`` (dataset folder read by
  :func:`fat_tf.data.manifest.load_dataset`, validation split, path shuffle, in-graph WAV
  decoding, random crops, batching, prefetch), iterated for ``--epochs`` epochs with
  nothing consuming it; labelled clips per second of each epoch (the first includes the
  pipeline's start-up and, with a cache, filling it). Two streams:

  - ``labelled``: the stream of ``supervised`` (and mixup);
  - ``semi-supervised``: the stream of ``--ssl-method`` (default ``meanteacher``), the
    labelled stream zipped with an unlabelled stream of ``train_noisy`` clips at
    ``data.unlabelled_ratio`` unlabelled clips per labelled clip (so each labelled clip
    costs ``1 + ratio`` decodes).

  The rate reported is over every epoch but the first (which starts the pipeline up and
  fills a cache); the first epoch's rate is shown beside it.

  Cache options (``--variants``): ``none`` (the default config), ``memory``
  (``data.cache=memory``), ``disk`` (``data.cache=<folder>``), ``features``
  (``data.feature_cache=true``: whole-clip log-mel in the pipeline, cropped in frames) and
  ``features+memory`` (the log-mel cached in memory).
* **Train step**: clips/s of the same preset and method's optimiser step on in-memory
  random audio (``common.train_step_worker``: ``fit`` on one repeated batch, warm-up
  excluded); for the ``features`` rows the step receives log-mel crops instead (it skips
  the front end, as training with ``data.feature_cache=true`` does).

**Target: pipeline >= 3x the train step for the small preset** (so on a CPU the
pipeline, running beside training, takes little of its time). Each measurement runs in
its own worker process. Both sides use every core the process may use, one after the
other: in real training they share the CPU.

The clips are 16-bit mono 44.1 kHz WAVs of FAT2019-like lengths (log-uniform 0.3-10 s,
:func:`common.write_dataset`), written once into a temporary folder and deleted at the
end; freshly written files are mostly in the page cache (decoding from RAM, not a cold
disk).

Run (from the repository root):
    ``.venv/bin/python benchmarks/pipeline.py`` (both presets, every variant, ~12 min)
    ``.venv/bin/python benchmarks/pipeline.py --quick`` (small preset, ~1-2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from common import machine, print_result, run_worker, train_step_worker, write_dataset

VARIANTS = {  # name: config overrides (``DIR`` = a cache folder inside the data folder)
    "none": {},
    "memory": {"data.cache": "memory"},
    "disk": {"data.cache": "DIR"},
    "features": {"data.feature_cache": True},
    "features+memory": {"data.feature_cache": True, "data.cache": "memory"},
}
TRAIN_BATCH = {"small": 32, "fat2019": 8}  # train-step batch (as train_step.py)
TARGET = 3.0


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options.

    Args:
        argv: argument list (``None`` = ``sys.argv``).

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default=None,
                   help="comma-separated presets (default: small,fat2019; --quick: small)")
    p.add_argument("--ssl-method", default="meanteacher",
                   help="method of the semi-supervised stream and its train step")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated cache options of {', '.join(VARIANTS)} (default: "
                        "all; --quick: none,features)")
    p.add_argument("--clips", type=int, default=1500,
                   help="curated clips (80%% train the labelled stream)")
    p.add_argument("--noisy", type=int, default=1500, help="noisy (unlabelled) clips")
    p.add_argument("--epochs", type=int, default=3,
                   help="epochs per pipeline measurement; the rate is over all but the first")
    p.add_argument("--min-seconds", type=float, default=0.3, help="shortest clip")
    p.add_argument("--max-seconds", type=float, default=10.0, help="longest clip")
    p.add_argument("--train-steps", type=int, default=None,
                   help="timed train steps (default: small 3, fat2019 2; --quick 2 / 1)")
    p.add_argument("--warmup", type=int, default=1, help="untimed train steps first")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed train-step runs (the median is reported)")
    p.add_argument("--seed", type=int, default=0, help="seed of the clips and the streams")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: small preset, 300 + 300 clips, variants none,features")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--worker", choices=("pipeline", "train_step"), help=argparse.SUPPRESS)
    p.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--preset", default="small", help=argparse.SUPPRESS)
    p.add_argument("--method", default="supervised", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="none", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.presets = args.presets or "small"
        args.variants = args.variants or "none,features"
        args.clips, args.noisy = min(args.clips, 300), min(args.noisy, 300)
    args.preset_list = [s for s in (args.presets or "small,fat2019").split(",") if s]
    args.variant_list = [s for s in (args.variants or ",".join(VARIANTS)).split(",") if s]
    for v in args.variant_list:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    return args


# ============================================================================ workers
def pipeline_worker(root: str, preset: str, method: str, variant: str, epochs: int,
                    seed: int) -> dict:
    """Epochs of the training stream ``make_datasets`` builds, timed with nothing consuming.

    Args:
        root: dataset folder written by :func:`common.write_dataset`.
        preset: preset name.
        method: training method (decides whether the unlabelled stream is zipped in).
        variant: a key of :data:`VARIANTS`.
        epochs: epochs to iterate.
        seed: ``train.seed``.

    Returns:
        per-epoch labelled clips/s, seconds, unlabelled clips seen, batch, steps.
    """
    import keras

    from fat_tf.data.manifest import load_dataset
    from fat_tf.methods import get_method
    from fat_tf.presets import get_preset
    from fat_tf.training import make_datasets, split_data

    cache_dir = os.path.join(root, f"cache-{preset}-{method}-{variant}")
    overrides = {k: cache_dir if v == "DIR" else v for k, v in VARIANTS[variant].items()}
    config = get_preset(preset).replace(**{"train.method": method, "train.seed": seed,
                                           **overrides})
    dataset = load_dataset(root, check_audio=False, sample_rate=config.frontend.sample_rate)
    data = split_data(dataset, config, get_method(method).uses_unlabelled)
    keras.utils.set_random_seed(seed)
    train, _, steps = make_datasets(data, config)
    per_epoch = []
    try:
        for _ in range(epochs):
            labelled = unlabelled = 0
            started = time.perf_counter()
            for inputs, _ in train:
                for key, value in inputs.items():
                    if key.startswith("unlabelled"):
                        unlabelled += int(value.shape[0])
                    else:
                        labelled += int(value.shape[0])
            seconds = time.perf_counter() - started
            per_epoch.append({"seconds": seconds, "clips": labelled,
                              "unlabelled_clips": unlabelled, "clips_per_s": labelled / seconds})
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    later = per_epoch[1:] or per_epoch  # the first epoch starts up (and fills a cache)
    return {"preset": preset, "method": method, "variant": variant,
            "batch": config.data.batch_size, "steps": steps,
            "unlabelled_ratio": config.data.unlabelled_ratio if data.unlabelled_paths else 0,
            "train_clips": len(data.train_paths), "epochs": per_epoch,
            "clips_per_s": sum(e["clips"] for e in later) / sum(e["seconds"] for e in later)}


# ============================================================================ report
def ratio_rows(results: dict) -> list[dict]:
    """One row per pipeline measurement with its train step and their ratio.

    Args:
        results: ``{"pipeline": [...], "train_step": [...]}`` as :func:`main` collects them.

    Returns:
        rows ``{"preset", "stream", "method", "variant", "pipeline", "first_epoch",
        "train_step", "ratio", "target"}``; ``target`` is None where none applies (only the
        small preset has one).
    """
    steps = {(s["preset"], s["method"], s["features"]): s for s in results["train_step"]}
    rows = []
    for r in results["pipeline"]:
        step = steps.get((r["preset"], r["method"], r["variant"].startswith("features")))
        step_rate = step["clips_per_s"] if step else None
        rows.append({
            "preset": r["preset"], "method": r["method"], "variant": r["variant"],
            "stream": "semi-supervised" if r["unlabelled_ratio"] else "labelled",
            "pipeline": r["clips_per_s"], "first_epoch": r["epochs"][0]["clips_per_s"],
            "train_step": step_rate,
            "ratio": r["clips_per_s"] / step_rate if step_rate else None,
            "target": TARGET if r["preset"] == "small" else None,
        })
    return rows


def render(results: dict) -> str:
    """Markdown table of :func:`ratio_rows` and a line on the target.

    Args:
        results: as for :func:`ratio_rows`, plus ``"machine"``.

    Returns:
        Markdown text.
    """
    lines = [
        f"Input pipeline vs train step ({results['machine']})", "",
        "| preset | stream (method) | cache option | pipeline clips/s (later epochs) | "
        "first epoch | train step clips/s | pipeline / train step | target >= 3x (small) |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for row in ratio_rows(results):
        step = f"{row['train_step']:.1f}" if row["train_step"] else "-"
        ratio = f"{row['ratio']:.1f}x" if row["ratio"] else "-"
        target = "-"
        if row["target"] and row["ratio"]:
            target = "met" if row["ratio"] >= row["target"] else "MISSED"
        lines.append(f"| {row['preset']} | {row['stream']} ({row['method']}) | "
                     f"{row['variant']} | {row['pipeline']:.0f} | {row['first_epoch']:.0f} | "
                     f"{step} | {ratio} | {target} |")
    lines += ["", "Clips/s are labelled clips per second; the semi-supervised stream also "
              "decodes data.unlabelled_ratio unlabelled clips per labelled clip, and its "
              "train step also processes them. Train steps of `features` rows receive "
              "log-mel crops (no front end in the step)."]
    return "\n".join(lines)


# ============================================================================ main
def main(argv=None) -> int:
    """Run the benchmark and print a Markdown table.

    Args:
        argv: argument list (``None`` = ``sys.argv``).
    """
    args = parse_args(argv)
    if args.worker == "pipeline":
        print_result(pipeline_worker(args.dir, args.preset, args.method, args.variant,
                                     args.epochs, args.seed))
        return 0
    if args.worker == "train_step":
        print_result(train_step_worker(args.preset, args.method, TRAIN_BATCH[args.preset],
                                       args.train_steps, args.warmup,
                                       features=args.variant.startswith("features"),
                                       repeats=args.repeats))
        return 0

    started = time.perf_counter()
    root = tempfile.mkdtemp(prefix="fat_tf-pipeline-")
    results = {"machine": machine(), "pipeline": [], "train_step": []}
    try:
        print(f"machine: {machine()}", file=sys.stderr, flush=True)
        results["data"] = write_dataset(root, args.clips, args.noisy, args.min_seconds,
                                        args.max_seconds, args.seed)
        methods = ["supervised", args.ssl_method]
        for preset in args.preset_list:
            for method in methods:
                for variant in args.variant_list:
                    r = run_worker(__file__, [
                        "--worker", "pipeline", "--dir", root, "--preset", preset,
                        "--method", method, "--variant", variant,
                        "--epochs", str(args.epochs), "--seed", str(args.seed)])
                    results["pipeline"].append(r)
                    print(f"  {preset} {method} {variant}: pipeline "
                          f"{r['clips_per_s']:.0f} clips/s", file=sys.stderr, flush=True)
            default_steps = (2 if args.quick else 3) if preset == "small" else (
                1 if args.quick else 2)
            features = sorted({v.startswith("features") for v in args.variant_list})
            for method in methods:
                for feats in features:
                    s = run_worker(__file__, [
                        "--worker", "train_step", "--preset", preset, "--method", method,
                        "--variant", "features" if feats else "none",
                        "--train-steps", str(args.train_steps or default_steps),
                        "--warmup", str(args.warmup), "--repeats", str(args.repeats)])
                    results["train_step"].append(s)
                    print(f"  {preset} {method} {'log-mel' if feats else 'audio'}: train "
                          f"step {s['clips_per_s']:.1f} clips/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["machine_after"] = machine()
    results["seconds"] = time.perf_counter() - started
    results["rows"] = ratio_rows(results)
    print(render(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
