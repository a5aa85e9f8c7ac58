"""Issue #19 (speed): generation one scale ahead of retargeting, IK in a child process, the final
trajectory of a fixed seed before and after, and IK keyframes (an option) against IK at every step
on real Bandai clips.

Before/after: the pipeline generates scale k+1 in a thread while a child process retargets scale k
(:mod:`retarget.process`; in the same process the IK's hold on the GIL made generation 6x slower),
retargets the first plan at 2.5 Hz keyframes (coarse plans at 5 Hz), ends frame 0's settling once
it converges, and leaves out the final report's output measurements unless ``measure_final``.
Every scale is still retargeted in order, each warm-started from the previous one; the stated
tolerances are in :func:`test_final_trajectory_of_a_fixed_seed_before_and_after`. Latest wins
(skipping an overtaken intermediate scale) was measured and left out: the final's warm start then
depends on timing and changes the final trajectory by up to 1.2 rad (p95 over points, a walk), and
warm-starting every scale from the first plan instead made 10 generated motions worse
(self-penetrating points 93 -> 135, median hand error 0.67 -> 0.97 cm).

Keyframes (``ik_fps`` / ``final_ik_fps`` 20 Hz, splined to 50 Hz) against every 50 Hz step, all
constraints on: standing gestures within 0.02 rad on every joint at every point (measured: wave
0.011, bow 0.006); travelling clips within 0.3 rad at the 95th percentile of points (walk 0.10, kick
0.16, run 0.23; at their speed limits they take another path between keyframes), the same hand
tracking within 0.1 cm, no capsule pair penetrating (intervals where the spline cut through one are
solved again at every step) and no joint outside its limits. On generated motions fast limbs still
pass through each other between keyframes (a refill leaves up to 26 penetrating points where IK at
every step has none), so the node keeps ``final_ik_fps`` 0.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from moscale_common.errors import InputError
from moscale_common.paths import resource, shared_data_archive
from moscale_ros.bench.node import split_outcomes
from moscale_ros.bench.retarget import real_clips
from moscale_ros.generation.prefetch import ScalesAhead
from moscale_ros.pipeline import BLEND_HEADROOM, PipelineConfig, build_pipeline
from retarget import RetargetConfig, Retargeter, load_robot
from retarget.process import RetargeterProcess, make_retargeter


def _scales(count: int, seconds_each: float, fail_at: int | None = None):
    """A scale stream: ``(index, is_final)`` every ``seconds_each`` s, raising at ``fail_at``."""
    for k in range(1, count + 1):
        time.sleep(seconds_each)
        if k == fail_at:
            raise ValueError(f"scale {k} failed")
        yield k, k == count


def test_scales_ahead_generates_while_the_caller_works_and_keeps_every_scale_in_order() -> None:
    stream = ScalesAhead(_scales(4, 0.02))
    seen = []
    start = time.perf_counter()
    for k, _ in stream:
        seen.append(k)
        time.sleep(0.05)  # a slow retarget: the next scales are generated meanwhile
    elapsed = time.perf_counter() - start
    stream.close()
    assert seen == [1, 2, 3, 4]
    assert stream.waiting_max >= 2  # generation ran ahead of the caller
    assert elapsed < 4 * (0.02 + 0.05)  # overlapped, not one after the other


def test_scales_ahead_raises_the_stream_error_and_close_stops_the_worker() -> None:
    stream = ScalesAhead(_scales(4, 0.01, fail_at=2))
    assert next(stream) == (1, False)
    with pytest.raises(ValueError, match="scale 2 failed"):
        next(stream)
    stream.close()
    early = ScalesAhead(_scales(50, 0.01))
    next(early)
    early.close()  # stops after the scale in progress, does not run the other 48
    assert not any(t.name == "moscale-generation" and t.is_alive() for t in threading.enumerate())


def test_scales_ahead_holds_the_third_scale_until_the_first_plan_is_out() -> None:
    """The pipeline lets scale 3 start only once the first plan is handed over: on two cores its
    generation would otherwise share a core and the GIL with the first plan's shaping and publishing
    (``moscale bench node``: shaping + publish of plan 1 took 16 ms with it, 10 ms without)."""
    first_out = threading.Event()
    stream = ScalesAhead(_scales(4, 0.005), hold=first_out)
    assert [next(stream)[0], next(stream)[0]] == [1, 2]
    time.sleep(0.15)  # ten times what scale 3 takes: it is not there while the hold is on
    with stream._ready:
        assert stream._items == []
    first_out.set()
    assert [k for k, _ in stream] == [3, 4]
    assert stream.held_s >= 0.15  # how long scale 3 waited: the pipeline leaves it out of its generate time
    stream.close()
    held = ScalesAhead(_scales(4, 0.005), hold=threading.Event())
    next(held)
    held.close()  # close releases a held worker
    assert not any(t.name == "moscale-generation" and t.is_alive() for t in threading.enumerate())


def test_the_next_scale_is_retargeted_while_the_caller_still_holds_the_current_plan(untrained_generator) -> None:
    """The pipeline retargets scale k+1 as soon as it is generated and scale k is retargeted, not after
    the caller (the node: shaping, conversion, three publications) is done with plan k."""
    pipeline = build_pipeline(PipelineConfig(checkpoint=untrained_generator, device="cpu", retarget_process=False))
    calls: list[tuple[float, float]] = []
    retarget = pipeline.retargeter.retarget

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return retarget(*args, **kwargs)
        finally:
            calls.append((started, time.perf_counter()))

    pipeline.retargeter.retarget = timed
    handed_back: list[float] = []
    for step in pipeline.run(pipeline.request("wave the right hand", 2.0, 0)):
        time.sleep(0.3)  # a slow consumer, longer than any retarget of this 2 s motion
        handed_back.append(time.perf_counter())
        pipeline.commit(step)
    assert len(calls) == len(handed_back) >= 3
    for k in range(len(calls) - 1):
        assert calls[k + 1][0] < handed_back[k]  # the IK of scale k+2 began while plan k+1 was still held


def test_a_stopped_run_retargets_no_scale_after_the_one_in_progress(untrained_generator) -> None:
    """When the caller stops after the first plan (a cancel, a newer command), the retarget stage
    finishes at most the scale it is on and starts no other: the run returns as soon as it did when
    the IK ran in the caller's thread."""
    pipeline = build_pipeline(PipelineConfig(checkpoint=untrained_generator, device="cpu", retarget_process=False))
    calls: list[int] = []
    retarget = pipeline.retargeter.retarget

    def counted(*args, **kwargs):
        calls.append(1)
        time.sleep(0.05)  # a slow IK: the generator is scales ahead
        return retarget(*args, **kwargs)

    pipeline.retargeter.retarget = counted
    stop = threading.Event()
    steps = []
    for step in pipeline.run(pipeline.request("wave the right hand", 2.0, 0), should_stop=stop.is_set):
        steps.append(step)
        stop.set()
        time.sleep(0.2)  # the generator and the retarget stage run on meanwhile
    assert len(steps) == 1 and steps[0].num_scales >= 3
    assert len(calls) <= 2, calls  # scale 1, and at most scale 2 that was in progress


