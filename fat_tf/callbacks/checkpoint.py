"""Checkpoints of a training run, every file written atomically.

* :func:`atomic_save_model` — a ``.keras`` file through a temporary file and a rename,
  after checking the disk has room (:func:`check_room`);
* :class:`AtomicBackupAndRestore` — Keras' ``BackupAndRestore`` whose backup files are
  written to a temporary name and renamed, and committed by one atomic metadata rename,
  so a run killed at any moment (even while saving) resumes from the last complete
  backup, random-generator states (:func:`seed_states`) included.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile

import keras
import numpy as np

from fat_tf.errors import FatTfError
from fat_tf.files import atomic_write_text, honour_umask, read_json_object

#: Free space kept beyond a checkpoint's own size before it is written.
CHECKPOINT_MARGIN_BYTES = 2**20


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def check_room(path: str, needed: int, what: str) -> None:
    """Raise FatTfError (one line naming ``path``) if its disk has less than ``needed``
    bytes (plus :data:`CHECKPOINT_MARGIN_BYTES`) free.

    Args:
        path: the file about to be written.
        needed: its expected size in bytes.
        what: what it is, for the message (``the backup of epoch 3``).
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: the write itself will tell
    if free < needed + CHECKPOINT_MARGIN_BYTES:
        raise FatTfError(
            f"{path}: only {_mb(free)} free on its disk, {what} needs {_mb(needed)} "
            f"(+{_mb(CHECKPOINT_MARGIN_BYTES)} margin); nothing was written and the last "
            "complete checkpoint is kept. Free some space and rerun the same command to "
            "resume"
        )


def atomic_save_model(model: keras.Model, path: str) -> None:
    """Save ``model`` as a ``.keras`` file through a temporary file and a rename.

    Before writing, the disk must have room for a file the size of the one being
    replaced (if any); a full disk is reported as one line naming the file.

    Args:
        model: the model to save.
        path: destination path ending in ``.keras``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if os.path.isfile(path):
        check_room(path, os.path.getsize(path), f"a new {os.path.basename(path)}")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=folder)
    os.close(fd)
    try:
        try:
            model.save(tmp, overwrite=True)
            honour_umask(tmp)  # not mkstemp's 0600
            os.replace(tmp, path)
        except OSError as e:
            raise FatTfError(f"{path}: cannot be written ({e.strerror or e}); the previous "
                             "file is kept") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def serialize_weights(model: keras.Model) -> bytes:
    """The ``.weights.h5`` file ``model.save_weights`` would write, built in memory.

    HDF5 then never writes to the disk itself: a disk that fills up during the write
    fails one plain ``write`` call, instead of h5py failing in object destructors (a
    flood of tracebacks, then a segmentation fault at exit).

    Args:
        model: the model whose weights (and optimiser state) are serialised.
    """
    try:
        from keras.src.saving import saving_lib

        store_class, save_state = saving_lib.H5IOStore, saving_lib._save_state
    except (ImportError, AttributeError):  # another Keras: write a file, read it back
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "w.weights.h5")
            model.save_weights(path)
            with open(path, "rb") as f:
                return f.read()
    buffer = io.BytesIO()
    store = store_class(buffer, mode="w")
    try:
        save_state(model, weights_store=store, assets_store=None, inner_path="",
                   visited_saveables=set())
    finally:
        store.close()
    return buffer.getvalue()


def write_weights_file(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` (created or truncated) and flush it to the disk.

    Args:
        data: the bytes (from :func:`serialize_weights`).
        path: the file.
    """
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    honour_umask(path)


_WEIGHTS_NAME = re.compile(r"epoch-(\d+)-batch-(\d+)\.weights\.h5$")


