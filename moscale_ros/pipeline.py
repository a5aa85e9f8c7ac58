"""Text command -> one plan per scale, coarse first, each taking over smoothly (ROS-free core of the node).

For a command received at time ``t_r`` the pipeline streams the generator's scales ``k = 1..K``;
after each one it retargets the human joints onto the robot, shapes the result for a ROS 2
joint_trajectory_controller and validates it. Three stages overlap: the generator runs ahead in a
thread (:mod:`moscale_ros.generation.prefetch`); a second thread retargets every scale, in order, as
soon as it and the one before are done, in a child process (:mod:`retarget.process`: the IK would
otherwise hold the GIL the generator needs); the caller's thread shapes and hands over (the node:
publishes) each plan meanwhile. Scale 3 is generated only once the first plan is handed over: on two
cores it would share a core and the GIL with that plan's shaping and publishing. The first scale is
retargeted at ``first_ik_fps`` keyframes, every later one starting at the first one's pose. Under
``locomotion: whole_body`` the coarse plans stand in place (no step) and guide no later scale; under
``cmd_vel`` each scale is warm-started from the previous one. The first plan sent to the controller
fixes the motion's absolute start time

    t_0 = t_ready + start_lead          (or, when appending, max(that, end of the previous motion))

A ROS 2 controller *replaces* its trajectory on receipt and samples a past-stamped one at "now"
(:mod:`moscale_ros.control.jtc_rules`), so the node splices for it: every plan is eased to rest at
its end (and at its start from rest), stamped with its switch time ``s = max(t_0, now +
switch_lead)`` and blended out of the path being commanded at ``s`` (position, velocity and
acceleration, computed with the controller's own rules), see :mod:`moscale_ros.control.shaping`
and :mod:`moscale_ros.control.timeline`. Every refinement is on the motion's timeline ``t_0``.

Continuation: a new command starts where the robot was last *sent*; the generator continues the
previous human motion (``prefix_seconds``) and the new plan is spliced like a refinement.

Nothing is published here: the node publishes each :class:`PlanStep` and calls :meth:`commit`
for the ones it sent to the controller. A trajectory that fails :func:`validate_trajectory` is never
yielded; :class:`TrajectoryError` names what failed.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from moscale_common.config import Range, check_ranges, setting
from moscale_common.errors import ConfigError, InputError, MoScaleError, UnknownCommandError
from moscale_common.paths import check_regular_file, resource
from moscale_ros.control.shaping import ease, finite_difference_speed
from moscale_ros.control.timeline import ControllerTimeline, NoBlendError
from moscale_ros.generation.command_text import LONG, CommandPart, parse_command
from moscale_ros.generation.config import SamplingOverrides
from moscale_ros.generation.prefetch import ScalesAhead
from moscale_ros.generation.request import (
    RequestLimits,
    echo_text,
    validate_seconds,
    validate_seed,
    validate_text,
)
from moscale_ros.generation.sequence import PartSpec, part_seed, random_seed, stream_sequence
from moscale_ros.generation.vocabulary import DEFAULT_RARE_CLIPS, SkillMatch
from retarget.locomotion import base_velocity_commands, heading_from_quaternions, is_travelling
from retarget.process import RetargeterProcess, make_retargeter
from retarget.retargeter import RetargetConfig, Retargeter
from retarget.robot import Robot, load_robot
from retarget.trajectory import RobotTrajectory

ControllerPlans = Literal["every_scale", "final_only"]
UnknownCommandPolicy = Literal["refuse", "warn", "accept"]
Locomotion = Literal["whole_body", "cmd_vel"]
BLEND_HEADROOM = 0.15  # fraction of each joint speed limit the retargeter leaves for blending


class TrajectoryError(MoScaleError):
    """A generated trajectory is not valid for the robot (names, times, limits); it is not published."""


SECONDS = Range(0.0, 5.0, "s")


@dataclass
class PipelineConfig:
    """Everything the pipeline needs: model, robot, request limits, timeline and validation settings.
    Each numeric field declares its range here (:func:`moscale_common.config.setting`); ``live``
    fields may change while the node runs (they are read afresh for every plan)."""

    checkpoint: str = setting("", "generator checkpoint; empty: the shipped default model")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    robot: str = setting("g1", "a robot name (config/robots/<name>.yaml) or a robot YAML path")
    robot_description: str = setting("", "URDF text to use instead of the robot YAML's URDF; empty: the YAML's")
    control_rate: float = setting(50.0, "Hz of the published joint trajectories", Range(1.0, 500.0, "Hz"))
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)  # None: the checkpoint's setting
    default_duration: float = setting(
        6.0, "s, for commands without a duration (topic commands, goal duration 0)", Range(0.1, 60.0, "s"), live=True
    )
    min_duration: float = setting(1.0, "shortest duration a command may ask for", Range(0.1, 60.0, "s"), live=True)
    max_duration: float = setting(9.8, "longest duration a command may ask for", Range(0.1, 60.0, "s"), live=True)
    max_text_length: int = setting(200, "characters of a command text", Range(1, 10000, "characters"), live=True)
    start_lead: float = setting(0.25, "s from the first plan being ready to the motion's start", SECONDS, live=True)
    blend_duration: float = setting(0.5, "s of blend from the commanded state into a new plan", SECONDS)
    append: bool = setting(False, "true: a new motion starts when the previous one ends", live=True)
    controller_plans: ControllerPlans = setting(
        "every_scale", "every_scale | final_only: which plans go to the controller", live=True
    )
    coarse_ik_fps: float = setting(
        5.0, "IK keyframes per second of coarse plans; 0: every frame", Range(0.0, 100.0, "1/s"), live=True
    )
    first_ik_fps: float = setting(
        2.5,
        "IK keyframes per second of the first plan (coarsest scale); 0: coarse_ik_fps",
        Range(0.0, 100.0, "1/s"),
        live=True,
    )
    final_ik_fps: float = setting(
        0.0, "IK keyframes per second of the final plan; 0: every frame", Range(0.0, 100.0, "1/s"), live=True
    )
    measure_final: bool = setting(
        False,
        "true: the final plan's retarget report also measures the output (foot slide, balance margin, "
        "self-distances; about 30 ms); always with final_ik_fps > 0 (its keyframe refill needs them)",
        live=True,
    )
    retarget_process: bool = setting(
        True, "true: IK runs in a child process, in parallel with generation (false: in the node's process)"
    )
    retarget_split: bool = setting(
        True,
        "true (with retarget_process): the final plan's IK in two halves at once, the second in one more "
        "process, joined where both agree within the retargeter's split_join_tolerance, in the overlap or "
        "later on three frames in a row (else solved in one)",
    )
    ease_duration: float = setting(0.5, "s over which every plan slows to rest at its end", SECONDS, live=True)
    switch_lead: float = setting(0.1, "s from a later plan being ready to its switch time", SECONDS)
    late_guard: float = setting(
        0.04, "s: a plan about to be sent with less than this left before its switch time is spliced again "
        "from the time of sending (below switch_lead)", SECONDS,
    )  # fmt: skip
    stop_duration: float = setting(
        0.6, "s in which ~/stop or a goal cancel brings the motion to rest", Range(0.05, 5.0, "s"), live=True
    )
    prefix_seconds: float = setting(
        1.0, "s of the previous motion the generator continues from", Range(0.0, 10.0, "s"), live=True
    )
    limit_tolerance: float = setting(
        1e-6, "slack of the joint-limit check before publishing (rad, relative)", Range(0.0, 0.01, "rad"), live=True
    )
    unknown_command: UnknownCommandPolicy = setting(
        "refuse", "refuse | warn | accept a command (part) the model was not trained for or has barely seen", live=True
    )
    locomotion: Locomotion = setting(
        "whole_body",
        "whole_body | cmd_vel: a travelling motion as base velocities for the robot's walking controller "
        "(on cmd_vel_topic) and upper-body trajectories",
    )
    rare_clips: int = setting(
        DEFAULT_RARE_CLIPS, "skills with fewer training clips are known but weak", Range(0, 1000, "clips"), live=True
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.min_duration > self.max_duration:
            raise ConfigError(f"min_duration {self.min_duration} is above max_duration {self.max_duration}")
        if not self.min_duration <= self.default_duration <= self.max_duration:
            raise ConfigError(
                f"default_duration {self.default_duration} is outside [{self.min_duration}, {self.max_duration}]"
            )
        if self.late_guard >= self.switch_lead:
            raise ConfigError(f"late_guard {self.late_guard} must be below switch_lead {self.switch_lead}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def request_limits(self) -> RequestLimits:
        """The node's policy on requests: ``max_text_length``, ``[min_duration, max_duration]``."""
        return RequestLimits(self.max_text_length, self.min_duration, self.max_duration)