def _chain(retargeter, scales, first_ik_fps: float, measure_final: bool = True):
    """Every scale retargeted in order, each starting at the first plan's pose (the pipeline's path
    under locomotion whole_body): coarse plans unmeasured at 5 Hz keyframes, the first at
    ``first_ik_fps``, standing in place and warm-starting nothing; the final at every step."""
    start_q = None
    for scale in scales[:-1]:
        rate = first_ik_fps if scale.scale_index == 1 else 5.0
        plan = retargeter.retarget(scale.joints, scale.fps, start_q, ik_fps=rate, measure=False, stand_in_place=True)
        start_q = plan.configuration_at(0.0) if start_q is None else start_q
    final = scales[-1]
    return retargeter.retarget(final.joints, final.fps, start_q, measure=measure_final)


def _worst_hand_cm(report) -> float:
    return max(report.tracking_median_cm["left_hand"], report.tracking_median_cm["right_hand"])


@pytest.mark.parametrize(
    "text, standing",
    [("a person waves the right hand", True), ("a person raises both hands", True),
     ("a person walks forward", False), ("a person walks to the right", False)],
)  # fmt: skip
def test_final_trajectory_of_a_fixed_seed_before_and_after(text: str, standing: bool) -> None:
    """Before (main 85dfea3): IK in the node's process, the first plan at 5 Hz keyframes, frame 0
    settled for 60 iterations. After: the pipeline's own path, IK in a child process, the first plan at
    ``first_ik_fps`` 2.5 Hz, settling until no coordinate moves by 1e-3, every keyframe's iterations
    until none moves by ``iteration_tolerance`` 5e-3 (issue #19, second round), the final unmeasured
    unless ``measure_final`` (measuring changes no position). Every scale starts at the first plan's pose.

    Standing motions: the same final positions within 5e-3 rad at the 95th percentile of points
    (measured at main 85dfea3 over the 11 standing commands of ``moscale bench node``, seed 0: at most
    0.0033 rad for 9, 0.19 and 0.21 rad for "calls someone over" and "slashes with a sword", with the
    same tracking, balance margin and no penetration). Travelling motions are compared by their
    quality, since a velocity-limited path is sensitive to its start (3 instead of 2 IK iterations
    at frame 0 alone moved one by 0.6 rad at p95): worst hand's median tracking within 0.1 cm, at most
    2 more self-penetrating points, no joint outside its limits. (Under whole_body no plan is warm-
    started from a coarse one, which stands in place; measured here: walks forward 0.394 / 0.394 cm,
    to the right 0.347 / 0.347 cm, no penetrating point in either.)
    """
    if not resource("models/moscale-bandai.safetensors").is_file():
        pytest.skip("the shipped model is not in this checkout")
    pipeline = build_pipeline(PipelineConfig(device="cpu", unknown_command="accept", measure_final=True))
    assert isinstance(pipeline.retargeter, RetargeterProcess)
    steps = list(pipeline.run(pipeline.request(text, 6.0, 0)))
    assert [s.scale_index for s in steps] == [1, 2, 3, 4]
    scales = list(pipeline.generator.stream(text, 6.0, 0))
    np.testing.assert_array_equal(steps[-1].human_joints_T223, scales[-1].joints)
    after = _chain(pipeline.retargeter, scales, pipeline.config.first_ik_fps)
    assert steps[-1].retarget_report.tracking_max_cm == after.report.tracking_max_cm  # the pipeline's path
    assert steps[-1].retarget_report.self_penetrations == after.report.self_penetrations
    in_process = make_retargeter("g1", None, pipeline.config.control_rate, 1.0 - BLEND_HEADROOM)
    in_process.config.settle_tolerance = in_process.config.iteration_tolerance = 0.0
    before = _chain(in_process, scales, 5.0)
    assert after.report.standing == before.report.standing == standing
    deviation_N = np.abs(after.positions - before.positions).max(axis=1)
    if standing:
        assert np.percentile(deviation_N, 95) <= 5e-3, np.percentile(deviation_N, 95)
    assert abs(_worst_hand_cm(after.report) - _worst_hand_cm(before.report)) <= 0.1
    assert after.report.self_penetrations <= before.report.self_penetrations + 2
    assert after.report.max_joint_limit_violation_rad == before.report.max_joint_limit_violation_rad == 0.0
    unmeasured = pipeline.retargeter.retarget(scales[-1].joints, scales[-1].fps, measure=False)
    measured = pipeline.retargeter.retarget(scales[-1].joints, scales[-1].fps)
    np.testing.assert_array_equal(unmeasured.positions, measured.positions)  # measure_final: report only


