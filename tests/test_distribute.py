"""Distributed training with tf.distribute: strategies, the shared train step, multi-worker runs.

Every distributed run happens in a subprocess: logical CPU devices must be configured
before TensorFlow initialises, and MultiWorkerMirroredStrategy configures a process's
collective ops once. The in-process tests only check names and errors.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fat_tf import train
from fat_tf.distribute import (
    DistributeError,
    make_strategy,
    num_replicas,
    read_tf_config,
    worker_role,
)

TESTS = Path(__file__).parent

# A subprocess prelude: two logical CPUs, the tiny method config of tests/methods.
PRELUDE = f"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import contextlib
import keras
import numpy as np
sys.path.insert(0, {str(TESTS / "methods")!r})
from test_methods import CLASSES, batch_data, tiny_config
from fat_tf.training import build_method
MIRRORED = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

def local_copies(strategy, variable):
    if strategy is None:
        return [variable.value.numpy()]
    return [v.numpy() for v in strategy.experimental_local_results(variable.value)]
"""

# 1 device vs 2 replicas, SGD (its update is linear in the gradient, so a wrong loss
# scale shows; Adam would hide a factor of 2), no augmentation or dropout.
EQUALITY = PRELUDE + """
def run(method_name, strategy, duplicated, synchronized):
    config = tiny_config(**{"train.method": method_name, "augment.time_flip": False})
    method = build_method(config, CLASSES, total_steps=1, strategy=strategy)
    with strategy.scope() if strategy else contextlib.nullcontext():
        method.compile(optimizer=keras.optimizers.SGD(0.05))
        method.optimizer.build(method.tagger.trainable_variables)
    if synchronized:  # BatchNorm on global-batch statistics (Keras' synchronized=True)
        for layer in method.tagger._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    audio, labels = batch_data(config, n=16)
    inputs = {"audio": audio}
    if method.uses_unlabelled:
        inputs["unlabelled"] = batch_data(config, n=16, seed=1)[0]
    if duplicated:  # both replicas' halves equal: per-replica BN statistics = global ones
        for array in (*inputs.values(), labels):
            array[8:] = array[:8]
    model = method.evaluated_model
    start = [local_copies(strategy, v)[0] for v in model.weights]
    ds = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(16).repeat()
    history = method.fit(ds, steps_per_epoch=3, epochs=1, verbose=0,
                         callbacks=method.extra_callbacks())
    copies = [local_copies(strategy, v) for v in model.weights]
    return {
        "loss": history.history["loss"][0],
        "paths": [v.path for v in model.weights],
        "start": start,
        "copies": copies,
    }

out = {}
for name, duplicated, synchronized in [("supervised", True, False),
                                       ("meanteacher", True, False),
                                       ("supervised", False, True)]:
    one = run(name, None, duplicated, synchronized)
    two = run(name, MIRRORED, duplicated, synchronized)
    diffs, updates, replica_diff = {}, {}, 0.0
    for path, start, a, b in zip(one["paths"], one["start"], one["copies"], two["copies"]):
        if a[0].dtype.kind != "f":
            continue
        diffs[path] = float(np.abs(a[0] - b[0]).max())
        updates[path] = float(np.abs(a[0] - start).max())
        replica_diff = max(replica_diff, float(np.abs(b[0] - b[1]).max()))
    out[f"{name}-{'duplicated' if duplicated else 'synchronized'}"] = {
        "loss": [one["loss"], two["loss"]], "diffs": diffs, "updates": updates,
        "replica_diff": replica_diff,
    }
print("RESULT" + json.dumps(out))
"""

