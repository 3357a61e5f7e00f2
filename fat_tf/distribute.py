"""Distribution strategies for training: several GPUs on one machine, or several machines.

:func:`make_strategy` turns a name (``"mirrored"``, ``"multiworker"``; ``None`` or
``"none"`` for the default single device) into a ``tf.distribute.Strategy``, with clear
errors for a bad name or a missing or malformed ``TF_CONFIG``. :func:`worker_role` says
whether this process is the chief (which writes the run folder) and names a non-chief
worker, and :func:`shard_by_data` sets the input pipeline's auto-shard policy.

How a run uses a strategy (see :func:`fat_tf.training.train`):

* ``data.batch_size`` is the batch **per replica**; each step consumes
  ``batch_size * replicas`` labelled clips (the global batch), split evenly across the
  replicas, so every replica's BatchNorm sees the batch size the recipe was tuned for.
* The method, its optimiser and every variable are built under ``strategy.scope()``.
* Each replica's loss is a mean over its own examples; the shared ``train_step`` divides
  it by the number of replicas before the gradients are summed across replicas, so the
  update equals that of the mean loss over the global batch (see
  :meth:`fat_tf.methods.base.Method.train_step`).
* Under ``MultiWorkerMirroredStrategy`` every worker builds the same input streams from
  the same seeds and keeps its share of each global batch (auto-shard policy ``DATA``:
  the streams are built from file lists held in memory, which ``FILE`` sharding cannot
  split).
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf

from fat_tf.config import STRATEGIES  # their one home
from fat_tf.errors import FatTfError

# One strategy per name and process: MultiWorkerMirroredStrategy configures the
# process's collective ops, which TensorFlow allows only once, so a tuner that trains
# many times in one process must reuse it.
_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


class DistributeError(FatTfError):
    """A distribution strategy cannot be set up (bad name, bad or missing TF_CONFIG)."""


def read_tf_config() -> dict:
    """The parsed, checked ``TF_CONFIG`` environment variable of a multi-worker run.

    Raises:
        DistributeError: when it is unset, not JSON, or does not name this process's
            task as one of the cluster's ``chief`` or ``worker`` tasks.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        raise DistributeError(
            "--strategy multiworker needs the TF_CONFIG environment variable on every "
            f"worker, e.g. {example} (see the README, 'Training on several GPUs or machines')"
        )
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as e:
        raise DistributeError(f"TF_CONFIG is not valid JSON ({e}): {text!r}") from e
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise DistributeError(f"TF_CONFIG has no 'cluster' dict of task lists: {text!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise DistributeError(
            f"TF_CONFIG has no 'task' with 'type' and 'index' for this process: {text!r}"
        )
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise DistributeError(
            f"TF_CONFIG cluster has task types {unknown}; MultiWorkerMirroredStrategy "
            "uses only 'chief' (at most one) and 'worker'"
        )
    kind, index = task["type"], task["index"]
    members = cluster.get(kind)
    if not isinstance(index, int) or not isinstance(members, list) or not (
        0 <= index < len(members)
    ):
        raise DistributeError(
            f"TF_CONFIG task {kind!r} index {index!r} is not in the cluster {cluster}"
        )
    if len(cluster.get("chief", [])) > 1:
        raise DistributeError("TF_CONFIG cluster may have at most one 'chief' task")
    return tf_config


def make_strategy(strategy=None) -> tf.distribute.Strategy | None:
    """The distribution strategy a run trains under.

    Args:
        strategy: ``None`` or ``"none"`` (default device, no strategy), ``"mirrored"``
            (``MirroredStrategy`` over every local GPU; the CPU when there is none),
            ``"multiworker"`` (``MultiWorkerMirroredStrategy``; the cluster and this
            process's role come from ``TF_CONFIG``), or a ``tf.distribute.Strategy``,
            returned as it is. Strategies made from names are created once per process
            and reused.

    Returns:
        the strategy, or None for default single-device training.

    Raises:
        DistributeError: for an unknown name or a missing or malformed ``TF_CONFIG``.
    """
    if strategy is None or isinstance(strategy, tf.distribute.Strategy):
        return strategy
    name = str(strategy).strip().lower()
    if name in ("", "none"):
        return None
    if name not in STRATEGIES:
        raise DistributeError(
            f"unknown distribution strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}"
        )
    if name not in _STRATEGIES:
        _STRATEGIES[name] = _MAKERS[name]()
    return _STRATEGIES[name]