def test_retarget_process_gives_the_in_process_result_and_raises_its_errors(clips: dict) -> None:
    robot = load_robot("g1")
    joints, fps = clips["walk"]
    joints_T223 = np.asarray(joints)[: int(3 * fps)]
    local = Retargeter(robot).retarget(joints_T223, fps, ik_fps=10.0)
    remote = RetargeterProcess(functools.partial(make_retargeter, "g1", None, 50.0), robot)
    try:
        pid = remote.pid
        result = remote.retarget(joints_T223, fps, ik_fps=10.0)
        np.testing.assert_array_equal(result.positions, local.positions)
        assert result.robot is robot and result.report.tracking_max_cm == local.report.tracking_max_cm
        warm = remote.retarget(joints_T223, fps, warm_start=result)
        expected = Retargeter(robot).retarget(joints_T223, fps, warm_start=local)
        np.testing.assert_array_equal(warm.positions, expected.positions)
        with pytest.raises(InputError):
            remote.retarget(joints_T223[:, :5], fps)
        assert remote.pid == pid  # an error in a call does not end the process
    finally:
        remote.close()
    assert remote.pid is None
    with pytest.raises(OSError):
        os.kill(pid, 0)  # the child has ended


@pytest.fixture(scope="module")
def split_process():
    """The node's IK process with its tail helper (retarget_split): a child that starts a second one."""
    process = RetargeterProcess(
        functools.partial(make_retargeter, "g1", None, 50.0), load_robot("g1"), tail_helper=True
    )
    yield process
    process.close()


