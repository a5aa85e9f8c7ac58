"""``moscale retarget``: human motion (BVH or canonical joints) to a robot joint trajectory.

    moscale retarget walk.bvh --robot g1 --out walk.npz --gif walk.gif
    moscale retarget a.bvh b.bvh c.bvh --robot g1 --report        # quality figures per clip
    moscale retarget cc_export.bvh --skeleton-map my_rig.yaml     # a rig no shipped map fits

Inputs: ``.bvh`` (any rig with a skeleton map), ``.npz`` with ``joints`` (T, 22, 3) and optional
``fps``, or ``.npy`` (T, 22, 3) at ``--fps``; joints are canonical (y-up, metres).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moscale_common.errors import InputError

EASE_S = 0.5  # s over which a saved trajectory starts from and comes to rest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retarget", help="retarget human motion onto a robot (Pinocchio IK)")
    p.add_argument("inputs", nargs="+", metavar="MOTION", help=".bvh, .npz (joints, fps) or .npy (T, 22, 3) file(s)")
    p.add_argument("--robot", default="g1", help="robot name in config/robots/ or a robot YAML (default: g1)")
    p.add_argument("--urdf", default=None, help="URDF file to use instead of the YAML's (like robot_description)")
    p.add_argument("--out", default=None, help="trajectory file, .npz or .csv (one input only)")
    p.add_argument("--gif", default=None, help="GIF of the human and the robot side by side (one input only)")
    p.add_argument("--skeleton-map", default=None, metavar="MAP",
                   help="skeleton map of .bvh inputs: a shipped name (config/skeletons/) or a YAML file "
                   "(default: the shipped map that fits the rig)")  # fmt: skip
    p.add_argument("--fps", type=float, default=20.0, help="frame rate of .npy inputs (default: 20)")
    p.add_argument("--control-rate", type=float, default=50.0, help="output rate in Hz (default: 50)")
    p.add_argument("--ik-fps", type=float, default=None, help="IK keyframe rate (default: the control rate)")
    p.add_argument("--report", action="store_true", help="print the quality report of every clip")
    p.add_argument("--json", action="store_true", help="print the quality reports as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the command runs: Pinocchio and SciPy cost a second of `moscale --help`.
    from moscale_ros.control.shaping import ease
    from moscale_ros.data.motion_file import load_motion
    from retarget import RetargetConfig, Retargeter, load_robot

    if len(args.inputs) > 1 and (args.out or args.gif):
        raise InputError("--out and --gif take a single input motion")
    urdf_string = None
    if args.urdf:
        try:
            urdf_string = Path(args.urdf).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{args.urdf}: cannot read URDF ({exc.strerror or exc})") from exc
    robot = load_robot(args.robot, urdf_string=urdf_string)
    retargeter = Retargeter(robot, RetargetConfig(control_rate=args.control_rate, ik_fps=args.ik_fps))
    reports = {}
    for item in args.inputs:
        joints, fps = load_motion(item, args.fps, args.skeleton_map)
        trajectory = retargeter.retarget(joints, fps)
        report = trajectory.report
        reports[item] = report.as_dict()
        if args.out:  # at rest at both ends, as a joint_trajectory_controller requires (control/shaping.py)
            ready = ease(trajectory, EASE_S, EASE_S)
            print(
                f"trajectory: {ready.save(args.out)} ({len(ready)} points, {ready.duration:.2f} s, at rest at the ends)"
            )
        if args.gif:
            from moscale_ros.visualize import render_gif

            gif = render_gif(args.gif, human_joints_T223=joints, robot=trajectory, fps=fps, title=Path(item).stem)
            print(f"gif: {gif}")
        if args.report or not (args.out or args.gif or args.json):
            print(f"{item}: {len(joints)} frames at {fps:g} fps, retargeted in {report.elapsed_s:.3f} s")
            print(report.format())
    if args.json:
        print(json.dumps(reports, indent=2))
    return 0
