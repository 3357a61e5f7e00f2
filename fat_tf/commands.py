"""The ``fat-tf`` command (also ``python -m fat_tf``): one entry point for every tool.

``fat-tf COMMAND [options]`` runs the same code as ``python -m fat_tf.COMMAND [options]``;
the arguments after the command are passed to it unchanged. Only the chosen command's
module is imported, so ``fat-tf --help`` and every command's ``--help`` answer at once,
without importing TensorFlow.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence

from fat_tf import __version__

#: Command -> (module with ``main(argv)``, one-line summary), in the order of a workflow.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("fat_tf.data.__main__",
             "dataset folders: check, layout (your audio), download, demo"),
    "train": ("fat_tf.train",
              "train a tagger (default: the demo data); rerun the same command to resume"),
    "tune": ("fat_tf.tune", "search training hyperparameters with keras-tuner"),
    "evaluate": ("fat_tf.evaluate",
                 "lwlrap, mAP and a per-class table of a run on a labelled split"),
    "predict": ("fat_tf.predict",
                "score audio files, folders or a dataset's test clips (CSV or JSON)"),
    "export": ("fat_tf.export", "export a run as a SavedModel, .keras and TFLite"),
    "report": ("fat_tf.report", "compare runs: a table and plots"),
}


def usage(prog: str = "fat-tf") -> str:
    """The text of ``fat-tf --help``.

    Args:
        prog: the program name shown.
    """
    width = max(len(name) for name in COMMANDS)
    lines = [
        f"usage: {prog} COMMAND [options]",
        "",
        "Multi-label audio tagging (FAT2019) with supervised and semi-supervised training.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()),
        "",
        "options:",
        "  -h, --help  show this help and exit",
        "  --version   show the version and exit",
        "",
        f"'{prog} COMMAND --help' shows a command's options; '{prog} train' alone trains",
        "on the synthetic demo dataset.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, prog: str = "fat-tf") -> int:
    """Run ``fat-tf COMMAND ...``; returns the exit status.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).
        prog: the program name in usage lines (``python -m fat_tf`` from ``__main__``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write(usage(prog))
        return 2
    command, rest = args[0], args[1:]
    if command in ("-h", "--help", "help"):
        sys.stdout.write(usage(prog))
        return 0
    if command == "--version":
        print(f"fat_tf {__version__}")
        return 0
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"error: unknown command {command!r}{hint}; commands: {', '.join(COMMANDS)} "
              f"(see {prog} --help)", file=sys.stderr)
        return 2
    from fat_tf import cli

    module = importlib.import_module(COMMANDS[command][0])
    before = cli._COMMAND_PREFIX
    cli._COMMAND_PREFIX = prog  # usage lines read "fat-tf train", not "python -m ..."
    try:
        return module.main(rest)
    finally:
        cli._COMMAND_PREFIX = before


if __name__ == "__main__":
    sys.exit(main())
