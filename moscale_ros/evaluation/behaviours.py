"""``moscale eval behaviours``: what a person checks by eye, measured on the generated human joints.

For a fixed list of commands and seeds (``config/eval/behaviours.yaml``) the shipped model generates
each motion (final scale) and :func:`measure` reads off, in the canonical frame of
:mod:`moscale_common.skeleton` (y up, metres, first frame facing +z, its left +x):

* travel: the pelvis's ground displacement first → last frame, split into ``forward_m`` along the
  first frame's facing and ``leftward_m`` along its left; ``direction`` is the larger of the two
  (``forward``, ``backward``, ``left``, ``right``), or ``in place`` below ``IN_PLACE_M``;
* ``turn_deg``: the unwrapped change of heading (the facing of the hip line, ``f = a × up`` with
  ``a`` = left hip − right hip), first → last frame; positive turns left;
* per hand: ``{hand}_wrist_above_head_m`` (highest wrist − head height over the motion),
  ``{hand}_raised_fraction`` (share of frames with the wrist above its shoulder) and
  ``{hand}_wave_cycles`` (side-to-side swings of the raised wrist across the shoulder's facing plane
  of at least ``WAVE_SWING_M``, halved); ``raised_hands`` names the hands raised for at least
  ``RAISED_FRACTION`` of the motion;
* ``torso_pitch_deg``: the largest forward lean of the pelvis → neck line from vertical (a bow);
* ``foot_lift_m``: the largest height of a foot joint above its own lowest point (a kick), and
  ``lifted_foot``.

Each command may carry ``expect`` checks (``measure``, ``at_least``/``at_most``); the summary counts
the seeds that pass each one. The README's and the model card's behaviour claims quote this output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moscale_common.config import load_config
from moscale_common.paths import resource
from moscale_common.skeleton import CANONICAL_FPS, JOINT_INDEX

IN_PLACE_M = 0.5  # travel below this is "in place"
RAISED_FRACTION = 0.3  # a hand counts as raised when its wrist is above its shoulder this often
WAVE_SWING_M = 0.05  # a side-to-side swing of the wrist counts from this amplitude
UP_3 = np.array([0.0, 1.0, 0.0])
HANDS = ("right", "left")
FEET = ("right", "left")


@dataclass
class Check:
    """One expectation on a measure: ``at_least <= value <= at_most`` (either bound optional)."""

    measure: str
    at_least: float | None = None
    at_most: float | None = None

    def passes(self, value: float) -> bool:
        return (self.at_least is None or value >= self.at_least) and (self.at_most is None or value <= self.at_most)

    def describe(self) -> str:
        low = "" if self.at_least is None else f"{self.at_least:g} <= "
        high = "" if self.at_most is None else f" <= {self.at_most:g}"
        return f"{low}{self.measure}{high}"


@dataclass
class BehaviourCommand:
    """A command of the protocol and what its motion should show."""

    text: str
    expect: list[Check] = field(default_factory=list)


@dataclass
class BehaviourEvalConfig:
    """Schema of ``config/eval/behaviours.yaml``."""

    commands: list[BehaviourCommand]
    duration: float = 6.0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


def heading_angles(joints_T223: np.ndarray) -> np.ndarray:
    """Unwrapped heading (rad) per frame: the angle of the hip line's facing ``(left hip − right hip) × up``
    on the ground, measured from +z towards +x (the character's left)."""
    across_T3 = joints_T223[:, JOINT_INDEX["left_hip"]] - joints_T223[:, JOINT_INDEX["right_hip"]]
    facing_T3 = np.cross(across_T3, UP_3)
    return np.unwrap(np.arctan2(facing_T3[:, 0], facing_T3[:, 2]))


def wave_cycles(offsets_T: np.ndarray, swing: float = WAVE_SWING_M) -> float:
    """Half the number of direction reversals of ``offsets_T`` by at least ``swing`` each (a zigzag
    filter: a reversal counts once the value has come back ``swing`` from the last extreme)."""
    if len(offsets_T) < 2:
        return 0.0
    low = high = float(offsets_T[0])
    trend, reversals = 0, 0  # trend: +1 rising, -1 falling, 0 not yet known
    for value in map(float, offsets_T[1:]):
        if trend == 0:
            low, high = min(low, value), max(high, value)
            if high - low >= swing:
                trend = 1 if value == high else -1
                low = high = value
        elif trend > 0:
            high = max(high, value)
            if high - value >= swing:
                trend, low, reversals = -1, value, reversals + 1
        else:
            low = min(low, value)
            if value - low >= swing:
                trend, high, reversals = 1, value, reversals + 1
    return reversals / 2.0


def measure(joints_T223: np.ndarray, fps: float = CANONICAL_FPS) -> dict[str, Any]:
    """The behaviour measures of one motion (module docstring); ``joints_T223`` canonical, (T, 22, 3)."""
    joints_T223 = np.asarray(joints_T223, dtype=np.float64)
    if joints_T223.ndim != 3 or joints_T223.shape[1:] != (22, 3) or len(joints_T223) < 2:
        raise ValueError(f"expected joints of shape (T >= 2, 22, 3), got {joints_T223.shape}")
    heading_T = heading_angles(joints_T223)
    facing_2 = np.array([np.sin(heading_T[0]), np.cos(heading_T[0])])  # (x, z) on the ground
    left_2 = np.array([facing_2[1], -facing_2[0]])  # facing +z → left +x
    pelvis_T3 = joints_T223[:, JOINT_INDEX["pelvis"]]
    shift_2 = (pelvis_T3[-1] - pelvis_T3[0])[[0, 2]]
    forward, leftward = float(shift_2 @ facing_2), float(shift_2 @ left_2)
    travel = float(np.hypot(*shift_2))
    if travel < IN_PLACE_M:
        direction = "in place"
    elif abs(forward) >= abs(leftward):
        direction = "forward" if forward > 0 else "backward"
    else:
        direction = "left" if leftward > 0 else "right"
    out: dict[str, Any] = {
        "seconds": len(joints_T223) / fps,
        "travel_m": travel,
        "forward_m": forward,
        "leftward_m": leftward,
        "direction": direction,
        "turn_deg": float(np.degrees(heading_T[-1] - heading_T[0])),
    }
    head_y_T = joints_T223[:, JOINT_INDEX["head"], 1]
    raised = []
    for hand in HANDS:
        wrist_T3 = joints_T223[:, JOINT_INDEX[f"{hand}_wrist"]]
        shoulder_T3 = joints_T223[:, JOINT_INDEX[f"{hand}_shoulder"]]
        up_T = wrist_T3[:, 1] > shoulder_T3[:, 1]
        # Side-to-side: the wrist's offset from the shoulder along the body's current left axis.
        left_T2 = np.stack([np.cos(heading_T), -np.sin(heading_T)], axis=-1)
        sideways_T = np.einsum("tc,tc->t", (wrist_T3 - shoulder_T3)[:, [0, 2]], left_T2)
        out[f"{hand}_wrist_above_head_m"] = float(np.max(wrist_T3[:, 1] - head_y_T))
        out[f"{hand}_raised_fraction"] = float(up_T.mean())
        out[f"{hand}_wave_cycles"] = wave_cycles(sideways_T[up_T]) if up_T.any() else 0.0
        if up_T.mean() >= RAISED_FRACTION:
            raised.append(hand)
    out["raised_hands"] = "both" if len(raised) == 2 else (raised[0] if raised else "none")
    spine_T3 = joints_T223[:, JOINT_INDEX["neck"]] - pelvis_T3
    facing_T3 = np.stack([np.sin(heading_T), np.zeros_like(heading_T), np.cos(heading_T)], axis=-1)
    lean_T = np.degrees(np.arctan2(np.einsum("tc,tc->t", spine_T3, facing_T3), spine_T3[:, 1]))
    out["torso_pitch_deg"] = float(np.max(lean_T))
    lifts = {foot: joints_T223[:, JOINT_INDEX[f"{foot}_foot"], 1] for foot in FEET}
    lifts = {foot: float(np.max(y_T - np.min(y_T))) for foot, y_T in lifts.items()}
    out["lifted_foot"] = max(lifts, key=lifts.get)
    out["foot_lift_m"] = lifts[out["lifted_foot"]]
    return out


def summarise(command: BehaviourCommand, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-command row: medians of the numeric measures over seeds, the most common labels, and
    ``checks``: for each expectation, the seeds that pass it."""
    numeric = [k for k, v in runs[0].items() if isinstance(v, float) and k != "seed"]
    labels = [k for k, v in runs[0].items() if isinstance(v, str)]
    row: dict[str, Any] = {"command": command.text, "runs": len(runs)}
    row.update({k: statistics.median(r[k] for r in runs) for k in numeric})
    row.update({k: statistics.mode(r[k] for r in runs) for k in labels})
    for check in command.expect:
        if check.measure not in runs[0]:
            raise KeyError(f"{command.text!r}: unknown measure {check.measure!r} (known: {sorted(runs[0])})")
    row["checks"] = [
        {"check": c.describe(), "passed": sum(c.passes(r[c.measure]) for r in runs), "of": len(runs)}
        for c in command.expect
    ]
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`summarise` rows (medians over seeds)."""
    lines = [
        "| command | travel (m) | direction | turn (deg) | raised | R/L above head (m) | R/L waves | "
        "torso pitch (deg) | foot lift (m) | checks passed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        checks = "; ".join(f"{c['check']}: {c['passed']}/{c['of']}" for c in r["checks"]) or "-"
        lines.append(
            f"| {r['command']} | {r['travel_m']:.2f} | {r['direction']} | {r['turn_deg']:.0f} | {r['raised_hands']} | "
            f"{r['right_wrist_above_head_m']:.2f} / {r['left_wrist_above_head_m']:.2f} | "
            f"{r['right_wave_cycles']:.1f} / {r['left_wave_cycles']:.1f} | {r['torso_pitch_deg']:.0f} | "
            f"{r['foot_lift_m']:.2f} | {checks} |"
        )
    return "\n".join(lines)


def evaluate(config: BehaviourEvalConfig, generator: Any, log=print) -> dict[str, Any]:
    """Generate every command at every seed with ``generator`` (a MotionGenerator) and measure it."""
    started = time.perf_counter()
    rows, all_runs = [], {}
    for command in config.commands:
        runs = []
        for seed in config.seeds:
            result = generator.generate(command.text, config.duration, seed)
            figures = measure(result.joints, result.fps)
            figures["seed"] = seed
            runs.append(figures)
            log(f"  {command.text!r} seed {seed}: {figures['direction']}, {figures['travel_m']:.2f} m, "
                f"raised {figures['raised_hands']}, pitch {figures['torso_pitch_deg']:.0f} deg")  # fmt: skip
        rows.append(summarise(command, runs))
        all_runs[command.text] = runs
    passed = sum(c["passed"] for r in rows for c in r["checks"])
    total = sum(c["of"] for r in rows for c in r["checks"])
    return {
        "duration": config.duration,
        "seeds": config.seeds,
        "rows": rows,
        "runs": all_runs,
        "checks_passed": passed,
        "checks_total": total,
        "wall_s": time.perf_counter() - started,
    }


def load_protocol(path: str, overrides: list[str] | None = None) -> BehaviourEvalConfig:
    """The protocol YAML (a path, or one relative to the package's resources)."""
    where = Path(path) if Path(path).exists() else resource(path)
    return load_config(BehaviourEvalConfig, where, overrides or [])


def run(args: argparse.Namespace) -> int:
    """``moscale eval behaviours`` (arguments: moscale_ros.commands.eval)."""
    # Imported on use: the generator loads torch (seconds of start-up for `moscale --help`)
    from moscale_ros.generation.generator import MotionGenerator

    config = load_protocol(args.config, args.set)
    if args.seeds is not None:
        config.seeds = list(range(args.seeds))
    if args.commands:
        config.commands = [c for c in config.commands if c.text in args.commands] + [
            BehaviourCommand(text) for text in args.commands if text not in {c.text for c in config.commands}
        ]
    generator = MotionGenerator.from_checkpoint(args.checkpoint or None, device=args.device, warm_up=False)
    result = evaluate(config, generator, log=lambda line: print(line, file=sys.stderr))
    result["checkpoint"] = args.checkpoint or "models/moscale-bandai.safetensors"
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"behaviours of {result['checkpoint']}: {len(config.seeds)} seed(s) x {config.duration:g} s, "
              "medians over seeds:")  # fmt: skip
        print(format_table(result["rows"]))
        print(f"checks passed: {result['checks_passed']}/{result['checks_total']}")
    return 0
