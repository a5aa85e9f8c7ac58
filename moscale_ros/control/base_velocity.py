"""Base velocity commands on the plans' timeline, for a robot's walking controller (``locomotion: cmd_vel``).

A travelling plan carries one body-frame command ``(v_x, v_y, w_z)`` per trajectory point
(:func:`retarget.locomotion.base_velocity_commands` of the plan's own base path, so it follows the
eased and spliced motion the controller gets), on the trajectory's times from its stamp ``s``. The
schedule mirrors what a joint_trajectory_controller does with the trajectories: a plan replaces
what was commanded from its switch time ``s`` on; a standing plan, ``~/stop``, a cancel or a
preemption commands zero from its time. At time ``t`` the command is that of the entry with the
latest start ``<= t``, sampled zero-order at ``floor((t - s) * rate)``, and zero after its end::

    command(t) = commands_N3[floor((t - s) rate)]   for s <= t < s + N / rate,   else 0
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

ZERO_3 = np.zeros(3)


@dataclass(frozen=True)
class BaseVelocityPlan:
    """Commands ``(N, 3)`` of one plan at ``rate`` Hz from the absolute time ``start_time``; the last is 0."""

    start_time: float
    rate: float
    commands_N3: np.ndarray  # noqa: N815 (shape suffix)

    @property
    def end_time(self) -> float:
        return self.start_time + len(self.commands_N3) / self.rate

    def at(self, t: float) -> np.ndarray:
        index = int(np.floor((t - self.start_time) * self.rate + 1e-9))
        return self.commands_N3[index].copy() if 0 <= index < len(self.commands_N3) else ZERO_3.copy()


class BaseVelocitySchedule:
    """What the walking controller is commanded over time (module docstring); thread-safe (the
    generation worker adds plans, the publishing timer and the stop service read and stop it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[float, BaseVelocityPlan | None]] = []  # (from time, plan or zero), by time

    def replace(self, plan: BaseVelocityPlan | None, from_time: float) -> None:
        """Command ``plan`` (``None``: zero) from ``from_time`` on, replacing whatever was planned from then."""
        with self._lock:
            self._entries = [entry for entry in self._entries if entry[0] < from_time] + [(from_time, plan)]

    def stop(self, at: float) -> None:
        """Zero from ``at`` on (``~/stop``, cancel, preemption, a standing plan)."""
        self.replace(None, at)

    def command_at(self, t: float) -> tuple[np.ndarray, bool]:
        """``(command (3,), finished)`` at ``t``; ``finished``: nothing but zero is commanded from ``t`` on
        (the entries that are over are dropped then)."""
        with self._lock:
            current = [i for i, (start, _) in enumerate(self._entries) if start <= t]
            if not current:
                return ZERO_3.copy(), not self._entries
            i = current[-1]
            self._entries = self._entries[i:]
            plan = self._entries[0][1]
            command = plan.at(t) if plan is not None else ZERO_3.copy()
            last = len(self._entries) == 1
            finished = last and (plan is None or t >= plan.end_time)
            if finished:
                self._entries = []
            return command, finished

    @property
    def empty(self) -> bool:
        with self._lock:
            return not self._entries
