"""The ROS-free pipeline end to end: a real MotionGenerator (small, untrained checkpoint), the real
G1 retargeter, a controllable clock. One timeline per command, continuation, stopping, policies,
and a broken model whose output is reported and never yielded.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from moscale_common.errors import CheckpointError, ConfigError, InputError
from moscale_ros.checkpoint import load_checkpoint, save_checkpoint
from moscale_ros.pipeline import PipelineConfig, TrajectoryError, build_pipeline, validate_trajectory


class Clock:
    """Wall-clock-like seconds that tests can also move forward by hand."""

    def __init__(self) -> None:
        self.offset = 1_000.0

    def __call__(self) -> float:
        import time

        return self.offset + time.perf_counter()


@pytest.fixture(scope="module")
def pipeline(untrained_generator):
    torch.set_num_threads(2)
    return build_pipeline(PipelineConfig(checkpoint=untrained_generator, device="cpu"), clock=Clock())


def run_all(pipeline, text: str, seconds: float, seed: int = 0, **stop):
    steps = list(pipeline.run(pipeline.request(text, seconds, seed), **stop))
    return steps


def test_plans_share_one_start_time_and_are_valid(pipeline):
    pipeline.forget_continuation()
    request = pipeline.request("walk forward", 3.0, 1)
    steps = []
    for step in pipeline.run(request):  # each sent as the node sends it (the timeline then knows it)
        if step.to_controller:
            pipeline.commit(step)
        steps.append(step)
    num_scales = steps[0].num_scales
    assert [s.scale_index for s in steps] == list(range(1, num_scales + 1))
    assert [s.is_final for s in steps] == [False] * (num_scales - 1) + [True]
    t0 = steps[0].motion_start
    assert {s.motion_start for s in steps} == {t0}  # one motion timeline
    assert t0 - request.received_at >= pipeline.config.start_lead
    assert t0 <= request.received_at + steps[0].latency_s + pipeline.config.start_lead
    assert steps[0].start_time == t0  # the first plan starts the motion
    assert all(s.to_controller for s in steps)  # every_scale
    assert [s.latency_s for s in steps] == sorted(s.latency_s for s in steps)
    # 60 frames (2.95 s) played on the eased clock: + half of each 0.5 s ease (in from rest, out to rest)
    eased_duration = 59 / 20 + pipeline.config.ease_duration
    for step in steps:
        validate_trajectory(step.trajectory, pipeline.robot)
        assert step.human_joints_T223.shape == (60, 22, 3)
        grid_steps = (step.start_time - t0) * 50  # a refinement switches in on the motion's 50 Hz grid
        assert grid_steps == pytest.approx(round(grid_steps))
        # the first plan starts the motion; a refinement is stamped when sent (commanded path until its switch)
        assert step.start_time == t0 or step.start_time <= request.received_at + step.latency_s
        assert step.start_time + step.trajectory.duration == pytest.approx(t0 + eased_duration, abs=2 / 50)
        np.testing.assert_array_equal(step.trajectory.velocities[-1], 0.0)  # at rest: a controller accepts it
    np.testing.assert_array_equal(steps[0].trajectory.velocities[0], 0.0)  # started from rest


def test_a_final_plan_later_than_the_motion_is_published_but_not_sent(pipeline):
    """On a slow machine the final plan can arrive after the coarse motion has already ended: the
    refinements in between are dropped (nothing left to take over), the final one is still yielded
    (the command's full-detail result, on ~/plan) but not for the controller, which has finished."""
    pipeline.forget_continuation()
    steps = []
    for step in pipeline.run(pipeline.request("bow", 2.0, 4)):
        if step.to_controller:
            pipeline.commit(step)
        steps.append(step)
        if step.scale_index == 1:
            pipeline.clock.offset += 10.0  # the rest of the generation takes 10 s longer
    first, last = steps[0], steps[-1]
    assert first.to_controller and first.scale_index == 1
    assert last.is_final and not last.to_controller and len(steps) == 2
    assert last.start_time == last.motion_start == first.motion_start  # on the motion's own timeline
    assert (last.switch_step, last.switch_step_ratio) == (0.0, 0.0)
    validate_trajectory(last.trajectory, pipeline.robot)
    assert pipeline.last_commanded.trajectory is first.trajectory  # the controller still has the coarse plan


def test_a_plan_sent_after_its_switch_time_is_spliced_again(pipeline):
    """A refinement shaped on time but sent 1 s late (the node starved of CPU) would reach the
    controller past the end of its lead-in, where it has left the commanded path: the controller's
    command jumps. ``on_time`` splices it again from the time of sending: its first cycle moves the
    command no more than the commanded path itself moves then. A plan with time to spare is sent as it
    is, and one whose motion is over by then goes to ~/plan only."""
    pipeline.forget_continuation()
    stream = pipeline.run(pipeline.request("walk forward", 3.0, 0))
    first = next(stream)
    pipeline.commit(first)
    second = next(stream)
    assert pipeline.on_time(second) is second  # shaped moments ago: its switch time is ahead
    pipeline.clock.offset += 1.0
    now = pipeline.clock()
    dt = 1.0 / pipeline.config.control_rate
    q_2J = pipeline.timeline.commanded(np.array([now, now + dt]))[0]
    path_move = float(np.max(np.abs(q_2J[1] - q_2J[0])))  # what the commanded path moves in that cycle
    as_shaped, _ = pipeline.timeline.predicted_step(second.trajectory, second.start_time, now)
    again = pipeline.on_time(second, now)
    assert again.late and again.to_controller
    assert again.switch_time >= now + pipeline.config.switch_lead
    assert again.start_time <= now  # its lead-in starts at or before sending, on the commanded path
    assert as_shaped > 10 * path_move  # sent as shaped: a jump
    assert again.switch_step <= 1.05 * path_move + 1e-9  # spliced again: the path's own motion
    validate_trajectory(again.trajectory, pipeline.robot)
    pipeline.commit(again, now)
    third = next(stream)
    pipeline.clock.offset += 10.0  # and the next one after the motion has ended
    over = pipeline.on_time(third)
    assert over.late and not over.to_controller
    assert over.trajectory is third.eased and over.start_time == third.motion_start
    stream.close()


def test_a_plan_no_blend_can_reach_leaves_the_controller_with_the_plan_before(pipeline):
    """The controller follows this command's first plan with one joint 0.6 rad or more away from
    where the later plans want it, and they are ready 0.2 s before the motion ends: no blend within
    the speed limits reaches them in that time. They are not sent (each reported through
    ``on_not_sent``), the controller keeps the first plan, and the final plan still goes out as the
    command's result (``to_controller`` false) instead of the command failing."""
    pipeline.forget_continuation()
    notes: list[str] = []
    pipeline.on_not_sent = notes.append
    try:
        stream = pipeline.run(pipeline.request("walk forward", 2.0, 0))
        first = next(stream)
        q_NJ = first.trajectory.positions
        room_J = pipeline.robot.upper - q_NJ.max(axis=0)
        j = int(np.argmax(room_J))
        assert room_J[j] > 0.7
        away_NJ = q_NJ.copy()
        away_NJ[:, j] += room_J[j] - 0.05  # the same path, shifted inside the joint's range
        away = dataclasses.replace(first, trajectory=dataclasses.replace(first.trajectory, positions=away_NJ))
        pipeline.commit(away)
        end = first.motion_start + first.eased.duration
        pipeline.clock.offset += end - 0.3 - pipeline.clock()  # the next plans are ready 0.3 s before the end
        rest = list(stream)
        late = pipeline.on_time(first)  # the first plan itself, were it sent only now: too far as well
    finally:
        pipeline.on_not_sent = None
    assert late.late and not late.to_controller and late.trajectory is first.eased
    assert "a late plan: not sent to the controller" in notes[-1]
    notes.pop()
    assert rest and rest[-1].is_final and not any(step.to_controller for step in rest)
    assert notes and all("not sent to the controller, which keeps the plan before" in n for n in notes)
    assert "no blend of up to" in notes[0]
    assert pipeline.last_commanded.trajectory is away.trajectory  # the controller keeps it
    validate_trajectory(rest[-1].trajectory, pipeline.robot)


def test_next_command_continues_from_the_committed_pose(pipeline):
    pipeline.forget_continuation()
    first = run_all(pipeline, "bow", 2.0, 2)[-1]
    pipeline.commit(first)
    second_steps = run_all(pipeline, "raise the left hand", 2.0, 3)
    for step in second_steps:  # each starts from the state commanded at its switch time, exactly
        q, v, a = pipeline.timeline.commanded(np.array([step.start_time]))
        np.testing.assert_allclose(step.trajectory.positions[0], q[0], atol=1e-9)
        np.testing.assert_allclose(step.trajectory.velocities[0], v[0], atol=1e-9)
        np.testing.assert_allclose(step.trajectory.accelerations[0], a[0], atol=1e-9)
        validate_trajectory(step.trajectory, pipeline.robot)
    # The generator continued the human motion from the previous one's frames: the new human
    # motion starts on a frame of the old one and then lasts the requested 2 s.
    start_frame = second_steps[-1].human_joints_T223[0]
    assert min(np.abs(first.human_joints_T223 - start_frame).max(axis=(1, 2))) < 1e-5
    assert second_steps[-1].human_joints_T223.shape[0] == 41


def test_should_stop_ends_the_stream_between_scales(pipeline):
    seen = []
    steps = pipeline.run(pipeline.request("jump", 2.0, 4), should_stop=lambda: len(seen) >= 1)
    for step in steps:
        seen.append(step)
    assert [s.scale_index for s in seen] == [1]


def test_final_only_and_append(pipeline):
    config = dataclasses.replace(pipeline.config, controller_plans="final_only", append=True)
    original, pipeline.config = pipeline.config, config
    try:
        pipeline.forget_continuation()
        first = run_all(pipeline, "turn left", 2.0, 5)
        assert [s.to_controller for s in first] == [False] * (len(first) - 1) + [True]
        pipeline.commit(first[-1])
        first_end = first[-1].start_time + first[-1].trajectory.duration
        second = run_all(pipeline, "turn right", 2.0, 6)
        # append: the plan was held until the first motion was about to end (a controller would cut it short)
        final = second[-1]
        assert first_end <= final.motion_start <= first_end + 0.1
        assert final.start_time <= final.motion_start  # stamped when sent, on the commanded path until then
        at_start = round((final.motion_start - final.start_time) * 50)
        np.testing.assert_allclose(final.trajectory.positions[at_start], first[-1].trajectory.positions[-1], atol=1e-9)
    finally:
        pipeline.config = original


def test_requests_are_checked_before_any_work(pipeline):
    with pytest.raises(InputError, match="empty"):
        pipeline.request("  ", 2.0)
    with pytest.raises(InputError, match="outside the supported range"):
        pipeline.request("walk", 30.0)


def test_a_broken_model_is_reported_and_nothing_is_yielded(untrained_generator, tmp_path):
    """A diverged checkpoint (NaN decoder weights) loads, but its motions cannot be retargeted."""
    checkpoint = load_checkpoint(untrained_generator)
    decoder = sorted(k for k in checkpoint.states["tokenizer"] if k.startswith("decoder") and k.endswith("weight"))
    checkpoint.states["tokenizer"][decoder[-1]] = torch.full_like(checkpoint.states["tokenizer"][decoder[-1]], np.nan)
    broken = save_checkpoint(tmp_path / "diverged.safetensors", checkpoint.kind, checkpoint.states,
                             checkpoint.configs, checkpoint.extra)  # fmt: skip
    pipeline = build_pipeline(PipelineConfig(checkpoint=str(broken), device="cpu"))
    yielded = []
    with pytest.raises(TrajectoryError, match=r"scale 1/\d: the generated motion cannot be retargeted: .*NaN"):
        for step in pipeline.run(pipeline.request("wave", 2.0, 0)):
            yielded.append(step)
    assert yielded == []


def test_build_pipeline_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.safetensors: checkpoint not found"):
        build_pipeline(PipelineConfig(checkpoint=str(tmp_path / "nowhere.safetensors")))
    with pytest.raises(ConfigError, match="unknown robot 'atlas9'"):
        build_pipeline(PipelineConfig(robot="atlas9"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        build_pipeline(PipelineConfig(checkpoint=str(junk), device="cpu"))