# Every method under MirroredStrategy with augmentation on (and VAT in mixed_float16).
EVERY_METHOD = PRELUDE + """
from fat_tf.metrics import lwlrap
out = {}
CASES = [(name, "float32") for name in ["supervised", "mixup", "vat", "meanteacher", "mixmatch"]]
for name, precision in CASES + [("vat", "mixed_float16")]:  # + the loss scale
    config = tiny_config(**{"train.method": name, "train.precision": precision})
    method = build_method(config, CLASSES, total_steps=1000, strategy=MIRRORED)
    audio, labels = batch_data(config, n=8)
    inputs = {"audio": audio}
    if method.uses_unlabelled:
        inputs["unlabelled"] = batch_data(config, n=8, seed=1)[0]
    teacher_start = ([v.value.numpy() for v in method.teacher.weights]
                     if name == "meanteacher" else [])
    ds = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(8).repeat()
    history = method.fit(ds, steps_per_epoch=2, epochs=1, verbose=0,
                         callbacks=method.extra_callbacks())
    result = {"history": {k: [float(x) for x in v] for k, v in history.history.items()}}
    # every variable (weights, BN statistics, seed states, teacher) equal on both replicas
    result["replicas_differ"] = [
        v.path for v in method.variables
        if not all(np.array_equal(c, local_copies(MIRRORED, v)[0])
                   for c in local_copies(MIRRORED, v))
    ]
    if name == "meanteacher":
        teacher = [v.value.numpy() for v in method.teacher.weights]
        student = [v.value.numpy() for v in method.tagger.weights]
        floats = [i for i, t in enumerate(teacher) if t.dtype.kind == "f"]
        result["teacher_moved"] = max(float(np.abs(teacher[i] - teacher_start[i]).max())
                                      for i in floats)
        result["teacher_vs_student"] = max(float(np.abs(teacher[i] - student[i]).max())
                                           for i in floats)
    if name == "supervised":
        # lwlrap and val loss summed over replicas = the numbers on all clips at once
        clips, clip_labels = batch_data(config, n=9, seed=2)
        windows = {"windows": clips[:, None, :], "window_mask": np.ones((9, 1), "float32")}
        # batches of 4, 4 and 1 clips: the last leaves one replica an empty share
        scores = method.evaluate(tf.data.Dataset.from_tensor_slices((windows, clip_labels))
                                 .batch(4), return_dict=True, verbose=0)
        logits = method.clip_logits(windows).numpy()
        result["lwlrap"] = [scores["lwlrap"], float(lwlrap(clip_labels, logits))]
        bce = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(clip_labels, logits), -1)
        result["val_loss"] = [scores["loss"], float(tf.reduce_mean(bce))]

        # each replica draws its own random numbers; the seed states agree afterwards
        def draw():
            with method.replica_random_draws():
                return keras.random.uniform((4,), seed=method.seed_generator)

        draws = MIRRORED.experimental_local_results(tf.function(lambda: MIRRORED.run(draw))())
        result["draws_differ"] = not np.allclose(draws[0], draws[1])
        states = local_copies(MIRRORED, method.seed_generator.state)
        result["seed_states_equal"] = bool(np.array_equal(states[0], states[1]))
    out[name if precision == "float32" else f"{name}-{precision}"] = result
print("RESULT" + json.dumps(out))
"""


# BatchNorm (not synchronised) on distinct halves: one train_step on 2 replicas against
# the same step on each half alone, on one device (what each replica computes).
BATCHNORM = PRELUDE + """
def one_step(strategy, audio, labels):
    config = tiny_config(**{"train.method": "supervised", "augment.time_flip": False})
    method = build_method(config, CLASSES, total_steps=1, strategy=strategy)
    ds = tf.data.Dataset.from_tensor_slices(({"audio": audio}, labels)).batch(len(audio))
    method.fit(ds, epochs=1, verbose=0)
    stats = [v for v in method.tagger.non_trainable_variables
             if v.name in ("moving_mean", "moving_variance")]
    return {v.path: local_copies(strategy, v) for v in stats}

config = tiny_config()
audio, labels = batch_data(config, n=8)
audio[4:] = 3.0 * audio[4:] + 0.05  # halves with clearly different statistics
two = one_step(MIRRORED, audio, labels)
full = one_step(None, audio, labels)
first, second = one_step(None, audio[:4], labels[:4]), one_step(None, audio[4:], labels[4:])
out = {}
for path, copies in two.items():
    average = (first[path][0] + second[path][0]) / 2
    out[path] = {
        "vs_average": float(np.abs(copies[0] - average).max()),
        "vs_full": float(np.abs(copies[0] - full[path][0]).max()),
        "update": float(np.abs(average - (0.0 if "mean" in path else 1.0)).max()),
        "replica_diff": float(np.abs(copies[0] - copies[1]).max()),
    }
print("RESULT" + json.dumps(out))
"""


