"""``moscale eval physics``: does the robot survive what the node sends it?

A fixed list of commands (``config/eval/physics.yaml``: standing gestures from the model's
vocabulary, plus walking, running and turning) goes through the shipped model and the retargeter
(the node's own :class:`~moscale_ros.pipeline.MotionPipeline`, no continuation) and then the
simulated robot on a floating base, once per seed. The robot gets what a robot behind the node
gets: every plan sent to the controller (with ``controller_plans: every_scale`` the coarse plan
first, each refinement replacing it at its switch time), received when it is ready, through the
controller's rules (:func:`~moscale_ros.sim.run.simulate_received`). When each plan is ready is a
fixed schedule, ``plan_ready_s`` (seconds after the command, one per scale, the last for the final
plan; about what ``moscale bench node`` measures on the 2-core machine), replayed on a
:class:`ScheduledClock`, so the result does not depend on the machine's load; ``plan_ready_s: []``
uses the wall clock instead (this machine's own timing). Per command the table gives:

* ``up``: fraction of runs that stay up until the trajectory's end plus ``settle`` seconds;
* ``fell at``: median fall time of the runs that fell (s);
* ``track``: median over runs of the tracking RMS (all joints, deg), measured until the fall
  (a run stops 0.5 s after it);
* ``effort``: median over runs of the peak actuator torque over its limit;
* ``self-coll``: self-collision onsets, summed over runs;
* ``hand cm``: median over runs of the retargeter's median hand tracking error (the worse hand, cm,
  from its quality report: the robot's hands against the scaled human targets);
* ``R3``: runs whose trajectory the controller would reject by default (last point still moving);
  they are simulated with that rule relaxed, so the physics is measured anyway.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from moscale_common.config import load_config
from moscale_common.errors import ConfigError
from moscale_common.paths import resource


@dataclass
class PhysicsEvalConfig:
    """Schema of ``config/eval/physics.yaml``."""

    commands: list[str]
    robot: str = "g1"
    duration: float = 6.0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    settle: float = 1.0
    # warn: the weak skills in the list (one or two clips) are generated and measured, although the
    # node refuses them by default (unknown_command: refuse); refuse would end the evaluation there
    unknown_command: Literal["refuse", "warn", "accept"] = "warn"
    # s from the command to each scale's plan being ready (the last one: the final plan); [] = wall clock
    plan_ready_s: list[float] = field(default_factory=lambda: [0.08, 0.2, 0.3, 0.5])
    pipeline: dict[str, Any] = field(default_factory=dict)  # node settings to evaluate under, e.g. controller_plans

    def __post_init__(self) -> None:
        ready = self.plan_ready_s
        if any(not 0.0 <= t <= 10.0 for t in ready) or any(b < a for a, b in zip(ready, ready[1:])):
            raise ConfigError(f"plan_ready_s: expected non-decreasing seconds in [0, 10], got {ready}")


class ScheduledClock:
    """A clock that replays a fixed schedule of plan-ready times (the pipeline's ``clock`` and
    ``on_retargeted``): each command starts :attr:`GAP_S` after the previous one, and when scale ``k``
    of ``K`` is retargeted the time becomes ``start + ready_s[k - 1]`` (``ready_s[-1]`` for the final
    scale and for scales beyond the list)."""

    GAP_S = 100.0

    def __init__(self, ready_s: list[float], num_scales: int) -> None:
        self.ready_s, self.num_scales = list(ready_s), num_scales
        self.start = self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def new_command(self) -> None:
        self.start = self.now = self.start + self.GAP_S

    def scale_ready(self, scale_index: int) -> None:
        k = len(self.ready_s) if scale_index >= self.num_scales else min(scale_index, len(self.ready_s))
        self.now = max(self.now, self.start + self.ready_s[k - 1])


def summarise(text: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-command row of the table (module docstring) from the runs' ``SimulationReport.as_dict()``."""
    fell = [r["fell_at_s"] for r in runs if not r["stayed_up"]]
    return {
        "command": text,
        "runs": len(runs),
        "stay_up_fraction": sum(r["stayed_up"] for r in runs) / len(runs),
        "median_fall_s": statistics.median(fell) if fell else None,
        "median_tracking_rms_deg": float(np.degrees(statistics.median(r["tracking_rms_rad"] for r in runs))),
        "median_peak_effort_fraction": statistics.median(r["peak_effort_fraction"] for r in runs),
        "self_collisions": sum(r["self_collisions"] for r in runs),
        "median_hand_tracking_cm": statistics.median(r["hand_tracking_median_cm"] for r in runs),
        "rejected_by_default_rules": sum(r["rejected_by_default_rules"] for r in runs),
        "median_real_time_factor": statistics.median(r["real_time_factor"] for r in runs),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`summarise` rows, with a total row."""
    lines = [
        "| command | runs | up | fell at (s) | track RMS (deg) | peak effort | self-coll | hand cm | R3 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        fell = f"{r['median_fall_s']:.1f}" if r["median_fall_s"] is not None else "-"
        lines.append(
            f"| {r['command']} | {r['runs']} | {r['stay_up_fraction']:.2f} | {fell} | "
            f"{r['median_tracking_rms_deg']:.1f} | {r['median_peak_effort_fraction']:.2f} | {r['self_collisions']} | "
            f"{r['median_hand_tracking_cm']:.1f} | {r['rejected_by_default_rules']} |"
        )
    total_runs = sum(r["runs"] for r in rows)
    up = sum(r["stay_up_fraction"] * r["runs"] for r in rows) / max(total_runs, 1)
    hands = statistics.median(r["median_hand_tracking_cm"] for r in rows) if rows else 0.0
    lines.append(f"| **all** | {total_runs} | {up:.2f} | | | | {sum(r['self_collisions'] for r in rows)} | "
                 f"{hands:.1f} | {sum(r['rejected_by_default_rules'] for r in rows)} |")  # fmt: skip
    return "\n".join(lines)


def evaluate(config: PhysicsEvalConfig, checkpoint: str = "", device: str = "cpu", log=print) -> dict[str, Any]:
    """Run the protocol; returns ``{"rows": [...], "runs": {command: [report dicts]}, ...}``."""
    # Imported on use: the pipeline loads torch and Pinocchio (seconds of start-up for `moscale --help`)
    from moscale_ros.control.jtc_rules import ControllerSettings, rejection_reason
    from moscale_ros.pipeline import PipelineConfig, build_pipeline
    from moscale_ros.sim.model import build_model
    from moscale_ros.sim.run import simulate_received, trajectory_message

    settings = {"unknown_command": config.unknown_command, **config.pipeline}
    try:
        pipeline_config = PipelineConfig(checkpoint=checkpoint, device=device, robot=config.robot, **settings)
    except TypeError as exc:
        raise ConfigError(f"pipeline: {exc} (the keys are the node's pipeline settings)") from None
    pipeline = build_pipeline(pipeline_config)
    clock = None
    if config.plan_ready_s:
        clock = ScheduledClock(config.plan_ready_s, pipeline.generator.num_scales)
        pipeline.clock, pipeline.on_retargeted = clock, clock.scale_ready
    sim = build_model(pipeline.robot)
    default_rules = ControllerSettings(joints=list(pipeline.robot.joint_names))
    started = time.perf_counter()
    rows, all_runs = [], {}
    for text in config.commands:
        runs = []
        for seed in config.seeds:
            if clock is not None:
                clock.new_command()
            request = pipeline.request(text, config.duration, seed)
            received, sent = [], []  # (receipt time, message) and the trajectories sent
            for step in pipeline.run(request):
                final = step
                if step.to_controller:
                    sent_at = pipeline.clock()
                    pipeline.commit(step, sent_at)
                    received.append((sent_at, trajectory_message(step.trajectory, stamp=step.start_time)))
                    sent.append(step.trajectory)
            pipeline.forget_continuation()
            rejected = any(rejection_reason(m, default_rules, 0.0) is not None for _, m in received)
            # the robot stands at rest in the first plan's first pose (where the node's first plan starts)
            order = [list(sent[0].joint_names).index(name) for name in pipeline.robot.joint_names]
            report = simulate_received(
                sim, received, np.asarray(sent[0].positions[0])[order], np.asarray(sent[0].base_poses[0]),
                settle_s=config.settle, stop_on_fall=True,
            )  # fmt: skip
            figures = report.as_dict()
            hands = final.retarget_report.tracking_median_cm
            figures.update(seed=seed, rejected_by_default_rules=rejected, plans_received=len(received),
                           standing=bool(final.retarget_report.standing),
                           hand_tracking_median_cm=max(hands["left_hand"], hands["right_hand"]))  # fmt: skip
            runs.append(figures)
            log(f"  {text!r} seed {seed}: {report.verdict()}")
        rows.append(summarise(text, runs))
        all_runs[text] = runs
    return {
        "robot": config.robot,
        "duration": config.duration,
        "seeds": config.seeds,
        "plan_ready_s": config.plan_ready_s or "wall clock",
        "rows": rows,
        "runs": all_runs,
        "wall_s": time.perf_counter() - started,
    }


def run(args: argparse.Namespace) -> int:
    """``moscale eval physics`` (arguments: moscale_ros.commands.eval)."""
    # Imported on use (CLI entry point)
    from pathlib import Path

    path = Path(args.config) if Path(args.config).exists() else resource(args.config)
    config = load_config(PhysicsEvalConfig, path, args.set)
    if args.seeds is not None:
        config.seeds = list(range(args.seeds))
    if args.commands:
        config.commands = list(args.commands)
    result = evaluate(config, args.checkpoint or "", args.device, log=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"physics of the shipped model's motions on the simulated {config.robot} (floating base), "
              f"{len(config.seeds)} seed(s) x {config.duration:g} s:")  # fmt: skip
        print(format_table(result["rows"]))
    return 0
