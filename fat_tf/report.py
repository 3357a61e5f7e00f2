"""Compare training runs: ``python -m fat_tf.report RUN_DIR... --out DIR``.

Reads the run folders written by ``python -m fat_tf.train`` and writes, into ``--out``:

* ``runs.csv`` / ``runs.md`` — one row per run: method, the settings in which the runs
  differ, final and best validation lwlrap (from ``metrics.csv``) with the best
  checkpoint's step, the validation chance level (only when no test split is scored),
  the lwlrap of the scored split with the model it comes from (``scored_model``, e.g.
  ``best checkpoint, step 700``), test lwlrap already computed by ``python -m
  fat_tf.evaluate`` (from the run's ``eval-test.csv``, with its model from
  ``eval-test.json``) and training time;
* ``learning_curves.png`` — validation lwlrap and training loss per epoch;
* ``lr_schedule.png`` — learning rate per epoch;
* ``per_class_ap.png`` — average precision of every class for every run (this scores the
  runs' models on ``--split``; ``--no-score`` skips it).

Models are scored as ``evaluate``, ``predict`` and ``export`` use them by default: the
final model (``model.keras``); ``--model best`` scores the best-validation checkpoint
(``best.keras``). Every figure
names the model it comes from (:func:`fat_tf.inference.loaded.checkpoint_label`).

Every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fat_tf import run_folder as rf
from fat_tf.errors import FatTfError
from fat_tf.files import honour_umask, read_json_object
from fat_tf.inference.loaded import MODEL_NAMES, checkpoint_label
from fat_tf.inference.scoring import Scores, score_run
from fat_tf.run_folder import check_run_folder, checkpoint_step, read_metrics


# --------------------------------------------------------------------------- run folders
@dataclass(frozen=True)
class RunRecord:
    """What the report reads from one run folder.

    Args:
        name: the run's label in tables and legends (its folder name, or its path where
            two folders share a name).
        run_dir: the folder.
        config: ``config.json`` as a nested dict.
        data: ``data.json``.
        summary: ``summary.json`` (empty while the run has not finished).
        metrics: the rows of ``metrics.csv``.
    """

    name: str
    run_dir: Path
    config: dict
    data: dict
    summary: dict
    metrics: list[dict[str, float]]

    @property
    def method(self) -> str:
        """The training method."""
        return str(self.config.get("train", {}).get("method", "?"))

    def column(self, name: str) -> np.ndarray:
        """One column of ``metrics.csv`` per epoch (NaN where absent)."""
        return np.array([r.get(name, float("nan")) for r in self.metrics], float)


def load_runs(run_dirs: list[str | os.PathLike]) -> list[RunRecord]:
    """Read every run folder (all are checked before any is read).

    Args:
        run_dirs: run folders.

    Raises:
        FatTfError: one of them is not a run folder, or is given twice.
    """
    paths = [check_run_folder(d) for d in run_dirs]
    resolved = [p.resolve() for p in paths]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise FatTfError(f"{paths[i]}: the same run folder is given twice")
    names = [p.name for p in paths]
    names = [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]
    runs = []
    for name, path in zip(names, paths):
        metrics = read_metrics(path)
        if not metrics:
            raise FatTfError(f"{path / rf.METRICS}: no epoch has finished yet")
        summary = _read_json(path / rf.SUMMARY) if (path / rf.SUMMARY).exists() else {}
        runs.append(RunRecord(name, path, _read_json(path / rf.CONFIG),
                              _read_json(path / rf.DATA), summary, metrics))
    return runs


def _read_json(path: Path) -> dict:
    return read_json_object(path, "copy the run folder again from where it was trained")


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> ``{"section.field": value}`` (lists become tuples)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = tuple(value) if isinstance(value, list) else value
    return out


def config_differences(runs: list[RunRecord]) -> list[str]:
    """The settings (dotted names) whose values are not the same in every run.

    ``train.method`` is left out (it has its own column); the dataset folder counts
    as the setting ``data_dir``.
    """
    flat = [{**flatten(r.config), "data_dir": r.data.get("data_dir")} for r in runs]
    keys = sorted(set().union(*flat))
    return [k for k in keys if k != "train.method"
            and len({repr(f.get(k)) for f in flat}) > 1]


def evaluated_test_lwlrap(run_dir: Path) -> float | None:
    """Test lwlrap from a run's ``eval-test.csv`` (written by ``fat_tf.evaluate --split test``).

    lwlrap is the mean of the per-class lwlrap weighted by each class's share of the true
    labels, so it is recomputed from the table's ``lwlrap`` and ``positives`` columns.
    Returns None when the run has no such table.
    """
    path = run_dir / rf.EVAL_TABLE.format(split="test")
    if not path.exists():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    positives = np.array([float(r["positives"]) for r in rows])
    if positives.sum() == 0:
        return None
    per_class = np.array([float(r["lwlrap"]) for r in rows])
    return float(np.sum(per_class * positives) / positives.sum())


def evaluated_test_model(run_dir: Path, lwlrap: float | None = None) -> str:
    """Which model the run's ``eval-test.csv`` scored, from the ``eval-test.json`` that
    ``fat_tf.evaluate`` writes beside it (e.g. ``best checkpoint, step 700``).

    Args:
        run_dir: the run folder.
        lwlrap: the table's lwlrap; the JSON must agree with it (else it belongs to
            another evaluation).

    Returns:
        the label, or ``not recorded`` (a table written before evaluate recorded it).
    """
    try:
        path = run_dir / rf.EVAL_RESULT.format(split="test")
        result = json.loads(path.read_text(encoding="utf-8"))
        label, value = result["checkpoint"], float(result["lwlrap"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "not recorded"
    if lwlrap is not None and not abs(value - lwlrap) <= 1e-5:
        return "not recorded"
    return str(label)


# --------------------------------------------------------------------------- the table
def run_table(runs: list[RunRecord], scores: dict[str, Scores] | None = None) -> list[dict]:
    """One row per run: method, differing settings, lwlrap figures, training time.

    Every figure says which model it comes from: ``val_lwlrap_final`` (the final model's
    last validation), ``val_lwlrap_best`` with ``best_step``, the scored split's lwlrap
    with ``scored_model`` and the earlier test evaluation with ``eval_csv_model``. The
    validation chance level (``val_chance_lwlrap``) is left out when the test split is
    scored, so it is never read against a test score.

    Args:
        runs: the loaded runs.
        scores: optional scores per run name (from
            :func:`fat_tf.inference.scoring.score_run`).
    """
    scored_split = next(iter(scores.values())).split if scores else None
    diffs = config_differences(runs)
    table = []
    for r in runs:
        flat = {**flatten(r.config), "data_dir": r.data.get("data_dir")}
        val = r.column("val_lwlrap")
        row = {"run": r.name, "method": r.method}
        for k in diffs:
            value = flat.get(k)
            row[k] = list(value) if isinstance(value, tuple) else value
        row["epochs"] = len(r.metrics)
        row["val_lwlrap_final"] = r.summary.get("val_lwlrap", float(val[-1]))
        best = r.summary.get("best_val_lwlrap")
        row["val_lwlrap_best"] = best if best is not None else float(np.nanmax(val))
        row["best_epoch"] = int(np.nanargmax(val)) + 1 if np.isfinite(val).any() else None
        row["best_step"] = checkpoint_step(r.run_dir, "best")
        if scored_split != "test":  # a validation figure: not beside a test score
            row["val_chance_lwlrap"] = r.summary.get("chance_lwlrap")
        if scores:
            s = scores[r.name]
            row[f"{s.split}_lwlrap_{s.model}{'_tta' if s.tta else ''}"] = s.lwlrap
            row["scored_model"] = s.checkpoint or MODEL_NAMES.get(s.model, s.model)
        if scored_split != "test":
            evaluated = evaluated_test_lwlrap(r.run_dir)
            row["test_lwlrap_eval_csv"] = evaluated
            row["eval_csv_model"] = (evaluated_test_model(r.run_dir, evaluated)
                                     if evaluated is not None else None)
        row["train_clips"] = r.summary.get("train_clips", r.data.get("train_clips"))
        row["train_seconds"] = r.summary.get("train_seconds_this_session")
        table.append(row)
    if all(row.get("test_lwlrap_eval_csv") is None for row in table):
        for row in table:
            row.pop("test_lwlrap_eval_csv", None)
            row.pop("eval_csv_model", None)
    return table


def _cell(key: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not np.isfinite(value):
            return ""
        return f"{value:.1f}" if key.endswith("seconds") else f"{value:.4f}"
    return str(value)


def table_csv(table: list[dict]) -> str:
    """CSV text of :func:`run_table` rows (floats in full precision)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def table_markdown(table: list[dict]) -> str:
    """Markdown text of :func:`run_table` rows (floats to 4 decimals)."""
    keys = list(table[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in table:
        lines.append("| " + " | ".join(_cell(k, row[k]).replace("|", "\\|") for k in keys) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically (temporary name, then rename).

    Args:
        fig: the figure (closed afterwards).
        path: destination file.
    """
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=path.parent)
    honour_umask(fd)  # not mkstemp's 0600
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _pyplot().close(fig)


def plot_learning_curves(runs: list[RunRecord], path: Path) -> None:
    """Validation lwlrap and losses (training solid, validation dashed) per epoch.

    Args:
        runs: the loaded runs.
        path: PNG file to write.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, r in enumerate(runs):
        colour = f"C{i % 10}"
        epochs = optimiser_steps(r)
        left.plot(epochs, r.column("val_lwlrap"), color=colour, marker=".", label=r.name)
        right.plot(epochs, r.column("loss"), color=colour, label=f"{r.name} (train)")
        if np.isfinite(r.column("val_loss")).any():
            right.plot(epochs, r.column("val_loss"), color=colour, linestyle="--",
                       label=f"{r.name} (validation)")
    chance = [r.summary["chance_lwlrap"] for r in runs if "chance_lwlrap" in r.summary]
    if chance:
        left.axhline(float(np.mean(chance)), color="gray", linestyle=":",
                     label="chance (validation)")
    left.set(xlabel="optimiser step", ylabel="validation lwlrap", title="validation lwlrap")
    right.set(xlabel="optimiser step", ylabel="loss", title="loss (training: all terms weighted)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def optimiser_steps(run: RunRecord) -> np.ndarray:
    """The optimiser step reached at each row of a run's ``metrics.csv`` (its ``step``
    column, or epochs times the run's steps per epoch for runs that lack it).

    Args:
        run: a loaded run.
    """
    steps = run.column("step")
    if np.isfinite(steps).all():
        return steps
    per_epoch = run.summary.get("steps_per_epoch", run.data.get("steps_per_epoch", 1))
    return run.column("epoch") * per_epoch


def schedule_curve(run: RunRecord, points: int = 400) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's learning rate per optimiser step, rebuilt from its config.

    Returns ``(step, learning_rate)`` sampled at up to ``points`` steps, or None when the
    run's step budget is unknown (a run that has not written ``data.json``).

    Args:
        run: a loaded run.
        points: most steps sampled.
    """
    from fat_tf.config import Config
    from fat_tf.ops.schedules import build_schedule

    config = Config.from_dict(run.config)
    total = run.summary.get("total_steps", run.data.get("total_steps"))
    if not total:
        return None
    o = config.optim
    schedule = build_schedule(o.lr_schedule, o.lr_max, o.lr_min, total, o.cosine_cycles,
                              o.warmup_fraction)
    at = np.unique(np.linspace(0, total - 1, min(points, total)).round().astype(int))
    if callable(schedule):
        lr = np.array([float(schedule(int(s))) for s in at])
    else:
        lr = np.full(len(at), float(schedule))
    return at, lr


def plot_lr_schedule(runs: list[RunRecord], path: Path) -> None:
    """Learning rate: the schedule per step (line) and the logged value per epoch (dots).

    Args:
        runs: the loaded runs.
        path: PNG file to write.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(runs):
        colour = f"C{i % 10}"
        curve = schedule_curve(r)
        if curve is not None:
            ax.plot(*curve, color=colour, label=f"{r.name} ({r.config['optim']['lr_schedule']})")
        ax.plot(optimiser_steps(r), r.column("learning_rate"), ".", color=colour,
                label=None if curve is not None else r.name)
    ax.set(xlabel="optimiser step", ylabel="learning rate", yscale="log",
           title="learning rate (line: per step; dots: logged at each validation)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def plot_per_class_ap(scores: dict[str, Scores], path: Path) -> None:
    """Heat map of average precision per class (rows) and run (columns).

    Args:
        scores: scores per run name, all on the same split and classes.
        path: PNG file to write.
    """
    plt = _pyplot()
    names = list(scores)
    classes = next(iter(scores.values())).class_names
    ap = np.stack([scores[n].average_precision() for n in names], axis=1)
    fig, ax = plt.subplots(figsize=(2.5 + 1.2 * len(names), 1.5 + 0.22 * len(classes)))
    image = ax.imshow(np.ma.masked_invalid(ap), aspect="auto", vmin=0, vmax=1,
                      cmap="viridis")
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    if ap.size <= 1200:
        for (c, j), v in np.ndenumerate(ap):
            if np.isfinite(v):
                ax.text(j, c, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if v < 0.5 else "black")
    first = next(iter(scores.values()))
    ax.set_title(f"average precision per class ({first.split}, "
                 f"{MODEL_NAMES.get(first.model, first.model)} of each run"
                 f"{', TTA' if first.tta else ''})", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)
    fig.tight_layout()
    save_png(fig, path)


# --------------------------------------------------------------------------- the report
def compare_runs(run_dirs: list[str | os.PathLike], out: str | os.PathLike,
                 split: str = "validation", model: str = rf.DEFAULT_MODEL, tta: bool = False,
                 score: bool = True) -> list[dict]:
    """Write the comparison of ``run_dirs`` into ``out`` and return the table rows.

    Args:
        run_dirs: run folders written by ``python -m fat_tf.train``.
        out: output folder (created): ``runs.csv``, ``runs.md``, ``learning_curves.png``,
            ``lr_schedule.png`` and, when scoring, ``per_class_ap.png`` and
            ``per_class_ap.csv``.
        split: labelled split the models are scored on (``validation`` or ``test``).
        model: ``final`` (the final model, the default of ``evaluate``, ``predict``
            and ``export``) or ``best`` (the best-validation checkpoint) of each run.
        tta: score with time-reversal test-time augmentation.
        score: score the models (for the split's lwlrap and the per-class plot).
    """
    from fat_tf.files import atomic_write_text

    runs = load_runs(run_dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scores = None
    if score:
        scores = {}
        for r in runs:
            print(f"scoring {r.name} on {split} ({checkpoint_label(r.run_dir, model)})",
                  file=sys.stderr, flush=True)
            scores[r.name] = score_run(r.run_dir, split, model, tta)
        classes = {s.class_names for s in scores.values()}
        if len(classes) > 1:
            raise FatTfError("the runs were trained on different class lists; per-class "
                             "results cannot be compared (use --no-score)")
    table = run_table(runs, scores)
    atomic_write_text(out / "runs.csv", table_csv(table))
    atomic_write_text(out / "runs.md", table_markdown(table))
    plot_learning_curves(runs, out / "learning_curves.png")
    plot_lr_schedule(runs, out / "lr_schedule.png")
    if scores:
        plot_per_class_ap(scores, out / "per_class_ap.png")
        names = list(scores)
        ap = np.stack([scores[n].average_precision() for n in names], axis=1)
        lines = ["class," + ",".join(names)]
        for name, values in zip(next(iter(scores.values())).class_names, ap):
            lines.append(name + "," + ",".join(f"{v:.6f}" for v in values))
        atomic_write_text(out / "per_class_ap.csv", "\n".join(lines) + "\n")
    return table


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``fat-tf report``."""
    from fat_tf.cli import HelpFormatter, prog

    parser = argparse.ArgumentParser(
        prog=prog("report"),
        description=(
            "Compare run folders written by python -m fat_tf.train. Writes into --out: "
            "runs.csv and runs.md (one row per run: method, the settings in which the runs "
            "differ, final and best validation lwlrap, lwlrap of the scored split and the "
            "model it comes from (scored_model, e.g. 'best checkpoint, step 700'), test "
            "lwlrap from an earlier 'fat_tf.evaluate --split test' (eval-test.csv), "
            "training seconds), learning_curves.png (validation lwlrap and loss per "
            "epoch), lr_schedule.png, and per_class_ap.png / per_class_ap.csv (average "
            "precision per class, which scores each run's model on --split)."
        ),
        epilog="example: python -m fat_tf.report runs/supervised-* runs/mixup-* "
               "--out reports/cmp --split test",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders")
    parser.add_argument("--out", required=True, help="folder the report is written into")
    parser.add_argument("--split", default="validation", choices=["validation", "test"],
                        help="labelled split the models are scored on: the run's held-out "
                             "curated clips, or test/ with test_post_competition.csv labels")
    parser.add_argument("--model", default=rf.DEFAULT_MODEL, choices=list(rf.MODEL_FILES),
                        help="which saved model of each run to score: the final model "
                             "(model.keras, as evaluate, predict and export use) or the best "
                             "validation checkpoint (best.keras); the table names it with "
                             "its step")
    parser.add_argument("--tta", action="store_true",
                        help="score with time-reversal test-time augmentation")
    parser.add_argument("--no-score", dest="score", action="store_false",
                        help="do not load models: table and curves from the run files only, "
                             "no per-class plot")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)

    def run() -> int:
        table = compare_runs(args.run_dirs, args.out, args.split, args.model, args.tta,
                             args.score)
        print(table_markdown(table), end="")
        print(f"report written to {Path(args.out).resolve()}")
        return 0

    from fat_tf.cli import run_cli

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
