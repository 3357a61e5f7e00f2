"""Trivial reference scores on the test split of a FAT2019-layout folder with test labels.

    python tools/baselines.py DIR [--out results.json] [--seeds 0 1 2] [--cache FILE]

References, each scored on the TEST split with :func:`fat_tf.metrics.lwlrap` and reported
as mean ± std over the seeds:

* ``random``: uniform random scores; per seed the mean lwlrap of 100 draws (chance level).
* ``logreg`` on per-clip log-mel statistics: the mean, standard deviation and maximum over
  time of each mel band of the clip's log-mel, computed by fat_tf's own front end
  (:class:`fat_tf.layers.LogMel` with ``get_preset("small").frontend``: 64 mels, per-clip
  standardised), so 192 numbers per clip. A scikit-learn pipeline (standard scaling, then
  one-vs-rest ``LogisticRegression``) is trained

  - on ``curated`` only: ``C`` and ``class_weight`` (none or balanced) are chosen by
    5-fold cross-validated lwlrap on the curated clips (folds shuffled by the seed);
  - on ``curated + noisy`` (noisy labels as given): the same search, each fold trained on
    the other curated folds plus every noisy clip and scored on its held-out curated fold.

  Test clips are never used to choose anything. When DIR has a devbench ``manifest.json``
  (``tools/build_devbench.py``), the folds are split by source recording (clips that share
  a recording, directly or through a mixture, share a fold): clip-level folds put takes of
  one recording on both sides and choose too weak a regularisation. The solver is
  liblinear (several times faster than lbfgs here, same scores).

Features are cached in an ``.npz`` keyed by each WAV file's sha256 and the front-end
settings (``--cache``; by default ``<out>.features.npz`` beside ``--out``, else under
``$FAT_TF_CACHE`` or ``~/.cache/fat_tf``), so reruns skip the front end. The cache is never
written into DIR. Needs scikit-learn (``pip install -e ".[dev]"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
import wave
from pathlib import Path

import numpy as np

from fat_tf.data.layout import error_line
from fat_tf.data.manifest import FatDataset, load_dataset
from fat_tf.errors import DataError
from fat_tf.metrics import lwlrap
from fat_tf.presets import get_preset

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
CLASS_WEIGHTS = (None, "balanced")
CV_FOLDS = 5
RANDOM_DRAWS = 100
STATS = ("mean", "std", "max")


def frontend_config():
    """The front end whose log-mel the features summarise (the ``small`` preset's)."""
    return get_preset("small").frontend


def read_wav(path: str | os.PathLike) -> np.ndarray:
    """A 16-bit mono WAV as float32 in [-1, 1) (as ``tf.audio.decode_wav`` scales it)."""
    with wave.open(os.fspath(path), "rb") as f:
        data = f.readframes(f.getnframes())
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def make_featurizer(frontend=None):
    """A function ``waveform [samples] -> [3 * n_mels]`` (band means, stds, maxima)."""
    import tensorflow as tf

    from fat_tf.layers import LogMel

    layer = LogMel.from_frontend_config(frontend or frontend_config())

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], reduce_retracing=True)
    def stats(waveform):
        logmel = layer(waveform[None, :])[0]  # [frames, mels]
        return tf.concat(
            [
                tf.reduce_mean(logmel, axis=0),
                tf.math.reduce_std(logmel, axis=0),
                tf.reduce_max(logmel, axis=0),
            ],
            axis=0,
        )

    return lambda x: stats(tf.constant(np.asarray(x, np.float32))).numpy().astype(np.float32)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class FeatureCache:
    """Per-file features in one ``.npz``: keys are file sha256s, valid for one front end."""

    def __init__(self, path: Path, frontend_key: str):
        self.path, self.frontend_key = path, frontend_key
        self.rows: dict[str, np.ndarray] = {}
        self.dirty = False
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["frontend"]) == frontend_key:
                        self.rows = dict(zip(z["keys"].tolist(), z["features"], strict=True))
            except (OSError, KeyError, ValueError):
                self.rows = {}  # unreadable or another format: recompute

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp-{os.getpid()}.npz")
        keys = sorted(self.rows)
        np.savez(
            tmp,
            keys=np.array(keys),
            features=np.stack([self.rows[k] for k in keys]),
            frontend=np.array(self.frontend_key),
        )
        os.replace(tmp, self.path)


def clip_features(paths: list[str], cache: FeatureCache, featurize) -> tuple[np.ndarray, int]:
    """Features of every file, from the cache where possible; returns (features, computed)."""
    out, computed = [], 0
    for path in paths:
        key = _sha256(path)
        row = cache.rows.get(key)
        if row is None:
            row = cache.rows[key] = featurize(read_wav(path))
            cache.dirty = True
            computed += 1
        out.append(row)
    return np.stack(out), computed


# ------------------------------------------------------------------------------ references


