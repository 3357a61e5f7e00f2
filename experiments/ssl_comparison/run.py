"""Every way of using the noisy set, at the same optimiser-step budget, several seeds.

Settings (all with every curated training clip labelled, default hyperparameters unless
named):

* the defaults of each method (``data.noisy_usage=auto``: noisy labels at
  ``method.noisy_label_weight`` 0.3, and for VAT, mean teacher and MixMatch the noisy
  audio as their unlabelled stream as well);
* curated only: ``supervised`` and ``mixup`` with ``data.noisy_usage=none``;
* noisy clips as labelled data: ``supervised`` with their labels at weight 1, at
  ``method.noisy_label_weight`` 0.3, and with curated-only fine-tuning over the last 30%
  of the run (``method.noisy_label_until=0.7``);
* noisy clips as unlabelled audio: ``vat``, ``meanteacher``, ``mixmatch``,
  ``pseudolabel``, and mean teacher with views that differ (time shift and SpecAugment
  masks on top of the flip);
* the default supervised run with the noisy targets soft-bootstrapped
  (``method.noisy_bootstrap=0.8``).

Every run takes the default budget (``train.steps``) unless ``--steps`` is given. Scores:
whole-clip test lwlrap of the final model (what ``evaluate``, ``predict`` and ``export``
use by default since the checkpoint_selection study) and of the best-validation
checkpoint, beside the trivial references of ``tools/baselines.py``
(``--baselines``). Settings are to be chosen on validation; test is reported.

Each run is one folder in ``experiments/runs/`` named by its settings and the code
version; rerunning skips finished runs and resumes unfinished ones, so the study can be
stopped and continued (seeds are the outer loop, so a partial study is balanced).
Writes ``results.csv``, ``results.md`` and ``ssl_comparison.png`` into ``--out``.

Usage::

    python experiments/ssl_comparison/run.py --data DEVBENCH --out experiments/ssl_comparison/k20 \\
        --baselines DEVBENCH_baselines.json --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

from fat_tf.inference.loaded import MODEL_NAMES  # noqa: E402
from fat_tf.run_folder import DEFAULT_MODEL, MODEL_FILES  # noqa: E402

HERE = Path(__file__).resolve().parent

#: Augmentation that makes two views of a clip differ (time shift, SpecAugment masks).
STRONG_VIEWS = ["augment.time_shift_frames=32", "augment.time_masks=2", "augment.freq_masks=2"]

#: name -> (method, settings). One home for the study's list of settings. The "default"
#: settings take every default (data.noisy_usage=auto: noisy labels at
#: method.noisy_label_weight, and for the semi-supervised methods the noisy audio too).
SETTINGS = {
    "supervised (default: + noisy labels x0.3)": ("supervised", []),
    "vat (default: + noisy labels x0.3 and audio)": ("vat", []),
    "meanteacher (default: + noisy labels x0.3 and audio)": ("meanteacher", []),
    "mixmatch (default: + noisy labels x0.3 and audio)": ("mixmatch", []),
    "pseudolabel (default: + noisy labels x0.3 and audio)": ("pseudolabel", []),
    "mixup (default: + noisy labels x0.3)": ("mixup", []),
    "supervised (default), noisy labels soft-bootstrapped 0.8": (
        "supervised", ["method.noisy_bootstrap=0.8"]),
    "vat, BatchNorm statistics shared with unlabelled clips": (
        "vat", ["method.batchnorm_statistics=all"]),
    "meanteacher, BatchNorm statistics shared with unlabelled clips": (
        "meanteacher", ["method.batchnorm_statistics=all"]),
    "mixmatch, BatchNorm statistics shared with unlabelled clips, last step's weights": (
        "mixmatch", ["method.batchnorm_statistics=all", "method.evaluation_ema=false"]),
    "pseudolabel, negatives at 0.05, BatchNorm statistics shared with unlabelled clips": (
        "pseudolabel", ["method.batchnorm_statistics=all", "method.pseudo_label_negative=0.05"]),
    # pseudo-labelling with UPS's negative pseudo-labels (the default before commit
    # 6e449b2) and the fixes tried for it on the shifted variant (see README)
    "pseudolabel, negative pseudo-labels at 0.05 (the old default)": (
        "pseudolabel", ["method.pseudo_label_negative=0.05"]),
    "pseudolabel, negatives at 0.05, positive threshold 0.95": (
        "pseudolabel", ["method.pseudo_label_negative=0.05", "method.pseudo_label_positive=0.95"]),
    "pseudolabel, negatives at 0.05, weight 0.3": (
        "pseudolabel", ["method.pseudo_label_negative=0.05", "method.pseudo_label_weight=0.3"]),
    "pseudolabel, negatives at 0.05, EMA teacher guesses": (
        "pseudolabel", ["method.pseudo_label_negative=0.05", "method.pseudo_label_teacher=true"]),
    "vat (default), eps 8": ("vat", ["method.vat_eps=8"]),
    "supervised (default), evaluation EMA": ("supervised", ["method.evaluation_ema=true"]),
    "vat (default), evaluation EMA": ("vat", ["method.evaluation_ema=true"]),
    # MixMatch evaluated on the last step's weights: the default until
    # method.evaluation_ema became auto, which averages them for MixMatch (see README)
    "mixmatch, evaluated on the last step's weights (the old default)": (
        "mixmatch", ["method.evaluation_ema=false"]),
    "mixmatch (default), unlabelled weight 3": ("mixmatch", ["method.mixmatch_weight=3"]),
    "mixmatch (default), alpha 0.75": ("mixmatch", ["method.mixmatch_alpha=0.75"]),
    "meanteacher (default), consistency weight 1, distinct views": (
        "meanteacher", ["method.consistency_weight=1", *STRONG_VIEWS]),
    "mixmatch (default), distinct views": ("mixmatch", STRONG_VIEWS),
    "meanteacher (default), consistency weight 3": (
        "meanteacher", ["method.consistency_weight=3"]),
    "supervised (default), time shift and SpecAugment": ("supervised", STRONG_VIEWS),
    "mixmatch (default), guesses from the EMA teacher": (
        "mixmatch", ["method.mixmatch_teacher=true"]),
    "mixmatch (default), no sharpening (temperature 1)": (
        "mixmatch", ["method.mixmatch_temperature=1"]),
    "supervised, curated only": ("supervised", ["data.noisy_usage=none"]),
    "mixup, curated only": ("mixup", ["data.noisy_usage=none"]),
    "supervised + noisy labels": ("supervised", ["data.noisy_usage=labelled",
                                                 "method.noisy_label_weight=1"]),
    "supervised + noisy labels x0.3": (
        "supervised", ["data.noisy_usage=labelled", "method.noisy_label_weight=0.3"]),
    "supervised + noisy labels, curated fine-tune": (
        "supervised", ["data.noisy_usage=labelled", "method.noisy_label_weight=1",
                       "method.noisy_label_until=0.7"]),
    "vat + noisy audio": ("vat", ["data.noisy_usage=unlabelled"]),
    "meanteacher + noisy audio": ("meanteacher", ["data.noisy_usage=unlabelled"]),
    "mixmatch + noisy audio": ("mixmatch", ["data.noisy_usage=unlabelled",
                                            "method.evaluation_ema=false"]),
    "meanteacher + noisy audio, distinct views": (
        "meanteacher", ["data.noisy_usage=unlabelled", *STRONG_VIEWS]),
}


#: Names of the default supervised run (noisy labels at 0.3): the first is the default
#: itself, the second the same settings named explicitly (equal since commit 27a9d98).
DEFAULT_SUPERVISED = ("supervised (default: + noisy labels x0.3)",
                      "supervised + noisy labels x0.3")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the study."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: demo dataset)")
    parser.add_argument("--out", default=str(HERE), help="where results are written")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS),
                        choices=list(SETTINGS), metavar="NAME",
                        help="settings to run (default: all): " + "; ".join(SETTINGS))
    parser.add_argument("--steps", type=int, default=None,
                        help="train.steps of every run (default: the preset's)")
    parser.add_argument("--baselines", default=None,
                        help="JSON written by tools/baselines.py for the same dataset")
    parser.add_argument("--previous", nargs="+", default=[], metavar="CSV",
                        help="results.csv files of earlier invocations (possibly another "
                             "code version, named in their 'code' column): their runs are "
                             "kept for the (setting, seed) pairs they hold instead of "
                             "training them again")
    parser.add_argument("--save-validation-predictions", action="store_true",
                        help="set train.save_validation_predictions in every run (for "
                             "experiments/checkpoint_selection; changes the run folders)")
    parser.add_argument("--table-only", action="store_true",
                        help="train nothing: tabulate the --previous runs of the chosen "
                             "settings and seeds")
    return parser


def previous_rows(paths: list[str]) -> dict[tuple[str, int], dict]:
    """Rows of earlier ``results.csv`` files by ``(setting, seed)`` (later files win).

    Args:
        paths: the CSV files.
    """
    import csv

    rows = {}
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                row = {k: _number(v) for k, v in row.items()}
                row.setdefault("code", "unknown")
                rows[(row["setting"], int(row["seed"]))] = row
    return rows


def _number(text: str):
    """A CSV cell as int or float where it is one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out, data_dir, command, started = common.start_study(args, "ssl_comparison/run.py", argv)
    budget = [f"train.steps={args.steps}"] if args.steps else []
    if args.save_validation_predictions:
        budget.append("train.save_validation_predictions=true")
    earlier = previous_rows(args.previous)
    rows = []
    for seed in args.seeds:
        for name in args.settings:
            if (name, seed) in earlier:
                rows.append(earlier[(name, seed)])
                continue
            if args.table_only:
                continue
            method, settings = SETTINGS[name]
            common.timed(f"{name}, seed {seed}")
            run_dir = common.train_run(method, seed, None, sorted(settings + budget), data_dir)
            rows.append({"setting": name, "method": method, "seed": seed,
                         **common.scored_run(run_dir), "code": common.CODE})
            write(out, rows, args, command, started)
    write(out, rows, args, command, started)
    return 0


