"""Simulation settings of a robot: the ``sim:`` section of ``config/robots/<name>.yaml``.

The section is optional (every field has a default) and schema-checked by
:func:`moscale_common.config.from_dict`: unknown keys and wrong types raise ConfigError naming the key.
The defaults are the PD that keeps the G1 standing on a floating base (docs/PLATFORM.md, "Physics
simulation: MuJoCo"): a position actuator per joint applying

    tau = clip(kp (q_ref - q) - kv q', -effort_limit, effort_limit)

with joint armature and damping and MuJoCo's ``implicitfast`` integrator, which treats the
velocity-dependent terms (kv, damping) implicitly, so kp 1000 on light wrist links stays stable.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from moscale_common.config import from_dict
from moscale_common.errors import ConfigError


@dataclass
class JointGains:
    """PD gains of the joints whose names match a glob (``sim.joint_gains``)."""

    kp: float
    kv: float


@dataclass
class SimConfig:
    """Schema of a robot YAML's ``sim:`` section (all optional)."""

    timestep: float = 0.002  # s of one physics step
    integrator: Literal["implicitfast", "implicit", "Euler", "RK4"] = "implicitfast"
    kp: float = 1000.0  # N m / rad of every position actuator ...
    kv: float = 50.0  # N m s / rad
    joint_gains: dict[str, JointGains] = field(default_factory=dict)  # ... unless a glob here matches first
    armature: float = 0.02  # kg m^2 added to every joint's inertia (rotor inertia)
    damping: float = 1.0  # N m s / rad passive joint damping
    effort_scale: float = 1.0  # actuator torque limit = effort_scale x the URDF's effort limit
    controller_rate: float = 500.0  # Hz of the trajectory controller's update (commands held in between)
    friction: float = 1.0  # sliding friction coefficient of the floor
    self_collision: bool = True  # robot bodies collide with each other (pairs touching at rest excepted)
    fall_height_ratio: float = 0.6  # fallen: pelvis below this fraction of its start height ...
    fall_tilt_deg: float = 60.0  # ... or the pelvis tilted more than this from upright
    slip_contact_force: float = 5.0  # N of normal force above which a foot counts as in contact (slip)

    def __post_init__(self) -> None:
        positive = ("timestep", "kp", "kv", "effort_scale", "controller_rate", "friction")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"sim.{name}: must be a positive number, got {value!r}")
        for name in ("armature", "damping", "slip_contact_force"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"sim.{name}: must be >= 0, got {value!r}")
        if not 0 < self.fall_height_ratio < 1:
            raise ConfigError(f"sim.fall_height_ratio: must be in (0, 1), got {self.fall_height_ratio}")
        if not 0 < self.fall_tilt_deg < 180:
            raise ConfigError(f"sim.fall_tilt_deg: must be in (0, 180), got {self.fall_tilt_deg}")
        if self.controller_rate * self.timestep > 1 + 1e-9:
            raise ConfigError(
                f"sim.controller_rate {self.controller_rate:g} Hz is faster than the physics "
                f"(timestep {self.timestep:g} s)"
            )
        for pattern, gains in self.joint_gains.items():
            if not (gains.kp > 0 and gains.kv > 0):
                raise ConfigError(f"sim.joint_gains.{pattern}: kp and kv must be > 0")

    def gains(self, joint: str) -> tuple[float, float]:
        """``(kp, kv)`` of ``joint``: the first matching ``joint_gains`` glob, else the defaults."""
        for pattern, gains in self.joint_gains.items():
            if fnmatch.fnmatchcase(joint, pattern):
                return gains.kp, gains.kv
        return self.kp, self.kv


def sim_config(section: Any, where: str = "sim") -> SimConfig:
    """The checked :class:`SimConfig` of a ``sim:`` mapping (``None`` or absent: the defaults)."""
    return from_dict(SimConfig, section or {}, where=where)