# ----------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Segment:
    """One part of a command as it is generated: the text the model gets, its duration, and the
    vocabulary's verdict on it (None when the model file has no vocabulary)."""

    text: str
    seconds: float
    match: SkillMatch | None = None


@dataclass(frozen=True)
class MotionRequest:
    """A validated command: stripped text, duration in seconds, seed (None: random), receipt time,
    and its parts (:class:`Segment`; empty: the whole text for ``duration`` s, as validated)."""

    text: str
    duration: float
    seed: int | None
    received_at: float
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    segments: tuple[Segment, ...] = ()
    warnings: tuple[str, ...] = ()  # unknown or weak parts accepted under unknown_command: warn

    @property
    def parts(self) -> tuple[Segment, ...]:
        """The segments, or the whole command as one."""
        return self.segments or (Segment(self.text, self.duration),)

    @property
    def is_sequence(self) -> bool:
        return len(self.segments) > 1

    @property
    def weakest(self) -> SkillMatch | None:
        """The part's verdict the command is judged by: an unknown part first, then a weak one,
        then the lowest confidence (None without a vocabulary)."""
        matches = [s.match for s in self.parts if s.match is not None]
        if not matches:
            return None
        return min(matches, key=lambda m: (m.status != "unknown", m.status != "weak", m.confidence))


def validate_request(
    text: str,
    duration: float,
    seed: int | None,
    config: PipelineConfig,
    received_at: float,
    request_id: str = "",
    limits: RequestLimits | None = None,
) -> MotionRequest:
    """Check a command under ``limits`` (default: ``config.request_limits``) with the one request
    validator (:mod:`moscale_ros.generation.request`); duration 0 means ``config.default_duration``
    (capped at the limits' maximum), a seed < 0 (or None) a random one. Raises InputError."""
    limits = limits or config.request_limits
    stripped = validate_text(text, limits)
    try:
        seconds = float(duration)
    except (TypeError, ValueError):
        raise InputError(f"duration must be a number of seconds, got {duration!r}") from None
    seconds = min(config.default_duration, limits.max_seconds) if seconds == 0 else validate_seconds(seconds, limits)
    chosen_seed = None if seed is None or seed < 0 else validate_seed(seed)
    return MotionRequest(stripped, seconds, chosen_seed, received_at, request_id or uuid.uuid4().hex)


