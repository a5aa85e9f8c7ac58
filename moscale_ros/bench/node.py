"""``moscale bench node``: the node end to end over real DDS, as a robot stack sees it.

Two processes besides this one: ``moscale_node`` (the shipped parameter file, ``--checkpoint`` or
the shipped model, ``--device``) and a client (:func:`client_main`, a :class:`MoScaleClient
<moscale_ros.node.client.MoScaleClient>`) that sends ``--repeats`` commands one after another
through the action, each a new text for a 6 s motion, and timestamps on receipt (monotonic clock,
its own process) every plan and the final controller trajectory. Figures: command -> first plan
and command -> final trajectory, p50 and p95 (ms); for reference also the node's own receipt ->
final plan ready time (``MotionPlan.latency``, no transport). Goals: first plan <= 100 ms, final
trajectory <= 400 ms.

What a ROS 2 joint_trajectory_controller makes of the output: every message on the controller
topic, at its ROS receipt time, replayed through the controller's rules
(:mod:`moscale_ros.control.jtc_rules`, at the node's ``control_rate``, starting from the first
message's first point). Each command is sent as soon as the one before has its result, so it
takes over while the previous 6 s motion runs. Figures: rejected trajectories (goal 0), the largest
commanded move in the control cycle of a replacement, in rad and as a fraction of what the joint's
velocity limit allows in one cycle (goal <= 1), the largest last-point velocity (goal 0) and the
fastest finite-difference speed of the commanded path over its limit (goal <= 1).

Without a trained model the default architecture with random weights is written to
``cache/bench/`` and served instead (the same computation per scale); the result says which ran.
The node runs on its own random ROS domain with localhost discovery.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from moscale_common.errors import MoScaleError
from moscale_common.paths import cache_root, resource
from moscale_ros.bench.generation import default_architecture_generator
from moscale_ros.generation.bundle import save_generator
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT
from moscale_ros.node.launcher import NodeProcess
from moscale_ros.runtime import select_device

SECONDS = 6.0
GOAL_FIRST_MS = 100.0
GOAL_FINAL_MS = 400.0
CONTROL_RATE = 50.0  # Hz: the node's control_rate in config/moscale.yaml, the modelled controller's update rate
COMMANDS = (
    "a person walks forward", "a person waves the right hand", "a person bows politely",
    "a person raises both hands", "a person walks backwards slowly", "a person kicks with the right leg",
    "a person punches forward twice", "a person turns to the left", "a person waves both hands",
    "a person runs forward", "a person raises the left hand", "a person walks to the right",
    "a person dances happily", "a person slashes with a sword", "a person calls someone over",
    "a person walks forward tiredly", "a person waves goodbye with the left hand", "a person dashes ahead",
    "a person walks in a proud manner", "a person responds with a nod",
)  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return round(ordered[rank - 1], 2)


def _untrained_default_checkpoint(device: str) -> Path:
    """The default architecture with random weights, saved once under cache/bench/."""
    path = cache_root() / "bench" / "default-architecture-random-weights.safetensors"
    if not path.is_file():
        generator = default_architecture_generator(select_device(device))
        save_generator(
            path, generator.tokenizer, generator.transformer, generator.length_estimator, generator.mean_D,
            generator.std_D, generator.text_encoder.config, generator.config,
        )  # fmt: skip
    return path


def run(args: argparse.Namespace) -> dict:
    device = getattr(args, "device", "cpu")
    repeats = max(1, int(getattr(args, "repeats", 20)))
    shipped = resource(DEFAULT_CHECKPOINT)
    if getattr(args, "checkpoint", None):
        checkpoint, model = Path(args.checkpoint), str(args.checkpoint)
    elif shipped.is_file():
        checkpoint, model = shipped, str(shipped)
    else:
        checkpoint = _untrained_default_checkpoint(device)
        model = f"default architecture, random weights ({shipped} not found)"

    env = {
        "ROS_DOMAIN_ID": str(random.randint(100, 200)),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    log = cache_root() / "bench" / "moscale_node.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    client_argv = [
        sys.executable, "-m", "moscale_ros.bench.node", *COMMANDS[:repeats], "--repeat", str(repeats),
        "--duration", str(SECONDS), "--seed", "0", "--timeout", "180",
    ]  # fmt: skip
    with NodeProcess({"checkpoint": str(checkpoint), "device": device}, log_path=log, env=env) as node:
        client = subprocess.run(client_argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=900)
        if client.returncode not in (0, 1) or not client.stdout.strip():
            raise MoScaleError(
                f"node bench: the client failed (exit {client.returncode}): {client.stderr[-1500:]}\n"
                f"node log {log}:\n{node.log()[-1500:]}"
            )
    report = json.loads(client.stdout.strip().splitlines()[-1])
    commands, controller = report["commands"], report["controller"]
    done = [c for c in commands if c["status"] == "succeeded" and "final_trajectory_ms" in c]
    if not done:
        raise MoScaleError(f"node bench: no command succeeded: {commands[:2]}; node log {log}")
    first = [c["first_plan_ms"] for c in done]
    final = [c["final_trajectory_ms"] for c in done]
    node_final = [c["plan_ready_in_node_ms"][-1] for c in done]
    return {
        "model": model,
        "device": device,
        "transport": "rclpy over Fast DDS, two processes, localhost",
        "motion_seconds": SECONDS,
        "commands": len(commands),
        "succeeded": len(done),
        "scales": max(len(c["scales"]) for c in done),
        "first_plan_ms_p50": _percentile(first, 50),
        "first_plan_ms_p95": _percentile(first, 95),
        "final_trajectory_ms_p50": _percentile(final, 50),
        "final_trajectory_ms_p95": _percentile(final, 95),
        "final_trajectory_ms_mean": round(statistics.fmean(final), 2),
        "final_plan_ready_in_node_ms_p50": _percentile(node_final, 50),  # the node's own clock, no transport
        "final_plan_ready_in_node_ms_p95": _percentile(node_final, 95),
        "goal_first_plan_ms": GOAL_FIRST_MS,
        "goal_final_trajectory_ms": GOAL_FINAL_MS,
        "meets_first_plan_goal_p50": _percentile(first, 50) <= GOAL_FIRST_MS,
        "meets_final_goal_p50": _percentile(final, 50) <= GOAL_FINAL_MS,
        **controller,
        "node_log": str(log),
    }


# ------------------------------------------------------------------------------ the client process


def controller_figures(replay: Any, velocity_limits_J: np.ndarray, trajectories: int) -> dict[str, Any]:
    """The controller-side figures (module docstring) of a :class:`~moscale_ros.control.jtc_rules.Replay`."""
    step_fraction = replay.max_step_fraction(velocity_limits_J)
    speed_fraction = replay.max_speed_fraction(velocity_limits_J)
    end_velocity = max(replay.end_velocities, default=0.0)
    return {
        "controller_update_rate_hz": replay.settings.update_rate,
        "controller_trajectories": trajectories,
        "controller_rejections": len(replay.rejections),
        "max_switch_step_rad": round(replay.max_replacement_step(), 6),
        "max_switch_step_fraction_of_limit": round(step_fraction, 4),
        "max_end_velocity_rad_s": end_velocity,
        "max_speed_fraction_of_limit": round(speed_fraction, 4),
        "meets_controller_goals": not replay.rejections and step_fraction <= 1.0 and end_velocity == 0.0
        and speed_fraction <= 1.0 + 1e-6,
    }  # fmt: skip


def client_main(argv: list[str] | None = None) -> int:
    """The bench's client process: the node client's commands (action, one after another), then one
    JSON line ``{"commands": [...], "controller": {...}}`` on stdout (exit 1 if a command failed)."""
    # ROS imports only in the client process: `moscale bench` itself must run without sourcing rclpy.
    import rclpy

    from moscale_ros.node import convert
    from moscale_ros.node.client import MoScaleClient, _summary
    from moscale_ros.node.parameters import DEFAULT_CONTROLLER_TOPIC
    from retarget.robot import load_robot

    parser = argparse.ArgumentParser(prog="python -m moscale_ros.bench.node", description=client_main.__doc__)
    parser.add_argument("texts", nargs="+", metavar="TEXT")
    parser.add_argument("--repeat", type=int, default=0, help="commands to send, cycling through TEXT (0: each once)")
    parser.add_argument("--duration", type=float, default=SECONDS)
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--node", default="/moscale_node")
    parser.add_argument("--controller-topic", default=DEFAULT_CONTROLLER_TOPIC)
    parser.add_argument("--robot", default="g1", help="the node's robot: its velocity limits")
    parser.add_argument("--update-rate", type=float, default=CONTROL_RATE, help="Hz of the modelled controller")
    args = parser.parse_args(argv)

    robot = load_robot(args.robot)
    rclpy.init()
    try:
        with MoScaleClient(args.node, args.controller_topic) as client:
            if not client.wait_ready(args.timeout):
                print(f"bench client: {args.node} did not come up within {args.timeout:g} s", file=sys.stderr)
                return 3
            outcomes = []
            for i in range(args.repeat or len(args.texts)):
                outcomes.append(
                    client.generate(args.texts[i % len(args.texts)], args.duration, args.seed, args.timeout)
                )
            with client._lock:
                received = list(client.trajectories)
            controller: dict[str, Any] = {"controller_trajectories": 0}
            if received:
                names, _, positions_NJ, _ = convert.trajectory_arrays(received[0].msg)
                if names != list(robot.joint_names):
                    print(f"bench client: the node's joints are not robot {args.robot!r}'s", file=sys.stderr)
                    return 3
                replay = client.controller_replay(positions_NJ[0], update_rate=args.update_rate)
                controller = controller_figures(replay, robot.velocity_limits, len(received))
            print(json.dumps({"commands": [_summary(o) for o in outcomes], "controller": controller}))
            return 0 if all(o.status == "succeeded" for o in outcomes) else 1
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(client_main())
