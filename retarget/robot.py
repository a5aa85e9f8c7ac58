"""Robot description for retargeting: a YAML config (``config/robots/<name>.yaml``) plus its URDF.

The YAML names where the URDF comes from (a pip package's data, a file, or the ``robot_description``
string a robot stack publishes), which robot frame stands for each canonical human joint, the feet
soles, joints to lock, the start pose, task weights and joint velocity limits (rad/s). The model is
built mesh-free with a free-flyer base, so ``q = [x y z qx qy qz qw, joints...]``.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pinocchio as pin

from moscale_common.config import from_dict, load_yaml
from moscale_common.errors import ConfigError
from moscale_common.paths import resource
from retarget.collision import CollisionGroups

ROBOTS_DIR = "config/robots"

# Canonical joints (or "spine3" for the chest) the retargeter needs a robot frame for.
REQUIRED_FRAMES = (
    "pelvis", "spine3",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)  # fmt: skip


@dataclass
class UrdfSource:
    """Where the URDF is: ``path`` inside pip distribution ``package``, or a file (relative to the YAML)."""

    package: str = ""
    path: str = ""


@dataclass
class FootConfig:
    """A foot: its frame and the sole's corner points in that frame (metres), for contact and balance."""

    frame: str
    sole_corners: list[tuple[float, float, float]]


@dataclass
class TaskWeights:
    """Weights of the IK least-squares terms (squared-error weights; position terms in m, angles in rad)."""

    root_position: float = 20.0
    pelvis_orientation: float = 1.0
    torso_orientation: float = 1.0
    knee_position: float = 20.0
    foot_position: float = 100.0
    foot_orientation: float = 1.0
    elbow_position: float = 4.0
    hand_position: float = 40.0
    posture: float = 0.02
    damping: float = 1e-3
    contact_gain: float = 100.0  # foot weights are multiplied by this while the foot is in contact


@dataclass
class RobotConfig:
    """Schema of ``config/robots/<name>.yaml`` (see config/robots/g1.yaml for a documented example)."""

    name: str
    urdf: UrdfSource
    frames: dict[str, str]
    feet: dict[str, FootConfig]
    locked_joints: dict[str, float] = field(default_factory=dict)
    initial_joint_positions: dict[str, float] = field(default_factory=dict)
    velocity_limits: dict[str, float] = field(default_factory=lambda: {"default": 6.0})
    weights: TaskWeights = field(default_factory=TaskWeights)
    collision: CollisionGroups = field(default_factory=CollisionGroups)  # link pairs kept apart (collision.py)
    sim: dict[str, Any] = field(default_factory=dict)  # physics settings, schema: moscale_ros.sim.config.SimConfig
    # Walking controller (locomotion: cmd_vel): its command limits [v_x m/s, v_y m/s, w_z rad/s]
    # (empty: the robot has none) and the joints it drives (globs); the rest is the upper body.
    max_base_velocity: list[float] = field(default_factory=list)
    leg_joints: list[str] = field(default_factory=list)


@dataclass
class Robot:
    """A loaded robot: Pinocchio model (free-flyer base, locked joints removed) and its limits.

    ``joint_names``/``lower``/``upper``/``velocity_limits`` follow the model's actuated joint order,
    which is the column order of every trajectory; ``q_initial`` is the full start configuration.
    """

    config: RobotConfig
    model: pin.Model
    source: str
    joint_names: list[str]
    lower: np.ndarray
    upper: np.ndarray
    velocity_limits: np.ndarray
    frame_ids: dict[str, int]
    foot_frame_ids: dict[str, int]
    sole_corners: dict[str, np.ndarray]
    q_initial: np.ndarray

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def upper_body_columns(self) -> list[int]:
        """Indices (trajectory columns) of the joints that are not legs (``leg_joints`` of the YAML)."""
        legs = self.config.leg_joints
        return [j for j, name in enumerate(self.joint_names) if not any(fnmatch.fnmatchcase(name, g) for g in legs)]

    def configuration(self, base_pose_7: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Full configuration ``q`` from a base pose ``[x y z qx qy qz qw]`` and joint positions."""
        return np.concatenate([np.asarray(base_pose_7, dtype=float), np.asarray(positions, dtype=float)])


def available_robots() -> list[str]:
    """Names of the robots shipped in config/robots/."""
    return sorted(p.stem for p in resource(ROBOTS_DIR).glob("*.yaml"))


def _find_config(name_or_yaml: str | Path) -> Path:
    text = str(name_or_yaml)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"robot config {path}: file not found")
        return path
    path = resource(ROBOTS_DIR) / f"{text}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown robot {text!r}; available robots: {', '.join(available_robots())}")
    return path


def _package_file(package: str, relative: str, where: str) -> Path:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(f"{where}: urdf.package {package!r} is not installed (pip install {package})") from exc
    suffix = relative.strip("/")
    for entry in dist.files or ():
        if str(entry).endswith(suffix):
            return Path(dist.locate_file(entry))
    raise ConfigError(f"{where}: {suffix!r} not found in the files of package {package!r}")


def _build_model(config: RobotConfig, where: Path, urdf_string: str | None) -> tuple[pin.Model, str]:
    try:
        if urdf_string is not None:
            return pin.buildModelFromXML(urdf_string, pin.JointModelFreeFlyer()), "robot_description"
        if not config.urdf.path:
            raise ConfigError(f"{where}: urdf.path is empty and no URDF string was given")
        if config.urdf.package:
            path = _package_file(config.urdf.package, config.urdf.path, str(where))
        else:
            path = Path(config.urdf.path)
            path = path if path.is_absolute() else where.parent / path
            if not path.is_file():
                raise ConfigError(f"{where}: URDF file {path} not found")
        return pin.buildModelFromUrdf(str(path), pin.JointModelFreeFlyer()), str(path)
    except (RuntimeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: cannot build a model from the URDF ({exc})") from exc


def _velocity_limit(name: str, patterns: dict[str, float], where: Path) -> float:
    for pattern, value in patterns.items():
        if pattern != "default" and fnmatch.fnmatchcase(name, pattern):
            return value
    if "default" not in patterns:
        raise ConfigError(f"{where}: velocity_limits has no entry for joint {name!r} and no 'default'")
    return patterns["default"]


def load_robot(name_or_yaml_path: str | Path, urdf_string: str | None = None) -> Robot:
    """Load ``config/robots/<name>.yaml`` (or a YAML path) and build its model.

    ``urdf_string`` (a ``robot_description``) replaces the YAML's URDF source. Unknown robots, URDF
    problems, frames or joints named in the YAML but absent from the URDF raise ConfigError.
    """
    path = _find_config(name_or_yaml_path)
    config = from_dict(RobotConfig, load_yaml(path), where=str(path))
    missing = [key for key in REQUIRED_FRAMES if key not in config.frames]
    if missing:
        raise ConfigError(f"{path}: frames is missing entries for {', '.join(missing)}")
    if set(config.feet) != {"left", "right"}:
        raise ConfigError(f"{path}: feet must have exactly 'left' and 'right', got {sorted(config.feet)}")
    for side, foot in config.feet.items():
        if len(foot.sole_corners) < 3:
            raise ConfigError(f"{path}: feet.{side}.sole_corners needs at least 3 points")
    for key, value in config.velocity_limits.items():
        if not value > 0:
            raise ConfigError(f"{path}: velocity_limits.{key} must be > 0, got {value}")

    if config.max_base_velocity and (len(config.max_base_velocity) != 3 or min(config.max_base_velocity) <= 0):
        given = config.max_base_velocity
        raise ConfigError(f"{path}: max_base_velocity must be 3 values > 0 [v_x, v_y, w_z], got {given}")

    full, source = _build_model(config, path, urdf_string)
    for joint in list(config.locked_joints) + list(config.initial_joint_positions):
        if not full.existJointName(joint):
            raise ConfigError(f"{path}: joint {joint!r} is not in the URDF ({source})")
    q_ref = pin.neutral(full)
    for joint, value in config.locked_joints.items():
        q_ref[full.joints[full.getJointId(joint)].idx_q] = value
    locked_ids = [full.getJointId(joint) for joint in config.locked_joints]
    model = pin.buildReducedModel(full, locked_ids, q_ref) if locked_ids else full

    names = [model.names[j] for j in range(2, model.njoints)]
    odd = [n for j, n in zip(range(2, model.njoints), names) if model.joints[j].nq != 1 or model.joints[j].nv != 1]
    if odd:
        raise ConfigError(f"{path}: only 1-DoF joints are supported; lock or remove {', '.join(odd)}")

    unmatched = [g for g in config.leg_joints if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if unmatched:
        raise ConfigError(f"{path}: leg_joints {unmatched} match no joint of the model")

    frame_names = dict(config.frames)
    frame_names.update({f"{side}_foot": foot.frame for side, foot in config.feet.items()})
    absent = sorted({f for f in frame_names.values() if not model.existFrame(f)})
    if absent:
        raise ConfigError(f"{path}: frame(s) {', '.join(absent)} named in the map are not in the URDF ({source})")
    frame_ids = {key: model.getFrameId(frame) for key, frame in config.frames.items()}
    foot_ids = {side: model.getFrameId(foot.frame) for side, foot in config.feet.items()}

    lower = model.lowerPositionLimit[7:].copy()
    upper = model.upperPositionLimit[7:].copy()
    bad = [n for n, lo, hi in zip(names, lower, upper) if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi)]
    if bad:
        raise ConfigError(f"{path}: joints without finite position limits in the URDF: {', '.join(bad)}")
    urdf_vel = model.velocityLimit[6:]
    vel = np.array([_velocity_limit(n, config.velocity_limits, path) for n in names])
    vel = np.where(urdf_vel > 0, np.minimum(vel, urdf_vel), vel)

    q_initial = pin.neutral(model)
    for joint, value in config.initial_joint_positions.items():
        if joint in config.locked_joints:
            continue
        q_initial[model.joints[model.getJointId(joint)].idx_q] = value
    q_initial[7:] = np.clip(q_initial[7:], lower, upper)
    return Robot(
        config=config,
        model=model,
        source=source,
        joint_names=names,
        lower=lower,
        upper=upper,
        velocity_limits=vel,
        frame_ids=frame_ids,
        foot_frame_ids=foot_ids,
        sole_corners={side: np.asarray(f.sole_corners, dtype=float) for side, f in config.feet.items()},
        q_initial=q_initial,
    )