class _FailingHelper:
    def submit(self, *args) -> None:
        pass

    def collect(self) -> dict:
        raise RuntimeError("helper gone")


@pytest.mark.parametrize("clip", ["wave", "walk"])
def test_two_halves_at_once_join_on_the_one_process_path(clips: dict, clip: str, split_process) -> None:
    """Issue #19: a 6 s motion solved in two halves at once (this process 0..m, the helper from a seed on
    the same path) is joined where both agree within 5 mrad; the trajectory is the one-process one within
    that (measured on these clips: identical to 1e-6 rad), with the same quality figures. Without a join
    (tolerance 0) or with a failing helper, the one process goes on alone and the result is identical."""
    robot = load_robot("g1")
    joints, fps = clips[clip]
    joints_T223 = np.asarray(joints)[: int(6 * fps)]
    alone = make_retargeter("g1", None, 50.0)
    start_q = alone.retarget(joints_T223, fps, ik_fps=2.5, measure=False, stand_in_place=True).configuration_at(0.0)
    one = alone.retarget(joints_T223, fps, initial_q=start_q)
    two = split_process.retarget(joints_T223, fps, initial_q=start_q)
    assert one.report.split == "off" and two.report.split.startswith("joined at "), two.report.split
    assert np.abs(two.positions - one.positions).max() <= 5e-3
    assert two.report.tracking_median_cm == pytest.approx(one.report.tracking_median_cm, abs=0.05)
    assert two.report.balance_keyframes_outside == one.report.balance_keyframes_outside
    assert two.report.self_penetrations == one.report.self_penetrations
    assert two.robot is robot or two.robot.name == robot.name
    helper = make_retargeter("g1", None, 50.0)
    helper.tail_helper, helper.config.split_join_tolerance = _FailingHelper(), 0.0
    failed = helper.retarget(joints_T223, fps, initial_q=start_q)
    assert failed.report.split.startswith("no join (helper: RuntimeError")
    np.testing.assert_array_equal(failed.positions, one.positions)


def test_the_tail_helper_ends_with_its_ik_process() -> None:
    """The helper is the IK process's own child: closing the IK process ends and reaps it too (no
    process is left over, not even a zombie)."""
    make = functools.partial(make_retargeter, "g1", None, 50.0)
    process = RetargeterProcess(make, load_robot("g1"), tail_helper=True)
    tasks = Path(f"/proc/{process.pid}/task").glob("*")
    helpers = [int(pid) for task in tasks for pid in (task / "children").read_text().split()]
    assert len(helpers) == 1
    process.close()
    assert not Path(f"/proc/{helpers[0]}").exists()