def _mirrored() -> tf.distribute.Strategy:
    return tf.distribute.MirroredStrategy()


def _multiworker() -> tf.distribute.Strategy:
    read_tf_config()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as e:
        raise DistributeError(
            f"cannot start MultiWorkerMirroredStrategy ({e}); it must be created "
            "before TensorFlow runs anything else in the process"
        ) from e


#: How each named strategy is made (``none``: no strategy, handled by :func:`make_strategy`).
_MAKERS = {"none": None, "mirrored": _mirrored, "multiworker": _multiworker}
if tuple(_MAKERS) != STRATEGIES:  # the names' one home is fat_tf.config
    raise ImportError(f"fat_tf.config.STRATEGIES {STRATEGIES} differ from {tuple(_MAKERS)}")


def num_replicas(strategy: tf.distribute.Strategy | None) -> int:
    """Replicas that train in sync under ``strategy`` (1 without one).

    Args:
        strategy: a strategy or None.
    """
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def is_multi_worker(strategy) -> bool:
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` over several workers.

    Args:
        strategy: a strategy or None.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    if resolver is None:
        return False
    spec = resolver.cluster_spec()
    jobs = spec.jobs
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in jobs) > 1


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in a (possibly multi-worker) run.

    Args:
        is_chief: whether this process writes the run folder (always true outside
            multi-worker training; there, the ``chief`` task, or ``worker`` 0 when the
            cluster has no chief).
        task_type: ``chief`` or ``worker`` (None outside multi-worker training).
        task_id: index of the task within its type (None outside multi-worker training).
    """

    is_chief: bool = True
    task_type: str | None = None
    task_id: int | None = None

    @property
    def name(self) -> str:
        """``chief``, or ``<type>-<index>`` of a non-chief worker (``worker-1``)."""
        return "chief" if self.is_chief else f"{self.task_type}-{self.task_id}"


def worker_role(strategy: tf.distribute.Strategy | None) -> WorkerRole:
    """Whether this process is the chief of ``strategy``'s cluster, and its task.

    Args:
        strategy: a strategy or None.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return WorkerRole()
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return WorkerRole(is_chief, task_type, task_id)


def gather_from_workers(strategy, values: list[int]) -> list[list[int]]:
    """Every worker's ``values``, in cluster order (a collective: all workers must call
    it, each with as many values).

    Without multi-worker training it returns ``[values]``.

    Args:
        strategy: a strategy or None.
        values: this worker's integers.
    """
    values = [int(v) for v in values]
    if not is_multi_worker(strategy):
        return [values]
    local = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant([values], tf.int64)
    )
    rows = strategy.gather(local, axis=0).numpy().tolist()
    # one row per replica; the replicas of one worker are consecutive and hold the same
    per_worker = max(1, len(rows) // _num_workers(strategy))
    return [[int(v) for v in row] for row in rows[::per_worker]]


def _num_workers(strategy) -> int:
    spec = strategy.cluster_resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs)


def agree_on_minimum(strategy, value: int) -> int:
    """The smallest of every worker's ``value`` (a collective: all workers must call it).

    Without multi-worker training it returns ``value``. Used to decide together whether
    a run already finished (:func:`fat_tf.training.train`).

    Args:
        strategy: a strategy or None.
        value: this worker's integer.
    """
    return min(row[0] for row in gather_from_workers(strategy, [value]))


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` with auto-shard policy ``DATA``: under multi-worker training each
    worker runs the whole stream and keeps its share of every global batch.

    The streams are built from in-memory file lists, which ``FILE`` sharding (the
    default ``AUTO`` policy's first choice) cannot split; every worker builds them from
    the same seeds, so their shares never overlap.

    Args:
        dataset: a batched stream (global batches).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
