"""Training throughput of fat_tf's methods against an equivalent PyTorch peer.

For each preset and method this measures labelled clips per second through a full
optimiser step (front end, augmentation, every forward and backward pass the method
needs, Adam, and mean teacher's EMA update) on synthetic random audio of
``Config.crop_samples`` samples (2 s, 128 frames), and prints a Markdown table with the
fat_tf / peer ratio and each method's cost relative to supervised training.

How fat_tf is timed (closest to real training): the method is built and compiled by
``fat_tf.training.build_method`` exactly as ``fat_tf.train`` does, and trained with
``method.fit`` on an in-memory ``tf.data`` dataset that repeats one batch
(``{"audio": [B, L], "unlabelled": [B * ratio, L]}, labels``), with the method's own
callbacks (mean teacher's EMA update runs in ``on_train_batch_end``). A timing callback
placed after them measures from the first batch's start to the last batch's end of each
``fit`` call, so the timed window contains exactly what ``fit`` does per step — the
compiled ``train_function`` (``next(iterator)`` included), metric bookkeeping and the
callbacks — and excludes ``fit``'s per-call setup. Not included, on either side: input
decoding and cropping (the ``tf.data`` pipeline runs in parallel with training), validation
and per-epoch callbacks.

The peer (``benchmarks/peers/torch_tagger.py``) is an independent PyTorch implementation of
the same network and methods. Before timing (unless ``--no-check``) fat_tf's weights are
copied into it and the log-mel and the logits compared; the parameter counts are printed in
each table header. Both frameworks get the same batch, the same clips, the same number of
threads (TF intra- and inter-op pools, ``torch.set_num_threads`` and
``set_num_interop_threads``), float32, and warm-up steps before timing. The peer keeps the
faster of NCHW and channels-last activations (``--torch-layout auto``, probed per preset)
and runs with ``OMP_WAIT_POLICY=PASSIVE`` (spinning OpenMP threads slow PyTorch several-fold
when other processes share the cores; TensorFlow's thread pool has no such problem).

Fairness on a shared machine: each framework runs in its own worker process (neither
framework's thread pools can disturb the other). Every method is built and run once
(tracing) first, then warmed up — the first run of a fat_tf method after other methods
were built is several times slower than the next ones. Then each round times every method
once in each framework, the workers taking turns (alternating which goes first), so load
that comes and goes hurts both frameworks and all methods alike. The median of
``--repeats`` runs is reported with its range, and the ratio of the best runs. Numbers
from a machine shared with other work are still noisy: read the load average printed
with them.

Needs PyTorch in the environment (CPU build): ``.venv/bin/pip install torch==2.13.0``.

Run (from the repository root):
    ``.venv/bin/python benchmarks/train_step.py`` (both presets, every method, 5-10 min)
    ``.venv/bin/python benchmarks/train_step.py --quick`` (small preset, batch 8, <1 min)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from fat_tf.config import METHOD_NAMES

RESULT_MARK = "@@result "
#: The methods benchmarked: a deliberate subset of fat_tf.config.METHOD_NAMES, those the
#: PyTorch peer (peers/torch_tagger.py METHODS) implements; it has no pseudo-labelling.
ALL_METHODS = ("supervised", "mixup", "vat", "meanteacher", "mixmatch")
#: The semi-supervised ones among them (each step also takes an unlabelled batch).
SSL_METHODS = ("vat", "meanteacher", "mixmatch")
if not set(ALL_METHODS) <= set(METHOD_NAMES) or not set(SSL_METHODS) <= set(ALL_METHODS):
    raise ImportError(f"benchmarked methods {ALL_METHODS} are not fat_tf's {METHOD_NAMES}")
RUN_STEPS = 100  # the run length schedules and ramp-ups are shaped to; nothing else

# per-preset defaults: (batch, steps per timed run, timed runs, warm-up steps)
DEFAULTS = {
    "small": (32, 3, 5, 2),
    "fat2019": (8, 1, 5, 1),
}
QUICK = {"small": (8, 2, 2, 1), "fat2019": (2, 1, 2, 1)}


# ============================================================================ options
def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options.

    Args:
        argv: argument list (``None`` = ``sys.argv``).

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default=None,
                   help="preset(s), comma-separated: small, fat2019 (default: both; "
                        "--quick: small)")
    p.add_argument("--methods", default=",".join(ALL_METHODS),
                   help=f"comma-separated methods (default: {','.join(ALL_METHODS)})")
    p.add_argument("--batch", type=int, default=None,
                   help="labelled clips per step (default: small 32, fat2019 8)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimiser steps per timed run (default: small 3, fat2019 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per method and framework; the median is reported "
                        "(default: 5)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps per method once all are built, after the first step "
                        "(default: small 2, fat2019 1)")
    p.add_argument("--threads", type=int, default=2, help="threads for both frameworks")
    p.add_argument("--classes", type=int, default=80, help="number of classes")
    p.add_argument("--torch-layout", choices=("auto", "channels_last", "nchw"), default="auto",
                   help="memory format of the peer's CNN activations; auto (default) times "
                        "supervised steps with both before the benchmark and keeps the faster")
    p.add_argument("--omp-wait-policy", default="PASSIVE",
                   help="OMP_WAIT_POLICY of the peer's OpenMP threads (PASSIVE by default: "
                        "spinning OpenMP threads slow PyTorch several-fold when other "
                        "processes share the cores; 'default' leaves it unset)")
    p.add_argument("--xla", action="store_true",
                   help="also time fat_tf with train.jit_compile=true (XLA)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: small preset, batch 8, 2 runs of 2 steps (~1 min)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the fat_tf-vs-peer equivalence check")
    p.add_argument("--json", default=None, help="also write the raw results to this file")
    p.add_argument("--worker", choices=("fat_tf", "fat_tf_xla", "torch", "check"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.preset is None:
        args.preset = "small" if args.quick else "small,fat2019"
    args.presets = [s.strip() for s in args.preset.split(",") if s.strip()]
    args.method_list = [s.strip() for s in args.methods.split(",") if s.strip()]
    for preset in args.presets:
        if preset not in DEFAULTS:
            p.error(f"unknown preset {preset!r}; choose from {sorted(DEFAULTS)}")
    for method in args.method_list:
        if method not in ALL_METHODS:
            p.error(f"unknown method {method!r}; choose from {ALL_METHODS}")
    return args


def preset_settings(args: argparse.Namespace, preset: str) -> dict:
    """Batch, steps, repeats and warm-up for ``preset`` (defaults, ``--quick``, overrides).

    Args:
        args: parsed options.
        preset: preset name.

    Returns:
        ``{"batch", "steps", "repeats", "warmup"}``.
    """
    batch, steps, repeats, warmup = (QUICK if args.quick else DEFAULTS)[preset]
    return {
        "batch": args.batch or batch,
        "steps": args.steps or steps,
        "repeats": args.repeats or repeats,
        "warmup": args.warmup if args.warmup is not None else warmup,
    }


def synthetic_batch(batch: int, unlabelled: int, samples: int, classes: int, seed: int = 0):
    """The same random training batch in every worker (numpy, float32).

    Args:
        batch: labelled clips.
        unlabelled: unlabelled clips.
        samples: clip length.
        classes: label width.
        seed: random seed.

    Returns:
        ``(audio [batch, samples], unlabelled [unlabelled, samples], labels [batch, classes])``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
    extra = (0.1 * rng.standard_normal((unlabelled, samples))).astype(np.float32)
    labels = (rng.random((batch, classes)) < 2.0 / classes).astype(np.float32)
    labels[np.arange(batch), rng.integers(0, classes, batch)] = 1.0  # >= 1 label per clip
    return audio, extra, labels