def test_a_tail_the_halves_disagree_on_is_solved_by_one_process(clips: dict, split_process) -> None:
    """With a join tolerance no overlap meets, the helper's half is dropped: the same trajectory as one
    process alone, and the report says why."""
    joints, fps = clips["walk"]
    joints_T223 = np.asarray(joints)[: int(6 * fps)]
    alone = make_retargeter("g1", None, 50.0)
    one = alone.retarget(joints_T223, fps)
    strict = make_retargeter("g1", None, 50.0)
    strict.config.split_join_tolerance = -1.0
    strict.tail_helper = split_process_helper = _HelperOf(split_process)
    result = strict.retarget(joints_T223, fps)
    assert split_process_helper.submitted == 1
    assert result.report.split.startswith("no join (")
    np.testing.assert_array_equal(result.positions, one.positions)


class _ShiftedHelper:
    """The real helper's half (its child process) with a knee 50 mrad off on the frames ``frames(start, end)``."""

    def __init__(self, process, frames) -> None:
        self.helper, self.frames = _HelperOf(process), frames

    def submit(self, *args) -> None:
        self.helper.submit(*args)

    def collect(self) -> dict:
        tail = self.helper.collect()
        self.start = tail["start"]  # the helper's first frame
        q = tail["q"].copy()
        shifted = [k - tail["start"] for k in self.frames(tail["start"], tail["start"] + len(q))]
        q[shifted, 7 + 3] += 0.05  # a knee 50 mrad off: ten times the join tolerance
        return tail | {"q": q}


def test_halves_that_miss_in_the_overlap_join_where_they_agree_three_frames_in_a_row(
    clips: dict, split_process
) -> None:
    """Issue #19: where the halves disagree in the overlap but agree later (a path that comes back to the
    other's), the helper's frames are taken after the third agreeing frame in a row: the trajectory is
    the one-process one within the tolerance. Agreement on fewer frames in a row does not join."""
    joints, fps = clips["walk"]
    joints_T223 = np.asarray(joints)[: int(6 * fps)]
    one = make_retargeter("g1", None, 50.0).retarget(joints_T223, fps)
    late = make_retargeter("g1", None, 50.0)
    late.tail_helper = _ShiftedHelper(split_process, lambda start, end: range(start, start + 30))
    result = late.retarget(joints_T223, fps)
    shifted_until = int(result.report.split.split("joined at ")[1].split()[0]) if "late" in result.report.split else -1
    assert result.report.split.startswith("joined at ") and "(late, after no join (" in result.report.split
    start = late.tail_helper.start
    assert shifted_until == start + 30 + 2, result.report.split  # frames start+30, +31, +32 agree
    assert np.abs(result.positions - one.positions).max() <= 5e-3
    every_third = make_retargeter("g1", None, 50.0)
    every_third.tail_helper = _ShiftedHelper(  # the overlap misses, then only two frames in a row agree
        split_process, lambda start, end: [*range(start, start + 30), *range(start + 30, end, 3)]
    )
    alone = every_third.retarget(joints_T223, fps)
    assert alone.report.split.startswith("no join ("), alone.report.split
    np.testing.assert_array_equal(alone.positions, one.positions)
    outcomes = [result.report.split, alone.report.split]  # as moscale bench node counts them from the log
    log = "".join(f"[{i:08x}] scale 4/4: 200 ms; IK in two halves: {o}\n" for i, o in enumerate(outcomes))
    assert split_outcomes(log) == {"joined": 1, "joined_late": 1, "not_joined": 1}