def random_reference(y_test: np.ndarray, seed: int, draws: int = RANDOM_DRAWS) -> float:
    """Mean lwlrap of ``draws`` uniform random score matrices."""
    rng = np.random.default_rng(seed)
    return float(np.mean([lwlrap(y_test, rng.random(y_test.shape)) for _ in range(draws)]))


def _model(c: float, class_weight):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        OneVsRestClassifier(
            LogisticRegression(C=c, class_weight=class_weight, solver="liblinear", max_iter=1000)
        ),
    )


def cv_splits(n: int, groups: np.ndarray | None, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, validation)`` index pairs of up to 5 shuffled folds, whole groups per fold."""
    from sklearn.model_selection import KFold

    if groups is None:
        groups = np.arange(n)
    unique = np.unique(groups)
    folds = KFold(min(CV_FOLDS, len(unique)), shuffle=True, random_state=seed)
    out = []
    for _, held in folds.split(unique):
        val = np.isin(groups, unique[held])
        out.append((np.flatnonzero(~val), np.flatnonzero(val)))
    return out


def recording_groups(data_dir: Path, fnames: tuple[str, ...]) -> np.ndarray | None:
    """Group ids of curated clips from a devbench ``manifest.json`` (``None`` without one).

    Clips that share a source recording (``usr_id``), as the main sound or as the
    mixed-in one, are in the same group (connected components).
    """
    try:
        info = json.loads((Path(data_dir) / "manifest.json").read_text(encoding="utf-8"))
        records = {r["fname"]: r for r in info["clips"]["train_curated"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all(f in records for f in fnames):
        return None
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r in records.values():
        if r.get("mix"):
            parent[find(r["usr_id"])] = find(r["mix"]["usr_id"])
    roots = [find(records[f]["usr_id"]) for f in fnames]
    return np.unique(roots, return_inverse=True)[1]


def _fit_score(x_train, y_train, x_eval, y_eval, c, class_weight) -> tuple[float, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # labels absent from a fold, slow convergence
        model = _model(c, class_weight).fit(x_train, y_train.astype(int))
        return lwlrap(y_eval, model.decision_function(x_eval)), model


def logreg_reference(
    x_cur: np.ndarray,
    y_cur: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    seed: int,
    x_extra: np.ndarray | None = None,
    y_extra: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict:
    """Choose C and class_weight by CV on the curated clips, refit, score on test.

    Args:
        x_cur, y_cur: curated features and labels (the CV folds are drawn from these).
        x_test, y_test: test features and labels (scored once, at the end).
        seed: shuffles the CV folds.
        x_extra, y_extra: extra training clips (noisy) added to every fold's training set
            and to the final fit, never scored.
        groups: a group id per curated clip; clips of one group share a fold.
    """
    splits = cv_splits(len(x_cur), groups, seed)
    has_extra = x_extra is not None and len(x_extra)

    def train_set(idx):
        if not has_extra:
            return x_cur[idx], y_cur[idx]
        return np.concatenate([x_cur[idx], x_extra]), np.concatenate([y_cur[idx], y_extra])

    best = None
    for c in C_GRID:
        for cw in CLASS_WEIGHTS:
            scores = [
                _fit_score(*train_set(tr), x_cur[va], y_cur[va], c, cw)[0] for tr, va in splits
            ]
            cv = float(np.mean(scores))
            if best is None or cv > best[0]:
                best = (cv, c, cw)
    cv, c, cw = best
    x_train, y_train = train_set(np.arange(len(x_cur)))
    test, _ = _fit_score(x_train, y_train, x_test, y_test, c, cw)
    return {"test_lwlrap": test, "cv_lwlrap": cv, "C": c, "class_weight": cw or "none"}


# ---------------------------------------------------------------------------------- driver


def _default_cache(out: Path | None) -> Path:
    if out is not None:
        return out.with_name(out.stem + ".features.npz")
    root = Path(os.environ.get("FAT_TF_CACHE") or Path.home() / ".cache" / "fat_tf")
    return root / "baseline_features.npz"


def _mean_std(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}


def run(data_dir: Path, seeds: list[int], cache_path: Path) -> dict:
    """Score every reference on ``data_dir``; returns the results dictionary."""
    started = time.perf_counter()
    dataset: FatDataset = load_dataset(data_dir, check_audio=True)
    if dataset.test.labels is None:
        raise DataError(f"{data_dir}: no test_post_competition.csv, so the test set has no labels")
    frontend = frontend_config()
    frontend_key = json.dumps(dataclasses.asdict(frontend), sort_keys=True) + f"|{STATS}"
    cache = FeatureCache(cache_path, frontend_key)
    featurize = make_featurizer(frontend)
    sets = dataset.sets()
    feats, computed = {}, 0
    t0 = time.perf_counter()
    for name, manifest in sets.items():
        feats[name], n = clip_features(manifest.paths, cache, featurize)
        computed += n
    cache.save()
    t_features = time.perf_counter() - t0

    y = {name: m.labels for name, m in sets.items()}
    groups = recording_groups(data_dir, dataset.curated.fnames)
    results: dict = {}
    t0 = time.perf_counter()
    results["random"] = _mean_std([random_reference(y["test"], s) for s in seeds])
    t_random = time.perf_counter() - t0
    fits = {"logreg_curated": None}
    if "noisy" in sets and len(sets["noisy"]):
        fits["logreg_curated_noisy"] = (feats["noisy"], y["noisy"])
    t_fit = {}
    for name, extra in fits.items():
        t0 = time.perf_counter()
        runs = [
            logreg_reference(
                feats["curated"],
                y["curated"],
                feats["test"],
                y["test"],
                s,
                *(extra or (None, None)),
                groups=groups,
            )
            for s in seeds
        ]
        summary = _mean_std([r["test_lwlrap"] for r in runs])
        summary["chosen"] = [{k: v for k, v in r.items() if k != "test_lwlrap"} for r in runs]
        results[name] = summary
        t_fit[name] = round(time.perf_counter() - t0, 1)

    manifest_hash = None
    manifest_file = Path(data_dir) / "manifest.json"
    if manifest_file.is_file():
        try:
            info = json.loads(manifest_file.read_text(encoding="utf-8"))
            manifest_hash = {k: info.get(k) for k in ("hash", "variant", "seed")}
        except ValueError:
            pass
    return {
        "dataset": os.fspath(data_dir),
        "dataset_manifest": manifest_hash,
        "clips": {name: len(m) for name, m in sets.items()},
        "classes": len(dataset.class_names),
        "seeds": seeds,
        "features": {
            "frontend": dataclasses.asdict(frontend),
            "preset": "small",
            "stats": list(STATS),
            "dim": int(feats["curated"].shape[1]),
            "cache": os.fspath(cache_path),
            "computed": computed,
            "cached": sum(len(m) for m in sets.values()) - computed,
        },
        "search": {
            "C": list(C_GRID),
            "class_weight": ["none", "balanced"],
            "cv_folds": CV_FOLDS,
            "folds_by": "clip" if groups is None else "recording",
            "solver": "liblinear",
        },
        "results": results,
        "seconds": {
            "features": round(t_features, 1),
            "random": round(t_random, 1),
            **t_fit,
            "total": round(time.perf_counter() - started, 1),
        },
    }


ROWS = (
    ("random", "-", "uniform random scores, mean of 100 draws per seed"),
    ("logreg_curated", "curated", "logistic regression on log-mel stats"),
    ("logreg_curated_noisy", "curated + noisy", "logistic regression on log-mel stats"),
)


def markdown_table(report: dict) -> str:
    """The results as a markdown table."""
    clips = report["clips"]
    n = len(report["seeds"])
    lines = [
        f"test lwlrap on {report['dataset']} ({clips.get('test', 0)} test clips, "
        f"{report['classes']} classes), mean ± std over {n} seed(s)",
        "",
        "| reference | trained on | test lwlrap | chosen by CV on training data |",
        "|---|---|---|---|",
    ]
    for key, trained, what in ROWS:
        if key not in report["results"]:
            continue
        r = report["results"][key]
        if key == "random":
            chosen = "-"
        else:
            parts = [
                f"C={c['C']:g} {c['class_weight']} (cv {c['cv_lwlrap']:.3f})" for c in r["chosen"]
            ]
            chosen = "; ".join(parts)
            size = clips["curated"] + (clips.get("noisy", 0) if "noisy" in key else 0)
            trained = f"{trained} ({size} clips)"
        lines.append(f"| {what} | {trained} | {r['mean']:.3f} ± {r['std']:.3f} | {chosen} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status (2 with a one-line error)."""
    parser = argparse.ArgumentParser(
        prog="python tools/baselines.py",
        description="Score trivial references (random; logistic regression on per-clip "
        "log-mel statistics, trained on curated and on curated + noisy) on the test split "
        "of a FAT2019-layout folder that has test_post_competition.csv.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="the dataset folder")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="seeds of the random draws and CV folds (default: 0 1 2)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        help="feature cache (.npz; default: <out>.features.npz beside --out, "
        "else under $FAT_TF_CACHE or ~/.cache/fat_tf)",
    )
    args = parser.parse_args(argv)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print('error: needs scikit-learn: pip install -e ".[dev]"', file=sys.stderr)
        return 2
    cache = args.cache or _default_cache(args.out)
    if cache.resolve().is_relative_to(args.dir.resolve()):
        print(f"error: {cache}: the feature cache may not be inside DIR", file=sys.stderr)
        return 2
    try:
        report = run(args.dir, args.seeds, cache)
    except (DataError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    print(markdown_table(report))
    s = report["seconds"]
    f = report["features"]
    print(
        f"\nfeatures: {f['computed']} computed, {f['cached']} from {f['cache']} "
        f"({s['features']} s); total {s['total']} s"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