# ============================================================================ workers
class TFBackend:
    """fat_tf side of a worker: builds a method as training does and times ``fit``.

    Args:
        preset: preset name.
        batch: labelled clips per step.
        classes: number of classes.
        threads: TF intra- and inter-op threads.
        xla: compile the train step with XLA (``train.jit_compile``).
        features: feed log-mel crops ``[B, crop_frames, n_mels]`` (keys ``logmel`` and
            ``unlabelled_logmel``), as the pipeline does with ``data.feature_cache=true``,
            so the timed step skips the front end.
    """

    def __init__(self, preset: str, batch: int, classes: int, threads: int, xla: bool = False,
                 features: bool = False):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        import keras

        from fat_tf.presets import get_preset

        self.tf, self.keras = tf, keras
        self.classes = classes
        # the PyTorch peer passes labelled and unlabelled clips through BatchNorm together
        # (one pass), so the semi-supervised steps compare the same computation
        self.config = get_preset(preset).replace(
            **{"data.batch_size": batch, "train.jit_compile": xla,
               "method.batchnorm_statistics": "all"}
        )
        ratio = self.config.data.unlabelled_ratio
        self.features = features
        if features:  # random standardised log-mel, [B, frames * mels] reshaped
            d, mels = self.config.data, self.config.frontend.n_mels
            audio, extra, labels = synthetic_batch(batch, batch * ratio, d.crop_frames * mels,
                                                   classes)
            self.data = (audio.reshape(batch, d.crop_frames, mels) * 10,
                         extra.reshape(-1, d.crop_frames, mels) * 10, labels)
        else:
            self.data = synthetic_batch(batch, batch * ratio, self.config.crop_samples, classes)
        self.methods: dict[str, tuple] = {}

    def info(self) -> dict:
        """Versions and threads of this worker."""
        tf = self.tf
        return {
            "tensorflow": tf.__version__,
            "keras": self.keras.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        }

    def setup(self, method: str) -> dict:
        """Build and compile ``method`` (kept for :meth:`run`) and run its first step
        (which traces the train function).

        Args:
            method: method name.

        Returns:
            ``{"build_s", "first_step_s"}``.
        """
        from fat_tf.training import build_method

        tf, keras = self.tf, self.keras
        start = time.perf_counter()
        config = self.config.replace(**{"train.method": method})
        model = build_method(config, self.classes, RUN_STEPS)
        audio, extra, labels = self.data
        keys = ("logmel", "unlabelled_logmel") if self.features else ("audio", "unlabelled")
        inputs = {keys[0]: audio}
        if model.uses_unlabelled:
            inputs[keys[1]] = extra
        dataset = tf.data.Dataset.from_tensors((inputs, labels)).repeat()
        timer = _keras_timer(keras)
        self.methods[method] = (model, dataset, [*model.extra_callbacks(), timer], timer)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        self.run(method, 1)
        return {"build_s": build_s, "first_step_s": time.perf_counter() - start}

    def run(self, method: str, steps: int) -> float:
        """Seconds of ``steps`` training steps of ``method`` inside one ``fit`` call.

        Args:
            method: a method built by :meth:`setup`.
            steps: optimiser steps.
        """
        model, dataset, callbacks, timer = self.methods[method]
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=callbacks,
                  shuffle=False)
        return timer.elapsed


