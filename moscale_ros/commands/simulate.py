"""``moscale simulate``: run a saved robot trajectory on the simulated robot (MuJoCo) and report.

    moscale simulate wave.npz                         # floating base: does it stay up?
    moscale simulate wave.npz --fixed-base --json     # joints only, figures as JSON
    moscale simulate wave.npz --video wave.mp4        # the simulated robot's meshes (EGL)

The trajectory (``RobotTrajectory.save`` .npz, from the node, ``moscale retarget`` or the demo)
goes through the joint_trajectory_controller rules first; one they reject is not run (exit 1)
unless ``--allow-nonzero-end-velocity`` relaxes rule R3 (trajectories that end moving).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a saved trajectory on the simulated robot (MuJoCo) and report physics")
    p.add_argument("trajectory", metavar="TRAJ.npz", help="trajectory file written by RobotTrajectory.save")
    p.add_argument("--robot", default=None, help="robot name or YAML (default: the one the file names, else g1)")
    p.add_argument("--fixed-base", action="store_true", help="weld the pelvis in place: joints only")
    p.add_argument(
        "--allow-nonzero-end-velocity", action="store_true",
        help="accept a trajectory whose last point still moves (the controller's default rejects it)",
    )  # fmt: skip
    p.add_argument("--settle", type=float, default=1.0, help="seconds simulated after the end (default: 1)")
    p.add_argument("--video", default=None, help="render the run to .mp4 or .gif (MuJoCo, offscreen)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def _video(out: str, sim, report, trajectory, robot, title: str) -> str:
    """The simulated robot rendered by MuJoCo; without offscreen GL, the commanded trajectory drawn
    by :func:`moscale_ros.visualize.render_gif` (a GIF), after one line saying why."""
    from pathlib import Path

    from moscale_ros.sim.render import gl_unavailable_reason, render_video

    reason = gl_unavailable_reason(sim)
    if reason is None:
        return render_video(out, sim, report.frames_qpos, report.frames_fps, title=title)
    from moscale_ros.visualize import render_gif

    gif = Path(out).with_suffix(".gif")
    print(f"video: {reason}; drawing the commanded trajectory instead (no physics) in {gif}")
    trajectory.robot = robot
    return str(render_gif(gif, robot=trajectory, fps=20.0, title=title))


def run(args: argparse.Namespace) -> int:
    from moscale_common.errors import InputError
    from moscale_ros.sim.model import build_model
    from moscale_ros.sim.run import simulate_trajectory
    from retarget.robot import load_robot
    from retarget.trajectory import RobotTrajectory

    path = Path(args.trajectory)
    if not path.is_file() or path.suffix != ".npz":
        raise InputError(f"{path}: not an .npz trajectory file")
    try:
        trajectory = RobotTrajectory.load(path)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the trajectory ({exc})") from exc
    robot = load_robot(args.robot or trajectory.robot_name or "g1")
    base = trajectory.base_poses[0] if args.fixed_base else None
    sim = build_model(robot, fixed_base=args.fixed_base, base_pose_7=base)
    fps = 30.0 if args.video else 0.0
    report = simulate_trajectory(
        sim, trajectory, allow_nonzero_end_velocity=args.allow_nonzero_end_velocity, settle_s=args.settle,
        record_fps=fps,
    )  # fmt: skip
    figures = report.as_dict()
    if args.video and report.executed:
        figures["video"] = _video(args.video, sim, report, trajectory, robot, path.stem)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(report.format())
        if figures.get("video"):
            print(f"video: {figures['video']}")
    if not report.executed:
        if not args.json:
            print("(run again with --allow-nonzero-end-velocity to execute it anyway)")
        return 1
    return 0
