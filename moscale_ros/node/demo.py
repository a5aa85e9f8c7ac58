"""The main job end to end, on a simulated robot: start ``moscale_sim_node`` (the G1 in MuJoCo on a
floating base, behind a joint_trajectory_controller's rules) and ``moscale_node`` on its clock, send
one text command from a client process over DDS, print each plan's latency as it arrives, save the
trajectory, and report what the simulated robot did with the controller messages as they arrived.

Processes: ``moscale_sim_node`` publishes ``/clock``, ``/joint_states``, ``/odom`` and
``/diagnostics`` and executes the controller topic; ``moscale_node`` runs with ``use_sim_time`` and
``joint_state_topic_in: /joint_states``, so its first motion starts from the simulated robot's
measured pose. This client (on ``/clock`` too) records the robot's joint states and base pose until
the last trajectory has ended plus ``SETTLE_S``; the verdict is the simulator's own last
``/diagnostics`` status: stayed up or fell (and when, from the motion's start), tracking error.

Video (``demo.gif``): the human motion of the plan being executed (matplotlib stick figure) beside
the simulated robot as it was recorded, its meshes rendered by MuJoCo offscreen (EGL). Without an
offscreen GL context the robot is drawn as lines (Pinocchio) instead, after one line saying why.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from sensor_msgs.msg import JointState

from moscale_common.errors import MoScaleError
from moscale_ros.cli import main as cli_main
from moscale_ros.node import convert
from moscale_ros.node.client import MoScaleClient, save_outcome
from moscale_ros.node.launcher import NodeProcess, ros_value
from moscale_ros.node.sim_node import DIAGNOSTIC_NAME
from moscale_ros.sim.model import build_model, to_mujoco_pose
from moscale_ros.sim.render import gl_unavailable_reason, render_frames
from moscale_ros.visualize import configuration_segments, render_beside_gif
from retarget import load_robot

SETTLE_S = 1.0  # recorded after the last trajectory's end: a motion ending off balance falls then
VIDEO_FPS = 20.0
MAX_VIDEO_FRAMES = 120


class SimNodeProcess(NodeProcess):
    """``moscale_sim_node`` in a subprocess (its console script, else ``python -m``) with ``params`` as
    ``-p``; start, log, signals and stop as :class:`NodeProcess`."""

    def argv(self) -> list[str]:
        console = Path(sys.executable).parent / "moscale_sim_node"
        head = [str(console)] if console.is_file() else [sys.executable, "-m", "moscale_ros.node.sim_node"]
        return [*head, "--ros-args", *(a for k, v in self.params.items() for a in ("-p", f"{k}:={ros_value(v)}"))]


class SimObserver:
    """What ``moscale_sim_node`` publishes, recorded on ``node`` (the client's): joint positions in
    ``joint_names`` order and base poses ``[x y z qx qy qz qw]`` by simulation time, and its last
    ``/diagnostics`` status (``{"level", "message", **values}``)."""

    def __init__(self, node, joint_names: list[str]) -> None:
        self.joint_names = list(joint_names)
        self._lock = threading.Lock()
        self.joint_times: list[float] = []
        self.joint_positions: list[np.ndarray] = []
        self.pose_times: list[float] = []
        self.poses: list[np.ndarray] = []
        self.status: dict | None = None
        node.create_subscription(JointState, "/joint_states", self._on_joint_state, 50)
        node.create_subscription(Odometry, "/odom", self._on_odom, 50)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_joint_state(self, msg: JointState) -> None:
        by_name = dict(zip(msg.name, msg.position))
        if not all(name in by_name for name in self.joint_names):
            return
        with self._lock:
            self.joint_times.append(convert.time_to_seconds(msg.header.stamp))
            self.joint_positions.append(np.array([by_name[n] for n in self.joint_names]))

    def _on_odom(self, msg: Odometry) -> None:
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        with self._lock:
            self.pose_times.append(convert.time_to_seconds(msg.header.stamp))
            self.poses.append(np.array([p.x, p.y, p.z, o.x, o.y, o.z, o.w]))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == DIAGNOSTIC_NAME:
                values = {kv.key: kv.value for kv in status.values}
                with self._lock:
                    self.status = {"level": int.from_bytes(status.level, "little") if isinstance(status.level, bytes)
                                   else int(status.level), "message": status.message, **values}  # fmt: skip

    def sim_time(self) -> float:
        """The latest simulation time seen in the diagnostics (s); -inf before the first."""
        with self._lock:
            return float(self.status["sim_time_s"]) if self.status else -math.inf

    def configurations(self, times: np.ndarray) -> list[np.ndarray]:
        """Pinocchio configurations ``[base pose 7, joints]`` recorded nearest to each time of ``times``."""
        with self._lock:
            joint_t, joints = np.asarray(self.joint_times), list(self.joint_positions)
            pose_t, poses = np.asarray(self.pose_times), list(self.poses)
        if not joints or not poses:
            raise MoScaleError("moscale_sim_node published no /joint_states or /odom: nothing to show")
        out = []
        for t in times:
            j = int(np.clip(np.searchsorted(joint_t, t), 0, len(joints) - 1))
            b = int(np.clip(np.searchsorted(pose_t, t), 0, len(poses) - 1))
            out.append(np.concatenate([poses[b], joints[j]]))
        return out


def run_demo(
    text: str,
    out_dir: str | Path,
    duration: float = 0.0,
    seed: int = -1,
    params: dict | None = None,
    timeout: float = 180.0,
    gif: bool = True,
) -> dict:
    """Run the demo; returns a summary (latencies, trajectory path, physics figures, video path). Raises on failure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {**(params or {}), "use_sim_time": True, "joint_state_topic_in": "/joint_states"}
    robot = load_robot(str(params.get("robot", "g1")))
    sim_node = SimNodeProcess({"robot": robot.name}, log_path=out_dir / "sim_node.log")
    node = NodeProcess(params=params, log_path=out_dir / "node.log")
    print(f"demo: starting moscale_sim_node ({robot.name} in MuJoCo; log: {sim_node.log_path})", flush=True)
    sim_node.start()
    print(f"demo: starting moscale_node on the simulation's clock (log: {node.log_path})", flush=True)
    node.start()
    rclpy.init()
    try:
        with MoScaleClient(use_sim_time=True) as client:
            observer = SimObserver(client.node, robot.joint_names)
            started = time.monotonic()
            while not client.wait_ready(timeout=1.0) or observer.status is None:
                for process, name in ((node, "moscale_node"), (sim_node, "moscale_sim_node")):
                    if not process.alive():
                        raise MoScaleError(f"{name} exited during start-up:\n{process.log()[-2000:]}")
                if time.monotonic() - started > timeout:
                    raise MoScaleError(f"the nodes were not ready after {timeout:.0f} s (logs in {out_dir})")
            print(f"demo: nodes ready after {time.monotonic() - started:.1f} s; sending {text!r}", flush=True)
            handle = client.send_goal(text, duration, seed)
            shown = 0
            deadline = time.monotonic() + timeout
            outcome = handle.outcome
            while not handle._done.wait(0.01) and time.monotonic() < deadline:
                if handle.goal_id:
                    client.collect(outcome, handle.goal_id)
                    shown = _print_new(outcome.plans, outcome.sent_at, shown)
            outcome = handle.wait(timeout=max(1.0, deadline - time.monotonic()))
            client.wait_complete(outcome, handle.goal_id, timeout=5.0)
            _print_new(outcome.plans, outcome.sent_at, shown)
            if outcome.status != "succeeded" or outcome.final_plan is None:
                raise MoScaleError(f"command {text!r} ended {outcome.status}: {outcome.message}")
            end = max(_end_time(r.msg) for r in outcome.trajectories) + SETTLE_S
            while observer.sim_time() < end and time.monotonic() < deadline:
                if not sim_node.alive():
                    raise MoScaleError(f"moscale_sim_node exited:\n{sim_node.log()[-2000:]}")
                time.sleep(0.05)
    finally:
        rclpy.try_shutdown()
        node.stop()
        sim_node.stop()
    latencies = outcome.latencies_ms()
    print(
        "demo: first plan {:.0f} ms, final plan {:.0f} ms after sending (client receipt times)".format(
            latencies.get("first_plan_ms", float("nan")), latencies.get("final_plan_ms", float("nan"))
        )
    )
    trajectory_path = save_outcome(outcome, out_dir / "trajectory.npz")
    print(f"demo: trajectory -> {trajectory_path}")
    result = {"text": text, "latencies_ms": latencies, "trajectory": str(trajectory_path)}
    result.update(report_physics(outcome, observer, robot, end, out_dir / "demo.gif" if gif else None, text))
    result["num_plans"] = len(outcome.plans)
    result["controller_messages_sent"] = len(outcome.trajectories)  # as the client received them
    return result


def _end_time(trajectory) -> float:
    """Simulation time at which a JointTrajectory's last point is due."""
    last = trajectory.points[-1].time_from_start
    return convert.time_to_seconds(trajectory.header.stamp) + last.sec + last.nanosec * 1e-9


def report_physics(outcome, observer: SimObserver, robot, end: float, video_path: Path | None, title: str) -> dict:
    """Print the simulator's verdict on the motion (times from its start, the first trajectory's stamp)
    and, with ``video_path``, write the video. Returns ``{"physics": {...}, "video": ...}``."""
    status = observer.status or {}
    if not status:
        raise MoScaleError("moscale_sim_node published no diagnostics: no verdict")
    start = min(convert.time_to_seconds(r.msg.header.stamp) for r in outcome.trajectories)
    fell_at = None
    if status.get("upright") == "false":
        fell_at = float(status["message"].split("t=")[1].split(" ")[0]) - start
    rms_deg = float(status["tracking_rms_deg"])
    accepted, rejected = int(status["trajectories_accepted"]), int(status["trajectories_rejected"])
    verdict = "stayed up" if fell_at is None else f"FELL at {fell_at:.2f} s"
    print(
        f"demo: physics (moscale_sim_node: {robot.name} in MuJoCo, floating base, {accepted} controller messages "
        f"executed as they arrived, {rejected} rejected; t = 0 at the motion's start): "
        f"{verdict}; tracking error RMS {rms_deg:.2f} deg",
        flush=True,
    )
    physics = {
        "source": "moscale_sim_node",
        "executed": accepted > 0,
        "controller_messages": accepted + rejected,
        "rejected_messages": rejected,
        "stayed_up": fell_at is None,
        "fell_at_s": fell_at,
        "tracking_rms_rad": math.radians(rms_deg),
        "simulated_s": float(status["sim_time_s"]) - start,
        "self_collisions": int(status["self_collisions"]),
    }
    out: dict = {"physics": physics}
    if video_path is None:
        return out
    span = end - start
    fps = min(VIDEO_FPS, MAX_VIDEO_FRAMES / max(span, 1e-3))
    times = start + np.arange(int(span * fps) + 1) / fps
    configurations = observer.configurations(times)
    human, labels = _human_frames(outcome, times)
    fell = start + fell_at if fell_at is not None else math.inf
    sim = build_model(robot)
    kind = "MuJoCo" if (reason := gl_unavailable_reason(sim)) is None else "lines"
    robot_labels = [
        f"{robot.name} simulated ({kind}), t = {t - start:.1f} s" + (" FALLEN" if t >= fell else "") for t in times
    ]
    if reason is None:
        frames_qpos = []
        for q in configurations:
            qpos = sim.model.qpos0.copy()
            qpos[:7] = to_mujoco_pose(q[:7])
            qpos[sim.qpos_J] = q[7:]
            frames_qpos.append(qpos)
        images = render_frames(sim, np.asarray(frames_qpos))
        path = render_beside_gif(
            video_path, human, fps, robot_images=images, human_labels=labels, robot_labels=robot_labels, title=title
        )
        print(f"demo: video -> {path} (MuJoCo render of the simulated {robot.name} beside the human motion)")
        out.update(video=str(path), video_renderer="mujoco")
    else:
        print(f"demo: video: {reason}; drawing the simulated robot as lines instead")
        path = render_beside_gif(
            video_path, human, fps, robot_segments_N=configuration_segments(robot, configurations),
            human_labels=labels, robot_labels=robot_labels, title=title,
        )  # fmt: skip
        print(f"demo: video -> {path} (line drawing of the simulated {robot.name} beside the human motion)")
        out.update(video=str(path), video_renderer="lines", video_fallback_reason=reason)
    return out


def _human_frames(outcome, clocks: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The human pose shown at each ROS time of ``clocks``: that of the plan whose controller
    trajectory was received last by then (the one being executed), at the time since the motion start."""
    taken = []  # (receipt clock, plan)
    for plan in (r.msg for r in outcome.plans):
        stamp = convert.time_to_seconds(plan.trajectory.header.stamp)
        at = [r.clock for r in outcome.trajectories if convert.time_to_seconds(r.msg.header.stamp) == stamp]
        taken.append((min(at) if at else math.inf, plan))
    taken.sort(key=lambda pair: pair[0])
    human, labels = [], []
    for clock in clocks:
        plan = next((p for at, p in reversed(taken) if at <= clock), taken[0][1])
        joints = convert.human_joints(plan)
        index = int(
            np.clip(round((clock - convert.time_to_seconds(plan.header.stamp)) * plan.human_fps), 0, len(joints) - 1)
        )
        human.append(joints[index])
        kind = "final" if plan.is_final else "coarse" if plan.scale_index == 1 else "refined"
        labels.append(f"human, plan {plan.scale_index}/{plan.num_scales} ({kind})")
    return np.asarray(human), labels


def _print_new(plans: list, sent_at: float, shown: int) -> int:
    """Print the plans received since the last call (``~/plan`` receipt time in this process)."""
    for received in plans[shown:]:
        plan = received.msg
        human = convert.human_joints(plan)
        print(
            f"  plan {plan.scale_index}/{plan.num_scales}{' final' if plan.is_final else ''}: "
            f"{(received.at - sent_at) * 1e3:7.1f} ms after sending "
            f"(node: {plan.latency * 1e3:6.1f} ms), {len(plan.trajectory.points)} trajectory points, "
            f"{len(human)} human frames, start {convert.time_to_seconds(plan.header.stamp):.3f} s",
            flush=True,
        )
    return len(plans)


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - thin wrapper for `python -m`

    return cli_main(["demo", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["run_demo"]
