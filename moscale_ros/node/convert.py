"""Core objects <-> ROS messages, vectorised: arrays are copied as whole byte blocks, never per value.

Time: absolute times are float seconds of the node's clock; messages carry integer nanoseconds
(``sec = ns // 1e9``, ``nanosec = ns % 1e9``), rounded once, so every plan of a command that shares
a start time in seconds also shares it bit for bit in its ``header.stamp``.

Human skeleton frame: the canonical motion is y-up and faces +z; RViz frames are z-up with x
forward and y left, so a canonical point ``(x, y, z)`` is shown at ``(z, x, y)`` (a rotation).
"""

from __future__ import annotations

import array
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Twist
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker, MarkerArray

from moscale_common.skeleton import CANONICAL_JOINTS, CANONICAL_PARENTS
from moscale_ros.control.jtc_rules import TrajectoryMessage
from moscale_ros.msg import MotionPlan
from moscale_ros.pipeline import PlanStep
from retarget.robot import Robot
from retarget.trajectory import RobotTrajectory

_CANONICAL_TO_RVIZ = (2, 0, 1)  # rviz (x, y, z) = canonical (z, x, y)


def seconds_to_nanoseconds(seconds: float) -> int:
    return int(round(seconds * 1e9))


def time_msg(seconds: float) -> Time:
    ns = seconds_to_nanoseconds(seconds)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def time_to_seconds(stamp: Time | Duration) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _rows_as_arrays(values_NJ: np.ndarray, typecode: str = "d") -> list[array.array]:
    """Each row of ``values_NJ`` as an ``array.array`` (the type ROS sequence fields store)."""
    dtype = np.float64 if typecode == "d" else np.float32
    blob = np.ascontiguousarray(values_NJ, dtype=dtype).tobytes()
    row = values_NJ.shape[1] * np.dtype(dtype).itemsize
    rows = []
    for i in range(values_NJ.shape[0]):
        out = array.array(typecode)
        out.frombytes(blob[i * row : (i + 1) * row])
        rows.append(out)
    return rows