def part_seconds(
    part: CommandPart, match: SkillMatch | None, explicit: float | None, fallback: float, in_sequence: bool,
    typical: dict[str, float], limits: RequestLimits,
) -> float:  # fmt: skip
    """Duration of one part: an explicit request duration wins; then what the text says (clamped
    to the limits; "a long time" is the longest); then, for a part of a sequence, the typical clip
    length of its matched skill; else ``fallback`` (the request's duration)."""
    if explicit is not None:
        return explicit
    seconds = fallback
    if part.seconds is not None:
        seconds = limits.max_seconds if part.seconds == LONG else part.seconds
    elif in_sequence and match is not None and match.skill in typical:
        seconds = typical[match.skill]
    return float(min(max(seconds, limits.min_seconds), limits.max_seconds))


def check_vocabulary(segments: tuple[Segment, ...], policy: UnknownCommandPolicy) -> list[str]:
    """Under ``refuse``, raise UnknownCommandError naming the first unknown (else weak) part, its
    confidence and the nearest known skills; under ``warn``, return those reasons (to log); under
    ``accept``, nothing."""
    bad = [s for s in segments if s.match is not None and s.match.status != "known"]
    bad.sort(key=lambda s: s.match.status != "unknown")
    reasons = [f"{echo_text(s.text)}: {s.match.describe()}" for s in bad]
    if bad and policy == "refuse":
        first = bad[0].match
        what = "the model was not trained for it" if first.status == "unknown" else "the model has barely seen it"
        raise UnknownCommandError(
            f"command refused (unknown_command: refuse): {reasons[0]}: {what}; nearest known skills: "
            + ", ".join(name for name, _ in first.nearest)
        )
    return reasons if policy == "warn" else []


# ------------------------------------------------------------------------------------- trajectories


