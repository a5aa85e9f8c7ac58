"""Where torch runs: the device (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``) and the CPU thread count.

The same code runs on CPU and GPU; every command, the node and the trainers pick the device with
:func:`select_device` and scope the intra-op thread count with :func:`torch_threads`, so a library
call never leaves the process with a different thread count than it found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from moscale_common.errors import ConfigError


def set_num_threads(num_threads: int) -> int:
    """Use at most ``num_threads`` intra-op CPU threads (never more than the machine has)."""
    count = max(1, min(num_threads, os.cpu_count() or 1))
    torch.set_num_threads(count)
    return count


@contextmanager
def torch_threads(num_threads: int) -> Iterator[int]:
    """Inside the block torch uses at most ``num_threads`` CPU threads (yields the count in use).

    ``num_threads <= 0`` keeps the current count. Either way the count on entry is restored on exit,
    whatever the block changed.
    """
    previous = torch.get_num_threads()
    try:
        yield set_num_threads(num_threads) if num_threads > 0 else previous
    finally:
        torch.set_num_threads(previous)


def select_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU) | ``cpu`` | ``cuda`` | ``cuda:N``.

    Asking for CUDA on a machine without it raises :class:`ConfigError` naming the request.
    """
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {spec!r}: CUDA is not available here (torch {torch.__version__}); "
                "use --device cpu or --device auto"
            )
        device = torch.device(text)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise ConfigError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N")