def joint_trajectory_msg(
    trajectory: RobotTrajectory, start_time: float, columns: Sequence[int] | None = None
) -> JointTrajectory:
    """``trajectory_msgs/JointTrajectory`` starting at absolute ``start_time`` (``header.stamp``);
    with ``columns``, only those joints (indices into ``trajectory.joint_names``), in that order."""
    picked = list(range(len(trajectory.joint_names))) if columns is None else list(columns)
    msg = JointTrajectory()
    msg.header.stamp = time_msg(start_time)
    msg.joint_names = [trajectory.joint_names[i] for i in picked]
    ns_N = np.round(np.asarray(trajectory.times, dtype=np.float64) * 1e9).astype(np.int64)
    secs, nsecs = (ns_N // 1_000_000_000).tolist(), (ns_N % 1_000_000_000).tolist()
    positions = _rows_as_arrays(np.asarray(trajectory.positions)[:, picked])
    velocities = _rows_as_arrays(np.asarray(trajectory.velocities)[:, picked])
    accelerations = _rows_as_arrays(np.asarray(trajectory.accelerations)[:, picked])
    points = []
    for i in range(len(ns_N)):
        point = JointTrajectoryPoint()
        point.positions = positions[i]
        point.velocities = velocities[i]
        point.accelerations = accelerations[i]
        point.time_from_start = Duration(sec=secs[i], nanosec=nsecs[i])
        points.append(point)
    msg.points = points
    return msg


def twist_msg(command_3: np.ndarray) -> Twist:
    """``geometry_msgs/Twist`` of a body-frame base command ``(v_x, v_y, w_z)``."""
    msg = Twist()
    msg.linear.x, msg.linear.y, msg.angular.z = (float(v) for v in command_3)
    return msg


def motion_plan_msg(step: PlanStep, frame_id: str = "") -> MotionPlan:
    """The ``MotionPlan`` of one scale: header stamped with the motion's start, trajectory with its switch time."""
    msg = MotionPlan()
    msg.header.stamp = time_msg(step.motion_start)
    msg.header.frame_id = frame_id
    msg.request_id = step.request.request_id
    msg.command = step.request.text
    msg.scale_index = step.scale_index
    msg.num_scales = step.num_scales
    msg.is_final = step.is_final
    msg.latency = float(step.latency_s)
    msg.switch_step = float(step.switch_step)
    msg.switch_step_ratio = float(step.switch_step_ratio)
    msg.locomotion = step.locomotion
    if step.base_velocity_N3 is not None:
        msg.base_velocities = np.asarray(step.base_velocity_N3, dtype=np.float32).ravel().tolist()
    msg.trajectory = joint_trajectory_msg(step.trajectory, step.start_time)
    msg.robot_name = step.trajectory.robot_name
    poses = array.array("d")
    poses.frombytes(np.ascontiguousarray(step.trajectory.base_poses, dtype=np.float64).tobytes())
    msg.base_poses = poses
    msg.human_fps = float(step.human_fps)
    msg.human_joint_names = list(CANONICAL_JOINTS)
    flat = array.array("f")
    flat.frombytes(np.ascontiguousarray(step.human_joints_T223, dtype=np.float32).tobytes())
    msg.human_positions = flat
    _describe_segments(msg, step)
    return msg


UNCHECKED_CONFIDENCE = -1.0  # a model file without a vocabulary (not NaN: messages stay comparable)


def _describe_segments(msg: MotionPlan, step: PlanStep) -> None:
    """The vocabulary's verdict and the parts of the command (see msg/MotionPlan.msg)."""
    parts = step.request.parts
    weakest = step.request.weakest
    msg.skill = " -> ".join(p.match.skill if p.match is not None else "" for p in parts) if weakest else ""
    msg.confidence = float(weakest.confidence) if weakest is not None else UNCHECKED_CONFIDENCE
    msg.skill_status = weakest.status if weakest is not None else "unchecked"
    msg.segment_texts = [p.text for p in parts]
    msg.segment_skills = [p.match.skill if p.match is not None else "" for p in parts]
    msg.segment_confidences = [
        float(p.match.confidence) if p.match is not None else UNCHECKED_CONFIDENCE for p in parts
    ]
    starts = step.segment_starts if len(step.segment_starts) == len(parts) else (0.0,) * len(parts)
    lengths = step.segment_seconds if len(step.segment_seconds) == len(parts) else [p.seconds for p in parts]
    msg.segment_starts = [float(t) for t in starts]
    msg.segment_durations = [float(t) for t in lengths]


def segment_lines(plan: MotionPlan) -> list[str]:
    """Each part of a plan as one line: ``text [skill, confidence] from-to s``."""
    lines = []
    for text, skill, confidence, start, length in zip(
        plan.segment_texts, plan.segment_skills, plan.segment_confidences, plan.segment_starts,
        plan.segment_durations,
    ):  # fmt: skip
        lines.append(f"{text} [{skill or 'unchecked'}, {confidence:.2f}] {start:.2f}-{start + length:.2f} s")
    return lines


def joint_state_msg(joint_names: Sequence[str], positions_J: np.ndarray, stamp_s: float) -> JointState:
    msg = JointState()
    msg.header.stamp = time_msg(stamp_s)
    msg.name = list(joint_names)
    values = array.array("d")
    values.frombytes(np.ascontiguousarray(positions_J, dtype=np.float64).tobytes())
    msg.position = values
    return msg


def skeleton_markers(joints_223: np.ndarray, stamp_s: float, frame_id: str, namespace: str = "human") -> MarkerArray:
    """The human pose as two markers: bones (LINE_LIST) and joints (SPHERE_LIST), z-up for RViz."""
    points_223 = np.asarray(joints_223, dtype=np.float64)[:, _CANONICAL_TO_RVIZ]
    stamp = time_msg(stamp_s)
    bones = Marker(type=Marker.LINE_LIST, action=Marker.ADD, ns=namespace, id=0)
    spheres = Marker(type=Marker.SPHERE_LIST, action=Marker.ADD, ns=namespace, id=1)
    for marker in (bones, spheres):
        marker.header.frame_id = frame_id
        marker.header.stamp = stamp
        marker.pose.orientation.w = 1.0
    bones.scale.x = 0.02
    bones.color = ColorRGBA(r=0.2, g=0.6, b=1.0, a=1.0)
    spheres.scale.x = spheres.scale.y = spheres.scale.z = 0.05
    spheres.color = ColorRGBA(r=1.0, g=0.5, b=0.1, a=1.0)
    as_points = [Point(x=x, y=y, z=z) for x, y, z in points_223.tolist()]
    spheres.points = as_points
    bones.points = [
        point
        for child, parent in enumerate(CANONICAL_PARENTS)
        if parent >= 0
        for point in (as_points[parent], as_points[child])
    ]
    return MarkerArray(markers=[bones, spheres])


def trajectory_arrays(msg: JointTrajectory) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``(joint_names, times_N, positions_NJ, velocities_NJ)`` of a received trajectory."""
    times_N = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
    positions_NJ = np.array([np.frombuffer(p.positions, dtype=np.float64) for p in msg.points])
    velocities_NJ = np.array([np.frombuffer(p.velocities, dtype=np.float64) for p in msg.points])
    return list(msg.joint_names), times_N, positions_NJ, velocities_NJ


def controller_message(msg: JointTrajectory) -> TrajectoryMessage:
    """A received trajectory as the controller model reads it (empty velocity/acceleration fields: ``None``)."""
    names, times_N, positions_NJ, _ = trajectory_arrays(msg)

    def field(name: str) -> np.ndarray | None:
        rows = [np.frombuffer(getattr(p, name), dtype=np.float64) for p in msg.points]
        return np.array(rows) if rows and all(len(r) for r in rows) else None

    return TrajectoryMessage(
        names, time_to_seconds(msg.header.stamp), times_N, positions_NJ, field("velocities"), field("accelerations")
    )


def base_poses(msg: MotionPlan) -> np.ndarray:
    """``(N, 7)`` floating-base poses ``[x y z qx qy qz qw]`` of a received plan's trajectory points."""
    return np.frombuffer(msg.base_poses, dtype=np.float64).reshape(-1, 7)


def robot_trajectory(msg: MotionPlan, robot: Robot) -> RobotTrajectory:
    """The :class:`RobotTrajectory` a received plan carries (base poses + joint trajectory) on ``robot``."""
    names, times_N, positions_NJ, velocities_NJ = trajectory_arrays(msg.trajectory)
    if names != list(robot.joint_names):
        raise ValueError(f"plan joints do not match robot {robot.name!r}: {names[:3]}... vs {robot.joint_names[:3]}...")
    base_N7 = base_poses(msg)
    accelerations_NJ = np.array([np.frombuffer(p.accelerations, dtype=np.float64) for p in msg.trajectory.points])
    rate = 1.0 / float(np.median(np.diff(times_N))) if len(times_N) > 1 else 0.0
    return RobotTrajectory(
        joint_names=names, times=times_N, base_poses=base_N7, positions=positions_NJ, velocities=velocities_NJ,
        accelerations=accelerations_NJ, control_rate=rate, report=None,
        final_q=np.concatenate([base_N7[-1], positions_NJ[-1]]), robot_name=msg.robot_name, robot=robot,
    )  # fmt: skip


def human_joints(msg: MotionPlan) -> np.ndarray:
    """``(T, 22, 3)`` canonical human joints of a received plan."""
    return np.frombuffer(msg.human_positions, dtype=np.float32).reshape(-1, len(msg.human_joint_names), 3)
