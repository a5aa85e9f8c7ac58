"""Where a measured figure comes from: the machine, the commit and the command line, stamped on the
reports the evaluations write (``docs/RESULTS.md``, ``moscale eval generator --report``)."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
from datetime import datetime, timezone

import torch

from moscale_common.paths import resource


def machine_info(device: torch.device) -> str:
    """E.g. ``2 CPU cores (x86_64), torch 2.13.0+cpu, device cpu``."""
    cpu = platform.processor() or platform.machine()
    text = f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, device {device}"
    if device.type == "cuda":
        text += f" ({torch.cuda.get_device_name(device)})"
    return text


def git_commit() -> str:
    """The short hash of the checked-out commit, ``+`` when the tree has changes; ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=resource(".")
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=resource(".")
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+" if dirty else "")


def command_line(args: argparse.Namespace, subcommand: str) -> str:
    """The command that ran: ``moscale`` with the arguments as typed (``args.argv``, set by the CLI),
    quoted as a shell needs them; when called without the CLI, ``moscale SUBCOMMAND`` with ``args``
    written back as flags."""
    argv = getattr(args, "argv", None)
    if argv is not None:
        return "moscale " + shlex.join(argv)
    return f"moscale {subcommand} " + shlex.join(_flags(args))


def _flags(args: argparse.Namespace) -> list[str]:
    flags = []
    for name, value in sorted(vars(args).items()):
        if name in ("func", "command", "what", "argv") or value in (None, False, []):
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif isinstance(value, list):
            for item in value:
                flags += [flag, str(item)]
        else:
            flags += [flag, str(value)]
    return flags


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
