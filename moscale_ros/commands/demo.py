"""``moscale demo "text"``: the node with the shipped model answers one command; latencies, trajectory,
the simulated robot's physics verdict and a video of it beside the human motion (GIF)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="start the node, send a text command, print plan latencies, simulate what was sent, save a video"
    )
    parser.add_argument("text", nargs="?", default="wave the right hand", help="the command (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0: the node's default)")
    parser.add_argument("--seed", type=int, default=-1, help="-1: random")
    parser.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--checkpoint", default="", help="model file (default: the shipped model)")
    parser.add_argument("--robot", default="", help="robot name or YAML (default: the parameter file's, g1)")
    parser.add_argument("--device", default="", help="auto | cpu | cuda (default: the parameter file's)")
    parser.add_argument("--no-gif", action="store_true", help="skip the video (the simulation still runs)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for start-up and for the command")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json

    from moscale_ros.node.demo import run_demo

    params = {k: v for k, v in (("checkpoint", args.checkpoint), ("robot", args.robot), ("device", args.device)) if v}
    result = run_demo(
        args.text, args.out, args.duration, args.seed, params=params, timeout=args.timeout, gif=not args.no_gif
    )
    with open(f"{args.out}/demo.json", "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
    return 0
