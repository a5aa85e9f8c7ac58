"""The ``moscale`` command line: one entry point, one subcommand per task.

Each module in :mod:`moscale_ros.commands` registers its subcommand(s) with ``register(sub)``
and sets ``func`` on its parser; heavy imports happen inside the command, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from moscale_common.errors import MoScaleError
from moscale_ros import __version__

COMMAND_MODULES = (
    "data", "train", "generate", "retarget", "simulate", "eval", "bench", "node", "demo", "model", "vocab",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moscale", description="MoScale-ROS: text to humanoid motion, coarse plan first."
    )
    parser.add_argument("--version", action="version", version=f"moscale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"moscale_ros.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for the reports' provenance
    try:
        return int(args.func(args) or 0)
    except MoScaleError as exc:
        print(f"moscale {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moscale {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