def _keras_timer(keras):
    """A callback measuring from the first batch's start to the last batch's end."""

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = self.end = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.end = time.perf_counter()

        @property
        def elapsed(self) -> float:
            return self.end - self.start

    return StepTimer()


class TorchBackend:
    """PyTorch side of a worker: the peer method in a plain training loop.

    Args:
        preset: preset name (the peer reads fat_tf's config for every setting).
        batch: labelled clips per step.
        classes: number of classes.
        threads: intra- and inter-op threads.
        channels_last: ``torch.channels_last`` CNN activations.
    """

    def __init__(self, preset: str, batch: int, classes: int, threads: int,
                 channels_last: bool = False):
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
        from fat_tf.presets import get_preset

        self.torch = torch
        self.classes = classes
        self.channels_last = channels_last
        self.config = get_preset(preset)
        ratio = self.config.data.unlabelled_ratio
        arrays = synthetic_batch(batch, batch * ratio, self.config.crop_samples, classes)
        self.data = [torch.from_numpy(a) for a in arrays]
        self.methods: dict = {}

    def info(self) -> dict:
        """Versions, threads and backend flags of this worker."""
        torch = self.torch
        return {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled,
            "layout": "channels_last" if self.channels_last else "nchw",
        }

    def setup(self, method: str, key: str | None = None) -> dict:
        """Build the peer method (kept for :meth:`run`) and run its first step.

        Args:
            method: method name.
            key: name to keep it under (default: ``method``).

        Returns:
            ``{"build_s", "first_step_s"}``.
        """
        from peers.torch_tagger import METHODS, tagger_from_config

        key = key or method
        self.torch.manual_seed(0)
        start = time.perf_counter()
        tagger = tagger_from_config(self.config, self.classes, self.channels_last)
        self.methods[key] = METHODS[method](tagger, self.config.method,
                                            lr=self.config.optim.lr_max,
                                            total_steps=RUN_STEPS)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        self.run(key, 1)
        return {"build_s": build_s, "first_step_s": time.perf_counter() - start}

    def choose_layout(self, steps: int) -> dict:
        """Time supervised steps with NCHW and channels-last activations; keep the faster.

        The two are interleaved (one step of each per round) after their first step.

        Args:
            steps: timed steps per layout.

        Returns:
            ``{"layout", "nchw_s", "channels_last_s"}`` (median seconds per step).
        """
        seconds = {False: [], True: []}
        for channels_last in seconds:
            self.channels_last = channels_last
            self.setup("supervised", key=f"layout-{channels_last}")
        for _ in range(steps):
            for channels_last, times in seconds.items():
                times.append(self.run(f"layout-{channels_last}", 1))
        medians = {k: statistics.median(v) for k, v in seconds.items()}
        self.channels_last = medians[True] < medians[False]
        for channels_last in seconds:
            del self.methods[f"layout-{channels_last}"]
        return {"layout": "channels_last" if self.channels_last else "nchw",
                "nchw_s": medians[False], "channels_last_s": medians[True]}

    def run(self, method: str, steps: int) -> float:
        """Seconds of ``steps`` training steps of ``method``.

        Args:
            method: a method built by :meth:`setup`.
            steps: optimiser steps.
        """
        model = self.methods[method]
        audio, extra, labels = self.data
        unlabelled = extra if model.uses_unlabelled else None
        start = time.perf_counter()
        for _ in range(steps):
            model.train_step(audio, labels, unlabelled)
        return time.perf_counter() - start


