"""A :class:`~retarget.retargeter.Retargeter` in its own process, so IK and generation run in parallel.

The IK is Python driving many short Pinocchio/numpy/DAQP calls: it holds the GIL for most of its
time. In the generator's process, a retarget running beside the generator thread (which also needs
the GIL between its torch operations) made a 6 s motion's generation 6x slower (60 -> 367 ms p50,
measured on 2 cores); with the IK in another process generation kept its speed. So the pipeline
retargets through :class:`RetargeterProcess`: the same :meth:`retarget` call, answered by a child
process (``python -m retarget.process``: no main module re-imported, no torch) that builds its own
Retargeter from a picklable factory. The caller waits on a socket (GIL released); arguments and
results are a few hundred kB of arrays.

The child ends when the socket closes (its parent ended or :meth:`close`); after a child died the
call raises :class:`RetargetProcessError` and the next call starts a new one.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from moscale_common.collector import freeze_long_lived
from moscale_common.errors import MoScaleError
from retarget.retargeter import RetargetConfig, Retargeter
from retarget.robot import Robot, load_robot
from retarget.trajectory import RobotTrajectory

START_TIMEOUT_S = 120.0  # imports, URDF and collision meshes on a loaded machine
# The IK's matrices are small: BLAS threads would only spin on the core the generator needs.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
HELPER_NICENESS = 5  # the tail helper's priority below the IK process's


class RetargetProcessError(MoScaleError):
    """The retargeting process ended or could not start."""


def make_retargeter(
    robot: str, urdf_string: str | None, control_rate: float, speed_fraction: float = 1.0
) -> Retargeter:
    """A Retargeter for ``load_robot(robot, urdf_string)`` at ``control_rate`` Hz, keeping joint speeds
    within ``speed_fraction`` of their limits (a picklable factory for :class:`RetargeterProcess`)."""
    loaded = load_robot(robot, urdf_string=urdf_string)
    slower = dataclasses.replace(loaded, velocity_limits=speed_fraction * loaded.velocity_limits)
    return Retargeter(slower, RetargetConfig(control_rate=control_rate))


def _serve(conn: Connection) -> None:
    """Child: receive the factory (and whether to start a tail helper of its own), build the
    Retargeter, then answer ``(method, args, kwargs)`` (``retarget`` or ``solve_tail``) with
    ``("ok", result)`` or ``("error", exception)`` until the socket closes."""
    try:
        make, with_helper = conn.recv()
        retargeter = make()
        if with_helper:  # a second process for the second half of long motions (retargeter.py)
            # at a lower priority: it uses the core left idle, and must not delay the node's publishing
            retargeter.tail_helper = TailHelper(RetargeterProcess(make, retargeter.robot, niceness=HELPER_NICENESS))
    except BaseException as exc:  # noqa: BLE001 (handed to the parent)
        conn.send(("error", exc))
        return
    freeze_long_lived()  # the robot and libraries out of the collector's full passes
    conn.send(("ok", None))
    try:
        while True:
            try:
                method, args, kwargs = conn.recv()
            except (EOFError, OSError):  # the parent closed the socket or ended
                return
            try:
                if method == "solve_tail":
                    conn.send(("ok", retargeter.solve_tail(*args, **kwargs)))
                else:
                    trajectory = retargeter.retarget(*args, **kwargs)
                    conn.send(("ok", dataclasses.replace(trajectory, robot=None)))
            except Exception as exc:  # noqa: BLE001 (raised in the parent)
                conn.send(("error", exc))
    finally:
        if retargeter.tail_helper is not None:  # ends (and is reaped) before this process does
            retargeter.tail_helper.process.close()


class RetargeterProcess:
    """``retarget(...)`` of ``make()``'s Retargeter, run in a child process; results carry ``robot``.

    ``make`` must be picklable (a module-level function or a ``functools.partial`` of one) and
    importable without the caller's main module. ``tail_helper``: the child starts a second process
    of its own and solves long motions in two halves at once (:meth:`Retargeter.solve_tail
    <retarget.retargeter.Retargeter.solve_tail>`). Calls are serialised (one at a time)."""

    def __init__(self, make: Callable[[], Retargeter], robot: Robot, tail_helper: bool = False,
                 niceness: int = 0) -> None:  # fmt: skip
        self.make = make
        self.robot = robot
        self.tail_helper = tail_helper
        self.niceness = niceness  # added to the child's (lower priority: it yields the cores to its parent)
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Any = None
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            lower_priority = (lambda: os.nice(self.niceness)) if self.niceness else None
            process = subprocess.Popen(
                [sys.executable, "-m", "retarget.process", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                env={**os.environ, **ONE_THREAD}, preexec_fn=lower_priority,
            )  # fmt: skip
            conn = Connection(ours.detach())
        try:
            conn.send((self.make, self.tail_helper))
            if not conn.poll(START_TIMEOUT_S):
                raise RetargetProcessError(f"the retargeting process did not start within {START_TIMEOUT_S:.0f} s")
            status, error = conn.recv()
        except (EOFError, OSError) as exc:
            process.kill()
            raise RetargetProcessError(f"the retargeting process ended at its start: {exc!r}") from None
        except RetargetProcessError:
            process.kill()
            raise
        if status != "ok":
            process.wait(5.0)
            raise error
        self._process, self._conn = process, conn

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _call(self, method: str, args: tuple, kwargs: dict) -> Any:
        """Send one request and wait for its answer (holding the lock); raise the child's error."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            try:
                self._conn.send((method, args, kwargs))
                status, value = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                self._process = None
                raise RetargetProcessError(f"the retargeting process ended during a call: {exc!r}") from None
        if status != "ok":
            raise value
        return value

    def retarget(self, joints_T223: np.ndarray, fps: float, initial_q: np.ndarray | None = None,
                 warm_start: RobotTrajectory | None = None, **options: Any) -> RobotTrajectory:  # fmt: skip
        """:meth:`Retargeter.retarget <retarget.retargeter.Retargeter.retarget>` in the child process."""
        if warm_start is not None:
            warm_start = dataclasses.replace(warm_start, robot=None, report=None)
        value = self._call("retarget", (np.asarray(joints_T223), fps, initial_q, warm_start), options)
        return dataclasses.replace(value, robot=self.robot)

    def close(self) -> None:
        """End the child (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._process is not None:
                try:
                    self._process.wait(5.0)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = self._conn = None


class TailHelper:
    """The second half of a long motion, solved in another process while the caller solves the first
    (:meth:`Retargeter.solve_tail <retarget.retargeter.Retargeter.solve_tail>`): :meth:`submit`, then
    :meth:`collect`. One caller; a request never collected is collected (and dropped) by the next."""

    def __init__(self, process: RetargeterProcess) -> None:
        self.process = process
        self._pending: threading.Thread | None = None
        self._answer: tuple[str, Any] = ("error", RetargetProcessError("nothing was submitted"))

    def submit(self, joints_T223: np.ndarray, fps: float, initial_q: np.ndarray | None, stand_in_place: bool,
               start: int) -> None:  # fmt: skip
        """Start solving from keyframe ``start`` on (returns at once)."""
        if self._pending is not None:
            self._pending.join()
        args = (np.asarray(joints_T223), fps, initial_q, stand_in_place, start)

        def call() -> None:
            try:
                self._answer = ("ok", self.process._call("solve_tail", args, {}))
            except Exception as exc:  # noqa: BLE001 (raised by collect)
                self._answer = ("error", exc)

        self._pending = threading.Thread(target=call, name="moscale-tail-helper", daemon=True)
        self._pending.start()

    def collect(self) -> dict:
        """Wait for the submitted half; raise its error."""
        if self._pending is not None:
            self._pending.join()
            self._pending = None
        status, value = self._answer
        self._answer = ("error", RetargetProcessError("nothing was submitted"))
        if status != "ok":
            raise value
        return value


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
