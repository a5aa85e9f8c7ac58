"""The main job end to end: start ``moscale_node``, send one text command from a client process over
DDS, print each plan's latency as it arrives, save the trajectory and an animation.

The animation has one row per plan shown (the coarse first plan and the final one by default):
the generated human motion and the robot following it, side by side.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import rclpy

from moscale_common.errors import MoScaleError
from moscale_ros.cli import main as cli_main
from moscale_ros.node import convert
from moscale_ros.node.client import MoScaleClient, save_outcome
from moscale_ros.node.launcher import NodeProcess
from moscale_ros.visualize import render_plans_gif
from retarget import load_robot


def run_demo(
    text: str,
    out_dir: str | Path,
    duration: float = 0.0,
    seed: int = -1,
    params: dict | None = None,
    timeout: float = 180.0,
    gif: bool = True,
) -> dict:
    """Run the demo; returns ``{"plans": [...], "trajectory": path, "gif": path}``. Raises on failure."""
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
    if gif:
        plans = [r.msg for r in outcome.plans]
        robot = load_robot(plans[-1].robot_name)
        rows = []
        for msg in (plans[0], plans[-1]) if len(plans) > 1 else plans:
            label = f"scale {msg.scale_index}/{msg.num_scales}" + (" (final)" if msg.is_final else " (coarse)")
            rows.append((label, convert.human_joints(msg), convert.robot_trajectory(msg, robot)))
        gif_path = render_plans_gif(
            out_dir / "demo.gif", rows, fps=float(plans[-1].human_fps), title=text, max_frames=80
        )
        print(f"demo: animation -> {gif_path}")
        result["gif"] = str(gif_path)
    result["num_plans"] = len(outcome.plans)
    return result


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