def equivalence_check(presets: list[str], classes: int) -> dict:
    """Copy fat_tf's weights into the peer and compare outputs (inference mode).

    Args:
        presets: preset names.
        classes: number of classes.

    Returns:
        Per preset: parameter counts of both and the largest log-mel and logit differences.
    """
    import keras
    import numpy as np
    import torch
    from peers.torch_tagger import (
        load_keras_weights,
        parameter_counts,
        slaney_mel_filterbank,
        tagger_from_config,
    )

    from fat_tf.layers.logmel import mel_filterbank
    from fat_tf.models.tagger import build_tagger
    from fat_tf.presets import get_preset

    out = {}
    for preset in presets:
        config = get_preset(preset)
        fe = config.frontend
        keras_tagger = build_tagger(config, classes)
        peer = tagger_from_config(config, classes).eval()
        trainable = sum(int(np.prod(v.shape)) for v in keras_tagger.trainable_weights)
        stats = sum(int(np.prod(v.shape)) for v in keras_tagger.non_trainable_weights
                    if v.name in ("moving_mean", "moving_variance"))
        keras_bn = {(round(1.0 - layer.momentum, 6), layer.epsilon)
                    for layer in _all_layers(keras_tagger)
                    if isinstance(layer, keras.layers.BatchNormalization)}
        peer_bn = {(round(m.momentum, 6), m.eps) for m in peer.modules()
                   if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
        load_keras_weights(peer, keras_tagger)
        audio, _, _ = synthetic_batch(4, 0, config.crop_samples, classes, seed=1)
        audio[1] *= 1e-4  # a quiet clip exercises the top_db clamp
        mel_tf = keras_tagger.get_layer("logmel")(audio).numpy()
        logits_tf = keras_tagger(audio, training=False).numpy()
        with torch.no_grad():
            x = torch.from_numpy(audio)
            mel_torch = peer.logmel(x).numpy()
            logits_torch = peer(x).numpy()
        filters = (mel_filterbank(fe.sample_rate, fe.n_fft, fe.n_mels, fe.fmin, fe.fmax),
                   slaney_mel_filterbank(fe.sample_rate, fe.n_fft, fe.n_mels, fe.fmin, fe.fmax))
        out[preset] = {
            "fat_tf_params": [trainable, stats],
            "torch_params": list(parameter_counts(peer)),
            "mel_matrix_max_diff": float(np.abs(filters[0] - filters[1]).max()),
            "logmel_max_diff": float(np.abs(mel_tf - mel_torch).max()),
            "logits_max_diff": float(np.abs(logits_tf - logits_torch).max()),
            "logits_max_abs": float(np.abs(logits_tf).max()),
            "pad_mode": fe.pad_mode,
            "batchnorm_settings_match": keras_bn == peer_bn,
        }
    return out


def _all_layers(model) -> list:
    """Every layer inside a Keras model, nested models and layers included."""
    found, stack = [], list(model.layers)
    while stack:
        layer = stack.pop()
        found.append(layer)
        stack.extend(getattr(layer, "layers", []))
        stack.extend(getattr(layer, "norms", []))
    return found


def serve(args: argparse.Namespace) -> None:
    """Worker main loop: one JSON request per stdin line, one JSON reply per request.

    Replies go to the original stdout behind :data:`RESULT_MARK`; anything else the
    frameworks print is sent to stderr.

    Args:
        args: parsed options (``--worker``, ``--preset``, ``--batch``, ``--threads``...).
    """
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    replies = os.fdopen(reply_fd, "w", buffering=1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    def send(obj) -> None:
        replies.write(RESULT_MARK + json.dumps(obj) + "\n")

    if args.worker == "check":
        send(equivalence_check(args.presets, args.classes))
        return
    preset = args.presets[0]
    if args.worker == "torch":
        backend = TorchBackend(preset, args.batch, args.classes, args.threads,
                               channels_last=args.torch_layout == "channels_last")
    else:
        backend = TFBackend(preset, args.batch, args.classes, args.threads,
                            xla=args.worker == "fat_tf_xla")
    send({"ready": True, **backend.info()})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "setup":
                send(backend.setup(request["method"]))
            elif request["cmd"] == "choose_layout":
                send(backend.choose_layout(request["steps"]))
            elif request["cmd"] == "run":
                send({"seconds": backend.run(request["method"], request["steps"])})
            elif request["cmd"] == "quit":
                send({"bye": True})
                return
        except Exception as e:  # report to the parent, which stops with the log
            send({"error": f"{type(e).__name__}: {e}"})
            raise


class Worker:
    """A worker subprocess of one framework for one preset.

    Args:
        kind: ``fat_tf``, ``fat_tf_xla``, ``torch`` or ``check``.
        args: parsed options of the parent.
        presets: presets this worker handles.
        batch: labelled clips per step.
        log_dir: folder of the worker's stderr log.
    """

    def __init__(self, kind: str, args: argparse.Namespace, presets: list[str], batch: int,
                 log_dir: str):
        self.kind = kind
        self.log_path = os.path.join(log_dir, f"{kind}-{'_'.join(presets)}.log")
        self.log = open(self.log_path, "w", encoding="utf-8")
        command = [
            sys.executable, os.path.abspath(__file__), "--worker", kind,
            "--preset", ",".join(presets), "--batch", str(batch),
            "--threads", str(args.threads), "--classes", str(args.classes),
            "--torch-layout", args.torch_layout,
        ]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        if kind == "torch" and args.omp_wait_policy != "default":
            env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True, env=env)

    def receive(self) -> dict:
        """The next reply (raises with the worker's log tail if it died or failed)."""
        for line in self.process.stdout:
            if line.startswith(RESULT_MARK):
                reply = json.loads(line[len(RESULT_MARK):])
                if "error" in reply:
                    self.fail(reply["error"])
                return reply
        self.fail(f"exited with code {self.process.wait()}")
        raise AssertionError("unreachable")

    def request(self, **request) -> dict:
        """Send one request and wait for its reply."""
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self.receive()

    def fail(self, why: str) -> None:
        """Stop the worker and raise with the tail of its log."""
        self.close()
        with open(self.log_path, encoding="utf-8") as f:
            tail = "".join(f.readlines()[-30:])
        raise RuntimeError(f"{self.kind} worker failed: {why}\n--- {self.log_path}:\n{tail}")

    def close(self) -> None:
        """End the worker process (this one only) and close its log."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.log.close()


# ============================================================================ parent
def log(message: str) -> None:
    """Progress message on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def benchmark_preset(args: argparse.Namespace, preset: str, log_dir: str) -> dict:
    """Time every method of ``preset`` on every framework, interleaving the workers.

    Args:
        args: parsed options.
        preset: preset name.
        log_dir: folder of the worker logs.

    Returns:
        ``{"settings", "info": {framework: ...}, "methods": {method: {framework: ...}}}``.
    """
    settings = preset_settings(args, preset)
    kinds = ["fat_tf", "torch"] + (["fat_tf_xla"] if args.xla else [])
    workers = [Worker(k, args, [preset], settings["batch"], log_dir) for k in kinds]
    result = {"settings": settings, "info": {}, "methods": {}}
    try:
        for w in workers:
            result["info"][w.kind] = w.receive()
        if args.torch_layout == "auto":
            torch_worker = next(w for w in workers if w.kind == "torch")
            choice = torch_worker.request(cmd="choose_layout", steps=max(2, settings["steps"]))
            result["info"]["torch"].update(choice, layout_choice=choice)
            log(f"  {preset:8s} torch layout: {choice}")
        methods = result["methods"]
        for method in args.method_list:
            methods[method] = {}
            for w in workers:
                methods[method][w.kind] = {
                    **w.request(cmd="setup", method=method),
                    "seconds": [],
                }
            log(f"  {preset:8s} {method:12s} built (load {os.getloadavg()[0]:.1f})")
        for method in args.method_list if settings["warmup"] > 0 else []:
            for w in workers:
                reply = w.request(cmd="run", method=method, steps=settings["warmup"])
                methods[method][w.kind]["warmup_s"] = reply["seconds"]
        # each round times every method once in every framework, so load that comes and
        # goes hits all methods and both frameworks alike
        for r in range(settings["repeats"]):
            for method in args.method_list:
                for w in workers if r % 2 == 0 else workers[::-1]:
                    reply = w.request(cmd="run", method=method, steps=settings["steps"])
                    methods[method][w.kind]["seconds"].append(reply["seconds"])
            log(f"  {preset:8s} round {r + 1}/{settings['repeats']} done "
                f"(load {os.getloadavg()[0]:.1f})")
        for method, entry in methods.items():
            for e in entry.values():
                e["rates"] = [settings["batch"] * settings["steps"] / s for s in e["seconds"]]
                e["median"] = statistics.median(e["rates"])
            log(f"  {preset:8s} {method:12s} " + "  ".join(
                f"{k} {entry[k]['median']:7.2f} clips/s" for k in kinds
            ))
        for w in workers:
            w.request(cmd="quit")
    finally:
        for w in workers:
            w.close()
    return result


def fmt_rate(entry: dict) -> str:
    """``median (min-max)`` of a contender's clips/s."""
    rates = entry["rates"]
    digits = 1 if entry["median"] >= 10 else 2
    return f"{entry['median']:.{digits}f} ({min(rates):.{digits}f}–{max(rates):.{digits}f})"


def render(args: argparse.Namespace, results: dict, check: dict | None, elapsed: float) -> str:
    """The Markdown report.

    Args:
        args: parsed options.
        results: per preset, from :func:`benchmark_preset`.
        check: from :func:`equivalence_check` (or None).
        elapsed: wall time of the whole benchmark in seconds.

    Returns:
        Markdown text.
    """
    lines = ["# fat_tf training step vs a PyTorch peer", ""]
    first = next(iter(results.values()))["info"]
    tf_info, torch_info = first["fat_tf"], first["torch"]
    lines.append(
        f"TensorFlow {tf_info['tensorflow']} / Keras {tf_info['keras']} (intra-op "
        f"{tf_info['intra_op_threads']}, inter-op {tf_info['inter_op_threads']} threads) vs "
        f"PyTorch {torch_info['torch']} ({torch_info['threads']} threads, interop "
        f"{torch_info['interop_threads']}, mkldnn {torch_info['mkldnn']}, "
        f"Adam for-loop, OMP_WAIT_POLICY {args.omp_wait_policy}); float32; "
        f"{os.cpu_count()} CPU cores."
    )
    lines.append(
        "clips/s = labelled clips per second through a full optimiser step, median "
        "(min–max) of the timed runs; SSL methods also process as many unlabelled clips. "
        "fat_tf / torch: ratio of the medians, and of the best runs (the least disturbed "
        "by other load). cost = median time per step relative to supervised in the same "
        "framework. First step: build-to-first-step time (tracing for fat_tf), not timed."
    )
    for preset, res in results.items():
        s = res["settings"]
        lines += ["", f"## preset `{preset}`: batch {s['batch']} (+{s['batch']} unlabelled for "
                  f"{', '.join(SSL_METHODS)}), {args.classes} classes, {s['repeats']} runs "
                  f"of {s['steps']} step(s) after the first step and {s['warmup']} warm-up "
                  "step(s)"]
        if check and preset in check:
            c = check[preset]
            same = "match" if c["fat_tf_params"] == c["torch_params"] else "MISMATCH"
            bn = "same" if c["batchnorm_settings_match"] else "DIFFERENT"
            lines.append(
                f"\nParameters: fat_tf {c['fat_tf_params'][0]:,} trainable + "
                f"{c['fat_tf_params'][1]:,} BN statistics; torch {c['torch_params'][0]:,} + "
                f"{c['torch_params'][1]:,} ({same}). With fat_tf's weights copied into the "
                f"peer: max |Δ log-mel| {c['logmel_max_diff']:.1e}, max |Δ logits| "
                f"{c['logits_max_diff']:.1e} (logits up to {c['logits_max_abs']:.2f}), "
                f"mel matrices differ by {c['mel_matrix_max_diff']:.1e}; centre padding "
                f"{c['pad_mode']}; BatchNorm momentum and epsilon {bn}."
            )
        t = res["info"]["torch"]
        if "layout_choice" in t:
            c = t["layout_choice"]
            lines.append(f"\nPeer activations: {c['layout']} (faster in a supervised probe: "
                         f"NCHW {c['nchw_s']:.3f} s/step, channels-last "
                         f"{c['channels_last_s']:.3f} s/step).")
        else:
            lines.append(f"\nPeer activations: {t['layout']} (--torch-layout).")
        xla = "fat_tf_xla" in res["info"]
        header = ["method", "fat_tf clips/s", "torch clips/s", "fat_tf / torch",
                  "fat_tf / torch (best runs)"]
        header += ["fat_tf XLA clips/s", "XLA / torch"] if xla else []
        header += ["fat_tf cost", "torch cost", "first step s (fat_tf / torch)"]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        methods = res["methods"]
        sup = methods.get("supervised")
        for method, entry in methods.items():
            tf_e, pt_e = entry["fat_tf"], entry["torch"]
            row = [method, fmt_rate(tf_e), fmt_rate(pt_e),
                   f"{tf_e['median'] / pt_e['median']:.2f}",
                   f"{max(tf_e['rates']) / max(pt_e['rates']):.2f}"]
            if xla:
                x_e = entry["fat_tf_xla"]
                row += [fmt_rate(x_e), f"{x_e['median'] / pt_e['median']:.2f}"]
            for k in ("fat_tf", "torch"):
                row.append(f"{sup[k]['median'] / entry[k]['median']:.2f}x" if sup else "-")
            row.append(f"{tf_e['first_step_s']:.1f} / {pt_e['first_step_s']:.1f}")
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Total wall time {elapsed / 60:.1f} min; load average at the end "
              f"{os.getloadavg()[0]:.2f} (other work on the machine slows both sides)."]
    return "\n".join(lines)


def main(argv=None) -> None:
    """Run the benchmark (or serve as a worker) and print the Markdown table."""
    args = parse_args(argv)
    if args.worker:
        if args.batch is None:
            args.batch = preset_settings(args, args.presets[0])["batch"]
        serve(args)
        return
    if importlib.util.find_spec("torch") is None:
        sys.exit("PyTorch is not installed; install the CPU build with "
                 "`.venv/bin/pip install torch==2.13.0`")
    started = time.perf_counter()
    log(f"load average before: {os.getloadavg()[0]:.2f}")
    results, check = {}, None
    with tempfile.TemporaryDirectory(prefix="fat_tf_bench_") as log_dir:
        if not args.no_check:
            checker = Worker("check", args, args.presets, 1, log_dir)
            try:
                check = checker.receive()
            finally:
                checker.close()
            log(f"equivalence check: {json.dumps(check)}")
        for preset in args.presets:
            results[preset] = benchmark_preset(args, preset, log_dir)
    report = render(args, results, check, time.perf_counter() - started)
    print(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "check": check}, f, indent=2)


if __name__ == "__main__":
    main()
