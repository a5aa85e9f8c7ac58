"""The control loop of a simulated robot: a joint_trajectory_controller driving the physics (ROS-free).

Each cycle of length ``dt`` (``1 / sim.controller_rate``, whole physics steps) at time ``t``:

1. ``state = controller.update(t)``: the controller takes a pending message and samples its
   trajectory (:class:`~moscale_ros.control.jtc_rules.JointTrajectoryControllerModel`, the same
   rules the tests and the node's oracle use);
2. the monitor compares ``state.positions`` with the simulated joints at ``t``;
3. the joint drives get ``state.positions`` and ``state.velocities`` as targets (a PD on both),
   held for the cycle's physics steps.

Messages arrive through :meth:`ControlLoop.receive` (topic callback); a rejected message changes
nothing and its reason is returned (and kept in :attr:`ControlLoop.rejections`).
"""

from __future__ import annotations

import numpy as np

from moscale_ros.control.jtc_rules import (
    ControllerSettings,
    JointState,
    JointTrajectoryControllerModel,
    TrajectoryMessage,
)
from moscale_ros.sim.model import SimModel
from moscale_ros.sim.monitor import PhysicsMonitor
from moscale_ros.sim.simulator import Simulator


class ControlLoop:
    """A :class:`Simulator`, the controller model in front of it and a :class:`PhysicsMonitor`."""

    def __init__(
        self,
        sim: SimModel,
        positions_J: np.ndarray,
        base_pose_7: np.ndarray | None = None,
        allow_nonzero_velocity_at_trajectory_end: bool = False,
    ) -> None:
        self.simulator = Simulator(sim)
        self.simulator.reset(positions_J, base_pose_7)
        self.settings = ControllerSettings(
            joints=list(sim.robot.joint_names),
            allow_nonzero_velocity_at_trajectory_end=allow_nonzero_velocity_at_trajectory_end,
            update_rate=1.0 / self.simulator.cycle_s,
        )
        self.controller = JointTrajectoryControllerModel(self.settings, positions_J, self.simulator.time)
        self.monitor = PhysicsMonitor(self.simulator)
        self.rejections: list[tuple[float, str]] = []
        self.accepted = 0
        self.last_state: JointState = self.controller.state

    @property
    def time(self) -> float:
        return self.simulator.time

    def receive(self, message: TrajectoryMessage, now: float | None = None) -> str | None:
        """Hand ``message`` to the controller at ``now`` (default: the simulation time)."""
        now = self.time if now is None else now
        reason = self.controller.receive(message, now)
        if reason is None:
            self.accepted += 1
        else:
            self.rejections.append((now, reason))
        return reason

    def cycle(self) -> JointState:
        """One controller cycle (module docstring); returns what was commanded."""
        state = self.controller.update(self.time)
        self.monitor.observe(state.positions_J, self.simulator.cycle_s)
        self.simulator.command(state.positions_J, state.velocities_J)
        self.simulator.step(self.simulator.steps_per_cycle)
        self.last_state = state
        return state
