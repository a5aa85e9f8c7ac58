"""What a physics run measures, observed once per controller cycle (ROS-free).

With ``q*`` the commanded joint positions of a cycle and ``q`` the simulated ones at the same
instant (the controller's ``desired - actual``), per joint ``j``:

* tracking: ``rms_j = sqrt(mean_t (q*_j - q_j)^2)`` and ``max_j = max_t |q*_j - q_j|`` (rad);
* effort: ``max_t |tau_j| / tau_max_j``, the actuator torque over its limit (1.0: saturated);
* upright: the root link's height ``z`` and tilt ``acos(R_zz)`` (angle of its z axis from the
  vertical); the robot *fell* at the first cycle with ``z < fall_height_ratio x z_0`` or a tilt
  above ``fall_tilt_deg``;
* foot slip: while a foot presses on the floor with more than ``slip_contact_force`` newtons, its
  horizontal speed is integrated: ``slip = sum |v_xy| dt`` (m), and its peak kept;
* self-collision: contacts between two different robot bodies; a collision is counted when a body
  pair starts touching (onset), and the pairs are listed.

Once the robot has fallen only the upright figures go on: tracking, effort, slip and
self-collisions measure the motion, not the tumble.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mujoco
import numpy as np

from moscale_ros.sim.simulator import Simulator


@dataclass
class PhysicsMonitor:
    """Accumulates the figures of the module docstring; call :meth:`observe` once per cycle."""

    simulator: Simulator
    start_height: float = 0.0
    cycles: int = 0
    fell_at: float | None = None
    min_height: float = math.inf
    max_tilt_deg: float = 0.0
    squared_error_J: np.ndarray = field(default_factory=lambda: np.zeros(0))  # noqa: N815
    max_error_J: np.ndarray = field(default_factory=lambda: np.zeros(0))  # noqa: N815
    max_effort_fraction_J: np.ndarray = field(default_factory=lambda: np.zeros(0))  # noqa: N815
    slip_m: dict[str, float] = field(default_factory=dict)
    max_slip_speed: dict[str, float] = field(default_factory=dict)
    self_collisions: int = 0
    self_collision_pairs: set[tuple[str, str]] = field(default_factory=set)
    _touching: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        sim = self.simulator.sim
        j = sim.num_joints
        self.squared_error_J, self.max_error_J, self.max_effort_fraction_J = np.zeros(j), np.zeros(j), np.zeros(j)
        self.start_height = float(self.simulator.data.xpos[sim.root_body][2])
        self.slip_m = {side: 0.0 for side in sim.foot_bodies}
        self.max_slip_speed = {side: 0.0 for side in sim.foot_bodies}
        self._foot_of_body = {body: side for side, body in sim.foot_bodies.items()}

    def observe(self, commanded_J: np.ndarray, dt: float) -> None:
        """One cycle: ``commanded_J`` is what the controller commands now, ``dt`` the cycle length."""
        sim, data = self.simulator.sim, self.simulator.data
        self._upright()
        if self.fell_at is not None:
            return
        error_J = np.abs(np.asarray(commanded_J) - data.qpos[sim.qpos_J])
        self.squared_error_J += error_J**2
        np.maximum(self.max_error_J, error_J, out=self.max_error_J)
        effort_J = np.abs(data.actuator_force[sim.actuator_J]) / sim.effort_limits_J
        np.maximum(self.max_effort_fraction_J, effort_J, out=self.max_effort_fraction_J)
        self.cycles += 1
        self._contacts(dt)

    def _upright(self) -> None:
        sim, data = self.simulator.sim, self.simulator.data
        if sim.fixed_base:
            return
        height = float(data.xpos[sim.root_body][2])
        tilt = math.degrees(math.acos(float(np.clip(data.xmat[sim.root_body][8], -1.0, 1.0))))
        self.min_height = min(self.min_height, height)
        self.max_tilt_deg = max(self.max_tilt_deg, tilt)
        fallen = height < sim.config.fall_height_ratio * self.start_height or tilt > sim.config.fall_tilt_deg
        if fallen and self.fell_at is None:
            self.fell_at = self.simulator.time

    def _contacts(self, dt: float) -> None:
        sim, model, data = self.simulator.sim, self.simulator.model, self.simulator.data
        force_6 = np.zeros(6)
        pressing: dict[str, float] = {}
        touching: set[tuple[int, int]] = set()
        for i in range(data.ncon):
            contact = data.contact[i]
            b1, b2 = int(model.geom_bodyid[contact.geom1]), int(model.geom_bodyid[contact.geom2])
            if sim.floor_geom in (contact.geom1, contact.geom2):
                side = self._foot_of_body.get(b1 if contact.geom2 == sim.floor_geom else b2)
                if side is not None:
                    mujoco.mj_contactForce(model, data, i, force_6)
                    pressing[side] = pressing.get(side, 0.0) + abs(force_6[0])
            elif b1 > 0 and b2 > 0 and b1 != b2:
                touching.add((min(b1, b2), max(b1, b2)))
        for pair in touching - self._touching:
            self.self_collisions += 1
            self.self_collision_pairs.add((model.body(pair[0]).name, model.body(pair[1]).name))
        self._touching = touching
        velocity_6 = np.zeros(6)
        for side, force in pressing.items():
            if force <= sim.config.slip_contact_force:
                continue
            mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, sim.foot_bodies[side], velocity_6, 0)
            speed = float(np.hypot(velocity_6[3], velocity_6[4]))
            self.slip_m[side] += speed * dt
            self.max_slip_speed[side] = max(self.max_slip_speed[side], speed)

    # ---------------------------------------------------------------------------------- results

    def tracking_rms_J(self) -> np.ndarray:  # noqa: N802
        return np.sqrt(self.squared_error_J / max(self.cycles, 1))

    @property
    def stayed_up(self) -> bool:
        return self.fell_at is None
