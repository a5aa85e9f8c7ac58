"""Issue #19 (speed): generation ahead of retargeting (latest wins), and the final plan's IK at
keyframes against full-rate IK on real Bandai clips (the behaviour before the change).

Tolerances of the final trajectory, keyframes at the node's ``final_ik_fps`` (20 Hz: every frame
of the generated motion, splined to the 50 Hz grid) against IK at every 50 Hz step (the behaviour
before), all constraints on: standing gestures (balance rows active) within 0.02 rad on every joint
at every point (measured: wave 0.011, bow 0.006); travelling clips within 0.3 rad at the 95th
percentile of points (measured: walk 0.10, kick 0.16, run 0.23; at their speed limits they take
another path between keyframes, up to 1.5 rad on one kick joint), the same hand tracking within
0.1 cm, no capsule pair penetrating (intervals where the spline cut through one are solved again at
every step) and no joint outside its limits.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from moscale_common.paths import shared_data_archive
from moscale_ros.bench.retarget import real_clips
from moscale_ros.generation.prefetch import LatestScales
from moscale_ros.pipeline import PipelineConfig
from retarget import Retargeter, load_robot


def _scales(count: int, seconds_each: float, fail_at: int | None = None):
    """A scale stream: ``(index, is_final)`` every ``seconds_each`` s, raising at ``fail_at``."""
    for k in range(1, count + 1):
        time.sleep(seconds_each)
        if k == fail_at:
            raise ValueError(f"scale {k} failed")
        yield k, k == count


def test_latest_scales_skips_overtaken_intermediate_scales_never_the_final() -> None:
    stream = LatestScales(_scales(4, 0.02))
    seen = []
    for k, _ in stream:
        seen.append(k)
        time.sleep(0.09)  # a slow retarget: the next scales are ready meanwhile
    stream.close()
    assert seen[0] == 1 and seen[-1] == 4, seen
    assert len(seen) < 4 and stream.dropped == 4 - len(seen)


def test_latest_scales_keeps_every_scale_when_the_consumer_keeps_up() -> None:
    stream = LatestScales(_scales(4, 0.03))
    assert [k for k, _ in stream] == [1, 2, 3, 4] and stream.dropped == 0
    stream.close()


def test_latest_scales_raises_the_stream_error_and_close_stops_the_worker() -> None:
    stream = LatestScales(_scales(4, 0.01, fail_at=2))
    assert next(stream) == (1, False)
    with pytest.raises(ValueError, match="scale 2 failed"):
        next(stream)
    stream.close()
    early = LatestScales(_scales(50, 0.01))
    next(early)
    early.close()  # stops after the scale in progress, does not run the other 48
    assert not any(t.name == "moscale-generation" and t.is_alive() for t in threading.enumerate())


@pytest.fixture(scope="module")
def clips() -> dict:
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    return real_clips(("wave", "bow", "walk", "run", "kick"))


@pytest.mark.parametrize("clip", ["wave", "bow", "walk", "run", "kick"])
def test_final_plan_keyframes_match_full_rate_ik(clips: dict, clip: str) -> None:
    g1 = Retargeter(load_robot("g1"))
    joints, fps = clips[clip]
    full = g1.retarget(joints, fps)
    keyed = g1.retarget(joints, fps, ik_fps=PipelineConfig().final_ik_fps)
    assert keyed.positions.shape == full.positions.shape
    deviation_N = np.abs(keyed.positions - full.positions).max(axis=1)
    if keyed.report.standing:
        assert deviation_N.max() <= 0.02, deviation_N.max()
        assert keyed.report.com_support_margin_min_cm >= full.report.com_support_margin_min_cm - 0.5
    else:
        assert np.percentile(deviation_N, 95) <= 0.3, np.percentile(deviation_N, 95)
    for hand in ("left_hand", "right_hand"):
        assert abs(keyed.report.tracking_median_cm[hand] - full.report.tracking_median_cm[hand]) <= 0.1
    assert keyed.report.self_penetrations == 0
    assert keyed.report.max_joint_limit_violation_rad == 0.0


def test_coarse_plan_without_measurements_keeps_limits_and_tracking(clips: dict) -> None:
    g1 = Retargeter(load_robot("g1"))
    joints, fps = clips["wave"]
    measured = g1.retarget(joints, fps, ik_fps=5.0)
    coarse = g1.retarget(joints, fps, ik_fps=5.0, measure=False)
    np.testing.assert_array_equal(coarse.positions, measured.positions)
    assert coarse.report.tracking_median_cm == measured.report.tracking_median_cm
    assert coarse.report.max_joint_limit_violation_rad == 0.0
    assert np.isnan(coarse.report.com_support_margin_min_cm) and not np.isnan(measured.report.com_support_margin_min_cm)
