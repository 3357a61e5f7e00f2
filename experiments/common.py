"""Pieces shared by the study scripts in ``experiments/``: training, scoring, tables.

Every training run goes through :func:`train_run`, which trains in a fresh process
(clean Keras state) into a shared pool of run folders, ``experiments/runs/`` (ignored by
git). A run folder is named after everything that defines the run (method, seed, epochs,
settings, dataset), so a run that two studies need (for example the supervised baseline)
is trained once (the name also covers the fat_tf code version, see
:func:`code_version`), and rerunning a study after an interruption resumes where it stopped
(``python -m fat_tf.train`` resumes unfinished runs and leaves finished ones alone).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EXPERIMENTS = Path(__file__).resolve().parent
RUN_POOL = EXPERIMENTS / "runs"
MACHINE = f"{os.cpu_count()}-core {platform.machine()} CPU, shared with other jobs"


def code_version() -> str:
    """Which fat_tf code the runs use: its git commit, ``+changes`` when the package
    folder differs from that commit; or the ``COMMIT`` file beside an exported copy
    (``git archive``), which is how the committed results were produced."""
    import fat_tf

    package = Path(fat_tf.__file__).resolve().parent
    stamp = package.parent / "COMMIT"
    if stamp.exists():
        return stamp.read_text().strip() + " (exported copy)"
    try:
        def git(*cmd):
            return subprocess.run(["git", *cmd], cwd=package, capture_output=True, text=True,
                                  check=True).stdout.strip()

        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
        return commit + (" +uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


CODE = code_version()


def data_dir_or_demo(data: str | None) -> str:
    """The dataset folder: ``data``, or the demo dataset (generated on first use)."""
    if data is not None:
        return data
    from fat_tf.data.demo import default_demo_dir

    return str(default_demo_dir())


def run_folder(method: str, seed: int, epochs: int | None, settings: list[str], data_dir: str,
               pool: Path = RUN_POOL) -> Path:
    """Where the run defined by these arguments lives in the pool (name + content hash)."""
    key = json.dumps([method, seed, epochs, sorted(settings), str(Path(data_dir).resolve()),
                      CODE])
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return pool / f"{method}-seed{seed}-{digest}"


def train_run(method: str, seed: int, epochs: int | None, settings: list[str], data_dir: str,
              pool: Path = RUN_POOL) -> Path:
    """Train one run with ``python -m fat_tf.train`` (or reuse it if it already finished).

    Args:
        method: training method.
        seed: seed of the run.
        epochs: number of epochs, or None for a budget in steps (``train.steps`` in
            ``settings``, else the preset's).
        settings: ``section.field=value`` overrides.
        data_dir: dataset folder.
        pool: folder that holds the run folders.

    Returns:
        The run folder.
    """
    run_dir = run_folder(method, seed, epochs, settings, data_dir, pool)
    if (run_dir / "summary.json").exists():
        print(f"reusing {run_dir.name} (already trained)", flush=True)
        return run_dir
    data_dir = str(Path(data_dir).resolve())
    cmd = [sys.executable, "-m", "fat_tf.train", "--data", data_dir, "--out", str(run_dir),
           "--method", method, "--seed", str(seed)]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    for s in settings:
        cmd += ["--set", s]
    print("training:", " ".join(cmd[1:]), flush=True)
    # Run from the pool folder: `python -m` puts the working folder first on sys.path, so
    # from the repository root it would import ./fat_tf even where PYTHONPATH names another
    # copy of the package (the committed results used an exported copy, see README).
    pool.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=pool)
    return run_dir


def summary(run_dir: Path) -> dict:
    """The run's ``summary.json``."""
    return json.loads((run_dir / "summary.json").read_text())


def test_lwlrap(run_dir: Path, tta: bool = False, model: str = "final") -> float:
    """Whole-clip lwlrap of the run's model (``final`` or ``best``) on the labelled test set."""
    from fat_tf.inference.scoring import score_run

    return score_run(run_dir, "test", model=model, tta=tta).lwlrap


def run_row(run_dir: Path, tta: bool = False) -> dict:
    """The figures a study table keeps for one run: validation lwlrap (final and best, from
    ``summary.json``), test lwlrap of the final model, chance level, labelled clips,
    training seconds and the run folder's name."""
    s = summary(run_dir)
    return {
        "val_lwlrap": s["val_lwlrap"], "best_val_lwlrap": s["best_val_lwlrap"],
        "test_lwlrap": test_lwlrap(run_dir, tta=tta),
        "chance_lwlrap": s["chance_lwlrap"], "train_clips": s["train_clips"],
        "train_seconds": s["train_seconds_this_session"], "run": run_dir.name,
    }


def scored_run(run_dir: Path) -> dict:
    """The figures a step-budget study keeps for one finished run: its step budget,
    validation lwlrap (final, best and the best checkpoint's step), test lwlrap of the
    best-validation checkpoint and of the final model (what predict and export use), the
    last logged training loss, training seconds and the run folder's name."""
    s = summary(run_dir)
    return {
        "total_steps": s.get("total_steps"),
        "val_lwlrap_final": s["val_lwlrap"], "val_lwlrap_best": s["best_val_lwlrap"],
        "best_step": s.get("best_step"),
        "test_lwlrap_best": test_lwlrap(run_dir, model="best"),
        "test_lwlrap_final": test_lwlrap(run_dir, model="final"),
        "final_train_loss": learning_curve(run_dir, "loss")[-1],
        "train_seconds": s["train_seconds_this_session"], "run": run_dir.name,
    }


def reference_scores(baselines: dict) -> dict[str, str]:
    """``{name: "mean ± std"}`` of the references in a ``tools/baselines.py`` JSON."""
    return {name: mean_std(entry["per_seed"]) for name, entry in baselines["results"].items()}


def learning_curve(run_dir: Path, column: str = "val_lwlrap") -> list[float]:
    """One column of the run's ``metrics.csv``, per epoch."""
    from fat_tf.run_folder import read_metrics

    return [r[column] for r in read_metrics(run_dir)]


def mean_std(values) -> str:
    """``mean ± std`` (sample std; 0 for one value) with 3 decimals."""
    v = np.asarray(list(values), float)
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.3f} ± {std:.3f}"


