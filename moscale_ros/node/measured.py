"""The robot's measured joint positions, by name (ROS-free; the node feeds it from
``joint_state_topic_in``, e.g. ``/joint_states`` of a joint_state_broadcaster).

A command that arrives with nothing running starts from :meth:`MeasuredJointState.pose`: the node's
controller model is set to hold that pose, so the new plan is blended out of it
(:meth:`moscale_ros.control.timeline.ControllerTimeline.hold`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np


class MeasuredJointState:
    """Latest position of every joint heard of (thread-safe; messages may name any subset)."""

    def __init__(self) -> None:
        self._positions: dict[str, float] = {}
        self._stamp = 0.0
        self._lock = threading.Lock()

    def update(self, names: Sequence[str], positions: Sequence[float], stamp: float) -> None:
        """Record one JointState message (names without a position, or non-finite values, are skipped)."""
        with self._lock:
            for name, value in zip(names, positions):
                if np.isfinite(value):
                    self._positions[name] = float(value)
            self._stamp = stamp

    @property
    def stamp(self) -> float:
        """Receipt time of the latest message (0 before the first)."""
        return self._stamp

    def pose(self, joint_names: Sequence[str]) -> tuple[np.ndarray | None, list[str]]:
        """``(positions_J, [])`` in ``joint_names`` order, or ``(None, missing joint names)``."""
        with self._lock:
            missing = [name for name in joint_names if name not in self._positions]
            if missing:
                return None, missing
            return np.array([self._positions[name] for name in joint_names], dtype=np.float64), []
