"""``moscale bench retarget``: retargeting speed on G1 with limits held, on real Bandai clips.

Figures: input frames (canonical, 20 fps) and trajectory points (control rate) retargeted per
second (wall clock, and per CPU second of this process, which other load on the machine
disturbs less) by the whole pipeline (targets, contacts, IK, resampling, quality report); the same for
the DAQP solver on the same QP; the same without measuring the output afterwards, as the node's
final plan (``measure_final`` false); the same solved in two halves at once by two processes, as the
node solves its final plan (``retarget_split``, :mod:`retarget.process`), and how many clips were
joined; with IK keyframes at 20 Hz splined to 50 Hz (an option, ``final_ik_fps``) and its largest
deviation from IK at every step; the node's final plan on the shipped model's own motions, in one
process and in two halves (:func:`halves_on_generated_motions`); a coarse plan (IK at 5 Hz,
unmeasured, as the node makes it) and its warm-started refinement.
Clips are read once from the shared Bandai-Namco archive and cached (cache/retarget/clips/).
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import numpy as np
import torch

from moscale_common.errors import DataError
from moscale_common.paths import cache_root, resource, shared_data_archive
from moscale_common.skeleton import CANONICAL_FPS
from moscale_ros.bench.node import COMMANDS as NODE_COMMANDS
from moscale_ros.bench.node import SECONDS as NODE_SECONDS
from moscale_ros.data.bvh import parse_bvh_bytes
from moscale_ros.data.prepare import iter_clip_files
from moscale_ros.data.skeleton import bvh_motion_to_canonical
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT, MotionGenerator
from retarget import RetargetConfig, Retargeter, load_robot
from retarget.process import RetargeterProcess, make_retargeter
from retarget.retargeter import join_outcome
from retarget.robot import Robot

KEYFRAME_RATE = 20.0  # Hz: IK at every input frame, splined to the control rate
CLIPS = {
    "walk": "dataset-2_walk_normal_001",
    "run": "dataset-2_run_normal_001",
    "wave": "dataset-2_wave-right-hand_normal_003",
    "kick": "dataset-1_kick_normal_001",
    "bow": "dataset-1_bow_normal_001",
}


def real_clips(
    names: tuple[str, ...] = tuple(CLIPS), archive: Path | None = None
) -> dict[str, tuple[np.ndarray, float]]:
    """Canonical joints and fps of named Bandai clips (see :data:`CLIPS`), cached as .npz."""
    folder = cache_root() / "retarget" / "clips"
    wanted = {name: folder / f"{CLIPS[name]}.npz" for name in names}
    missing = [name for name, path in wanted.items() if not path.is_file()]
    if missing:
        archive = archive or shared_data_archive()
        if not archive.is_file():
            raise DataError(f"{archive}: Bandai-Namco archive not found (needed for clips {', '.join(missing)})")
        folder.mkdir(parents=True, exist_ok=True)
        stems = {CLIPS[name]: name for name in missing}
        for clip in iter_clip_files(archive, sidecars={}):  # one streaming pass, stops when all are found
            if clip.name in stems:
                joints = bvh_motion_to_canonical(parse_bvh_bytes(clip.raw, clip.label))
                np.savez(wanted[stems.pop(clip.name)], joints=joints, fps=CANONICAL_FPS)
                if not stems:
                    break
        if stems:
            raise DataError(f"{archive}: clips not found: {', '.join(stems)}")
    out = {}
    for name, path in wanted.items():
        with np.load(path) as data:
            out[name] = (data["joints"], float(data["fps"]))
    return out


def _timed(fn, repeats: int, cpu: list | None = None) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls (and the best process CPU time appended to ``cpu``)."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    if cpu is not None:
        cpu.append(best_cpu)
    return best, result


def run(args: argparse.Namespace) -> dict:
    repeats = max(1, min(getattr(args, "repeats", 3), 5))
    try:
        clips = real_clips(("walk", "wave", "kick"))
    except DataError as exc:
        return {"skipped": str(exc)}
    robot = load_robot("g1")
    figures: dict = {"robot": "g1", "repeats (best of)": repeats}
    for solver in ("active_set", "daqp"):
        retargeter = Retargeter(robot, RetargetConfig(solver=solver))
        frames = points = seconds = 0.0
        violation = speed = 0.0
        cpu: list[float] = []
        for joints, fps in clips.values():
            elapsed, traj = _timed(lambda j=joints, f=fps, r=retargeter: r.retarget(j, f), repeats, cpu)
            frames += len(joints)
            points += len(traj)
            seconds += elapsed
            violation = max(violation, traj.report.max_joint_limit_violation_rad)
            speed = max(speed, traj.report.max_speed_ratio)
        figures[f"{solver}: input frames/s (20 fps)"] = frames / seconds
        figures[f"{solver}: trajectory points/s (50 Hz)"] = points / seconds
        figures[f"{solver}: input frames per CPU second"] = frames / sum(cpu)
        figures[f"{solver}: max limit violation (rad)"] = violation
        figures[f"{solver}: max speed / limit"] = speed
    # The same IK without measuring the output afterwards (foot slide, balance margin and capsule
    # distances at every output point, the report's own evaluation): as the node's final plan
    # (measure_final false); every constraint is in the QP either way.
    retargeter = Retargeter(robot)
    frames = seconds = 0.0
    cpu = []
    for joints, fps in clips.values():
        elapsed, _ = _timed(lambda j=joints, f=fps: retargeter.retarget(j, f, measure=False), repeats, cpu)
        frames += len(joints)
        seconds += elapsed
    key = "daqp, without the output measurements (as the node's final plan, measure_final false)"
    figures[f"{key}: input frames/s (20 fps)"] = frames / seconds
    figures[f"{key}: input frames per CPU second"] = frames / sum(cpu)
    halves = RetargeterProcess(functools.partial(make_retargeter, "g1", None, 50.0), robot, tail_helper=True)
    try:  # the node's final plan: the IK process and its tail helper solve the two halves at once
        frames = seconds = 0.0
        joined = []
        for joints, fps in clips.values():
            elapsed, traj = _timed(lambda j=joints, f=fps: halves.retarget(j, f), repeats)
            frames += len(joints)
            seconds += elapsed
            joined.append(traj.report.split.startswith("joined"))
    finally:
        halves.close()
    key = "daqp, two halves at once (retarget_split: two processes, as the node's final plan)"
    figures[f"{key}: input frames/s (20 fps)"] = frames / seconds
    figures[f"{key}: clips joined"] = f"{sum(joined)} of {len(joined)}"
    retargeter = Retargeter(robot)  # every constraint on (limits, balance, self-collision)
    final_ik_fps = KEYFRAME_RATE
    frames = seconds = 0.0
    cpu = []
    deviation = []
    for joints, fps in clips.values():
        elapsed, keyed = _timed(lambda j=joints, f=fps: retargeter.retarget(j, f, ik_fps=final_ik_fps), repeats, cpu)
        full = retargeter.retarget(joints, fps)
        frames += len(joints)
        seconds += elapsed
        deviation.append(np.abs(keyed.positions - full.positions).max(axis=1))
    key = f"daqp, IK keyframes at {final_ik_fps:g} Hz (option final_ik_fps; the node's default is every step)"
    figures[f"{key}: input frames/s (20 fps)"] = frames / seconds
    figures[f"{key}: input frames per CPU second"] = frames / sum(cpu)
    deviation_N = np.concatenate(deviation)
    figures[f"{key}: joint deviation from full-rate IK, p95 / max (rad)"] = [
        float(np.percentile(deviation_N, 95)), float(deviation_N.max())
    ]  # fmt: skip
    figures.update(halves_on_generated_motions(robot, repeats))
    joints, fps = clips["walk"]
    coarse_s, coarse = _timed(lambda: retargeter.retarget(joints, fps, ik_fps=5.0, measure=False), repeats)
    refine_s, refined = _timed(lambda: retargeter.retarget(joints, fps, warm_start=coarse), repeats)
    plain_s, plain = _timed(lambda: retargeter.retarget(joints, fps), repeats)
    figures["walk clip frames"] = len(joints)
    figures["walk coarse plan (IK at 5 Hz) ms"] = 1000 * coarse_s
    figures["walk refinement warm-started ms"] = 1000 * refine_s
    figures["walk plain ms"] = 1000 * plain_s
    figures["walk hand median cm coarse/warm/plain"] = "/".join(
        f"{max(t.report.tracking_median_cm['left_hand'], t.report.tracking_median_cm['right_hand']):.2f}"
        for t in (coarse, refined, plain)
    )
    return figures


def halves_on_generated_motions(robot: Robot, repeats: int, commands: int = 10, seeds: int = 2) -> dict:
    """The node's final plan on the shipped model's own motions (the node bench's first ``commands`` texts,
    ``seeds`` seeds, 6 s, each starting at its first scale's pose as in the node): one process against
    two halves at once (``retarget_split``); how the halves were joined (in the overlap, later, or not);
    ms per motion, p50 / p95 (best of ``repeats``); the largest joint difference between the two, for
    halves joined in the overlap and for halves joined later (not joined, they are identical)."""
    checkpoint = resource(DEFAULT_CHECKPOINT)
    key = "two halves on the shipped model's motions (final plan, as in the node)"
    if not checkpoint.is_file():
        return {f"{key}: skipped": f"{checkpoint} not found"}
    generator = MotionGenerator.from_checkpoint(checkpoint, device=torch.device("cpu"))
    one = make_retargeter("g1", None, 50.0)
    motions = []
    with torch.inference_mode():
        for text in NODE_COMMANDS[:commands]:
            for seed in range(seeds):
                scales = list(generator.stream(text, NODE_SECONDS, seed))
                first, fps = np.asarray(scales[0].joints), float(scales[0].fps)
                start = one.retarget(first, fps, ik_fps=2.5, measure=False, stand_in_place=True)
                motions.append((np.asarray(scales[-1].joints), float(scales[-1].fps), start.configuration_at(0.0)))
    halves = RetargeterProcess(functools.partial(make_retargeter, "g1", None, 50.0), robot, tail_helper=True)
    alone_ms, split_ms, splits, deviation = [], [], [], {"overlap": 0.0, "later": 0.0}
    try:
        for joints, fps, start_q in motions:
            alone_s, alone = _timed(lambda j=joints, f=fps, q=start_q: one.retarget(j, f, q, measure=False), repeats)
            split_s, split = _timed(lambda j=joints, f=fps, q=start_q: halves.retarget(j, f, q, measure=False), repeats)
            alone_ms.append(1e3 * alone_s)
            split_ms.append(1e3 * split_s)
            splits.append(split.report.split)
            joined = join_outcome(split.report.split)
            if joined in deviation:  # (not joined: identical)
                deviation[joined] = max(deviation[joined], float(np.abs(split.positions - alone.positions).max()))
    finally:
        halves.close()
    outcomes = [join_outcome(s) for s in splits]
    return {
        f"{key}: motions": len(motions),
        f"{key}: one process ms p50 / p95": [round(float(np.percentile(alone_ms, q)), 1) for q in (50, 95)],
        f"{key}: two halves ms p50 / p95": [round(float(np.percentile(split_ms, q)), 1) for q in (50, 95)],
        f"{key}: joined in the overlap / later / not": [outcomes.count(k) for k in ("overlap", "later", "not")],
        f"{key}: largest joint difference from one process, joined in the overlap / later (rad)": [
            round(deviation["overlap"], 4), round(deviation["later"], 4)
        ],
    }  # fmt: skip