class _HelperOf:
    """A tail helper that runs ``solve_tail`` in a RetargeterProcess's child (as the node's does)."""

    def __init__(self, process) -> None:
        self.process, self.submitted, self._args = process, 0, None

    def submit(self, *args) -> None:
        self.submitted += 1
        self._args = args

    def collect(self) -> dict:
        return self.process._call("solve_tail", self._args, {})


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
    keyed = g1.retarget(joints, fps, ik_fps=20.0)
    assert keyed.positions.shape == full.positions.shape
    deviation_N = np.abs(keyed.positions - full.positions).max(axis=1)
    if keyed.report.standing:
        assert deviation_N.max() <= 0.02, deviation_N.max()
        assert keyed.report.com_support_margin_min_cm >= full.report.com_support_margin_min_cm - 0.5
    else:
        assert np.percentile(deviation_N, 95) <= 0.3, np.percentile(deviation_N, 95)
    for hand in ("left_hand", "right_hand"):
        assert abs(keyed.report.tracking_median_cm[hand] - full.report.tracking_median_cm[hand]) <= 0.1
    # Self-distance between keyframes: the capsules hold every mesh vertex (radius_quantile 1). A
    # standing clip keeps every pair apart, as full-rate IK does. A fast travelling clip may not: on
    # the run, at its speed limits, full-rate IK leaves an arm 0.7 cm into the hip's capsule and 20 Hz
    # keyframes leave the shins 1.2 cm into each other (measured); hence every step's IK by default.
    if keyed.report.standing:
        assert keyed.report.self_penetrations == full.report.self_penetrations == 0
    for group, closest in keyed.report.self_distance_min_cm.items():
        assert closest["min_cm"] >= (0.0 if keyed.report.standing else -1.5), (group, closest)
    assert keyed.report.max_joint_limit_violation_rad == 0.0


@pytest.mark.parametrize("clip", ["wave", "bow", "walk", "run", "kick"])
def test_iterations_ending_once_converged_change_the_trajectory_by_at_most_the_tolerance(
    clips: dict, clip: str
) -> None:
    """Issue #19: a keyframe's IK ends after an iteration that moves no coordinate by more than
    ``iteration_tolerance`` (5e-3) instead of always running ``iterations`` (3). On these clips with
    every constraint on, the joints stay within 6e-3 rad of the every-iteration solution at every
    point (measured: 1.6e-3 walk, 5.2e-3 wave, 1.7e-3 kick, 1.3e-3 bow, 0 run), with the same
    tracking, balance and self-distances, for 5-36 % fewer IK steps (``moscale bench retarget``)."""
    robot = load_robot("g1")
    joints, fps = clips[clip]
    every = Retargeter(robot, RetargetConfig(iteration_tolerance=0.0)).retarget(joints, fps)
    early = Retargeter(robot).retarget(joints, fps)
    assert Retargeter(robot).config.iteration_tolerance == 0.005
    assert np.abs(early.positions - every.positions).max() <= 6e-3
    for name, median_cm in every.report.tracking_median_cm.items():
        assert abs(early.report.tracking_median_cm[name] - median_cm) <= 0.05, name
    assert early.report.balance_keyframes_outside == every.report.balance_keyframes_outside
    assert early.report.self_penetrations == every.report.self_penetrations
    assert early.report.max_joint_limit_violation_rad == 0.0


def test_coarse_plan_without_measurements_keeps_limits_and_tracking(clips: dict) -> None:
    g1 = Retargeter(load_robot("g1"))
    joints, fps = clips["wave"]
    measured = g1.retarget(joints, fps, ik_fps=5.0)
    coarse = g1.retarget(joints, fps, ik_fps=5.0, measure=False)
    np.testing.assert_array_equal(coarse.positions, measured.positions)
    assert coarse.report.tracking_median_cm == measured.report.tracking_median_cm
    assert coarse.report.max_joint_limit_violation_rad == 0.0
    assert np.isnan(coarse.report.com_support_margin_min_cm) and not np.isnan(measured.report.com_support_margin_min_cm)
