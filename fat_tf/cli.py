"""Pieces shared by the command-line tools: config arguments and error reporting."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from fat_tf.config import (
    PRECISIONS,
    PRESETS,
    Config,
    ConfigError,
    apply_overrides,
    get_preset,
    parse_override,
)
from fat_tf.errors import FatTfError

# CLI flag -> config field it sets.
FLAG_FIELDS = {
    "method": "train.method",
    "steps": "train.steps",
    "epochs": "train.epochs",
    "batch_size": "data.batch_size",
    "lr_schedule": "optim.lr_schedule",
    "loss": "train.loss",
    "seed": "train.seed",
    "validation_split": "data.validation_split",
    "jit": "train.jit_compile",
    "precision": "train.precision",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preset``, ``--config``, the common shortcuts and ``--set key=value``."""
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS),
                        help="starting settings: 'small' for CPUs and the demo data, "
                             "'fat2019' for the full reference recipe on GPUs")
    parser.add_argument("--config", default=None,
                        help="JSON config file (e.g. a run's config.json or a tuner's best "
                             "config); replaces the preset")
    parser.add_argument("--method", default=None,
                        help="training method: supervised, mixup, vat, meanteacher, mixmatch")
    parser.add_argument("--steps", type=int, default=None,
                        help="run length in optimiser steps (the preset's train.steps, "
                             f"{get_preset('small').train.steps} for 'small'); schedules and "
                             "ramps are fractions of it")
    parser.add_argument("--epochs", type=int, default=None,
                        help="give the run length in passes over the labelled clips instead "
                             "of --steps (default: not used)")
    parser.add_argument("--batch-size", type=int, default=None, help="labelled clips per batch")
    parser.add_argument("--lr-schedule", default=None,
                        choices=["cosine", "cosine_restarts", "constant"],
                        help="learning-rate schedule")
    parser.add_argument("--loss", default=None, choices=["bce", "hinge"],
                        help="supervised loss: sigmoid BCE or multi-label hinge")
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice")
    parser.add_argument("--validation-split", type=float, default=None,
                        help="fraction of curated clips held out (stratified)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the train step with XLA (default: the config's "
                             "train.jit_compile, 'auto' = on with a GPU, off on CPU)")
    parser.add_argument("--precision", default=None,
                        choices=PRECISIONS,
                        help="Keras dtype policy")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="set any config field, e.g. --set model.backbone=cnn_skip "
                             "--set data.unlabelled_ratio=2 (repeatable)")


def add_strategy_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--strategy none|mirrored|multiworker`` (distributed training; not part of
    the run config, so a run may resume under another strategy with the same batching).
    """
    parser.add_argument(
        "--strategy", default="none", choices=["none", "mirrored", "multiworker"],
        help="tf.distribute strategy: 'mirrored' trains on every local GPU, "
             "'multiworker' on several machines described by the TF_CONFIG environment "
             "variable (see the README); --batch-size is then the batch per replica",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """Resolve preset or config file, shortcut flags, then ``--set`` overrides."""
    config = Config.from_json(args.config) if args.config else get_preset(args.preset)
    overrides = {}
    for flag, field in FLAG_FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    for text in args.overrides:
        key, value = parse_override(text)
        overrides[key] = value
    return apply_overrides(config, overrides)


def run_cli(body: Callable[[], int]) -> int:
    """Run a CLI body; report fat_tf, config, file-system and in-graph data errors as one
    line (``error: ...``, exit code 1), without traceback."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return body()
    except (FatTfError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # file system trouble: missing file, disk full, permissions
        where = f"{e.filename}: " if e.filename else ""
        message = " ".join(str(e.strerror or e).split())  # h5py's messages span lines
        print(f"error: {where}{message}", file=sys.stderr)
        return 1
    except Exception as e:  # errors raised inside TensorFlow graphs (e.g. a bad WAV)
        if not type(e).__module__.startswith("tensorflow"):
            raise
        from fat_tf.data.pipeline import pipeline_error

        print(f"error: {pipeline_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