def run_script(script: str, timeout: int = 280) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=timeout, cwd=TESTS.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


# ----------------------------------------------------------------- in-process checks
def test_strategy_names_and_errors(monkeypatch):
    assert make_strategy(None) is None and make_strategy("none") is None
    assert num_replicas(None) == 1 and worker_role(None).is_chief
    with pytest.raises(DistributeError, match="unknown distribution strategy"):
        make_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DistributeError, match="needs the TF_CONFIG"):
        make_strategy("multiworker")
    for bad, message in [("{not json", "not valid JSON"),
                         ('{"task": {"type": "worker", "index": 0}}', "no 'cluster'"),
                         ('{"cluster": {"worker": ["a:1"]}}', "no 'task'"),
                         ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
                          '"index": 1}}', "not in the cluster"),
                         ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
                          "only 'chief'")]:
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(DistributeError, match=message):
            read_tf_config()


def test_cli_reports_a_missing_tf_config(tmp_path, tiny_demo_dir, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = train.main(["--data", str(tiny_demo_dir), "--out", str(tmp_path / "run"),
                       "--strategy", "multiworker"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: --strategy multiworker needs the TF_CONFIG")
    with pytest.raises(SystemExit):
        train.build_parser().parse_args(["--strategy", "horovod"])


def test_keras_private_hooks_still_exist():
    """Method overrides private hooks of Keras' TF trainer; an upgrade that renames or
    reshapes them must fail here, not silently bypass the override."""
    import inspect

    from keras.src.backend.tensorflow import trainer as tf_trainer

    from fat_tf.methods.base import Method

    hook = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    assert list(inspect.signature(hook).parameters) == ["self", "iterator", "data_batch"]
    for caller in ("fit", "evaluate"):  # where Keras calls it
        source = inspect.getsource(getattr(tf_trainer.TensorFlowTrainer, caller))
        assert "self._maybe_symbolic_build(" in source, caller
    # the override, like Keras, tells a strategy's model by _distribute_strategy
    assert "self._distribute_strategy is None" in inspect.getsource(hook)
    assert Method._maybe_symbolic_build is not hook
    # _step_logs relies on multi-worker logs being reduced with axis=0 (to a scalar)
    assert 'strategy.reduce("MEAN", v, axis=0)' in inspect.getsource(
        tf_trainer.reduce_per_replica)


def _backup(epoch: int, previous) -> dict:
    """Committed metadata of a backup at ``epoch`` (``previous``: a position, None for
    a session started from scratch, or "absent")."""
    metadata = {"epoch": epoch, "batch": 0, "weights": f"e{epoch}.weights.h5"}
    if previous != "absent":
        metadata["previous"] = None if previous is None else {
            "epoch": previous, "batch": 0, "weights": f"e{previous}.weights.h5"}
    return metadata


def test_workers_resume_from_the_newest_common_backup(tmp_path):
    from fat_tf.callbacks import AtomicBackupAndRestore
    from fat_tf.errors import FatTfError

    def agreed(mine, others):
        """The backup ``mine`` restores when the other workers hold ``others``."""
        def agree(values):
            encode = AtomicBackupAndRestore._encode
            rows = [encode(AtomicBackupAndRestore._restorable(m)) for m in others]
            return [values, *rows]
        callback = AtomicBackupAndRestore(str(tmp_path), agree=agree)
        return callback._agreed_backup(mine)

    # one generation apart (killed between two workers' commits): the previous one
    ahead, behind = _backup(3, 2), _backup(2, 1)
    assert agreed(ahead, [behind])["epoch"] == 2
    assert agreed(behind, [ahead])["epoch"] == 2
    assert agreed(ahead, [ahead])["epoch"] == 3
    assert agreed(ahead, [_backup(2, "absent")])["epoch"] == 2  # older metadata
    # killed in the first epoch after one worker's first commit: all start afresh
    first = _backup(1, None)
    assert agreed(first, [None]) is None and agreed(None, [first]) is None
    assert agreed(None, [None]) is None
    # a worker's backup is missing, or several epochs behind: refuse, never restart
    for mine, others in [(ahead, [None]), (None, [ahead]), (ahead, [first]),
                         (_backup(5, 4), [behind]), (ahead, [_backup(1, "absent")])]:
        with pytest.raises(FatTfError, match="no common backup") as error:
            agreed(mine, others)
        assert "worker 0: epoch" in str(error.value) or "worker 0: no backup" in str(error.value)
        assert "copy the backup folder" in str(error.value)
    with pytest.raises(FatTfError, match=r"worker 0: epoch 3 or epoch 2; worker 1: no backup"):
        agreed(ahead, [None])


def test_fewer_train_clips_than_replicas_is_refused():
    from fat_tf.errors import FatTfError
    from fat_tf.presets import get_preset
    from fat_tf.training import global_batch_size

    config = get_preset("small")
    assert global_batch_size(config, 3, replicas=2) == 2
    with pytest.raises(FatTfError, match="cannot fill a global batch"):
        global_batch_size(config, 1, replicas=2)


# ------------------------------------------------------ MirroredStrategy, 2 logical CPUs
def test_batchnorm_statistics_are_averaged_across_replicas():
    """After one step on 2 replicas with different halves, every moving mean and
    variance is the average of the two replicas' own updates.

    A moving mean's update, m <- momentum * m + (1 - momentum) * batch_mean, is linear
    in the batch mean, so the average of the two half-batch updates is the update with
    the mean of the half-batch means: the full batch's mean, for equal halves. That
    holds for the first BatchNorm layer, whose inputs do not depend on the replicas'
    normalisation; later layers see activations normalised per half.
    """
    results = run_script(BATCHNORM)
    means = [path for path in results if "moving_mean" in path]  # in layer order
    assert means and len(results) == 2 * len(means)
    for path, r in results.items():
        assert r["replica_diff"] == 0.0, path
        assert r["update"] > 1e-4, path  # the step did move the statistic
        assert r["vs_average"] <= 1e-5 * max(1.0, r["update"]), (path, r)
    first = results[means[0]]
    assert first["vs_full"] <= 1e-5 * max(1.0, first["update"]), first

@pytest.mark.slow
def test_two_replicas_match_one_device():
    results = run_script(EQUALITY)
    for case, r in results.items():
        one, two = r["loss"]
        # duplicated halves: the moving variances below differ, which the mean teacher's
        # inference-mode teacher sees; with synchronised BatchNorm all is float noise
        assert two == pytest.approx(one, rel=1e-6 if case.endswith("synchronized") else 1e-4)
        assert r["replica_diff"] == 0.0, case  # replicas hold identical variables
        for path, diff in r["diffs"].items():
            # moving variances: TF's fused kernel updates them with the unbiased batch
            # variance, n/(n-1) with n per replica, so duplicated halves differ there
            if "moving_variance" in path and case.endswith("duplicated"):
                assert diff <= 0.01 * max(1.0, r["updates"][path]), (case, path, diff)
                continue
            # far below what 3 SGD steps moved the weight: a loss scaled by 2 would not be
            assert diff <= 1e-5 + 1e-3 * r["updates"][path], (case, path, diff)
        assert max(r["updates"].values()) > 1e-2, case


@pytest.mark.slow
def test_every_method_trains_under_mirrored_strategy():
    results = run_script(EVERY_METHOD)
    assert sorted(results) == ["meanteacher", "mixmatch", "mixup", "supervised", "vat",
                               "vat-mixed_float16"]
    for name, r in results.items():
        for key, values in r["history"].items():
            assert all(abs(v) < 1e6 for v in values), (name, key, values)  # finite
        assert r["replicas_differ"] == [], name
    teacher = results["meanteacher"]
    assert teacher["teacher_moved"] > 0 and teacher["teacher_vs_student"] > 0
    supervised = results["supervised"]
    assert supervised["lwlrap"][0] == pytest.approx(supervised["lwlrap"][1], abs=1e-9)
    assert supervised["val_loss"][0] == pytest.approx(supervised["val_loss"][1], rel=1e-5)
    assert supervised["draws_differ"] and supervised["seed_states_equal"]


# ------------------------------------------------- MultiWorkerMirroredStrategy, 2 workers
FAST = [
    "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=4",
]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(data, run, epochs: int, steps: int, logs: Path) -> list[subprocess.Popen]:
    hosts = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "PYTHONUNBUFFERED": "1"}
        log = open(logs / f"worker-{index}.log", "a")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "fat_tf.train", "--strategy", "multiworker", "--data",
             str(data), "--out", str(run), *FAST, "--epochs", str(epochs),
             "--set", f"train.steps_per_epoch={steps}"],
            stdout=log, stderr=subprocess.STDOUT, env=env))
    return procs


