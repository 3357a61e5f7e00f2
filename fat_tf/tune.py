"""Search hyperparameters with keras-tuner: ``fat-tf tune [options]`` (or
``python -m fat_tf.tune``).

Every trial is a complete ``fat_tf.train`` run (in ``OUT/runs/trial_<id>``) of the base
config (``--preset``/``--config``/``--method``/``--set``, as for ``fat_tf.train``) with the
search space's fields set by the tuner; the objective is validation lwlrap (maximised).
See :mod:`fat_tf.tuning.search` for the search folder and :mod:`fat_tf.tuning.space` for
the search-space file format.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from fat_tf.cli import RawHelpFormatter, add_config_arguments, check_settings, prog, run_cli
from fat_tf.config import BACKBONES, STRATEGIES

EPILOG = """\
search-space file (JSON; default: the method's file in fat_tf/tuning/spaces/):
  {"hyperparameters": {
     "optim.lr_max":   {"type": "float", "min": 3e-4, "max": 1e-2, "sampling": "log"},
     "model.backbone": {"type": "choice", "values": BACKBONE_NAMES},
     "model.channels": {"type": "choice", "values": [[8, 16, 32, 64], [16, 32, 64, 128]]},
     "method.vat_ip":  {"type": "int", "min": 1, "max": 3},
     "augment.time_flip": {"type": "boolean"},
     "optim.warmup_fraction": {"type": "fixed", "value": 0.05}}}

outputs in --out: best_config.json (for python -m fat_tf.train --config; its train.epochs
is --epochs, also under Hyperband), trials.csv and trials.md (one row per trial, with the
epochs it trained to), runs/trial_<id>/ (each trial's run folder), tuner/ (keras-tuner's
state), search.json. Rerun the same command to resume the search.

exit status: 0 all trials completed (or --allow-failures); 2 some trials failed (listed
on stderr), or a bad option or setting refused before the search (one error line); 1 no
trial completed, --max-failures stopped the search, or a bad search space; 130
interrupted. Failed trials are final and count toward --max-trials; --retry-failed
runs them again on a rerun.

distributed search (keras-tuner's chief/worker mode, all sharing --out):
  KERASTUNER_TUNER_ID=chief   KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000 \\
      python -m fat_tf.tune ...   # serves the oracle, writes the results at the end
  KERASTUNER_TUNER_ID=tuner0  KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000 \\
      python -m fat_tf.tune ...   # a worker; start as many as you like (tuner1, ...)
  a worker waits up to 60 s for the chief's search.json and refuses a different search.
""".replace("BACKBONE_NAMES", json.dumps(list(BACKBONES)))


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``fat-tf tune``."""
    parser = argparse.ArgumentParser(
        prog=prog("tune"),
        description=textwrap.fill(
            "Search training hyperparameters (learning rate and schedule, loss weights, "
            "ramps, VAT eps/xi, EMA decay, MixMatch T/alpha/K, mixup alpha, model width, "
            "skip connections, ...) with keras-tuner. Each trial is a full training run "
            "of the base config with the search space's fields set by the tuner; the "
            "objective is the validation lwlrap (maximised) of the model the run ships by "
            "default (the final model, as evaluate and export use). Writes "
            "best_config.json, trials.csv and trials.md into --out.", width=88,
        ),
        epilog=EPILOG,
        formatter_class=RawHelpFormatter,
    )
    parser.add_argument(
        "--data", default=None,
        help="dataset folder in the FAT2019 layout; default: the synthetic demo dataset, "
             "generated on first use")
    parser.add_argument("--out", default=None,
                        help="search folder (default: searches/<method>-<tuner>); rerunning "
                             "with the same folder and settings resumes the search")
    parser.add_argument("--space", default=None,
                        help="search-space JSON file (default: "
                             "fat_tf/tuning/spaces/<method>.json)")
    parser.add_argument("--tuner", default="random", choices=["random", "bayesian", "hyperband"],
                        help="search algorithm")
    parser.add_argument("--max-trials", type=int, default=10,
                        help="most trials in all, finished and failed ones of a resumed search "
                             "included (failed trials are final in keras-tuner and count; see "
                             "--retry-failed). Hyperband: a cap on top of its own schedule, "
                             "whose first bracket must be handed out in full before any trial "
                             "is continued: with --epochs 30 and factor 3 that is 52 trials "
                             "(34 of 2 epochs, then 12 of 4, 4 of 10, 2 of 30; one full "
                             "Hyperband iteration is 90). A smaller --max-trials gets a warning: "
                             "it makes Hyperband a random search of short runs")
    parser.add_argument("--hyperband-factor", type=int, default=3,
                        help="Hyperband's reduction factor, at least 2 (trials kept per round: "
                             "1/factor); a larger factor makes the brackets smaller")
    parser.add_argument("--initial-points", type=int, default=None,
                        help="Bayesian: random trials before the Gaussian process picks the "
                             "next ones (default: max(2, min(3 * hyperparameters, "
                             "max-trials // 2)); keras-tuner's own 3 per hyperparameter can "
                             "exceed the whole search); fixed when the search starts")
    parser.add_argument("--max-failures", type=int, default=3,
                        help="after this many failed trials in a row start no new trial and "
                             "exit 1 (0: never). Counted from the start of this command; in a "
                             "distributed search the chief counts over all workers and tells "
                             "them to stop (the workers' own value is not used)")
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit 0 when some trials failed and others completed (default: "
                             "list the failed trials on stderr and exit 2)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="on a resumed search, run its FAILED trials again (same ids and "
                             "run folders) before new ones (chief or single process only)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the earlier search in --out and start again "
                             "instead of resuming it")
    parser.add_argument("--strategy", default="none", choices=list(STRATEGIES),
                        help="tf.distribute strategy of each trial's training run")
    parser.add_argument("--traceback", action="store_true",
                        help="print each failed trial's full traceback (keras-tuner's debug "
                             "output); failures are always listed in trials.md")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2],
                        help="Keras fit output of each trial: 0 silent, 1 progress bar, "
                             "2 one line per epoch")
    add_config_arguments(_EpochsHelp(parser))
    return parser


class _EpochsHelp:
    """Passes ``add_argument`` calls to ``parser``, giving ``--epochs`` the tuner's help.

    ``--epochs`` (from :func:`fat_tf.cli.add_config_arguments`) means more here than in
    ``fat_tf.train``; argparse has no public way to change an added argument's help.

    Args:
        parser: the parser the arguments go to.
    """

    HELP = ("epochs per trial; Hyperband: the most epochs a trial trains (its trials train "
            "fewer) and the train.epochs of best_config.json")

    def __init__(self, parser: argparse.ArgumentParser):
        self._parser = parser

    def add_argument(self, *names: str, **kwargs):
        """``parser.add_argument``, with the tuner's help for ``--epochs``.

        Args:
            *names: option strings.
            **kwargs: ``argparse`` keyword arguments.
        """
        if "--epochs" in names:
            kwargs["help"] = self.HELP
        return self._parser.add_argument(*names, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._parser, name)


def _set_keras_tuner_debug(on: bool) -> None:
    """keras-tuner prints every failed trial's traceback unless its DEBUG flag is off."""
    try:
        from keras_tuner.src import config as kt_config
    except ImportError:  # another keras-tuner layout: keep its default
        return
    kt_config.DEBUG = on


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_trials < 1:
        parser.error("--max-trials must be at least 1")
    if args.hyperband_factor < 2:
        parser.error("--hyperband-factor must be at least 2")
    if args.initial_points is not None and args.initial_points < 1:
        parser.error("--initial-points must be at least 1")
    if args.max_failures < 0:
        parser.error("--max-failures must be 0 (never stop) or more")
    config = check_settings(args)  # before TensorFlow: a bad setting is one quick line
    if isinstance(config, int):
        return config

    def run() -> int:
        from fat_tf.tuning.search import role, run_search
        from fat_tf.tuning.space import SearchSpace, default_space_path

        _set_keras_tuner_debug(args.traceback)
        space_path = args.space or default_space_path(config.train.method)
        space = SearchSpace.load(space_path, base=config)
        data_dir = args.data
        if data_dir is None and role() != "chief":
            from fat_tf.data.demo import default_demo_dir

            data_dir = default_demo_dir()
            print(f"using the demo dataset in {data_dir}")
        out = Path(args.out or f"searches/{config.train.method}-{args.tuner}")
        print(f"search space: {space_path} ({len(space.entries)} hyperparameters)")
        result = run_search(
            config, space, data_dir, out, tuner=args.tuner, max_trials=args.max_trials,
            hyperband_factor=args.hyperband_factor, overwrite=args.overwrite,
            strategy=args.strategy, max_failures=args.max_failures, verbose=args.verbose,
            initial_points=args.initial_points, retry_failed=args.retry_failed,
        )
        done = sum(r["status"] == "COMPLETED" for r in result.rows)
        if result.role == "worker":
            print(f"worker finished: {done} of {len(result.rows)} trial(s) completed; the "
                  "chief writes the results")
        else:
            print(f"{done} of {len(result.rows)} trial(s) completed; best val_lwlrap "
                  f"{result.best_score:.4f}")
            print(f"best config: {result.best_config.resolve()}")
            print(f"all trials: {(out / 'trials.md').resolve()}")
            print(f"train it: python -m fat_tf.train --config {result.best_config}")
        return _report_failures(result.rows, args.allow_failures)

    return run_cli(run)


#: Exit status of a search in which some trials failed (without --allow-failures).
EXIT_SOME_FAILED = 2


def _report_failures(rows: list[dict], allow: bool) -> int:
    """Warn on stderr about failed trials; the exit status (0, or 2 unless ``allow``).

    Args:
        rows: one dict per trial (``trial``, ``status``, ``error``).
        allow: ``--allow-failures``: warn but exit 0.
    """
    failed = [r for r in rows if r["status"] != "COMPLETED"]
    if not failed:
        return 0
    print(f"warning: {len(failed)} of {len(rows)} trial(s) failed:", file=sys.stderr)
    for r in failed:
        error = (r.get("error") or "no error recorded").splitlines()[0]
        print(f"  trial {r['trial']}: {error}", file=sys.stderr)
    if allow:
        return 0
    print(f"exit status {EXIT_SOME_FAILED}: pass --allow-failures to accept a search with "
          "failed trials (--retry-failed runs them again on a rerun)", file=sys.stderr)
    return EXIT_SOME_FAILED


if __name__ == "__main__":
    sys.exit(main())
