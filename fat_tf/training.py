"""A complete training run as a library call: data, model, method, callbacks, run folder.

:func:`train` is what ``python -m fat_tf.train`` runs. The run folder it fills (names in
:mod:`fat_tf.run_folder`):

* ``config.json`` — the resolved :class:`fat_tf.config.Config`;
* ``data.json`` — dataset folder, class names and the validation clips;
* ``metrics.csv`` — one row per epoch (losses, each loss term and weight, val_lwlrap, lr);
* ``tensorboard/`` — TensorBoard logs;
* ``backup/`` — the resumable state (weights, optimiser, random-seed state, epoch), see
  :class:`fat_tf.callbacks.AtomicBackupAndRestore`;
* ``best.keras`` — the evaluated model at the best validation lwlrap;
* ``model.keras`` — the final evaluated model (waveform in, logits out);
* ``summary.json`` — final and best validation lwlrap, chance level, timing;
* ``validation_predictions.npz`` — with ``train.save_validation_predictions``, every
  validation's clip logits (:class:`fat_tf.callbacks.SaveValidationPredictions`);
* ``.lock`` — locked by the process writing the run (see :mod:`fat_tf.run_lock`).

Rerunning the same command on an unfinished run folder resumes it, exactly as the
uninterrupted run would have gone on (random state restored, the training stream
continued where it stopped); a finished one is left as it is. Every file is written
atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fat_tf import run_folder as rf
from fat_tf import run_lock
from fat_tf.budget import RunBudget, resolve_budget
from fat_tf.callbacks import (
    AtomicBackupAndRestore,
    MetricsCSV,
    SaveBestModel,
    SaveValidationPredictions,
    StopOnNonFiniteLoss,
    atomic_save_model,
)
from fat_tf.config import Config, ConfigError
from fat_tf.data import pipeline
from fat_tf.data.manifest import FatDataset, Manifest, load_dataset
from fat_tf.data.split import stratified_split, subsample
from fat_tf.distribute import (
    agree_on_minimum,
    gather_from_workers,
    is_multi_worker,
    make_strategy,
    num_replicas,
    shard_by_data,
    worker_role,
)
from fat_tf.errors import FatTfError
from fat_tf.files import atomic_write_text, read_json_object
from fat_tf.inference.scoring import ScoringSettings
from fat_tf.layers import LogMel
from fat_tf.methods import get_method
from fat_tf.metrics import lwlrap
from fat_tf.models import build_tagger
from fat_tf.ops.schedules import build_schedule
from fat_tf.run_folder import RunFolderError, prepare_run_folder


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Everything a run feeds to ``fit``.

    Args:
        class_names: class names in column order.
        train_paths: labelled training WAV files (curated, plus noisy when its labels
            are used).
        train_labels: ``[N, C]`` multi-hot labels of ``train_paths`` (``[N, C + 1]``
            with a noisy-clip flag column when :func:`noisy_labels_weighted`).
        validation: held-out curated clips (scored as whole clips).
        unlabelled_paths: WAV files used without labels (None for labelled-only methods).
    """

    class_names: tuple[str, ...]
    train_paths: list[str]
    train_labels: np.ndarray
    validation: Manifest
    unlabelled_paths: list[str] | None


def split_data(dataset: FatDataset, config: Config, uses_unlabelled: bool) -> TrainingData:
    """Split curated into train/validation and decide what train_noisy is used for.

    Args:
        dataset: the loaded dataset folder.
        config: the run config (``data.validation_split``, ``data.labelled_fraction``,
            ``data.noisy_usage``, ``train.seed``).
        uses_unlabelled: whether the method consumes an unlabelled stream.
    """
    data = config.data
    curated = dataset.curated
    if len(curated) < 2:
        raise FatTfError(f"{curated.csv_path}: at least 2 curated clips are needed to train")
    train_idx, val_idx = stratified_split(curated.labels, data.validation_split, config.train.seed)
    if len(val_idx) == 0:
        raise FatTfError(
            f"{curated.csv_path}: data.validation_split={data.validation_split} leaves no "
            "validation clips; raise it or add clips"
        )
    train_idx = subsample(train_idx, data.labelled_fraction, curated.labels, config.train.seed)
    train = curated.subset(train_idx)
    paths, labels = train.paths, train.labels
    noisy = dataset.noisy
    unlabelled = None
    usage = resolved_noisy_usage(data.noisy_usage, uses_unlabelled)
    if noisy is not None and usage in ("labelled", "both"):
        paths = paths + noisy.paths
        if noisy_labels_weighted(config):  # a last column flags the noisy clips
            labels = np.concatenate([
                np.pad(labels, [(0, 0), (0, 1)]),
                np.pad(noisy.labels, [(0, 0), (0, 1)], constant_values=1.0)])
        else:
            labels = np.concatenate([labels, noisy.labels])
    if uses_unlabelled:
        if noisy is None or usage not in ("unlabelled", "both"):
            raise FatTfError(
                f"method {config.train.method!r} needs unlabelled audio: provide "
                "train_noisy.csv and keep data.noisy_usage auto, unlabelled or both"
            )
        unlabelled = noisy.paths
    return TrainingData(dataset.class_names, paths, labels, curated.subset(val_idx), unlabelled)


