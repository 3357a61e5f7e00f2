"""The benchmark report builder (benchmarks/run_all.py) on canned results, and every
benchmark script's --help. Nothing is benchmarked here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402


def ok(name, data):
    return {"name": name, "status": "ok", "reason": "", "command": f"benchmarks/{name}.py",
            "seconds": 1.0, "data": data}


def frontend_data():
    contenders = {
        "fat_tf tf.function": {"clips_per_s": 1300.0, "vs_librosa_best": 1300 / 700,
                               "gflops_dense": 60.0},
        "fat_tf tf.function(jit_compile=True)": {"clips_per_s": 1750.0,
                                                 "vs_librosa_best": 2.5, "gflops_dense": 80.0},
        "librosa batch (scipy.fft, 1 worker)": {"clips_per_s": 700.0, "vs_librosa_best": 1.0,
                                                "gflops_dense": 30.0},
    }
    return {"config": {"sample_rate": 44100, "pad_mode": "reflect"}, "batch": 32,
            "samples": 88200, "repeats": 3, "librosa_best_clips_per_s": 700.0,
            "max_diff_vs_librosa": {"fat_tf tf.function": 1e-5}, "contenders": contenders}


def method(ours, peer):
    return {"fat_tf": {"median": ours}, "torch": {"median": peer}}


def train_step_data():
    return {"results": {"small": {
        "settings": {"batch": 32, "steps": 3, "repeats": 5},
        "info": {"torch": {"layout": "nchw"}},
        "methods": {"supervised": method(150.0, 100.0), "vat": method(30.0, 20.0),
                    "meanteacher": method(50.0, 40.0)},
    }}}


def pipeline_data():
    def run(method, variant, ratio, rate):
        return {"preset": "small", "method": method, "variant": variant,
                "unlabelled_ratio": ratio, "clips_per_s": rate,
                "epochs": [{"clips_per_s": rate / 2}, {"clips_per_s": rate}]}

    return {"machine": "2 CPU cores",
            "pipeline": [run("supervised", "none", 0, 600.0),
                         run("supervised", "memory", 0, 2000.0),
                         run("meanteacher", "none", 1, 200.0)],
            "train_step": [{"preset": "small", "method": "supervised", "features": False,
                            "clips_per_s": 150.0},
                           {"preset": "small", "method": "meanteacher", "features": False,
                            "clips_per_s": 80.0}]}


def memory_data():
    return {"pipeline": [{"clips": 500, "clips_per_s": 600.0, "rss_before_mb": 700.0,
                          "peak_rss_mb": 800.0},
                         {"clips": 5000, "clips_per_s": 900.0, "rss_before_mb": 700.0,
                          "peak_rss_mb": 840.0}],
            "train_step": {"clips_per_s": 150.0, "batch": 32}}


def inference_data():
    return {"preset": "small", "clips": 2, "clip_seconds": 4.0, "windows_per_clip": 4,
            "batch": 2, "tflite_threads": 2,
            "contenders": {"TFLite float32": {"clips_per_s": 20.0, "real_time_factor": 80.0,
                                              "cpu_ms_per_clip": 45.0}}}


def outcomes():
    return {"frontend": ok("frontend", frontend_data()),
            "train_step": ok("train_step", train_step_data()),
            "pipeline": ok("pipeline", pipeline_data()),
            "inference": ok("inference", inference_data()),
            "memory": ok("memory", memory_data())}


def test_target_rows_ratios_and_verdicts():
    rows = {r["what"]: r for r in run_all.target_rows(outcomes())}
    front = rows["Front end (tf.function) vs librosa's fastest mode"]
    assert front["ratio"] == pytest.approx(1300 / 700) and front["met"] is False
    assert rows["Front end (XLA) vs librosa's fastest mode"]["met"] is True
    sup = rows["Train step, small (batch 32), supervised"]
    assert sup["ratio"] == pytest.approx(1.5) and sup["met"] is True
    assert rows["Train step, small (batch 32), meanteacher"]["met"] is True  # 1.25x
    vat = rows["Step cost vs supervised, small, vat"]  # 5.0x vs 5.0x: no worse
    assert vat["measured"] == "5.00x" and vat["ratio"] == pytest.approx(1.0) and vat["met"]
    mt = rows["Step cost vs supervised, small, meanteacher"]  # 3.0x vs 2.5x
    assert mt["ratio"] == pytest.approx(1.2) and mt["met"] is False
    assert "Step cost vs supervised, small, mixmatch" not in rows  # not measured: no row
    pipe = [r for r in rows.values() if r["what"].startswith("Input pipeline vs train step")]
    assert [round(r["ratio"], 2) for r in pipe] == [4.0, 2.5]  # cached variant: detail only
    assert [r["met"] for r in pipe] == [True, False]
    rss = next(r for r in rows.values() if r["what"].startswith("Peak RSS"))
    assert rss["ratio"] == pytest.approx(1.05) and rss["met"] is True


def test_skipped_and_failed_benchmarks_are_reported_not_fatal():
    results = outcomes()
    del results["train_step"]
    results["frontend"] = {**results["frontend"], "status": "skipped", "data": None,
                           "reason": "librosa not installed (needed for the peer)"}
    rows = run_all.target_rows(results)
    assert rows[0]["met"] is None and "librosa not installed" in rows[0]["measured"]
    assert rows[1]["met"] is None and "--skip" in rows[1]["measured"]
    machine = {"cpu": "Test CPU", "cores": 2, "usable_cores": 2, "ram_gib": 8.0,
               "python": "3.12", "versions": {"tensorflow": "2.21.0"},
               "date": "2026-01-01 00:00 UTC", "load_before": (1.0, 1.0, 1.0),
               "load_after": (2.0, 1.5, 1.0)}
    text = run_all.render_report(machine, "python benchmarks/run_all.py --quick", 90.0,
                                 results, quick=True)
    assert "Test CPU, 2 cores" in text and "`python benchmarks/run_all.py --quick`" in text
    assert "| Train step vs the PyTorch peer; SSL step cost | skipped (--skip) |" in text
    assert "| not measured |" in text
    assert "| Input pipeline vs train step, small, labelled (supervised) | 600 clips/s | " \
           "150.0 clips/s (train step) | 4.00x | >= 3x | met |" in text
    assert "| TFLite float32 | 20.00 | 80.0 | 45.0 |" in text
    assert "Total wall time: 1.5 min" in text


def test_every_script_has_help():
    scripts = [p for p in sorted(BENCH.glob("*.py")) if "__main__" in p.read_text()]
    assert {p.stem for p in scripts} >= {"frontend", "train_step", "pipeline", "inference",
                                         "memory", "run_all"}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, str(p), "--help"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for p in scripts]
    for script, proc in zip(scripts, procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{script.name} --help failed:\n{err[-2000:]}"
        assert "usage:" in out