def validate_trajectory(trajectory: RobotTrajectory, robot: Robot, tolerance: float = 1e-6) -> None:
    """Raise TrajectoryError unless the joint names are the robot's (same order), values are finite,
    times start at 0 and strictly increase (by at least 1 ns, the resolution of ``time_from_start``),
    positions and velocities are inside the robot's limits (``tolerance`` rad, relative for speeds),
    the speeds the positions imply (finite differences) are too, and the last point is at rest.
    """
    if list(trajectory.joint_names) != list(robot.joint_names):
        missing = sorted(set(robot.joint_names) - set(trajectory.joint_names))
        extra = sorted(set(trajectory.joint_names) - set(robot.joint_names))
        raise TrajectoryError(
            f"joint names do not match robot {robot.name} (missing {missing[:5]}, unknown {extra[:5]}, "
            "or a different order)"
        )
    times_N = np.asarray(trajectory.times, dtype=np.float64)
    n, j = len(times_N), robot.num_joints
    for name in ("positions", "velocities", "accelerations"):
        shape = np.shape(getattr(trajectory, name))
        if shape != (n, j):
            raise TrajectoryError(f"{name} has shape {shape}, expected ({n}, {j})")
    if n < 2:
        raise TrajectoryError(f"trajectory has {n} point(s); at least 2 are needed")
    for name in ("times", "positions", "velocities", "accelerations"):
        values = np.asarray(getattr(trajectory, name))
        if not np.all(np.isfinite(values)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
            raise TrajectoryError(f"{name} has a non-finite value at index {bad}")
    if abs(times_N[0]) > 1e-9:
        raise TrajectoryError(f"times must start at 0, got {times_N[0]:.6f} s")
    steps_ns = np.diff(np.round(times_N * 1e9))
    if np.any(steps_ns <= 0):
        i = int(np.argmax(steps_ns <= 0))
        raise TrajectoryError(
            f"times must increase strictly: point {i + 1} at {times_N[i + 1]:.9f} s follows {times_N[i]:.9f} s"
        )
    positions_NJ = np.asarray(trajectory.positions)
    outside = (positions_NJ < robot.lower - tolerance) | (positions_NJ > robot.upper + tolerance)
    if np.any(outside):
        frame, joint = np.argwhere(outside)[0]
        raise TrajectoryError(
            f"joint {robot.joint_names[joint]} at {times_N[frame]:.3f} s is at {positions_NJ[frame, joint]:.4f} rad, "
            f"outside its limits [{robot.lower[joint]:.4f}, {robot.upper[joint]:.4f}]"
        )
    velocities_NJ = np.asarray(trajectory.velocities)
    too_fast = np.abs(velocities_NJ) > robot.velocity_limits * (1 + tolerance) + tolerance
    if np.any(too_fast):
        frame, joint = np.argwhere(too_fast)[0]
        raise TrajectoryError(
            f"joint {robot.joint_names[joint]} at {times_N[frame]:.3f} s moves at {velocities_NJ[frame, joint]:.3f} "
            f"rad/s, over its limit {robot.velocity_limits[joint]:.3f} rad/s"
        )
    implied_NJ = finite_difference_speed(trajectory)
    too_fast = implied_NJ > robot.velocity_limits * (1 + tolerance) + tolerance
    if np.any(too_fast):
        frame, joint = np.argwhere(too_fast)[0]
        raise TrajectoryError(
            f"joint {robot.joint_names[joint]} moves {implied_NJ[frame, joint]:.3f} rad/s between the points at "
            f"{times_N[frame]:.3f} and {times_N[frame + 1]:.3f} s (finite difference of the positions), over its "
            f"limit {robot.velocity_limits[joint]:.3f} rad/s"
        )
    if np.any(np.asarray(trajectory.velocities)[-1] != 0) or np.any(np.asarray(trajectory.accelerations)[-1] != 0):
        raise TrajectoryError("the last point is not at rest (a joint_trajectory_controller rejects it)")


# --------------------------------------------------------------------------------- commanded motion


@dataclass
class CommandedMotion:
    """The last trajectory sent to the controller, on the absolute clock, with its human motion."""

    start_time: float
    trajectory: RobotTrajectory
    human_joints_T223: np.ndarray  # noqa: N815 (shape suffix)
    human_fps: float
    motion_start: float | None = None  # absolute time of the human motion's first frame (default start_time)

    @property
    def end_time(self) -> float:
        return self.start_time + self.trajectory.duration

    def configuration_at(self, t_abs: float) -> np.ndarray:
        """Full configuration (base pose + joints) commanded at absolute time ``t_abs`` (held outside)."""
        return self.trajectory.configuration_at(t_abs - self.start_time)

    def pose_at(self, t_abs: float) -> np.ndarray:
        """Joint positions commanded at absolute time ``t_abs``."""
        return self.configuration_at(t_abs)[7:]

    def human_prefix(self, t_abs: float, seconds: float) -> np.ndarray:
        """The human frames of the last ``seconds`` up to ``t_abs`` (at least one frame)."""
        frames = self.human_joints_T223
        origin = self.start_time if self.motion_start is None else self.motion_start
        end = int(np.clip(round((t_abs - origin) * self.human_fps) + 1, 1, len(frames)))
        begin = max(0, end - max(1, int(round(seconds * self.human_fps))))
        return frames[begin:end]


@dataclass
class PlanStep:
    """One plan of a command, ready to publish: scale ``k`` of ``K`` on the command's timeline."""

    request: MotionRequest
    scale_index: int
    num_scales: int
    is_final: bool
    start_time: float  # absolute clock seconds of time_from_start = 0 (header.stamp): at or before sending
    trajectory: RobotTrajectory
    human_joints_T223: np.ndarray  # noqa: N815 (shape suffix)
    human_fps: float
    latency_s: float  # command receipt -> this plan ready
    generate_s: float  # model time of this scale
    retarget_s: float  # retargeting (IK) of this scale
    to_controller: bool  # whether the node sends it to the trajectory controller
    motion_start: float = 0.0  # absolute time t_0 of the motion's start, shared by every plan of a command
    switch_step: float = 0.0  # rad: largest joint move in the first control cycle after the switch (predicted)
    switch_step_ratio: float = 0.0  # that move over what the velocity limit allows in one cycle (<= 1: smooth)
    retarget_report: Any = None  # the retargeter's QualityReport of this scale (before shaping)
    segment_starts: tuple[float, ...] = ()  # s from the motion start at which each part begins
    segment_seconds: tuple[float, ...] = ()  # s each part lasts
    shaping_s: float = 0.0  # easing, splicing into the commanded motion and validation of this scale
    locomotion: Locomotion = "whole_body"  # cmd_vel: legs to the walking controller, base_velocity_N3 to it
    base_velocity_N3: np.ndarray | None = None  # noqa: N815 (shape suffix); cmd_vel: (v_x, v_y, w_z) per point
    switch_time: float = 0.0  # absolute time the plan leaves the commanded path (its lead-in ends there)
    eased: RobotTrajectory | None = None  # the plan before splicing (times from motion_start): to splice again
    late: bool = False  # spliced again just before sending: its first switch time was (nearly) past


def segment_timing(scale: Any, kept_from: int, kept_frames: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Start (s from the first kept frame) and length of every part of a generated scale: one part
    unless the scale says how many new frames each part has (``part_frames``, a sequence)."""
    lead = int(getattr(scale, "prefix_frames", 0)) - kept_from  # kept prefix frames before the new ones
    frames = list(getattr(scale, "part_frames", None) or [kept_frames - lead])
    starts = lead + np.concatenate([[0], np.cumsum(frames)[:-1]])
    fps = float(scale.fps)
    return tuple(float(f) / fps for f in starts), tuple(float(f) / fps for f in frames)


@dataclass
class Retargeted:
    """One generated scale after retargeting: its human joints (from ``kept_from``), the robot motion
    (None when ``error`` says why it could not be retargeted) and the IK's wall time."""

    scale: Any
    kept_from: int
    joints_T223: np.ndarray  # noqa: N815 (shape suffix)
    motion: RobotTrajectory | None
    retarget_s: float
    error: BaseException | None = None


# ---------------------------------------------------------------------------------------- pipeline


class MotionPipeline:
    """Streams plans for requests, one timeline per command, continuing from the last commanded pose.

    ``generator`` is a :class:`~moscale_ros.generation.generator.MotionGenerator` (anything with its
    ``stream`` and ``limits``), ``retargeter`` a :class:`~retarget.Retargeter`; ``clock()`` gives the absolute time
    in seconds that start times are expressed in (the node passes its ROS clock).
    """

    def __init__(
        self,
        generator: Any,
        retargeter: Any,
        config: PipelineConfig,
        clock: Callable[[], float] = time.time,
        robot: Robot | None = None,
    ) -> None:
        self.generator = generator
        self.retargeter = retargeter
        self.robot: Robot = robot if robot is not None else retargeter.robot  # the limits plans are validated against
        self.config = config
        self.clock = clock
        self.last_commanded: CommandedMotion | None = None
        self.timeline = self._new_timeline()
        self._first_plan_s = 0.1  # running estimate of the first plan's latency (anchors the continuation)
        # The robot's measured joint positions (robot order), or None when unknown; when set, a command
        # with nothing running starts from them (the node sets it from joint_state_topic_in).
        self.measured_pose: Callable[[], np.ndarray | None] | None = None
        # Called with the scale index once a plan is retargeted, before the clock is read for its
        # start and switch times: an evaluation replays a fixed schedule of ready times through it
        # (moscale_ros.sim.evaluate.ScheduledClock), so its results do not depend on the machine's load.
        self.on_retargeted: Callable[[int], None] | None = None
        # Called with why a plan does not go to the controller although it should (no blend fits)
        self.on_not_sent: Callable[[str], None] | None = None
        check_locomotion(config, self.robot)

    def request(self, text: str, duration: float = 0.0, seed: int | None = None, request_id: str = "") -> MotionRequest:
        """A validated request received now (InputError on bad text or a duration outside what both
        the settings and the model allow)."""
        limits = self.config.request_limits.within(self.generator.limits)
        request = validate_request(text, duration, seed, self.config, self.clock(), request_id, limits)
        return self.understand(request, explicit=float(duration) != 0, limits=limits)

    def understand(self, request: MotionRequest, explicit: bool, limits: RequestLimits) -> MotionRequest:
        """``request`` with its segments (parts, durations and counts read from the text, each
        checked against the vocabulary); UnknownCommandError under ``unknown_command: refuse`` when a
        part is unknown or weak. A one-part command without a duration or count in its text keeps
        its text as is. The parts are encoded here, once: generation reuses the encoder's cache."""
        parts = parse_command(request.text)
        plain = len(parts) == 1 and parts[0].seconds is None and parts[0].repeats == 1
        texts = [request.text] if plain else [p.text for p in parts]
        vocabulary = getattr(self.generator, "vocabulary", None)
        matches = (
            self.generator.match_skills(texts, self.config.rare_clips)
            if vocabulary is not None
            else [None] * len(texts)
        )
        typical = vocabulary.typical_seconds if vocabulary is not None else {}
        in_sequence = len(parts) > 1 or parts[0].repeats > 1
        explicit_seconds = request.duration if explicit else None
        segments: list[Segment] = []
        for part, text, match in zip(parts, texts, matches):
            seconds = part_seconds(part, match, explicit_seconds, request.duration, in_sequence, typical, limits)
            segments.extend([Segment(text, seconds, match)] * part.repeats)
        checked = tuple(segments)
        warnings = tuple(check_vocabulary(checked, self.config.unknown_command))
        duration = checked[0].seconds if len(checked) == 1 else sum(s.seconds for s in checked)
        return dataclasses.replace(request, duration=duration, segments=checked, warnings=warnings)

    def commit(self, step: PlanStep, sent_at: float | None = None) -> str | None:
        """Record ``step`` as sent to the controller at ``sent_at`` (default now): the controller model
        receives it and the next command continues from it. Returns the controller's rejection
        reason (it should never have one: every plan is shaped and validated for its rules)."""
        reason = self.timeline.record(step.trajectory, step.start_time, self.clock() if sent_at is None else sent_at)
        if reason is None:
            self.last_commanded = CommandedMotion(
                step.start_time, step.trajectory, step.human_joints_T223, step.human_fps, step.motion_start
            )
        return reason

    def idle(self, t: float) -> bool:
        """Nothing is commanded to move at or after ``t`` (true before anything was sent)."""
        end = self.timeline.end_time
        return end is None or (end <= t and self.timeline.at_rest(t))

    def start_from(self, positions_J: np.ndarray, now: float) -> None:
        """Start the next command from the joint positions ``positions_J`` (robot order, clipped to the
        position limits) held at rest from ``now``: no continuation of the previous human motion; the
        plan is blended out of this pose, its first point is this pose."""
        self.last_commanded = None
        self.timeline = self._new_timeline()
        self.timeline.hold(np.clip(np.asarray(positions_J, dtype=np.float64), self.robot.lower, self.robot.upper), now)

    def forget_continuation(self) -> None:
        """Start the next command afresh, as if the controller had just started (nothing sent yet)."""
        self.last_commanded = None
        self.timeline = self._new_timeline()

    def _new_timeline(self) -> ControllerTimeline:
        c = self.config
        return ControllerTimeline(
            self.robot.joint_names, self.robot.velocity_limits, c.control_rate, (self.robot.lower, self.robot.upper),
            c.blend_duration, c.switch_lead,
        )  # fmt: skip

    def _start_time(self, ready_at: float) -> float:
        """``ready_at + start_lead``; when appending to a motion still running, exactly its end."""
        start = ready_at + self.config.start_lead
        end = self.timeline.end_time
        if self.config.append and end is not None and end > ready_at:
            start = max(end, ready_at + self.config.switch_lead)
        return start

    def _wait_for_append(self, should_stop: Callable[[], bool]) -> None:
        """With ``append``, hold the first plan until the running motion is about to end: a controller
        replaces its trajectory on receipt, so sending earlier would cut the running motion short."""
        end = self.timeline.end_time
        if not self.config.append or end is None:
            return
        while self.clock() + self.config.start_lead < end and not should_stop():
            time.sleep(min(0.02, max(end - self.config.start_lead - self.clock(), 0.0)))

    def run(self, request: MotionRequest, should_stop: Callable[[], bool] = lambda: False) -> Iterator[PlanStep]:
        """Plans of ``request``, coarse to final; ends early, yielding nothing more, once ``should_stop()``.

        The motion starts at ``t_0`` (fixed when its first plan for the controller is ready); each
        plan is eased to rest at its end (and at its start when the robot is at rest) and spliced
        into what the controller commands at its switch time (:mod:`moscale_ros.control.timeline`).
        Raises InputError (from the generator) or TrajectoryError (a scale that cannot be retargeted
        or fails validation: it and the rest of the command are not yielded).
        """
        if self.measured_pose is not None and self.idle(self.clock()):
            measured_J = self.measured_pose()
            if measured_J is not None:
                self.start_from(measured_J, self.clock())
        previous = self.last_commanded
        prefix = initial_q = None
        if previous is not None:
            anchor = self._start_time(request.received_at + self._first_plan_s)
            initial_q = previous.configuration_at(anchor)
            if self.config.prefix_seconds > 0:
                prefix = previous.human_prefix(anchor, self.config.prefix_seconds)
        motion_start: float | None = None
        from_rest = True
        travelling, travel_fixed = False, False  # cmd_vel: fixed by the first plan sent to the controller
        first_out = threading.Event()  # the first plan is shaped and handed over: scale 3 may start
        scales = ScalesAhead(self._stream(request, prefix), hold=first_out)
        # and retargeted (in order, each as soon as it and the one before are done) while k is shaped
        # and published: the IK of the next scale does not wait for this thread's work
        ended = threading.Event()  # set when this run ends: the retarget stage starts no other scale
        stream = ScalesAhead(self._retarget_each(scales, initial_q, ended))
        generated_s = held_s = 0.0
        sent_any = False  # a plan of this command was handed over for the controller
        try:
            for n, item in enumerate(stream):
                scale, joints_T223 = item.scale, item.joints_T223
                # the model's time for this scale: not the time the stream was held for the first plan
                held_now = scales.held_before[n]
                generate_s, generated_s = scale.elapsed_s - generated_s - (held_now - held_s), scale.elapsed_s
                held_s = held_now
                if should_stop():
                    return
                tick = time.perf_counter()
                starts, lengths = segment_timing(scale, item.kept_from, len(joints_T223))
                shown = echo_text(request.text)
                where = f"request {request.request_id} ({shown}), scale {scale.scale_index}/{scale.num_scales}"
                to_controller = bool(scale.is_final) or self.config.controller_plans == "every_scale"
                try:
                    if item.error is not None:
                        raise item.error
                    motion, retarget_s = item.motion, item.retarget_s
                    if self.on_retargeted is not None:
                        self.on_retargeted(int(scale.scale_index))
                    if to_controller and motion_start is None:
                        self._wait_for_append(should_stop)
                        motion_start = self._start_time(self.clock())
                        from_rest = self.timeline.at_rest(motion_start)
                        self._first_plan_s = 0.5 * self._first_plan_s + 0.5 * (self.clock() - request.received_at)
                    start = motion_start if motion_start is not None else self._start_time(self.clock())
                    ease_in = self.config.ease_duration if from_rest else 0.0
                    eased = ease(motion, ease_in, self.config.ease_duration)
                    now = self.clock()
                    try:
                        taken = self.timeline.take_over(eased, start, now)
                    except NoBlendError as exc:
                        # Too far from the commanded path for the time left: the controller keeps what
                        # it has (this command's last plan sent); a later scale tries again. A command
                        # none of whose plans reached the controller fails (below).
                        if not sent_any:
                            raise
                        if self.on_not_sent is not None:
                            self.on_not_sent(f"{where}: not sent to the controller, which keeps the plan before: {exc}")
                        taken = None
                    if taken is None:  # the motion is over before this plan could take over, or no blend fits
                        if not scale.is_final:
                            first_out.set()
                            continue
                        # The final plan still goes out on ~/plan (the command's full-detail result),
                        # on the motion's own timeline; the controller does not get it (it has finished,
                        # or it keeps the plan before: no blend fits).
                        trajectory, stamp, switch, to_controller, spliced_from = eased, start, start, False, None
                    else:
                        (trajectory, stamp, switch), spliced_from = taken, eased
                    validate_trajectory(trajectory, self.robot, self.config.limit_tolerance)
                    if self.config.locomotion == "cmd_vel" and not travel_fixed:
                        travelling, travel_fixed = self.travels(motion), to_controller
                    base_velocity_N3 = self.base_velocities(trajectory) if travelling else None
                except TrajectoryError as exc:
                    raise TrajectoryError(f"{where}: {exc}; not published") from None
                except MoScaleError as exc:
                    raise TrajectoryError(f"{where}: the generated motion cannot be retargeted: {exc}") from exc
                except ValueError as exc:  # no blend into the commanded motion keeps the limits
                    raise TrajectoryError(f"{where}: {exc}; not published") from None
                step, step_ratio = self.timeline.predicted_step(trajectory, stamp, now) if to_controller else (0.0, 0.0)
                shaping_s = time.perf_counter() - tick
                if should_stop():
                    return
                yield PlanStep(
                    request=request,
                    scale_index=int(scale.scale_index),
                    num_scales=int(scale.num_scales),
                    is_final=bool(scale.is_final),
                    start_time=stamp,
                    trajectory=trajectory,
                    human_joints_T223=joints_T223,
                    human_fps=float(scale.fps),
                    latency_s=self.clock() - request.received_at,
                    generate_s=generate_s,
                    retarget_s=retarget_s,
                    to_controller=to_controller,
                    motion_start=start,
                    switch_step=step,
                    switch_step_ratio=step_ratio,
                    retarget_report=motion.report,
                    segment_starts=starts,
                    segment_seconds=lengths,
                    shaping_s=shaping_s,
                    locomotion="cmd_vel" if travelling else "whole_body",
                    base_velocity_N3=base_velocity_N3,
                    switch_time=switch,
                    eased=spliced_from,
                )
                sent_any = sent_any or to_controller
                first_out.set()
                if should_stop():
                    return
        finally:
            ended.set()
            scales.close()  # the generator stops after the scale in progress (a held one at once)
            stream.close()  # after the retarget in progress, if any (as before the stage had its thread)

    def _retarget_each(self, scales: Iterator[Any], initial_q: np.ndarray | None,
                       ended: threading.Event) -> Iterator[Retargeted]:  # fmt: skip
        """Every scale retargeted, in order (:meth:`_retarget`): the first one from ``initial_q`` (or
        from rest), every later one starting at the first one's pose, on the same stance (and, under
        cmd_vel, warm-started from the one before). A scale that cannot be retargeted is handed over
        with its error, and ends the stream; so does ``ended`` (the caller stopped)."""
        warm_start: RobotTrajectory | None = None
        for scale in scales:
            if ended.is_set():
                return
            # A continuation starts with the prefix: keep its last frame (the pose at the start).
            kept_from = max(getattr(scale, "prefix_frames", 0) - 1, 0)
            joints_T223 = np.asarray(scale.joints[kept_from:], np.float32)
            tick = time.perf_counter()
            try:
                motion = warm_start = self._retarget(joints_T223, scale, initial_q, warm_start)
            except (MoScaleError, ValueError) as exc:
                yield Retargeted(scale, kept_from, joints_T223, None, time.perf_counter() - tick, exc)
                return
            if initial_q is None:  # later scales start where the first one does, on the same stance
                initial_q = motion.configuration_at(0.0)
            yield Retargeted(scale, kept_from, joints_T223, motion, time.perf_counter() - tick)

    def travels(self, motion: RobotTrajectory) -> bool:
        """Whether a retargeted motion travels (:func:`retarget.locomotion.is_travelling` on its base
        path; a motion the retargeter balanced as standing never does)."""
        heading_N = heading_from_quaternions(motion.base_poses[:, 3:7])
        standing = bool(getattr(motion.report, "standing", False))
        return is_travelling(motion.base_poses[:, :3], heading_N, standing)

    def base_velocities(self, trajectory: RobotTrajectory) -> np.ndarray:
        """Body-frame base commands ``(N, 3)`` along a plan's own base path, one per trajectory point,
        limited to the robot's ``max_base_velocity``, the last one zero (:mod:`retarget.locomotion`)."""
        heading_N = heading_from_quaternions(trajectory.base_poses[:, 3:7])
        limits_3 = np.asarray(self.robot.config.max_base_velocity, dtype=np.float64)
        return base_velocity_commands(trajectory.base_poses[:, :3], heading_N, self.config.control_rate, limits_3)

    def _stream(self, request: MotionRequest, prefix: np.ndarray | None) -> Iterator[Any]:
        """The generator's scales for a one-part request; for a sequence, every scale of the whole
        chain of parts (:func:`moscale_ros.generation.sequence.stream_sequence`)."""
        if not request.is_sequence:
            part = request.parts[0]
            return self.generator.stream(part.text, part.seconds, request.seed, prefix_joints=prefix)
        seed = request.seed if request.seed is not None else random_seed()
        specs = [PartSpec(s.text, s.seconds, part_seed(seed, i)) for i, s in enumerate(request.segments)]
        return stream_sequence(self.generator, specs, prefix, max(self.config.prefix_seconds, 1.0 / 20.0))

    def on_time(self, step: PlanStep, now: float | None = None) -> PlanStep:
        """``step``, or, when less than ``late_guard`` s are left before its switch time at ``now``
        (default: the clock), the same plan spliced again from ``now`` (a new switch time, lead-in and
        predicted step; ``late`` set). A plan sent after its switch time would reach the controller
        past the end of its lead-in: the controller samples it where it has already left the commanded
        path and the command jumps. A plan whose motion ends before it could take over, or that no
        blend can reach any more (reported through ``on_not_sent``), goes to ``~/plan`` only: the
        controller keeps the plan before."""
        now = self.clock() if now is None else now
        if not step.to_controller or step.eased is None or self.timeline.model is None:
            return step
        if now + self.config.late_guard <= step.switch_time:
            return step
        try:
            taken = self.timeline.take_over(step.eased, step.motion_start, now)
        except NoBlendError as exc:
            if self.on_not_sent is not None:
                self.on_not_sent(f"a late plan: not sent to the controller, which keeps the plan before: {exc}")
            taken = None
        if taken is None:  # the plan is still the command's result on ~/plan, on the motion's timeline
            return dataclasses.replace(
                step, trajectory=step.eased, start_time=step.motion_start, to_controller=False, switch_step=0.0,
                switch_step_ratio=0.0, late=True,
            )  # fmt: skip
        trajectory, stamp, switch = taken
        validate_trajectory(trajectory, self.robot, self.config.limit_tolerance)
        base_velocity_N3 = self.base_velocities(trajectory) if step.base_velocity_N3 is not None else None
        predicted, ratio = self.timeline.predicted_step(trajectory, stamp, now)
        return dataclasses.replace(
            step, trajectory=trajectory, start_time=stamp, switch_time=switch, switch_step=predicted,
            switch_step_ratio=ratio, base_velocity_N3=base_velocity_N3, late=True,
        )  # fmt: skip

    def stop(self) -> PlanStep | None:
        """A trajectory that brings what the controller commands to rest within ``stop_duration`` s,
        along its current path and within the limits, or ``None`` when nothing moves. The caller
        sends and commits it."""
        now = self.clock()
        stopping = self.timeline.stop_trajectory(now, self.config.stop_duration)
        if stopping is None or self.last_commanded is None:
            return None
        trajectory, stamp = stopping
        validate_trajectory(trajectory, self.robot, self.config.limit_tolerance)
        last = self.last_commanded
        step, step_ratio = self.timeline.predicted_step(trajectory, stamp, now)
        return PlanStep(
            request=MotionRequest("stop", trajectory.duration, None, now, "stop"),
            scale_index=1, num_scales=1, is_final=True, start_time=stamp, trajectory=trajectory,
            human_joints_T223=last.human_prefix(stamp, 1e-9), human_fps=last.human_fps,
            latency_s=self.clock() - now, generate_s=0.0, retarget_s=self.clock() - now, to_controller=True,
            motion_start=stamp, switch_step=step, switch_step_ratio=step_ratio,
        )  # fmt: skip

    def _retarget(
        self, joints_T223: np.ndarray, scale: Any, initial_q: np.ndarray | None, warm_start: RobotTrajectory | None
    ) -> RobotTrajectory:
        """Retarget one scale; IK keyframes at ``first_ik_fps`` for the first (coarsest) scale,
        ``coarse_ik_fps`` for the others (coarse scales are smooth by construction) or ``final_ik_fps``,
        0 meaning every frame of the motion (``first_ik_fps`` 0: ``coarse_ik_fps``)."""
        fps, c = float(scale.fps), self.config
        rate = c.final_ik_fps if scale.is_final else c.coarse_ik_fps
        if scale.scale_index == 1 and not scale.is_final and c.first_ik_fps > 0:
            rate = c.first_ik_fps
        ik_fps = rate if 0 < rate < c.control_rate else None  # keyframes on the control-rate grid
        # Output measurements (report only; the node reads none) where asked, or for the keyframe refill.
        measure = bool(scale.is_final) and (c.measure_final or ik_fps is not None)
        # With whole-body references a coarse plan takes no step: its steps are the coarse scales' guess
        # (a gesture's coarse scale can drift a metre that the final one takes back) and the robot runs
        # it only until the next plan takes over; it stands in place, balanced, with the motion's upper
        # body. With cmd_vel the legs are the walking controller's, and the first plan's base path
        # decides whether the command travels, so it keeps its travel.
        whole_body = c.locomotion == "whole_body"
        if whole_body:  # a plan stood in place guides no later scale: a travelling final solved from
            warm_start = None  # one missed hands by 4-6 cm (a standing final ignores warm starts)
        return self.retargeter.retarget(
            joints_T223, fps, initial_q=initial_q, warm_start=warm_start, ik_fps=ik_fps, measure=measure,
            stand_in_place=whole_body and not scale.is_final,
        )  # fmt: skip

    def warm_up(self) -> PlanStep:
        """Run one throw-away command (first-call costs of the model and the solver), twice: alone
        and as a continuation of itself; returns its final plan. The continuation state is unchanged."""
        saved, saved_timeline = self.last_commanded, self.timeline
        for _ in range(2):
            request = validate_request("a person stands still", self.config.min_duration, 0, self.config, self.clock())
            final = list(self.run(request))[-1]
            self.commit(final)
        self.last_commanded, self.timeline = saved, saved_timeline
        return final


def check_locomotion(config: PipelineConfig, robot: Robot) -> None:
    """ConfigError unless the robot can walk by velocity commands when ``locomotion`` is ``cmd_vel``:
    its YAML gives ``max_base_velocity`` and ``leg_joints``."""
    if config.locomotion != "cmd_vel":
        return
    missing = [key for key in ("max_base_velocity", "leg_joints") if not getattr(robot.config, key)]
    if missing:
        raise ConfigError(
            f"locomotion: cmd_vel needs {' and '.join(missing)} in the robot YAML of {robot.name} "
            "(the walking controller's command limits [v_x, v_y, w_z] and the joints it drives)"
        )


def resolve_checkpoint(checkpoint: str) -> Path | None:
    """``None`` (the shipped model) for ""; a relative path that is not in the working directory is
    looked up among the package's resources (so ``models/x.safetensors`` works from any directory)."""
    if not checkpoint:
        return None
    path = Path(checkpoint).expanduser()
    if not path.is_absolute() and not path.exists() and resource(path).exists():
        return resource(path)
    return path


def build_pipeline(config: PipelineConfig, clock: Callable[[], float] = time.time) -> MotionPipeline:
    """The real pipeline: the Pinocchio retargeter for ``config.robot`` and the MotionGenerator of
    ``config.checkpoint`` on ``config.device``.

    Raises ConfigError (unknown robot, bad URDF, unavailable device, bad sampling settings) or
    CheckpointError (missing, corrupt or mismatched model file).
    """
    robot = load_robot(config.robot, urdf_string=config.robot_description or None)
    check_locomotion(config, robot)
    # The retargeter keeps BLEND_HEADROOM of every speed limit free, so that blending a plan out of
    # the commanded motion (which adds w'(q_c - q_n), see control/shaping.py) fits inside the limits;
    # the plans are validated against the full limits.
    slower = dataclasses.replace(robot, velocity_limits=(1.0 - BLEND_HEADROOM) * robot.velocity_limits)
    retargeter: Retargeter | RetargeterProcess
    if config.retarget_process:  # IK beside the generator without sharing its GIL (retarget/process.py)
        urdf = config.robot_description or None
        make = functools.partial(make_retargeter, config.robot, urdf, config.control_rate, 1.0 - BLEND_HEADROOM)
        retargeter = RetargeterProcess(make, slower, tail_helper=config.retarget_split)
    else:
        retargeter = Retargeter(slower, RetargetConfig(control_rate=config.control_rate))
    checkpoint = resolve_checkpoint(config.checkpoint)
    if checkpoint is not None:  # before the seconds of importing torch
        check_regular_file(checkpoint)

    # torch (seconds): imported once the robot and the file are known good, so those errors come fast
    from moscale_ros.generation.generator import MotionGenerator
    from moscale_ros.runtime import select_device

    generator = MotionGenerator.from_checkpoint(
        checkpoint, device=select_device(config.device), warm_up=False, overrides=config.sampling
    )
    return MotionPipeline(generator, retargeter, config, clock, robot)