def worker_logs(folder: Path) -> str:
    return "\n".join(f"--- {log.name}\n" + log.read_text()[-3000:]
                     for log in sorted(folder.glob("worker-*.log")))


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Exit codes of ``procs``; any still running after ``timeout`` seconds is killed
    (a worker left blocked in a collective would otherwise outlive the test)."""
    deadline = time.time() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.time())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def committed_epoch(backup: Path) -> int:
    metadata = backup / "training_metadata.json"
    return json.loads(metadata.read_text())["epoch"] if metadata.exists() else 0


@pytest.mark.slow
def test_multiworker_trains_checkpoints_and_resumes(tiny_demo_dir, tmp_path):
    run, epochs = tmp_path / "run", 4
    chief_backup, worker_backup = run / "backup", run / "workers" / "worker-1" / "backup"
    procs = start_workers(tiny_demo_dir, run, epochs, 3, tmp_path)
    try:
        deadline = time.time() + 200
        while time.time() < deadline and all(p.poll() is None for p in procs):
            if min(committed_epoch(chief_backup), committed_epoch(worker_backup)) >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # inside the next epoch
        assert all(p.poll() is None for p in procs), worker_logs(tmp_path)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
    done = committed_epoch(chief_backup)
    assert 2 <= done < epochs and committed_epoch(worker_backup) == done
    assert not (run / "summary.json").exists()
    # as if worker 1 had been killed just before committing its last backup: it holds
    # one epoch less, so both must resume from the previous backup, which they keep
    metadata = json.loads((worker_backup / "training_metadata.json").read_text())
    assert metadata["previous"]["epoch"] == done - 1
    (worker_backup / "training_metadata.json").write_text(json.dumps(metadata["previous"]))

    procs = start_workers(tiny_demo_dir, run, epochs, 3, tmp_path)
    codes = wait_all(procs, 240)
    assert codes == [0, 0], worker_logs(tmp_path)
    # the chief (worker 0) wrote the run folder; worker 1 only its own backup
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replicas"] == 2
    assert summary["epochs_run_this_session"] == epochs - (done - 1)
    assert (run / "model.keras").exists() and (run / "best.keras").exists()
    assert committed_epoch(chief_backup) == committed_epoch(worker_backup) == epochs
    assert len(list(chief_backup.glob("*.weights.h5"))) == 2  # latest and previous
    worker = run / "workers" / "worker-1"
    assert not (worker / "model.keras").exists() and not (worker / "metrics.csv").exists()
    assert json.loads((worker / "summary.json").read_text())["val_lwlrap"] == summary["val_lwlrap"]
    data = json.loads((run / "data.json").read_text())
    assert data["replicas"] == 2 and data["global_batch_size"] == 8

    # as if the chief had been killed while saving model.keras, after worker 1 wrote its
    # summary: "finished" is decided together, so both evaluate and the chief saves
    (run / "summary.json").unlink()
    (run / "model.keras").unlink()
    procs = start_workers(tiny_demo_dir, run, epochs, 3, tmp_path)
    codes = wait_all(procs, 120)
    assert codes == [0, 0], worker_logs(tmp_path)
    again = json.loads((run / "summary.json").read_text())
    assert again["epochs_run_this_session"] == 0 and (run / "model.keras").exists()
    assert again["val_lwlrap"] == pytest.approx(summary["val_lwlrap"], abs=1e-6)
