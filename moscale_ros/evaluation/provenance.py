"""Where a measured figure comes from: the machine, the commit and the command line, stamped on the
reports the evaluations write (``docs/RESULTS.md``, ``moscale eval generator --report``)."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
from collections.abc import Sequence
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


def command_line(argv: Sequence[str]) -> str:
    """``moscale`` with its arguments ``argv``, quoted as a shell would need them."""
    return "moscale " + shlex.join(argv)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
