"""No command may destroy a user's data (issue 16, items 1 and 2).

* ``export --overwrite`` replaces only a previous export: never the run being exported, a
  folder holding it or inside it, another run folder, or any other file or folder.
* One process writes a run folder at a time (``fat_tf.run_lock``): a second ``train``
  with the same ``--out`` is refused, naming the folder and the holder's PID, and touches
  nothing; the lock is free again once its holder exits (SIGKILL included) and after a
  ``train()`` call in this process returned or raised.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fat_tf import export, train, training
from fat_tf.config import Config
from fat_tf.errors import FatTfError
from fat_tf.run_lock import LOCK_NAME, RunLock

#: The tiny run of tests/test_export.py and tests/test_predict.py (shared in a session).
TINY = [
    "--epochs", "1", "--set", "frontend.n_mels=32", "--set", "data.crop_frames=32",
    "--set", "model.channels=[8,8,16,16]", "--set", "model.head_units=16",
    "--set", "data.batch_size=8",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_demo_dir) -> Path:
    run = tmp_path_factory.getbasetemp() / "shared_tiny_run"
    if not (run / "summary.json").exists():
        assert train.main(["--data", str(tiny_demo_dir), "--out", str(run), *TINY]) == 0
    return run


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder``: relative path -> content (None: a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- export


def refused_targets(tmp_path: Path, run: Path) -> dict[str, tuple[Path, str]]:
    """--out folders that must be refused: name -> (path, words of the message)."""
    inside = run / "sub"
    inside.mkdir()
    (inside / "notes.txt").write_text("mine")
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "thesis.tex").write_text("years of work")
    a_file = tmp_path / "file.txt"
    a_file.write_text("precious")
    other_run = tmp_path / "other_run"
    shutil.copytree(run, other_run)
    marked_run = tmp_path / "marked_run"  # a run folder that somehow holds an export.json
    shutil.copytree(run, marked_run)
    (marked_run / "export.json").write_text(json.dumps({"format": export.EXPORT_FORMAT}))
    return {
        "the run": (run, "is the run folder being exported"),
        "its parent": (run.parent, "holds the run folder being exported"),
        "its grandparent": (tmp_path, "holds the run folder being exported"),
        "inside it": (inside, "is inside the run folder being exported"),
        "new folder inside it": (run / "export", "is inside the run folder being exported"),
        "unrelated folder": (unrelated, "is not a fat_tf export"),
        "a file": (a_file, "is a file"),
        "another run": (other_run, "is a run folder"),
        "run with export.json": (marked_run, "is a run folder"),
    }


def test_export_overwrite_refuses_anything_but_a_previous_export(tiny_run, tmp_path, capsys):
    run = tmp_path / "parent" / "run"
    shutil.copytree(tiny_run, run)
    (run.parent / "other-work.txt").write_text("keep me")
    for name, (out, words) in refused_targets(tmp_path, run).items():
        before = snapshot(tmp_path)
        for extra in (["--overwrite"], []):
            assert export.main([str(run), "--out", str(out), "--no-tflite", *extra]) == 1, name
            line = one_error_line(capsys.readouterr().err)
            assert line.startswith(f"error: {out} ") and words in line, (name, line)
            assert snapshot(tmp_path) == before, name  # nothing written, nothing deleted


def test_export_overwrite_replaces_a_previous_export(tiny_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert export.main([str(tiny_run), "--out", str(out), "--no-tflite"]) == 0
    assert export.is_previous_export(out)
    (out / "stale.txt").write_text("from the previous export")
    before = snapshot(tmp_path)
    assert export.main([str(tiny_run), "--out", str(out), "--no-tflite"]) == 1
    assert "already exists; pass --overwrite" in one_error_line(capsys.readouterr().err)
    assert snapshot(tmp_path) == before
    assert export.main([str(tiny_run), "--out", str(out), "--no-tflite", "--overwrite"]) == 0
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "export.json").read_text())["format"] == export.EXPORT_FORMAT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no .tmp-*/.old-*


def test_replace_refuses_a_folder_that_appeared_meanwhile(tmp_path):
    tmp, out = tmp_path / ".tmp-new", tmp_path / "out"
    tmp.mkdir()
    out.mkdir()
    (out / "data.csv").write_text("someone else's")
    with pytest.raises(FatTfError, match="is not a previous export; nothing was replaced"):
        export._replace_folder(tmp, out, overwrite=True)
    assert (out / "data.csv").read_text() == "someone else's"


# ----------------------------------------------------------------------------- run lock

#: Holds the lock of the folder argv[1], says so, then waits to be killed.
HOLDER = """
import sys, time
from fat_tf.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_second_writer_is_refused_and_lock_is_free_after_sigkill(tiny_demo_dir, tmp_path,
                                                                 capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".tmp-live-weights.h5").write_bytes(b"the holder's file being written")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run)
        assert train.main(["--data", str(tiny_demo_dir), "--out", str(run), *TINY,
                           "--set", "train.steps_per_epoch=2"]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith(f"error: {run} is in use by another process "
                               f"(PID {holder.pid}, holding {LOCK_NAME})"), line
        assert snapshot(run) == before  # the holder's temp file is still there
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunLock(run):  # released by the OS when its holder was killed
        assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_second_train_process_is_refused(tiny_demo_dir, tmp_path):
    """The command line: exit code 1, one line naming the folder and this process's PID."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")  # would be refused anyway, but later
    with RunLock(run):
        before = snapshot(run)
        done = subprocess.run(
            [sys.executable, "-m", "fat_tf.train", "--data", str(tiny_demo_dir), "--out",
             str(run), *TINY], capture_output=True, text=True, timeout=600)
        assert done.returncode == 1, done.stderr
        line = one_error_line(done.stderr)
        assert f"{run} is in use by another process (PID {os.getpid()}," in line, line
        assert snapshot(run) == before


def test_train_twice_in_one_process(tiny_run, tiny_demo_dir, tmp_path, monkeypatch):
    """The lock goes with the train() call, not the process: it is released when the call
    returns or raises, and a concurrent call for the same folder is refused."""
    config = Config.from_json(tiny_run / "config.json")
    first = training.train(config, tiny_demo_dir, tiny_run, verbose=0)  # finished: returns
    assert training.train(config, tiny_demo_dir, tiny_run, verbose=0) == first
    with RunLock(tiny_run):
        with pytest.raises(training.RunFolderError,
                           match=f"is in use by another call in this process "
                                 f"\\(PID {os.getpid()},"):
            training.train(config, tiny_demo_dir, tiny_run, verbose=0)

    run = tmp_path / "run"

    def no_room(folder, method):
        raise FatTfError(f"{folder}: no room (a failure after the lock was taken)")

    monkeypatch.setattr(training, "check_free_space", no_room)
    with pytest.raises(FatTfError) as first_error:  # raised after the lock was taken
        training.train(config, tiny_demo_dir, run, verbose=0)
    assert (run / LOCK_NAME).exists()
    with pytest.raises(FatTfError) as second_error:  # the same error, not "in use"
        training.train(config, tiny_demo_dir, run, verbose=0)
    assert str(second_error.value) == str(first_error.value)
    with RunLock(run):  # free although the tracebacks (and their frames) are still alive
        pass
