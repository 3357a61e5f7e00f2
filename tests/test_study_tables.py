"""The committed ssl_comparison tables are what their committed results.csv gives.

Each table (``experiments/ssl_comparison/{k20,k20_shifted,demo}/results.md``) was merged
from per-run CSVs with ``run.py --table-only --previous``; those per-run files are not
kept, so the committed ``results.csv`` must hold every row and rebuild the same table.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

STUDY = Path(__file__).resolve().parents[1] / "experiments" / "ssl_comparison"


def load_study(monkeypatch):
    """experiments/ssl_comparison/run.py, importing experiments/common.py as its
    ``common`` (not benchmarks/common.py, which other tests leave in sys.modules)."""
    monkeypatch.delitem(sys.modules, "common", raising=False)
    monkeypatch.syspath_prepend(str(STUDY.parent))
    spec = importlib.util.spec_from_file_location("ssl_comparison_run", STUDY / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert Path(module.common.__file__).parent == STUDY.parent
    return module


def table_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith(("| ", "- "))]


@pytest.mark.parametrize("variant", ["k20", "k20_shifted", "demo"])
def test_committed_table_rebuilds_from_its_results_csv(variant, tmp_path, monkeypatch):
    study = load_study(monkeypatch)
    committed = STUDY / variant / "results.csv"
    with open(committed, newline="") as f:
        rows = list(csv.DictReader(f))
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    seeds = sorted({int(row["seed"]) for row in rows})
    # settings in the order of the committed table (the order of --settings)
    order = [line.split(" | ")[0][2:] for line in table_lines(STUDY / variant / "results.md")
             if line.startswith("| ") and not line.startswith(("| setting", "|---"))]
    assert sorted(order) == sorted(settings)
    baselines = {"k20": "experiments/recipe/k20_baselines.json",
                 "k20_shifted": "experiments/ssl_comparison/k20_shifted_baselines.json",
                 "demo": "experiments/ssl_comparison/demo_baselines.json"}
    extra = ["--baselines", str(STUDY.parents[1] / baselines[variant])]
    assert study.main(["--table-only", "--data", str(tmp_path), "--out", str(tmp_path),
                       "--previous", str(committed), "--seeds", *map(str, seeds),
                       "--settings", *order, *extra]) == 0
    assert table_lines(tmp_path / "results.md") == table_lines(STUDY / variant / "results.md")
    assert "rebuilds this table" in (tmp_path / "results.md").read_text()
    with open(tmp_path / "results.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_vs_columns_pair_runs_by_seed_on_the_seeds_both_settings_have(monkeypatch):
    study = load_study(monkeypatch)
    key = "test_lwlrap_final"
    reference = [{"seed": s, key: v} for s, v in [(0, 0.50), (1, 0.60), (2, 0.55), (3, 0.90)]]
    # seeds 0-2 shared; seed 5 has no reference run; the reference's seed 3 (its best) unused
    group = [{"seed": s, key: v} for s, v in [(0, 0.53), (1, 0.61), (2, 0.60), (5, 0.10)]]
    differences = [0.03, 0.01, 0.05]
    error = float(np.std(differences, ddof=1) / np.sqrt(3))
    assert study.paired_difference(group, reference, key) == (
        f"{np.mean(differences):+.3f} ± {error:.3f} (3)")
    assert study.paired_difference(group[:1], reference, key) == "+0.030 (1)"
    assert study.paired_difference(group[3:], reference, key) == ""
    assert study.paired_difference(group, None, key) == ""
