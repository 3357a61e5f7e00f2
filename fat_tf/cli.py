"""Pieces shared by the command-line tools: config arguments, help, checking settings
before TensorFlow is imported, and error reporting."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from fat_tf.config import (
    LOSS_NAMES,
    LR_SCHEDULES,
    METHOD_NAMES,
    PRECISIONS,
    STRATEGIES,
    Config,
    ConfigError,
    apply_overrides,
)
from fat_tf.errors import FatTfError
from fat_tf.presets import PRESETS, get_preset, parse_override

#: Exit status of a command refused for a bad setting or argument (as argparse's).
EXIT_USAGE = 2

#: The name commands are invoked by in usage lines: ``python -m fat_tf.<module>`` when run
#: as a module, ``fat-tf`` when run through the ``fat-tf`` dispatcher, which sets it.
_COMMAND_PREFIX: str | None = None


def prog(command: str) -> str:
    """The program name of ``command`` in usage lines: ``fat-tf train`` when run through
    ``fat-tf`` (or ``python -m fat_tf``), else ``python -m fat_tf.train``.

    Args:
        command: the command, e.g. ``train`` or ``data``.
    """
    if _COMMAND_PREFIX:
        return f"{_COMMAND_PREFIX} {command}"
    return f"python -m fat_tf.{command}"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults in help, but only meaningful ones: none for options whose
    default is None (their help says what applies), for on/off flags (``--no-tflite``
    would read "default: True"), or for help that already names its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or "default" in text or action.default is None
                or action.default is argparse.SUPPRESS or isinstance(action.default, bool)
                or action.default == []):
            return text
        return super()._get_help_string(action)


class RawHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """:class:`HelpFormatter` keeping the description's and epilog's line breaks."""


def _preset_default(field: str) -> str:
    """The presets' value of a config field for help texts, e.g. ``32`` or ``1000 with
    --preset small, 4000 with fat2019``."""
    values = {}
    for name in ("small", "fat2019"):
        section, key = field.split(".")
        values[name] = getattr(getattr(get_preset(name), section), key)
    if values["small"] == values["fat2019"]:
        return f"{values['small']}"
    return f"{values['small']} with --preset small, {values['fat2019']} with fat2019"


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
    # None means "the preset's or --config's value"; the help says what that is. Names are
    # checked when the config is built (one line naming the valid ones), not by argparse.
    parser.add_argument("--method", default=None, metavar="NAME",
                        help=f"training method: {', '.join(METHOD_NAMES)} (default: "
                             f"{_preset_default('train.method')})")
    parser.add_argument("--steps", type=int, default=None,
                        help="run length in optimiser steps; schedules and ramps are "
                             f"fractions of it (default: {_preset_default('train.steps')})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="give the run length in passes over the labelled clips instead "
                             "of --steps (default: not used)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="labelled clips per batch (default: "
                             f"{_preset_default('data.batch_size')})")
    parser.add_argument("--lr-schedule", default=None, metavar="NAME",
                        help=f"learning-rate schedule: {', '.join(LR_SCHEDULES)} (default: "
                             f"{_preset_default('optim.lr_schedule')})")
    parser.add_argument("--loss", default=None, metavar="NAME",
                        help=f"supervised loss: {' or '.join(LOSS_NAMES)} (sigmoid BCE or "
                             "multi-label hinge; default: "
                             f"{_preset_default('train.loss')})")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of every random choice (default: "
                             f"{_preset_default('train.seed')})")
    parser.add_argument("--validation-split", type=float, default=None,
                        help="fraction of curated clips held out (stratified; default: "
                             f"{_preset_default('data.validation_split')})")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the train step with XLA (default: the config's "
                             "train.jit_compile, 'auto' = on with a GPU, off on CPU)")
    parser.add_argument("--precision", default=None, metavar="POLICY",
                        help=f"Keras dtype policy: {', '.join(PRECISIONS)} (default: "
                             f"{_preset_default('train.precision')})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="set any config field, e.g. --set model.backbone=cnn_skip "
                             "--set data.unlabelled_ratio=2 (repeatable)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved settings as JSON and exit without "
                             "training (the config.json the run would write)")


def add_strategy_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--strategy`` (:data:`fat_tf.config.STRATEGIES`; distributed training; not part
    of the run config, so a run may resume under another strategy with the same batching).
    """
    parser.add_argument(
        "--strategy", default="none", choices=list(STRATEGIES),
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


def probability_threshold(text: str) -> float:
    """argparse type of ``--threshold``: a probability strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def check_settings(args: argparse.Namespace) -> Config | int:
    """The resolved config of a training command, checked before TensorFlow is imported.

    Refuses unknown settings and names (``--method foo``, ``--set model.backbone=resnet``),
    a missing ``--config`` file and a ``--data`` that is not a dataset folder with one
    line on stderr; ``--print-config`` prints the config as JSON.

    Args:
        args: parsed :func:`add_config_arguments` options (and ``--data`` if any).

    Returns:
        The config to train with, or the exit status to return at once: 2 (after the
        error line) or 0 (after ``--print-config``).
    """
    try:
        config = config_from_args(args)
        data = getattr(args, "data", None)
        if data is not None:
            from fat_tf.data.manifest import DatasetLayout

            DatasetLayout(os.fspath(data)).validate()
    except (ConfigError, FatTfError, OSError) as e:
        if isinstance(e, OSError) and e.filename:
            message = f"{e.filename}: {e.strerror or e}"
        else:
            message = str(e).splitlines()[0]  # a dataset error's first line names it
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "print_config", False):
        sys.stdout.write(config.to_json())
        return 0
    return config


#: stderr lines TensorFlow writes on every start (CPU-only machines included) that tell a
#: user nothing: absl's pre-initialisation banner, INFO lines, and the failed CUDA probe.
_TF_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ",
             "failed call to cuInit", "Could not find cuda drivers",
             "Unable to register cuDNN factory", "Unable to register cuFFT factory",
             "Unable to register cuBLAS factory", "computation placer already registered",
             "TF-TRT Warning", "This TensorFlow binary is optimized to use available CPU")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and probe for GPUs with the start-up noise filtered out.

    TensorFlow's C++ start-up lines (``oneDNN custom operations are on``, ``Could not
    find cuda drivers``, ``E0000 ... failed call to cuInit`` on every machine without a
    GPU) are written to file descriptor 2 before ``TF_CPP_MIN_LOG_LEVEL`` applies, so
    they are captured there and replayed without the known noise; anything else
    (warnings, an import error) still reaches stderr. Nothing is done when TensorFlow is
    already imported or the user set ``TF_CPP_MIN_LOG_LEVEL`` (their logs, unfiltered).
    """
    if "tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tempfile

    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe, captured too
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if not any(noise in line for noise in _TF_NOISE)]
            sys.stderr.write("".join(kept))


def run_cli(body: Callable[[], int], tensorflow: bool = True) -> int:
    """Run a CLI body; report fat_tf, config, file-system and in-graph data errors as one
    line (``error: ...``, exit code 1), without traceback.

    Args:
        body: the command's work; returns the exit status.
        tensorflow: import TensorFlow first, without its start-up noise
            (:func:`import_tensorflow_quietly`).
    """
    try:
        if tensorflow:
            import_tensorflow_quietly()
        else:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
        if not type(e).__module__.startswith("tensorflow") or not hasattr(e, "message"):
            raise  # a bug, not bad input: the traceback is what helps
        from fat_tf.data.decode import pipeline_error

        print(f"error: {pipeline_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
