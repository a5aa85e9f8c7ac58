"""Start-up of the node: interruptible, and every failure reduced to one line.

* :class:`SignalGate` owns SIGINT and SIGTERM for the whole process. While the node starts (model
  load, warm-up) a signal raises :class:`StartupInterrupted` in the main thread at its next Python
  instruction, so the process unwinds and exits 0 at once instead of finishing the load first; a
  watchdog ends the process (exit 0) if that has not happened within :data:`INTERRUPT_GRACE_S`
  (a long native call). Once running, a signal only sets :attr:`SignalGate.stop`, which the spin
  loop polls, so the shutdown is orderly (rclpy's own handlers are not installed: the ROS context
  stays valid until the node has finished logging and is destroyed).
* :func:`failure_reason` turns any exception into the text after ``start-up failed:``, one line.
* :func:`check_model_limits`: the ranges that follow from the loaded model rather than the schema.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from moscale_common.errors import ConfigError, MoScaleError

STARTUP_FAILURE_EXIT = 2  # exit code of a start-up failure under on_startup_error: exit
INTERRUPT_GRACE_S = 1.5  # s from a signal during start-up to a forced clean exit
MAX_TRAJECTORY_POINTS = 2500  # points of one trajectory: control_rate x the longest motion
REASON_CHARS = 400


class StartupInterrupted(BaseException):
    """SIGINT/SIGTERM arrived while the node was starting (a BaseException: no ``except Exception``
    on the way catches it)."""


class SignalGate:
    """SIGINT/SIGTERM handling of the node process (see the module docstring)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.starting = True
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        first = not self.stop.is_set()
        self.stop.set()
        if self.starting and first:
            watchdog = threading.Timer(INTERRUPT_GRACE_S, exit_now)
            watchdog.daemon = True
            watchdog.start()
            raise StartupInterrupted(signal.Signals(signum).name)

    @contextmanager
    def started(self) -> Iterator[None]:
        """Inside: start-up is over (a signal no longer interrupts, it requests a stop)."""
        self.starting = False
        yield


def exit_now(code: int = 0) -> None:
    """Exit with ``code`` at once: output flushed, no interpreter teardown (nothing is left to save;
    tearing down torch and Pinocchio takes seconds, and once, under load, ended in SIGSEGV)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def failure_reason(error: BaseException) -> str:
    """One line for ``start-up failed: <reason>``: a project error's own message, anything else
    prefixed with its type; newlines folded, capped at :data:`REASON_CHARS`."""
    text = str(error) if isinstance(error, MoScaleError) else f"{type(error).__name__}: {error}"
    line = " ".join(text.split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."


def check_model_limits(control_rate: float, max_duration: float, model_max_seconds: float) -> None:
    """ConfigError unless one trajectory of the longest motion the node accepts (``max_duration``,
    capped at the model's ``model_max_seconds``) has at most :data:`MAX_TRAJECTORY_POINTS` points
    at ``control_rate``: ``control_rate x min(max_duration, model_max_seconds) <= MAX_TRAJECTORY_POINTS``."""
    longest = min(max_duration, model_max_seconds)
    points = control_rate * longest
    if points > MAX_TRAJECTORY_POINTS:
        raise ConfigError(
            f"control_rate: {control_rate:g} Hz x {longest:g} s (the longest motion) = {points:.0f} trajectory points, "
            f"over {MAX_TRAJECTORY_POINTS}; lower control_rate to at most "
            f"{MAX_TRAJECTORY_POINTS / longest:.0f} Hz or max_duration"
        )
