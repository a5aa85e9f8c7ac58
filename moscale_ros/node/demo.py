"""The main job end to end: start ``moscale_node``, send one text command from a client process over
DDS, print each plan's latency as it arrives, save the trajectory, then simulate what was sent and
save a video of it.

Simulation: every controller message the client received (the coarse plan's trajectory first, then
each finer one replacing it) is replayed at its receipt time through the simulated robot's control
loop, the same as ``moscale_sim_node`` and ``moscale simulate`` run (:func:`moscale_ros.sim.run.simulate_received`):
the G1 in MuJoCo on a floating base behind the joint_trajectory_controller's rules. The demo prints
its verdict: stayed up or fell (and when), tracking error.

Video (``demo.gif``): the human motion of the plan being executed (matplotlib stick figure) beside
the simulated robot, its meshes rendered by MuJoCo offscreen (EGL). Without an offscreen GL context
the simulated robot is drawn as lines (Pinocchio) instead, after one line saying why.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import rclpy

from moscale_common.errors import MoScaleError
from moscale_ros.cli import main as cli_main
from moscale_ros.node import convert
from moscale_ros.node.client import MoScaleClient, save_outcome
from moscale_ros.node.launcher import NodeProcess
from moscale_ros.sim.model import build_model, from_mujoco_pose
from moscale_ros.sim.render import gl_unavailable_reason, render_frames
from moscale_ros.sim.run import simulate_received
from moscale_ros.visualize import configuration_segments, render_beside_gif
from retarget import load_robot

SETTLE_S = 1.0  # simulated after the last message's end: a motion ending off balance falls then
VIDEO_FPS = 20.0
MAX_VIDEO_FRAMES = 120


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
    node = NodeProcess(params=params or {}, log_path=out_dir / "node.log")
    print(f"demo: starting moscale_node (log: {node.log_path})", flush=True)
    node.start()
    rclpy.init()
    try:
        with MoScaleClient() as client:
            started = time.monotonic()
            while not client.wait_ready(timeout=1.0):
                if not node.alive():
                    raise MoScaleError(f"moscale_node exited during start-up:\n{node.log()[-2000:]}")
                if time.monotonic() - started > timeout:
                    raise MoScaleError(f"moscale_node was not ready after {timeout:.0f} s (log: {node.log_path})")
            print(f"demo: node ready after {time.monotonic() - started:.1f} s; sending {text!r}", flush=True)
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
    finally:
        rclpy.try_shutdown()
        node.stop()
    if outcome.status != "succeeded" or outcome.final_plan is None:
        raise MoScaleError(f"command {text!r} ended {outcome.status}: {outcome.message}")
    latencies = outcome.latencies_ms()
    print(
        "demo: first plan {:.0f} ms, final plan {:.0f} ms after sending (client receipt times)".format(
            latencies.get("first_plan_ms", float("nan")), latencies.get("final_plan_ms", float("nan"))
        )
    )
    trajectory_path = save_outcome(outcome, out_dir / "trajectory.npz")
    print(f"demo: trajectory -> {trajectory_path}")
    result = {"text": text, "latencies_ms": latencies, "trajectory": str(trajectory_path)}
    physics = simulate_outcome(outcome, out_dir / "demo.gif" if gif else None, text)
    result.update(physics)
    result["num_plans"] = len(outcome.plans)
    return result


def simulate_outcome(outcome, video_path: str | Path | None, title: str = "") -> dict:
    """Simulate the controller messages of ``outcome`` as they arrived (module docstring), print the
    verdict and, with ``video_path``, write the video. Returns ``{"physics": {...}, "video": ...}``."""
    received = sorted(outcome.trajectories, key=lambda r: r.clock)
    if not received:
        raise MoScaleError("the client received no controller trajectory: nothing to simulate")
    plans = [r.msg for r in outcome.plans]
    robot = load_robot(plans[-1].robot_name)
    messages = [(r.clock, convert.controller_message(r.msg)) for r in received]
    first_stamp = convert.time_to_seconds(received[0].msg.header.stamp)
    first_plan = next((p for p in plans if convert.time_to_seconds(p.trajectory.header.stamp) == first_stamp), plans[0])
    sim = build_model(robot)
    span = max(m.end_time for _, m in messages) - messages[0][0] + SETTLE_S
    fps = min(VIDEO_FPS, MAX_VIDEO_FRAMES / max(span, 1e-3)) if video_path is not None else 0.0
    report = simulate_received(
        sim, messages, messages[0][1].positions_NJ[0], convert.base_poses(first_plan)[0], SETTLE_S, record_fps=fps
    )
    rejected = f", {len(report.rejected_messages)} rejected" if report.rejected_messages else ""
    print(
        f"demo: physics ({robot.name} in MuJoCo, floating base, {len(messages)} controller messages replayed "
        f"as received{rejected}, t = 0 at the first): {report.verdict()}",
        flush=True,
    )
    out = {"physics": {**report.as_dict(), "controller_messages": len(messages)}}
    if video_path is None or not report.executed or report.frames_qpos is None:
        return out
    t0 = messages[0][0]
    times = np.arange(len(report.frames_qpos)) / report.frames_fps
    human, labels = _human_frames(outcome, times + t0)
    fell = report.fell_at_s if report.fell_at_s is not None else math.inf
    kind = "MuJoCo" if (reason := gl_unavailable_reason(sim)) is None else "lines"
    robot_labels = [f"{robot.name} simulated ({kind}), t = {t:.1f} s" + (" FALLEN" if t >= fell else "") for t in times]
    if reason is None:
        images = render_frames(sim, report.frames_qpos)
        path = render_beside_gif(
            video_path, human, report.frames_fps, robot_images=images, human_labels=labels,
            robot_labels=robot_labels, title=title,
        )  # fmt: skip
        print(f"demo: video -> {path} (MuJoCo render of the simulated {robot.name} beside the human motion)")
        out.update(video=str(path), video_renderer="mujoco")
    else:
        print(f"demo: video: {reason}; drawing the simulated robot as lines instead")
        configurations = [np.concatenate([from_mujoco_pose(q[:7]), q[sim.qpos_J]]) for q in report.frames_qpos]
        path = render_beside_gif(
            video_path, human, report.frames_fps, robot_segments_N=configuration_segments(robot, configurations),
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