def paired_differences(runs: list[dict], reference: list[dict], key: str) -> np.ndarray:
    """Per-seed differences ``run[key] - reference run[key]``, on the seeds both have.

    Args:
        runs: one setting's runs (dicts with ``seed`` and ``key``; numbers or the
            strings of a results.csv).
        reference: the reference setting's runs, in the same form.
        key: the score compared, e.g. ``test_lwlrap_final``.

    Returns:
        The differences in the order of ``runs``; runs whose seed the reference lacks
        are left out.
    """
    reference_by_seed = {int(r["seed"]): float(r[key]) for r in reference}
    return np.array([float(r[key]) - reference_by_seed[int(r["seed"])]
                     for r in runs if int(r["seed"]) in reference_by_seed])


def write_results(out: Path, rows: list[dict], table_md: str, command: str,
                  started: float, notes: str = "") -> None:
    """Write ``results.csv`` (one row per run) and ``results.md`` (header + table).

    Args:
        out: the study folder.
        rows: one dict per run (same keys).
        table_md: the Markdown summary table.
        command: the command that produced the results.
        started: ``time.time()`` when the study started (for the wall time).
        notes: extra lines put under the header.
    """
    from fat_tf.files import atomic_write_text

    text = io_csv(rows)
    atomic_write_text(out / "results.csv", text)
    header = (f"Command: `{command}`  \nMachine: {MACHINE}  \nfat_tf code: {CODE}  \n"
              f"Wall time: {time.time() - started:.0f} s for {len(rows)} runs"
              f" (runs reused from the pool took no time here)  \n{notes}\n\n")
    atomic_write_text(out / "results.md", header + table_md)


def io_csv(rows: list[dict]) -> str:
    """CSV text of a list of dicts with the same keys."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def start_study(args, script: str, argv: list[str] | None) -> tuple[Path, str, str, float]:
    """Create the output folder; return it, the dataset folder, the command line (from
    ``script``, a path under ``experiments/``) and the start time."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out, data_dir_or_demo(args.data), command_line(script, argv), time.time()


def command_line(script: str, argv: list[str] | None) -> str:
    """The command as typed, from the repository root."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"experiments/{script}", *args])


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure atomically (temporary name, then rename)."""
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, dpi=100, format="png")
    os.replace(tmp, path)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def timed(message: str):
    """Print ``message`` with the current time (progress lines in the study logs)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


#: Settings every study starts from: the ssl_comparison budget (15 epochs x 10 optimiser
#: steps, labelled batch 32, small preset), all curated training clips, train_noisy as
#: unlabelled audio (ignored by supervised and mixup).
BASE_SETTINGS = {
    "train.steps_per_epoch": "10",
    "data.labelled_fraction": "1.0",
    "data.noisy_usage": "unlabelled",
}
EPOCHS = 15


def settings_list(**changes: str) -> list[str]:
    """``BASE_SETTINGS`` with ``changes`` (dotted keys written with ``__``), as overrides."""
    merged = dict(BASE_SETTINGS)
    merged.update({k.replace("__", "."): str(v) for k, v in changes.items()})
    return [f"{k}={v}" for k, v in sorted(merged.items())]
