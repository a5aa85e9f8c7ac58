"""One MuJoCo world holding one robot: reset to a pose, command joint positions, step (ROS-free).

Placement: :meth:`Simulator.reset` puts the robot in a joint pose and base pose ``[x y z qx qy qz
qw]`` at rest; on a floating base it then shifts the base vertically so the lowest collision point
touches the floor (``z = 0``): retargeted base heights come from a human's proportions, the floor
contact from the robot's meshes.
"""

from __future__ import annotations

import mujoco
import numpy as np

from moscale_ros.sim.model import SimModel, from_mujoco_pose, lowest_point, to_mujoco_pose


class Simulator:
    """The physics of one :class:`~moscale_ros.sim.model.SimModel`; time starts at 0 on every reset."""

    def __init__(self, sim: SimModel) -> None:
        self.sim = sim
        self.model = sim.model
        self.data = mujoco.MjData(sim.model)
        self.steps_per_cycle = max(1, int(round(1.0 / (sim.config.controller_rate * sim.model.opt.timestep))))

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def cycle_s(self) -> float:
        """Seconds of one controller cycle (whole physics steps)."""
        return self.steps_per_cycle * float(self.model.opt.timestep)

    def reset(self, positions_J: np.ndarray, base_pose_7: np.ndarray | None = None, on_floor: bool = True) -> None:
        """Robot at rest in ``positions_J`` (controlled joints) and ``base_pose_7``, commanded to hold it."""
        mujoco.mj_resetData(self.model, self.data)
        q_J = np.asarray(positions_J, dtype=np.float64)
        self.data.qpos[self.sim.qpos_J] = q_J
        for actuator, value in self.sim.locked_ctrl.items():
            self.data.qpos[self.model.jnt_qposadr[self.model.actuator_trnid[actuator, 0]]] = value
            self.data.ctrl[actuator] = value
        if not self.sim.fixed_base and base_pose_7 is not None:
            self.data.qpos[:7] = to_mujoco_pose(base_pose_7)
        mujoco.mj_kinematics(self.model, self.data)
        if not self.sim.fixed_base and on_floor:
            self.data.qpos[2] -= lowest_point(self.sim, self.data)
        self.command(q_J)
        mujoco.mj_forward(self.model, self.data)

    def command(self, positions_J: np.ndarray, velocities_J: np.ndarray | None = None) -> None:
        """Joint targets, held until the next command: the PD ``tau = kp (q* - q) + kv (q'* - q')``
        as the position actuator's ``ctrl = q* + (kv / kp) q'*`` (see :mod:`moscale_ros.sim.model`)."""
        ctrl_J = np.asarray(positions_J, dtype=np.float64)
        if velocities_J is not None:
            ctrl_J = ctrl_J + self.sim.damping_ratio_J * np.asarray(velocities_J)
        self.data.ctrl[self.sim.actuator_J] = ctrl_J

    def step(self, steps: int = 1) -> None:
        mujoco.mj_step(self.model, self.data, nstep=steps)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self.sim.qpos_J].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self.sim.dof_J].copy()

    def joint_efforts(self) -> np.ndarray:
        """Actuator torques (N m) of the controlled joints after the last step."""
        return self.data.actuator_force[self.sim.actuator_J].copy()

    def base_pose(self) -> np.ndarray:
        """Root link pose ``[x y z qx qy qz qw]`` in the world."""
        body = self.sim.root_body
        return from_mujoco_pose(np.concatenate([self.data.xpos[body], self.data.xquat[body]]))

    def base_twist(self) -> np.ndarray:
        """Root link ``[vx vy vz wx wy wz]``, linear then angular, in the world frame."""
        out_6 = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_BODY, self.sim.root_body, out_6, 0)
        return np.concatenate([out_6[3:], out_6[:3]])
