"""What the node did with its commands, and how much memory it holds (ROS-free; the node publishes
a snapshot on ``/diagnostics``).

Counter names (all cumulative except ``goals_active``):

* ``commands_topic``, ``goals_received``: commands that arrived on ``~/command`` / ``~/generate``;
* ``accepted``: handed to the generation worker;
* ``refused_invalid``, ``refused_rate_limited``, ``refused_queue_full``, ``refused_not_ready``;
* ``goals_rejected``: goals rejected in the goal callback (also counted under ``refused_*``);
* ``goals_succeeded``, ``goals_aborted``, ``goals_canceled``: accepted goals by terminal status;
* ``goals_active``: goals not yet in a terminal status.
"""

from __future__ import annotations

import os
import resource
import threading
from collections import Counter

from moscale_common.errors import MoScaleError, UnknownCommandError
from moscale_ros.node.rate_limit import RateLimitError
from moscale_ros.node.worker import QueueFullError

REFUSAL_KINDS = ("invalid", "rate_limited", "queue_full", "not_ready")


class NotReadyError(MoScaleError):
    """A command reached a node whose start-up failed (kept up by ``on_startup_error: stay_up``)."""


class CommandStats:
    """Thread-safe counters (see the module docstring for the names)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, name: str, delta: int = 1) -> None:
        with self._lock:
            self._counts[name] += delta

    def refused(self, error: MoScaleError) -> str:
        """Count a refusal under its kind (from the error's class name) and return the kind."""
        kind = refusal_kind(error)
        self.count(f"refused_{kind}")
        return kind

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def refusal_kind(error: MoScaleError) -> str:
    """``rate_limited`` | ``queue_full`` | ``not_ready`` | ``unknown_command`` | ``invalid`` for a
    refused command's error."""
    if isinstance(error, UnknownCommandError):
        return "unknown_command"
    if isinstance(error, RateLimitError):
        return "rate_limited"
    if isinstance(error, QueueFullError):
        return "queue_full"
    if isinstance(error, NotReadyError):
        return "not_ready"
    return "invalid"


def resident_memory_mb(pid: int | None = None) -> float:
    """Resident set size of process ``pid`` (default: this one) in MiB, from ``/proc/<pid>/statm``
    (Linux); elsewhere this process's peak RSS from ``getrusage``."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        if pid is not None:
            raise
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