def write(out: Path, rows: list[dict], args, command: str, started: float) -> None:
    """Table and plot of the runs so far. The 'vs' columns and the plot use the saved
    model that evaluate, predict and export use by default (``DEFAULT_MODEL``)."""
    baselines = json.loads(Path(args.baselines).read_text()) if args.baselines else None
    groups = _groups(rows)
    shown, other = DEFAULT_MODEL, next(m for m in MODEL_FILES if m != DEFAULT_MODEL)
    curated = groups.get("supervised, curated only")
    default = next((groups[n] for n in DEFAULT_SUPERVISED if n in groups), None)
    key = f"test_lwlrap_{shown}"

    lines = [f"| setting | steps | seeds | val lwlrap (best) | val lwlrap ({MODEL_NAMES[shown]}) | "
             f"test lwlrap ({MODEL_NAMES[shown]}, the default) | vs curated only | "
             f"vs supervised default | test lwlrap ({MODEL_NAMES[other]}) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, group in groups.items():
        lines.append(
            f"| {name} | {group[0]['total_steps']} | {len(group)} | "
            f"{common.mean_std(r['val_lwlrap_best'] for r in group)} | "
            f"{common.mean_std(r[f'val_lwlrap_{shown}'] for r in group)} | "
            f"{common.mean_std(r[key] for r in group)} | "
            f"{paired_difference(group, curated, key)} | "
            f"{paired_difference(group, default, key)} | "
            f"{common.mean_std(r[f'test_lwlrap_{other}'] for r in group)} |")
    if baselines:
        lines += ["", "References on the test set (tools/baselines.py):", ""]
        lines += [f"- {k}: {v}" for k, v in common.reference_scores(baselines).items()]
    codes = sorted({str(r.get("code", "unknown")) for r in rows})
    notes = ("Small preset, labelled batch 32 (+ 32 unlabelled clips for VAT, mean teacher "
             "and MixMatch), default hyperparameters; mean ± std over seeds; the 'vs' "
             "columns compare test lwlrap with supervised on curated clips only and with "
             "supervised's default (noisy labels x0.3), paired by seed on the seeds both "
             "rows have: mean difference ± its standard error (number of shared seeds). "
             "Runs from code: "
             + ", ".join(codes) + ".")
    if args.previous:
        notes += (" Rows were merged from the results.csv files after --previous (per-run "
                  "outputs, not kept); every row is in this folder's results.csv, so "
                  "`run.py --table-only --previous <this results.csv>` with the same "
                  "--settings and --seeds rebuilds this table, and `run.py --data "
                  "<benchmark> --steps <steps> --seeds <seed> --settings <setting>` "
                  "retrains one row.")
    common.write_results(out, rows, "\n".join(lines) + "\n", command, started, notes)
    plot(out / "ssl_comparison.png", groups, baselines, shown)


def paired_difference(group: list[dict], reference: list[dict] | None, key: str) -> str:
    """Mean difference of ``key`` between two settings' runs, paired by seed.

    Only seeds that both settings ran count, so a row with fewer seeds is compared on
    those seeds alone instead of against the reference's mean over other seeds.

    Args:
        group: one setting's runs (dicts with ``seed`` and ``key``).
        reference: the reference setting's runs, or ``None`` (then ``""``).
        key: the score compared, e.g. ``test_lwlrap_final``.

    Returns:
        ``"+0.026 ± 0.006 (5)"``: the mean per-seed difference, the standard error of
        that mean (sample std / sqrt(n); left out for one seed) and the number of shared
        seeds; ``""`` when there is no reference or no shared seed.
    """
    if reference is None:
        return ""
    differences = common.paired_differences(group, reference, key)
    if differences.size == 0:
        return ""
    if differences.size == 1:
        return f"{differences[0]:+.3f} (1)"
    error = differences.std(ddof=1) / np.sqrt(differences.size)
    return f"{differences.mean():+.3f} ± {error:.3f} ({differences.size})"


def _groups(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["setting"], []).append(r)
    return groups


def plot(path: Path, groups: dict[str, list[dict]], baselines: dict | None,
         model: str) -> None:
    """Test lwlrap of one saved model (``best`` or ``final``) per setting, mean ± std
    over seeds."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = list(groups)
    values = [np.array([r[f"test_lwlrap_{model}"] for r in groups[n]]) for n in names]
    ax.barh(names, [v.mean() for v in values], capsize=3,
            xerr=[v.std(ddof=1) if len(v) > 1 else 0.0 for v in values])
    if baselines:
        for i, (name, text) in enumerate(common.reference_scores(baselines).items()):
            ax.axvline(float(text.split(" ± ")[0]), color=f"C{i + 1}", linestyle=":",
                       label=name)
        ax.legend(fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=f"test lwlrap ({MODEL_NAMES[model]})", xlim=(0, 1),
           title="ways of using the noisy set, same step budget")
    fig.tight_layout()
    common.save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
