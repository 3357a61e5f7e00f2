"""Run every benchmark and write one Markdown report of the speed targets.

Each benchmark script runs as its own subprocess, one after the other, with ``--json`` to
a temporary file: ``frontend.py`` (log-mel front end vs librosa), ``train_step.py`` (train
step per method vs the PyTorch peer, both presets), ``pipeline.py`` (input pipeline vs
train step), ``inference.py`` (exported formats) and ``memory.py`` (pipeline memory at
10x the data). Every ratio in the report compares figures measured in this same run.

The report (``--out``, default ``benchmarks/RESULTS.md``, written atomically) has the
machine (CPU model, cores, RAM, load average before and after, library versions, date),
the exact command, the total wall time, one table with a row per target (measured value,
the peer's value, their ratio, the target, met or missed), then a detail table per
benchmark. A benchmark whose peer library (librosa, PyTorch) is not installed, or that
fails, is reported as such instead of stopping the run.

Targets (issue 10; benchmarks, not timed tests):

* front end >= 2x librosa's fastest warmed-up mode (clips/s);
* train step >= 1.2x the PyTorch peer's clips/s, per preset and method;
* each semi-supervised method's step cost relative to supervised no worse than the
  peer's (same preset);
* input pipeline >= 3x the train step's clips/s, small preset, on CPU;
* (memory.py's own) peak RSS at 10x the data within 10 %, and pipeline >= 3x train step.

Run the full set when the machine is quiet (~25-35 min on a 2-core CPU):
    ``.venv/bin/python benchmarks/run_all.py``
Smoke run (small sizes, ~2-4 min; the figures are only indicative):
    ``.venv/bin/python benchmarks/run_all.py --quick --out /tmp/RESULTS.md``
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import cpu_model, memory_gib  # noqa: E402
from pipeline import ratio_rows  # noqa: E402
from pipeline import render as render_pipeline  # noqa: E402
from train_step import SSL_METHODS  # noqa: E402  (the methods whose step cost is compared)

# name: (script, needs, full arguments, --quick arguments)
BENCHMARKS = {
    "frontend": ("frontend.py", ("librosa",), ["--batch", "32", "--repeats", "15"],
                 ["--batch", "8", "--repeats", "3"]),
    "train_step": ("train_step.py", ("torch",), [], ["--quick"]),
    "pipeline": ("pipeline.py", (), [], ["--quick", "--variants", "none"]),
    "inference": ("inference.py", (), ["--repeats", "5"],
                  ["--clips", "2", "--batch", "2", "--repeats", "1", "--clip-seconds", "4"]),
    "memory": ("memory.py", (), [], ["--sizes", "100,300", "--train-steps", "2",
                                     "--warmup", "1"]),
}
VERSIONED = ("tensorflow", "keras", "torch", "librosa", "numpy")


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options.

    Args:
        argv: argument list (``None`` = ``sys.argv``).

    Returns:
        The parsed options.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes for a smoke test (~2-4 min); figures are indicative only")
    p.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"),
                   help="the Markdown report (default: benchmarks/RESULTS.md)")
    p.add_argument("--skip", action="append", default=[], metavar="NAME",
                   help=f"leave out a benchmark ({', '.join(BENCHMARKS)}); repeat or "
                        "comma-separate")
    p.add_argument("--json-dir", default=None,
                   help="keep each benchmark's JSON and output here (default: discarded)")
    args = p.parse_args(argv)
    args.skip_set = {s.strip() for item in args.skip for s in item.split(",") if s.strip()}
    unknown = args.skip_set - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return args


# ============================================================================ running
def missing_modules(needs: tuple[str, ...]) -> list[str]:
    """The modules of ``needs`` that cannot be imported here.

    Args:
        needs: module names.
    """
    return [m for m in needs if importlib.util.find_spec(m) is None]


def run_benchmark(name: str, quick: bool, folder: str) -> dict:
    """Run one benchmark script as a subprocess with ``--json``.

    Args:
        name: a key of :data:`BENCHMARKS`.
        quick: use the ``--quick`` arguments.
        folder: where its JSON and output go.

    Returns:
        ``{"name", "status": ok|failed|skipped, "reason", "command", "seconds", "data"}``.
    """
    script, needs, full, small = BENCHMARKS[name]
    args = small if quick else full
    command = ["benchmarks/" + script, *args]
    outcome = {"name": name, "command": " ".join(shlex.quote(a) for a in command),
               "seconds": 0.0, "data": None, "reason": ""}
    missing = missing_modules(needs)
    if missing:
        return {**outcome, "status": "skipped",
                "reason": f"{', '.join(missing)} not installed (needed for the peer)"}
    json_path = os.path.join(folder, f"{name}.json")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with open(os.path.join(folder, f"{name}.log"), "w", encoding="utf-8") as log:
        done = subprocess.run([sys.executable, os.path.join(HERE, script), *args,
                               "--json", json_path], stdout=log, stderr=subprocess.STDOUT,
                              env=env, cwd=os.path.dirname(HERE))
    outcome["seconds"] = time.perf_counter() - started
    if done.returncode != 0 or not os.path.exists(json_path):
        with open(os.path.join(folder, f"{name}.log"), encoding="utf-8") as f:
            tail = [line.rstrip() for line in f.readlines()[-15:] if line.strip()]
        return {**outcome, "status": "failed",
                "reason": f"exit code {done.returncode}: " + (tail[-1] if tail else "no output"),
                "log_tail": tail}
    with open(json_path, encoding="utf-8") as f:
        outcome["data"] = json.load(f)
    return {**outcome, "status": "ok"}


def describe_machine() -> dict:
    """CPU model, cores, RAM, load average, library versions and the date (UTC)."""
    versions = {}
    for module in VERSIONED:
        try:
            versions[module] = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            versions[module] = "not installed"
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)), "ram_gib": memory_gib(),
        "python": sys.version.split()[0], "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ============================================================================ targets
def _row(what: str, measured: str, peer: str, ratio: float | None, target: str,
         met: bool | None) -> dict:
    """One row of the target table (``met`` None = not measured)."""
    return {"what": what, "measured": measured, "peer": peer, "ratio": ratio,
            "target": target, "met": met}


def _not_measured(what: str, target: str, outcome: dict | None) -> dict:
    """A target row for a benchmark that was skipped or failed."""
    why = "skipped (--skip)" if outcome is None else f"{outcome['status']}: {outcome['reason']}"
    return {**_row(what, why, "-", None, target, None), "note": why}


def frontend_rows(data: dict) -> list[dict]:
    """Front end vs librosa's fastest mode, one row per fat_tf contender.

    Args:
        data: ``frontend.py --json`` output.
    """
    rows = []
    lib = data.get("librosa_best_clips_per_s")
    for name, c in data["contenders"].items():
        if not name.startswith("fat_tf"):
            continue
        mode = "XLA" if "jit_compile" in name else "tf.function"
        ratio = c["clips_per_s"] / lib if lib else None
        rows.append(_row(f"Front end ({mode}) vs librosa's fastest mode",
                         f"{c['clips_per_s']:.0f} clips/s",
                         f"{lib:.0f} clips/s" if lib else "-", ratio, ">= 2x",
                         None if ratio is None else ratio >= 2.0))
    return rows


def train_step_rows(data: dict) -> list[dict]:
    """Train step vs the PyTorch peer (per preset and method) and SSL cost vs supervised.

    Args:
        data: ``train_step.py --json`` output.
    """
    rows, costs = [], []
    for preset, res in data["results"].items():
        methods = res["methods"]
        batch = res["settings"]["batch"]
        for method, entry in methods.items():
            ours, peer = entry["fat_tf"]["median"], entry["torch"]["median"]
            rows.append(_row(f"Train step, {preset} (batch {batch}), {method}",
                             f"{ours:.1f} clips/s", f"{peer:.1f} clips/s", ours / peer,
                             ">= 1.2x", ours / peer >= 1.2))
        sup = methods.get("supervised")
        for method in SSL_METHODS:
            if sup is None or method not in methods:
                continue
            ours = sup["fat_tf"]["median"] / methods[method]["fat_tf"]["median"]
            peer = sup["torch"]["median"] / methods[method]["torch"]["median"]
            costs.append(_row(f"Step cost vs supervised, {preset}, {method}",
                              f"{ours:.2f}x", f"{peer:.2f}x", ours / peer,
                              "<= 1 (no worse than the peer)", ours <= peer))
    return rows + costs


def pipeline_rows(data: dict) -> list[dict]:
    """Pipeline vs train step for the small preset's default streams (no cache option).

    Args:
        data: ``pipeline.py --json`` output.
    """
    rows = []
    for r in ratio_rows(data):
        if r["target"] is None or r["variant"] != "none" or r["ratio"] is None:
            continue
        rows.append(_row(f"Input pipeline vs train step, {r['preset']}, {r['stream']} "
                         f"({r['method']})", f"{r['pipeline']:.0f} clips/s",
                         f"{r['train_step']:.1f} clips/s (train step)", r["ratio"],
                         f">= {r['target']:g}x", r["ratio"] >= r["target"]))
    return rows


def memory_rows(data: dict) -> list[dict]:
    """memory.py's targets: peak RSS across sizes and pipeline vs train step.

    Args:
        data: ``memory.py --json`` output.
    """
    runs, step = data["pipeline"], data["train_step"]
    first, last = runs[0], runs[-1]
    growth = last["peak_rss_mb"] / first["peak_rss_mb"] - 1
    slowest = min(r["clips_per_s"] for r in runs)
    return [
        _row(f"Peak RSS of a pipeline epoch, {last['clips']:,} vs {first['clips']:,} clips",
             f"{last['peak_rss_mb']:.0f} MiB", f"{first['peak_rss_mb']:.0f} MiB",
             1 + growth, "<= 1.10x", abs(growth) <= 0.10),
        _row("Input pipeline (labelled, small) vs train step, memory.py's clips",
             f"{slowest:.0f} clips/s", f"{step['clips_per_s']:.1f} clips/s (train step)",
             slowest / step["clips_per_s"], ">= 3x", slowest / step["clips_per_s"] >= 3),
    ]


TARGET_ROWS = {
    "frontend": (frontend_rows, "Front end vs librosa", ">= 2x"),
    "train_step": (train_step_rows, "Train step vs the PyTorch peer; SSL step cost",
                   ">= 1.2x; cost <= peer's"),
    "pipeline": (pipeline_rows, "Input pipeline vs train step (small preset)", ">= 3x"),
    "memory": (memory_rows, "Pipeline memory at 10x the data", "<= 1.10x"),
}


def target_rows(outcomes: dict) -> list[dict]:
    """Every target row, in :data:`TARGET_ROWS` order.

    Args:
        outcomes: benchmark name -> :func:`run_benchmark` result (absent = skipped).
    """
    rows = []
    for name, (build, what, target) in TARGET_ROWS.items():
        outcome = outcomes.get(name)
        if outcome is None or outcome["status"] != "ok":
            rows.append(_not_measured(what, target, outcome))
        else:
            rows.extend(build(outcome["data"]))
    return rows


# ============================================================================ details
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def frontend_detail(data: dict) -> list[str]:
    """Every front-end contender.

    Args:
        data: ``frontend.py --json`` output.
    """
    lib = data.get("librosa_best_clips_per_s")
    rows = [[name, f"{c['clips_per_s']:.1f}",
             f"{c['vs_librosa_best']:.2f}x" if c.get("vs_librosa_best") else "-",
             f"{c['gflops_dense']:.1f}",
             f"{data['max_diff_vs_librosa'][name]:.1e}"
             if name in data.get("max_diff_vs_librosa", {}) else "-"]
            for name, c in data["contenders"].items()]
    seconds = data["samples"] / data["config"]["sample_rate"]
    return [f"Batch {data['batch']} clips of {seconds:.2f} s, pad mode "
            f"{data['config']['pad_mode']}, best of {data['repeats']} interleaved rounds; "
            f"librosa's fastest: {lib:.1f} clips/s." if lib else "librosa not timed.", "",
            *_table(["contender", "clips/s", "vs librosa's fastest", "GFLOP/s (dense)",
                     "max abs diff vs librosa"], rows)]


def train_step_detail(data: dict) -> list[str]:
    """Per preset and method: both frameworks' clips/s, ratio and cost vs supervised.

    Args:
        data: ``train_step.py --json`` output.
    """
    lines = []
    for preset, res in data["results"].items():
        s, methods = res["settings"], res["methods"]
        sup = methods.get("supervised")
        rows = []
        for method, e in methods.items():
            ours, peer = e["fat_tf"], e["torch"]
            rows.append([method, f"{ours['median']:.1f}", f"{peer['median']:.1f}",
                         f"{ours['median'] / peer['median']:.2f}x",
                         f"{sup['fat_tf']['median'] / ours['median']:.2f}x" if sup else "-",
                         f"{sup['torch']['median'] / peer['median']:.2f}x" if sup else "-"])
        layout = res["info"].get("torch", {}).get("layout", "?")
        lines += [f"Preset `{preset}`: batch {s['batch']}, median of {s['repeats']} runs of "
                  f"{s['steps']} step(s); peer activations {layout}.", "",
                  *_table(["method", "fat_tf clips/s", "torch clips/s", "fat_tf / torch",
                           "fat_tf cost", "torch cost"], rows), ""]
    return lines[:-1]


def memory_detail(data: dict) -> list[str]:
    """Pipeline epoch per dataset size: clips/s, ratio to the train step, peak RSS.

    Args:
        data: ``memory.py --json`` output.
    """
    step, base = data["train_step"], data["pipeline"][0]["peak_rss_mb"]
    rows = [[f"{r['clips']:,}", f"{r['clips_per_s']:.0f}",
             f"{r['clips_per_s'] / step['clips_per_s']:.1f}x", f"{r['rss_before_mb']:.0f}",
             f"{r['peak_rss_mb']:.0f}", f"{100 * (r['peak_rss_mb'] / base - 1):+.1f}%"]
            for r in data["pipeline"]]
    return [f"Labelled stream, small preset; train step {step['clips_per_s']:.1f} clips/s "
            f"(supervised, batch {step['batch']}).", "",
            *_table(["clips", "pipeline clips/s", "x train step", "RSS before (MiB)",
                     "peak RSS (MiB)", "peak vs first"], rows)]


def inference_detail(data: dict) -> list[str]:
    """Clips/s of every exported format.

    Args:
        data: ``inference.py --json`` output.
    """
    rows = [[name, f"{c['clips_per_s']:.2f}", f"{c['real_time_factor']:.1f}",
             f"{c['cpu_ms_per_clip']:.1f}"] for name, c in data["contenders"].items()]
    return [f"Preset {data['preset']}, {data['clips']} clips of {data['clip_seconds']:g} s "
            f"({data['windows_per_clip']} windows each), {data['batch']} clips per call, "
            f"TFLite threads {data['tflite_threads']}.", "",
            *_table(["format", "clips/s", "x real time", "CPU ms/clip"], rows)]


DETAILS = {
    "frontend": ("Front end vs librosa", frontend_detail),
    "train_step": ("Train step vs the PyTorch peer", train_step_detail),
    "pipeline": ("Input pipeline vs train step",
                 lambda data: render_pipeline(data).splitlines()[2:]),
    "inference": ("Inference of the exported formats", inference_detail),
    "memory": ("Input pipeline memory", memory_detail),
}


# ============================================================================ report
def _fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _fmt_met(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "**missed**"


def render_report(machine: dict, command: str, seconds: float, outcomes: dict,
                  quick: bool = False) -> str:
    """The whole Markdown report.

    Args:
        machine: :func:`describe_machine`, plus ``load_before`` and ``load_after``
            (1, 5, 15 min load averages).
        command: the command line that produced it.
        seconds: total wall time.
        outcomes: benchmark name -> :func:`run_benchmark` result (absent = skipped).
        quick: whether this was a ``--quick`` smoke run.

    Returns:
        Markdown text.
    """
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    load = {k: ", ".join(f"{x:.2f}" for x in machine[k]) for k in ("load_before", "load_after")}
    lines = ["# fat_tf benchmark results", ""]
    if quick:
        lines += ["**Smoke run (`--quick`): small sizes, figures are indicative only.**", ""]
    lines += [
        f"- Date: {machine['date']}",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} "
        f"usable), {machine['ram_gib']:.1f} GiB RAM, Python {machine['python']}",
        f"- Libraries: {versions}",
        f"- Load average (1, 5, 15 min): {load['load_before']} before, {load['load_after']} "
        "after (other work on the machine slows every contender)",
        f"- Command: `{command}`",
        f"- Total wall time: {seconds / 60:.1f} min",
        "",
        "Every ratio compares figures measured in this run, on this machine.",
        "",
        "## Targets",
        "",
    ]
    rows = [[r["what"], r["measured"], r["peer"], _fmt_ratio(r["ratio"]), r["target"],
             _fmt_met(r["met"])] for r in target_rows(outcomes)]
    lines += _table(["target", "measured", "peer / reference", "ratio", "target",
                     "result"], rows)
    for name, (title, detail) in DETAILS.items():
        outcome = outcomes.get(name)
        lines += ["", f"## {title}", ""]
        if outcome is None:
            lines.append("Skipped (`--skip`).")
            continue
        lines += [f"`{outcome['command']}` ({outcome['seconds']:.0f} s)", ""]
        if outcome["status"] != "ok":
            lines.append(f"Not measured: {outcome['status']}, {outcome['reason']}.")
            if outcome.get("log_tail"):
                lines += ["", "```", *outcome["log_tail"], "```"]
            continue
        lines += detail(outcome["data"])
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Run the benchmarks and write the report.

    Args:
        argv: argument list (``None`` = ``sys.argv``).
    """
    from fat_tf.files import atomic_write_text

    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/run_all.py", *given])
    started = time.perf_counter()
    machine = {**describe_machine(), "load_before": os.getloadavg()}
    outcomes = {}
    with tempfile.TemporaryDirectory(prefix="fat_tf-run_all-") as tmp:
        folder = args.json_dir or tmp
        os.makedirs(folder, exist_ok=True)
        for name in BENCHMARKS:
            if name in args.skip_set:
                continue
            print(f"{name}: running (load {os.getloadavg()[0]:.1f})", file=sys.stderr,
                  flush=True)
            outcomes[name] = run_benchmark(name, args.quick, folder)
            o = outcomes[name]
            print(f"{name}: {o['status']} in {o['seconds']:.0f} s {o['reason']}",
                  file=sys.stderr, flush=True)
    machine["load_after"] = os.getloadavg()
    report = render_report(machine, command, time.perf_counter() - started, outcomes,
                           args.quick)
    atomic_write_text(args.out, report)
    print(report)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