def seed_states(model: keras.Model) -> list:
    """The state variables of every ``keras.random.SeedGenerator`` in ``model`` (the
    augmentation layers', the Dropout layers' and the method's own draws), in a fixed
    order.

    They are not weights, so a weights file does not hold them: they are
    ``model.variables`` less ``model.weights``.

    Args:
        model: the trained model (the method).
    """
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that never leaves a half-written or inconsistent backup behind.

    Each backup's weights (model, optimiser state, method state such as an EMA teacher)
    go to a new file named after the epoch, written under a temporary name and renamed;
    then ``training_metadata.json``, which names that file and the epoch, is replaced
    atomically. That rename is the single commit point: a run killed at any moment
    resumes from the weights and epoch of one complete backup (before the commit, the
    previous one; after it, the new one), never from weights one epoch ahead of the
    epoch counter. Weights files no committed metadata names are deleted.

    The metadata also holds the state of every random-seed generator of the model
    (:func:`seed_states`: augmentation, dropout, mixup and VAT draws), restored with the
    weights, so a resumed run draws what an uninterrupted one would. The training data
    stream is positioned by :func:`fat_tf.training.train` from the epoch restored.
    :meth:`restore` restores before ``fit`` (``on_train_begin`` then does nothing), so
    the caller knows the epoch before it builds the stream.

    Multi-worker training (``agree`` given): every worker keeps its own backup, and a
    kill can land after one worker committed an epoch and before another did. So the
    previous backup is kept too (named in the metadata as ``previous``; ``null`` when
    the session started from scratch), and on resume ``agree`` (a collective over the
    workers, see :func:`fat_tf.distribute.gather_from_workers`) tells every worker
    which backups the others can restore; all restore the newest one every worker
    holds, so a worker one backup ahead restores its previous one. When there is none
    (a worker's backup is missing or several epochs behind), it refuses with an error
    naming every worker's backups, rather than silently starting the run again.

    Args:
        backup_dir: folder of the backup.
        save_freq: ``"epoch"`` or a number of batches.
        agree: for multi-worker training, a function of this worker's list of ints (its
            :meth:`_encode` restorable positions) returning every worker's list, in
            cluster order; None otherwise.
    """

    def __init__(self, backup_dir: str, save_freq="epoch", agree=None):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        self.agree = agree
        self._latest: dict | None = None  # the backup restored or last written
        self._restored = False  # restore() ran: on_train_begin has nothing left to do
        #: The epoch the restored backup completed (0: none, the run starts afresh).
        self.restored_epoch = 0

    def restore(self) -> int:
        """Restore the backup to resume from now (weights, optimiser and random-seed
        state; sets the model's initial epoch), before ``fit``, whose
        ``on_train_begin`` then restores nothing again. Call :meth:`set_model` first.

        Returns:
            the number of epochs the restored backup completed (0 without a backup).
        """
        self._load_model()
        self._restored = True
        return self.restored_epoch

    def on_train_begin(self, logs=None):
        if self._restored:
            self._restored = False  # restored by restore(); a later fit restores again
            return
        super().on_train_begin(logs)

    def _restart_advice(self) -> str:
        run = os.path.dirname(os.path.abspath(self.backup_dir))
        return (f"to start the run again, delete {self.backup_dir} and the run folder's "
                f"metrics.csv, best.keras and best.keras.json ({run}), or train into a new "
                "--out folder")

    def _committed(self) -> dict | None:
        """The committed metadata (epoch, batch, weights file name), or None.

        A damaged metadata file (truncated, not JSON, no epoch) is reported on stderr
        and replaced by the newest weights file in the folder, whose name gives its
        epoch and batch (every weights file there is complete: each was renamed into
        place only after it was written); with none, FatTfError.
        """
        path = self._training_metadata_path
        if not os.path.exists(path):
            return None
        try:
            metadata = read_json_object(path)
            self._position(metadata)
            if not isinstance(metadata.get("weights", ""), str):
                raise ValueError("'weights' is not a file name")
            if "previous" in metadata and metadata["previous"] is not None:
                self._position(metadata["previous"])
        except (FatTfError, KeyError, TypeError, ValueError) as e:
            found = self._weights_files()
            if not found:
                raise FatTfError(f"{path}: damaged ({e}) and the backup folder holds no "
                                 f"weights file to resume from; {self._restart_advice()}"
                                 ) from None
            epoch, batch, name = found[0]
            print(f"warning: {path} is damaged; resuming from the newest backup weights "
                  f"file, {name} (epoch {epoch})", file=sys.stderr)
            metadata = {"epoch": epoch, "batch": batch, "weights": name}
            if len(found) > 1:  # kept for a fallback if the newest one is damaged too
                metadata["previous"] = dict(zip(("epoch", "batch", "weights"), found[1]))
            return metadata
        # backups written before the weights file was named in the metadata
        metadata.setdefault("weights", os.path.basename(self._weights_path))
        return metadata

    def _weights_files(self) -> list[tuple[int, int, str]]:
        """``(epoch, batch, name)`` of the backup weights files present, newest first."""
        if not os.path.isdir(self.backup_dir):
            return []
        found = []
        for name in os.listdir(self.backup_dir):
            match = _WEIGHTS_NAME.fullmatch(name)
            if match:
                found.append((int(match[1]), int(match[2]), name))
        return sorted(found, reverse=True)

    def _remove_uncommitted(self, keep: str | None, previous: str | None = None) -> None:
        if not os.path.isdir(self.backup_dir):
            return
        for name in os.listdir(self.backup_dir):
            if name.endswith(".weights.h5") and name not in (keep, previous):
                os.unlink(os.path.join(self.backup_dir, name))

    #: Position of "no backup: start from scratch", before every real backup.
    START = (-1, -1)
    #: Position of an unknown previous backup (metadata written without one).
    UNKNOWN = (-2, -2)

    @staticmethod
    def _position(metadata: dict | None) -> tuple[int, int]:
        """A backup's place in training, ``(epoch, batch)``; :attr:`START` for none."""
        if not metadata:
            return AtomicBackupAndRestore.START
        return int(metadata["epoch"]), int(metadata.get("batch") or 0)

    @classmethod
    def _restorable(cls, metadata: dict | None) -> dict:
        """The positions this worker can restore, mapped to their metadata (None for
        :attr:`START`): its latest backup and, when recorded, the previous one."""
        if metadata is None:
            return {cls.START: None}
        options = {cls._position(metadata): metadata}
        if "previous" in metadata:
            options[cls._position(metadata["previous"])] = metadata["previous"]
        return options

    @classmethod
    def _encode(cls, options: dict) -> list[int]:
        """``[epoch, batch]`` of the latest then the previous restorable position."""
        positions = sorted(options, reverse=True) + [cls.UNKNOWN]
        return [*positions[0], *positions[1]]

    @staticmethod
    def _describe(position: tuple[int, int]) -> str:
        epoch, batch = position
        if position == AtomicBackupAndRestore.START:
            return "no backup"
        return f"epoch {epoch}" + (f" batch {batch}" if batch else "")

    def _agreed_backup(self, metadata: dict | None) -> dict | None:
        """The backup to restore: the newest one every worker holds (see the class)."""
        mine = self._restorable(metadata)
        rows = self.agree(self._encode(mine))
        held = [{tuple(row[:2]), tuple(row[2:])} - {self.UNKNOWN} for row in rows]
        common = set.intersection(*held)
        if common:
            return mine[max(common)]
        workers = "; ".join(
            f"worker {i}: " + " or ".join(self._describe(p) for p in sorted(h, reverse=True))
            for i, h in enumerate(held)
        )
        raise FatTfError(
            f"{self.backup_dir}: the workers hold no common backup to resume from "
            f"(in cluster order, chief first: {workers}). Every worker's backup holds the "
            "same weights, so copy the backup folder of the worker furthest along (the "
            "chief's is <run>/backup, another worker's <run>/workers/<type>-<index>/backup) "
            "over the other workers' backup folders and launch again; or, to start the "
            "run again, delete every worker's backup folder and the run folder's "
            "metrics.csv and best.keras files"
        )

    def _load_model(self):
        metadata = self._committed()
        previous = (metadata or {}).get("previous")
        self._remove_uncommitted(metadata["weights"] if metadata else None,
                                 previous["weights"] if previous else None)
        if self.agree is not None:
            metadata = self._agreed_backup(metadata)
        self._latest = {k: v for k, v in metadata.items() if k != "previous"} if metadata else None
        self.restored_epoch = 0
        if metadata is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        metadata = self._load_weights(metadata, previous if self.agree is None else None)
        self._restore_seeds(metadata)
        self._latest = {k: v for k, v in metadata.items() if k != "previous"}
        self.model._initial_epoch = self.restored_epoch = metadata["epoch"]

    def _restore_seeds(self, metadata: dict) -> None:
        """Set the model's seed generators to the state ``metadata`` recorded; without
        one (a backup of an older fat_tf, or metadata rebuilt after damage), warn that
        the random draws of the rest of the run differ from an uninterrupted run's."""
        states, saved = seed_states(self.model), metadata.get("seeds")
        if not states:
            return
        problem = None
        if saved is None:
            problem = "holds no random-generator state"
        elif not isinstance(saved, list) or len(saved) != len(states):
            problem = (f"holds {len(saved) if isinstance(saved, list) else 'no valid'} "
                       f"random-generator states, this model has {len(states)}")
        else:
            try:
                values = [np.asarray(value, dtype=np.dtype(v.dtype)).reshape(v.shape)
                          for v, value in zip(states, saved)]
            except (TypeError, ValueError) as e:
                problem = f"holds an unreadable random-generator state ({e})"
        if problem:
            print(f"warning: {self._training_metadata_path} {problem}; resuming from epoch "
                  f"{metadata['epoch']} with the generators' initial state, so augmentation "
                  "and other random draws will differ from an uninterrupted run's",
                  file=sys.stderr)
            return
        for variable, value in zip(states, values):
            variable.assign(value)

    def _load_weights(self, metadata: dict, previous: dict | None) -> dict:
        """Load the backup ``metadata`` names; if its weights file is damaged (truncated,
        empty, unreadable), fall back to ``previous`` when that one is kept and loads.
        Returns the metadata of the backup loaded.

        Raises:
            FatTfError: no kept backup loads; one line naming the file and how to restart.
        """
        problems = []
        for candidate in [metadata] + ([previous] if previous else []):
            path = os.path.join(self.backup_dir, candidate["weights"])
            try:
                self.model.load_weights(path)
            except Exception as e:  # h5py and Keras raise several types
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                problems.append(f"{path}: damaged or unreadable backup weights ({first})")
                continue
            if problems:
                print(f"warning: {problems[0]}; resumed from the previous backup, {path} "
                      f"(epoch {candidate['epoch']})", file=sys.stderr)
            return candidate
        kept = ("the previous backup is damaged too" if len(problems) > 1
                else "no earlier backup is kept")
        raise FatTfError(f"{problems[0]}; {kept}; {self._restart_advice()}")

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        epoch, batch = self._current_epoch, self._last_batch_seen
        name = f"epoch-{epoch:05d}-batch-{batch:06d}.weights.h5"
        tmp_weights = os.path.join(self.backup_dir, ".tmp-latest.weights.h5")
        what = f"the backup of epoch {epoch}" + (f" batch {batch}" if batch else "")
        data = serialize_weights(self.model)
        check_room(tmp_weights, len(data), what)
        try:
            write_weights_file(data, tmp_weights)
            os.replace(tmp_weights, os.path.join(self.backup_dir, name))
        except OSError as e:
            kept = (f"the backup of {self._describe(self._position(self._latest))} is kept"
                    if self._latest else "no earlier backup exists")
            raise FatTfError(f"{tmp_weights}: {e.strerror or e} while writing {what}; "
                             f"{kept}. Free some space and rerun the same command to resume"
                             ) from None
        finally:  # e.g. disk full: free the space, keep the previous backup
            if os.path.exists(tmp_weights):
                os.unlink(tmp_weights)
        seeds = [keras.ops.convert_to_numpy(v).tolist() for v in seed_states(self.model)]
        metadata = {"epoch": epoch, "batch": batch, "weights": name, "seeds": seeds}
        previous = None
        if self.agree is not None:  # multi-worker: keep this session's last backup too
            if self._latest is None or self._latest["weights"] != name:
                # None: this session started from scratch, which stays restorable
                metadata["previous"] = previous = self._latest
        self._latest = {k: v for k, v in metadata.items() if k != "previous"}
        atomic_write_text(self._training_metadata_path, json.dumps(metadata))
        self._remove_uncommitted(keep=name, previous=previous["weights"] if previous else None)