def resolved_noisy_usage(noisy_usage: str, uses_unlabelled: bool) -> str:
    """What train_noisy is used for: ``data.noisy_usage`` with ``auto`` resolved.

    ``auto`` uses the noisy clips' labels at ``method.noisy_label_weight`` for every
    method and, for methods with an unlabelled stream, their audio as that stream too
    (``both``); chosen on the Kitchen20 development benchmark (experiments/
    ssl_comparison), where down-weighted noisy labels beat curated-only training.

    Args:
        noisy_usage: the configured value (one of :data:`fat_tf.config.NOISY_USAGES`).
        uses_unlabelled: whether the method consumes an unlabelled stream.
    """
    if noisy_usage == "auto":
        return "both" if uses_unlabelled else "labelled"
    return noisy_usage


def noisy_labels_weighted(config: Config) -> bool:
    """Whether noisy labels get a weight or schedule of their own (``method.
    noisy_label_weight`` / ``noisy_label_until``); the labelled stream's labels then carry
    one extra column, 1 for train_noisy clips and 0 for curated ones (see
    :meth:`fat_tf.methods.base.Method.supervised_loss`)."""
    m = config.method
    return m.noisy_label_weight != 1.0 or m.noisy_label_until < 1.0


def global_batch_size(config: Config, train_clips: int, replicas: int = 1) -> int:
    """Labelled clips per optimiser step: ``data.batch_size`` per replica times
    ``replicas``, the per-replica batch capped so that one step fits in the clips.

    Args:
        config: the run config.
        train_clips: number of labelled training clips.
        replicas: replicas training in sync.

    Raises:
        FatTfError: when there are fewer training clips than replicas (a global batch
            of at least one clip per replica would leave no complete batch).
    """
    if train_clips < replicas:
        raise FatTfError(
            f"{train_clips} labelled training clip(s) cannot fill a global batch of one clip "
            f"for each of the {replicas} replicas; add clips or train on fewer replicas"
        )
    return max(1, min(config.data.batch_size, train_clips // replicas)) * replicas


def make_datasets(
    data: TrainingData, config: Config, replicas: int = 1, start_step: int = 0
) -> tuple[tf.data.Dataset, tf.data.Dataset, RunBudget]:
    """The training and validation ``tf.data`` streams and the run's budget.

    The training stream (:func:`training_stream`) runs without end, one pass over the
    clips after another; the budget (:func:`fat_tf.budget.resolve_budget`) says how
    many steps ``fit`` takes from it.

    Batches are global: ``data.batch_size`` labelled clips (and
    ``data.eval_batch_size`` validation clips) per replica, times ``replicas``; a
    distribution strategy splits each batch evenly across its replicas. With more than
    one replica the streams' auto-shard policy is ``DATA`` (see
    :func:`fat_tf.distribute.shard_by_data`).

    Args:
        data: the split clips.
        config: the run config.
        replicas: replicas training in sync (1 without a distribution strategy).
        start_step: optimiser steps already taken (a resumed run): the training stream
            starts at the batch that step reads.
    """
    d = config.data
    global_batch = global_batch_size(config, len(data.train_paths), replicas)
    train = training_stream(data, config, replicas, start_step)
    # windows capped at data.max_eval_windows, as evaluate scores clips
    validation = ScoringSettings.from_config(config, max_windows=None).evaluation_dataset(
        data.validation.paths, data.validation.labels, batch_size=d.eval_batch_size * replicas,
        cache=d.cache, parallel_calls=d.parallel_calls,
    )
    budget = resolve_budget(config, len(data.train_paths), global_batch)
    if replicas > 1:
        validation = shard_by_data(validation)
    return train, validation, budget


def training_stream(
    data: TrainingData, config: Config, replicas: int = 1, start_step: int = 0
) -> tf.data.Dataset:
    """The endless training stream of global batches, from optimiser step ``start_step``.

    Labelled batches (:func:`fat_tf.data.pipeline.training_stream`), zipped with
    unlabelled ones (:func:`fat_tf.data.pipeline.unlabelled_stream`) when the method
    uses them. Each pass's order and crops come from ``train.seed`` and the pass's
    number alone, so the stream from ``start_step`` is exactly the batches an
    uninterrupted run reads from that step on: a resumed run trains on the same data.

    Args:
        data: the split clips.
        config: the run config.
        replicas: replicas training in sync.
        start_step: optimiser steps already taken (batches of the stream to leave out).
    """
    d, fe, seed = config.data, config.frontend, config.train.seed
    global_batch = global_batch_size(config, len(data.train_paths), replicas)
    common = dict(sample_rate=fe.sample_rate, crop_samples=config.crop_samples, seed=seed,
                  start_batch=start_step, cache=d.cache, shuffle_buffer=d.shuffle_buffer,
                  parallel_calls=d.parallel_calls)
    if d.feature_cache:  # log-mel in the pipeline, cropped in frames
        common.update(crop_samples=d.crop_frames,
                      logmel=LogMel(**dataclasses.asdict(fe), name="pipeline_logmel"))
    train = pipeline.training_stream(data.train_paths, data.train_labels,
                                     batch_size=global_batch, **common)
    if data.unlabelled_paths is not None:
        unlabelled = pipeline.unlabelled_stream(
            data.unlabelled_paths, batch_size=global_batch * d.unlabelled_ratio,
            **{**common, "seed": seed + 7919},
        )
        train = pipeline.semi_supervised_dataset(train, unlabelled)
    return shard_by_data(train) if replicas > 1 else train


def build_method(config: Config, num_classes: int, total_steps: int, strategy=None):
    """Build the tagger, wrap it in the configured method and compile it.

    Args:
        config: the run config.
        num_classes: number of classes.
        total_steps: optimiser steps of the whole run (schedules and ramps are
            fractions of it).
        strategy: None, a strategy name or a ``tf.distribute.Strategy`` (see
            :func:`fat_tf.distribute.make_strategy`); the method, its optimiser and
            all their variables are created under its scope.
    """
    strategy = make_strategy(strategy)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        return _build_method(config, num_classes, total_steps)


def _build_method(config: Config, num_classes: int, total_steps: int):
    keras.mixed_precision.set_dtype_policy(config.train.precision)
    keras.utils.set_random_seed(config.train.seed)
    tagger = build_tagger(config, num_classes)
    method_cls = get_method(config.train.method)
    method = method_cls(
        tagger, num_classes, loss=config.train.loss, hparams=config.method,
        total_steps=total_steps, window_pooling=config.data.window_pooling,
        seed=config.train.seed, jit_frontend=config.train.jit_frontend,
    )
    o = config.optim
    schedule = build_schedule(o.lr_schedule, o.lr_max, o.lr_min, total_steps,
                              o.cosine_cycles, o.warmup_fraction)
    if o.optimizer == "adam":
        optimizer = keras.optimizers.Adam(schedule)
    elif o.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=o.weight_decay)
    else:
        raise ConfigError(f"optim.optimizer must be adam or adamw, got {o.optimizer!r}")
    method.compile(optimizer=optimizer, jit_compile=config.train.jit_compile)
    method(np.zeros((1, config.crop_samples), np.float32))
    method.optimizer.build(method.tagger.trainable_variables)
    return method


def chance_lwlrap(labels: np.ndarray, seed: int = 0, draws: int = 20) -> float:
    """Mean lwlrap of random scores on ``labels`` (what a model that learned nothing gets)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([lwlrap(labels, rng.random(labels.shape)) for _ in range(draws)]))


#: Room kept free beyond the model files, for TensorBoard logs, CSV and JSON files.
DISK_MARGIN_BYTES = 16 * 2**20


def _nbytes(variables) -> int:
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def required_disk_bytes(method) -> int:
    """Disk space a run of ``method`` needs at most for the files it writes.

    The backup (every weight and the optimiser state) briefly exists twice while a new
    one replaces the old; ``best.keras``, ``model.keras`` and one temporary copy of a
    model hold the evaluated model's weights; plus :data:`DISK_MARGIN_BYTES`.
    """
    state = _nbytes(method.weights) + _nbytes(method.optimizer.variables)
    model = _nbytes(method.evaluated_model.weights)
    return 2 * state + 3 * model + DISK_MARGIN_BYTES


def check_free_space(run_dir: Path, method) -> None:
    """Raise RunFolderError, before training starts, if the run folder's disk is too full.

    Files the run folder already holds (a run being resumed) count as free, since they
    are replaced. A full disk later in the run is still reported, as an ``OSError``
    naming the file, and leaves the last complete backup in place.
    """
    need = required_disk_bytes(method)
    held = sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    free = shutil.disk_usage(run_dir).free
    if free + held < need:
        mb = 2**20
        raise RunFolderError(
            f"{run_dir}: only {free / mb:.0f} MB free on its disk, but this run needs about "
            f"{need / mb:.0f} MB (backup, best.keras, model.keras, logs); free some space "
            "or choose another --out folder"
        )


def _check_same_batching(folder: Path, record: dict) -> None:
    """Refuse to resume a run with another global batch or step budget.

    Schedules and ramp-ups are fractions of the run's optimiser steps, and a budget in
    epochs depends on the global batch; resuming with another number of replicas would
    change them mid-run. (A longer budget with the same batching is allowed: the
    tuner's Hyperband continues trials that way.)
    """
    metadata, previous = rf.backup_metadata(folder), folder / rf.DATA
    if not (metadata.exists() and previous.exists()):
        return
    before = read_json_object(previous, "delete it to let this run write it again")
    changed = [k for k in ("global_batch_size", "steps_per_epoch")
               if k in before and before[k] != record[k]]
    if changed:
        raise RunFolderError(
            f"{folder} was started with {before.get('replicas', 1)} replica(s), a global "
            f"batch of {before['global_batch_size']} clips and "
            f"{before.get('total_steps', '?')} steps ({before['steps_per_epoch']} per "
            f"validation); this session has {record['replicas']} replica(s), "
            f"{record['global_batch_size']} and {record['total_steps']} "
            f"({record['steps_per_epoch']}). Resume it with "
            "the same number of replicas (or start a new --out folder)"
        )


@run_lock.scoped  # the run folder's lock is released when train() returns or raises
def train(config: Config, data_dir: str | os.PathLike, run_dir: str | os.PathLike,
          verbose: int | str = "auto", strategy=None) -> dict:
    """Train as ``config`` says on the dataset in ``data_dir``; fill ``run_dir``.

    Under a distribution strategy, ``data.batch_size`` is the batch per replica (see
    :func:`make_datasets`). Under multi-worker training only the chief writes the run
    folder; every other worker keeps its own resumable backup (and a copy of the config
    and of ``data.json``) in ``run_dir/workers/<type>-<index>/``, on its own disk unless
    ``run_dir`` is shared, and writes no models, metrics or logs. Every worker resumes
    from its own backup; all of them are written at the same epochs. Only one process
    may write a folder at a time: another one is refused with RunFolderError.

    Args:
        config: the resolved run config.
        data_dir: a FAT2019-layout dataset folder.
        run_dir: the run folder (created, or resumed if it holds an unfinished run).
        verbose: Keras ``fit`` verbosity (progress bar by default).
        strategy: None (default device), ``"mirrored"``, ``"multiworker"`` or a
            ``tf.distribute.Strategy`` (see :func:`fat_tf.distribute.make_strategy`).

    Returns:
        the summary dict also written to ``summary.json`` (on a non-chief worker, to its
        own folder).
    """
    strategy = make_strategy(strategy)  # first: multi-worker set-up precedes other TF work
    replicas = num_replicas(strategy)
    role = worker_role(strategy)
    run_dir = Path(run_dir)
    folder = run_dir if role.is_chief else run_dir / rf.WORKERS / role.name
    # Everything that can fail on bad data or settings runs before the run folder is
    # created, so a failed start leaves no folder that would block the corrected rerun.
    dataset = load_dataset(data_dir, sample_rate=config.frontend.sample_rate)
    method_cls = get_method(config.train.method)
    data = split_data(dataset, config, method_cls.uses_unlabelled)
    # tf.data seeds combine with the global seed, so set it before building the streams
    keras.utils.set_random_seed(config.train.seed)
    train_ds, val_ds, budget = make_datasets(data, config, replicas)
    method = build_method(config, len(data.class_names), budget.total_steps, strategy)
    finished = prepare_run_folder(folder, config)
    # Decided together: a worker that finished while another was killed before writing
    # its summary must not leave that one alone in the collectives below. If anyone is
    # unfinished, all go through the normal path (no epochs left: evaluate and save).
    if agree_on_minimum(strategy, int(finished)):
        summary = read_json_object(
            folder / rf.SUMMARY,
            "delete it, and rerun to evaluate and save the finished run again")
        print(f"{folder}: this run already finished; summary.json is unchanged")
        return summary
    batching = {"strategy": type(strategy).__name__ if strategy else None,
                "replicas": replicas,
                "global_batch_size": global_batch_size(config, len(data.train_paths), replicas),
                "steps_per_epoch": budget.interval_steps,
                "total_steps": budget.total_steps}
    _check_same_batching(folder, batching)
    atomic_write_text(folder / rf.DATA, json.dumps({
        "data_dir": str(Path(data_dir).resolve()),
        "class_names": list(data.class_names),
        "train_clips": len(data.train_paths),
        "unlabelled_clips": len(data.unlabelled_paths or []),
        **batching,
        "validation_fnames": list(data.validation.fnames),
        "config_sha256": config.fingerprint(),  # what the weights were trained with
    }, indent=2))
    if replicas > 1:
        print(f"training on {replicas} replicas ({batching['strategy']}, {role.name}); "
              f"global batch {batching['global_batch_size']} clips")
    check_free_space(folder, method)
    backup = AtomicBackupAndRestore(
        str(folder / rf.BACKUP),
        agree=(lambda positions: gather_from_workers(strategy, positions))
        if is_multi_worker(strategy) else None,
    )
    # Restored before fit (weights, optimiser, random-seed state), so that a resumed
    # run's training stream starts at the batch the interrupted run would have read next.
    backup.set_model(method)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        start_epoch = backup.restore()
    if 0 < start_epoch < budget.intervals:
        train_ds, val_ds, _ = make_datasets(data, config, replicas,
                                            start_epoch * budget.interval_steps)
    # The backup goes last: an epoch's CSV row and best model are written before the
    # backup that marks the epoch done, so a kill in between re-runs (and rewrites) it.
    best_model = SaveBestModel(str(run_dir / rf.BEST_MODEL))
    if role.is_chief:
        outputs = [
            MetricsCSV(str(run_dir / rf.METRICS)),
            best_model,
            *([SaveValidationPredictions(str(run_dir / rf.VALIDATION_PREDICTIONS), val_ds)]
              if config.train.save_validation_predictions else []),
            # rf.TENSORBOARD, spelled out: tests/test_consistency.py matches the README to it
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
        ]
    else:  # every worker computes the same logs; only the chief writes them
        outputs = []
    callbacks = [
        StopOnNonFiniteLoss(),
        *method.extra_callbacks(),
        *outputs,
        backup,
    ]
    print(f"training for {budget.total_steps} optimiser steps, validating every "
          f"{budget.interval_steps} ({budget.intervals} validations)")
    started = time.time()
    history = method.fit(
        train_ds, validation_data=val_ds, epochs=budget.intervals,
        initial_epoch=start_epoch, steps_per_epoch=budget.interval_steps,
        callbacks=callbacks, verbose=verbose, shuffle=False,
    )
    scores = history.history.get("val_lwlrap")
    if scores:  # the last epoch already scored the final model
        final_lwlrap = scores[-1]
    else:  # every epoch ran in an earlier session (all workers evaluate together)
        final_lwlrap = method.evaluate(val_ds, verbose=0, return_dict=True)["lwlrap"]
    if role.is_chief:
        atomic_save_model(method.evaluated_model, str(run_dir / rf.FINAL_MODEL))
    best = best_model.best_state() if role.is_chief else None
    summary = {
        "method": config.train.method,
        "total_steps": budget.total_steps,
        "epochs": budget.intervals,
        "steps_per_epoch": budget.interval_steps,
        "val_lwlrap": float(final_lwlrap),
        "best_val_lwlrap": best["value"] if best else None,
        "best_step": best.get("step") if best else None,
        "best_model": rf.BEST_MODEL if best else None,
        # which of the scored models best.keras is: "evaluated" or an alternative
        # (mean teacher's "student"), see Method.alternative_models
        "best_model_source": best.get("model", "evaluated") if best else None,
        **{f"val_{name}_lwlrap": float(history.history[f"val_{name}_lwlrap"][-1])
           for name in method.alternative_models
           if history.history.get(f"val_{name}_lwlrap")},
        "chance_lwlrap": chance_lwlrap(data.validation.labels, config.train.seed),
        "validation_clips": len(data.validation),
        "train_clips": len(data.train_paths),
        "replicas": replicas,
        "train_seconds_this_session": round(time.time() - started, 1),
        "epochs_run_this_session": len(history.epoch),
    }
    atomic_write_text(folder / rf.SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary
