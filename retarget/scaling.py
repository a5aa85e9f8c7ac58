# ruff: noqa: N815  (field names carry their shapes: root_T3, foot_R_T233)
"""Limb-length scaling: human joint positions (robot world, z-up) to IK targets for one robot.

Lower body: one similarity about the ground, ``p' = s_leg (p - h_h e_z) + h_r e_z`` with
``s_leg = robot leg / human leg`` (hip-knee-ankle), ``h_h`` the human ankle height when a foot
stands on the ground (estimated from the clip: this is the ground height) and ``h_r`` the robot
ankle-frame height above its sole. A planted human foot therefore puts the robot sole on z = 0,
and a foot that does not move stays put after scaling.

Arms: targets relative to the robot's own shoulder, ``s_arm (p_elbow|wrist - p_shoulder)`` with
``s_arm = robot arm / human arm``, so a different torso width or height does not bend the arms.

Orientations: pelvis from the hip axis and the lower spine, chest from the shoulder axis and the
upper spine, feet from the ankle-to-toe direction (flat while in contact); each is composed with
the robot frame's own orientation in the neutral pose, so frames need not follow a convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin

from retarget.human import JOINT
from retarget.robot import Robot

SIDES = ("left", "right")
MAX_FOOT_YAW = 0.8  # rad, largest foot yaw relative to the pelvis heading


@dataclass
class BodyScale:
    """Ratios and heights of one human clip on one robot (metres)."""

    leg: float
    arm: float
    human_ankle_height: float
    robot_ankle_height: float


@dataclass
class Targets:
    """IK targets per frame in the robot world (z-up). Index 0/1 of the side axis is left/right."""

    root_T3: np.ndarray  # midpoint of the two hip frames
    pelvis_R_T33: np.ndarray
    torso_R_T33: np.ndarray
    knee_T23: np.ndarray
    ankle_T23: np.ndarray
    foot_R_T233: np.ndarray
    elbow_rel_T23: np.ndarray  # elbow minus shoulder
    wrist_rel_T23: np.ndarray  # wrist minus shoulder
    contact_T2: np.ndarray  # bool, filled by contacts.detect_contacts

    def __len__(self) -> int:
        return len(self.root_T3)

    def take(self, idx: np.ndarray) -> Targets:
        """Targets at the given frame indices."""
        return Targets(**{k: v[idx] for k, v in vars(self).items()})


@dataclass
class RobotProportions:
    """Robot lengths in the neutral pose and the neutral orientation of each oriented frame."""

    leg: float
    arm: float
    ankle_height: float
    neutral_R: dict[str, np.ndarray]
    sole_from_ankle: list[np.ndarray]  # per side (C, 3): sole corners minus ankle, in foot-frame axes


def robot_proportions(robot: Robot) -> RobotProportions:
    """Leg (hip-knee-ankle) and arm (shoulder-elbow-wrist) lengths, ankle height above the sole."""
    model = robot.model
    data = model.createData()
    q = pin.neutral(model)
    pin.framesForwardKinematics(model, data, q)

    def pos(key: str) -> np.ndarray:
        return data.oMf[robot.frame_ids[key]].translation.copy()

    def chain(*keys: str) -> float:
        return float(sum(np.linalg.norm(pos(a) - pos(b)) for a, b in zip(keys[:-1], keys[1:])))

    leg = np.mean([chain(f"{s}_hip", f"{s}_knee", f"{s}_ankle") for s in SIDES])
    arm = np.mean([chain(f"{s}_shoulder", f"{s}_elbow", f"{s}_wrist") for s in SIDES])
    heights, sole_from_ankle = [], []
    for side in SIDES:
        foot = data.oMf[robot.foot_frame_ids[side]]
        corners_C3 = (foot.rotation @ robot.sole_corners[side].T).T + foot.translation
        heights.append(pos(f"{side}_ankle")[2] - corners_C3[:, 2].min())
        sole_from_ankle.append((corners_C3 - pos(f"{side}_ankle")) @ foot.rotation)
    neutral_R = {
        "pelvis": data.oMf[robot.frame_ids["pelvis"]].rotation.copy(),
        "spine3": data.oMf[robot.frame_ids["spine3"]].rotation.copy(),
        **{f"{s}_foot": data.oMf[robot.foot_frame_ids[s]].rotation.copy() for s in SIDES},
    }
    return RobotProportions(
        leg=float(leg),
        arm=float(arm),
        ankle_height=float(np.mean(heights)),
        neutral_R=neutral_R,
        sole_from_ankle=sole_from_ankle,
    )


def _chain_length(world_T223: np.ndarray, *names: str) -> float:
    idx = [JOINT[n] for n in names]
    seg = np.linalg.norm(world_T223[:, idx[1:]] - world_T223[:, idx[:-1]], axis=-1)
    return float(np.median(seg.sum(axis=1)))


def body_scale(world_T223: np.ndarray, robot: RobotProportions) -> BodyScale:
    """Scale factors of a clip: median limb lengths over its frames; ground from the low ankle heights."""
    human_leg = np.mean([_chain_length(world_T223, f"{s}_hip", f"{s}_knee", f"{s}_ankle") for s in SIDES])
    human_arm = np.mean([_chain_length(world_T223, f"{s}_shoulder", f"{s}_elbow", f"{s}_wrist") for s in SIDES])
    ankles_z = world_T223[:, [JOINT["left_ankle"], JOINT["right_ankle"]], 2]
    stance_height = float(np.percentile(ankles_z.min(axis=1), 5))
    return BodyScale(
        leg=robot.leg / max(human_leg, 1e-3),
        arm=robot.arm / max(human_arm, 1e-3),
        human_ankle_height=stance_height,
        robot_ankle_height=robot.ankle_height,
    )


def frame_from_axes(left_T3: np.ndarray, up_T3: np.ndarray) -> np.ndarray:
    """Rotations with y along ``left`` and z along ``up`` made orthogonal to it: R = [y x z, y, z]."""
    y = left_T3 / np.maximum(np.linalg.norm(left_T3, axis=-1, keepdims=True), 1e-9)
    z = up_T3 - (up_T3 * y).sum(-1, keepdims=True) * y
    z = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-9)
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=-1)


def rot_z(yaw_T: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw_T), np.sin(yaw_T)
    R = np.zeros(np.shape(yaw_T) + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = c, -s, s, c, 1.0
    return R


def rot_y(pitch_T: np.ndarray) -> np.ndarray:
    c, s = np.cos(pitch_T), np.sin(pitch_T)
    R = np.zeros(np.shape(pitch_T) + (3, 3))
    R[..., 0, 0], R[..., 0, 2], R[..., 2, 0], R[..., 2, 2], R[..., 1, 1] = c, s, -s, c, 1.0
    return R


def wrap(angle: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def foot_angles(world_T223: np.ndarray, side: str, heading_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw of the ankle-to-toe direction and its downward pitch (rad), per frame.

    The yaw is taken relative to the pelvis heading, limited to +-MAX_FOOT_YAW, and faded towards
    the heading as the foot points down (its horizontal projection then says little).
    """
    d = world_T223[:, JOINT[f"{side}_foot"]] - world_T223[:, JOINT[f"{side}_ankle"]]
    horizontal = np.linalg.norm(d[:, :2], axis=1)
    pitch_down = np.arctan2(-d[:, 2], horizontal)
    trust = np.clip((horizontal / np.maximum(np.linalg.norm(d, axis=1), 1e-9) - 0.3) / 0.4, 0.0, 1.0)
    relative = np.clip(wrap(np.arctan2(d[:, 1], d[:, 0]) - heading_T), -MAX_FOOT_YAW, MAX_FOOT_YAW)
    return heading_T + trust * relative, pitch_down


def build_targets(world_T223: np.ndarray, scale: BodyScale, robot: RobotProportions) -> Targets:
    """Scaled targets of every frame (contacts all False; see contacts.detect_contacts / pin_feet)."""
    J = world_T223
    lift = np.array([0.0, 0.0, scale.human_ankle_height])
    drop = np.array([0.0, 0.0, scale.robot_ankle_height])

    def lower(name: str) -> np.ndarray:
        return scale.leg * (J[:, JOINT[name]] - lift) + drop

    root = 0.5 * (lower("left_hip") + lower("right_hip"))
    pelvis_R = frame_from_axes(
        J[:, JOINT["left_hip"]] - J[:, JOINT["right_hip"]], J[:, JOINT["spine1"]] - J[:, JOINT["pelvis"]]
    )
    torso_R = frame_from_axes(
        J[:, JOINT["left_shoulder"]] - J[:, JOINT["right_shoulder"]], J[:, JOINT["neck"]] - J[:, JOINT["spine3"]]
    )
    heading = np.arctan2(pelvis_R[:, 1, 0], pelvis_R[:, 0, 0])
    foot_R = []
    for side in SIDES:
        yaw, pitch = foot_angles(J, side, heading)
        rest = np.median(pitch)
        foot_R.append(rot_z(yaw) @ rot_y(pitch - rest) @ robot.neutral_R[f"{side}_foot"])

    def rel(name: str, side: str) -> np.ndarray:
        return scale.arm * (J[:, JOINT[f"{side}_{name}"]] - J[:, JOINT[f"{side}_shoulder"]])

    return Targets(
        root_T3=root,
        pelvis_R_T33=pelvis_R @ robot.neutral_R["pelvis"],
        torso_R_T33=torso_R @ robot.neutral_R["spine3"],
        knee_T23=np.stack([lower(f"{s}_knee") for s in SIDES], axis=1),
        ankle_T23=np.stack([lower(f"{s}_ankle") for s in SIDES], axis=1),
        foot_R_T233=np.stack(foot_R, axis=1),
        elbow_rel_T23=np.stack([rel("elbow", s) for s in SIDES], axis=1),
        wrist_rel_T23=np.stack([rel("wrist", s) for s in SIDES], axis=1),
        contact_T2=np.zeros((len(J), 2), dtype=bool),
    )
