"""Sequences and durations from the text through the real pipeline: the shipped model (with its
vocabulary), the real G1 retargeter, the content judge on the real data (moscale_ros/evaluation/
content_judge.py; its part of a test skips only when ../shared/data is absent)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fixtures_data import archive_or_skip

from moscale_common.errors import UnknownCommandError
from moscale_common.paths import resource
from moscale_ros.data.dataset import load_prepared
from moscale_ros.data.prepare import default_cache_dir, prepare
from moscale_ros.evaluation.content_judge import NearestClipJudge
from moscale_ros.pipeline import PipelineConfig, build_pipeline

SHIPPED = resource("models/moscale-bandai.safetensors")


@pytest.fixture(scope="module")
def pipeline():
    if not SHIPPED.is_file():
        pytest.skip("the shipped model is not in this checkout")
    return build_pipeline(PipelineConfig(device="cpu"))


@pytest.fixture(scope="module")
def judge():
    archive = archive_or_skip()
    cache = default_cache_dir()
    if not (cache / "meta.json").is_file():
        prepare(archive, cache, progress=False, log=lambda _line: None)
    data = load_prepared(cache, load_joints=False, mmap=True)
    return NearestClipJudge.from_clips(data.train, data)


def run_final(pipeline, request):
    pipeline.forget_continuation()
    steps = list(pipeline.run(request))
    return steps


def test_wave_for_three_seconds_lasts_three_seconds(pipeline):
    request = pipeline.request("wave for three seconds", 0.0, 1)
    (segment,) = request.parts
    assert (segment.text, segment.seconds) == ("wave", 3.0)
    assert segment.match is not None and segment.match.status == "known"
    final = run_final(pipeline, request)[-1]
    assert final.human_joints_T223.shape[0] == 60  # 3 s at 20 fps
    assert final.segment_seconds == (3.0,)
    assert pipeline.request("wave for three seconds", 2.0, 1).duration == 2.0  # an explicit duration wins
    assert pipeline.request("walk forward for a long time").duration == pytest.approx(9.8)


def test_an_unknown_part_refuses_the_whole_command_with_the_nearest_skills(pipeline):
    with pytest.raises(UnknownCommandError, match=r"do a backflip.*nearest known skills: \w+"):
        pipeline.request("walk forward, then do a backflip")
    with pytest.raises(UnknownCommandError, match="barely seen"):
        pipeline.request("kick three times")


def test_a_three_part_sequence_is_one_continuous_motion_whose_parts_match(pipeline, judge):
    request = pipeline.request("walk forward, then raise both hands, then run forward", 0.0, 3)
    assert [s.text for s in request.segments] == ["walk forward", "raise both hands", "run forward"]
    assert [s.match.skill for s in request.segments] == ["walk", "raise-up-both-hands", "run"]
    steps = run_final(pipeline, request)
    assert [s.scale_index for s in steps] == list(range(1, steps[0].num_scales + 1))
    assert len({s.motion_start for s in steps}) == 1  # one timeline: the coarse plan of the whole sequence first
    final = steps[-1]
    joints_T223 = final.human_joints_T223
    expected = sum(round(s.seconds * 20) for s in request.segments)
    assert joints_T223.shape[0] == expected
    assert all(step.human_joints_T223.shape[0] == expected for step in steps)  # every plan is the whole sequence
    starts = [round(t * 20) for t in final.segment_starts] + [joints_T223.shape[0]]
    pieces = [joints_T223[a:b] for a, b in zip(starts[:-1], starts[1:])]
    labels = judge.label_joints(pieces)
    assert labels == ["walk", "raise-up-both-hands", "run"], labels
    # No jump between parts: the largest joint move from one frame to the next at a boundary is no
    # larger than the largest inside the parts.
    step_T = np.linalg.norm(np.diff(joints_T223, axis=0), axis=-1).max(axis=1)
    boundaries = [b - 1 for b in starts[1:-1]]
    inside = np.delete(step_T, boundaries)
    assert step_T[boundaries].max() <= inside.max(), (step_T[boundaries], inside.max())
    # one trajectory for the robot, to the end of the whole sequence (from its switch time on)
    assert np.all(np.diff(final.trajectory.times) > 0)
    assert final.start_time + final.trajectory.duration >= final.motion_start + (expected - 1) / 20


def test_durations_are_clamped_to_the_limits_and_an_explicit_one_applies_to_every_part(pipeline):
    (long,) = pipeline.request("wave for thirty seconds").parts
    assert long.seconds == pytest.approx(9.8)  # max_duration
    (brief,) = pipeline.request("bow briefly").parts
    assert brief.seconds == 2.0
    parts = pipeline.request("bow, then wave for three seconds", 4.0).parts
    assert [p.seconds for p in parts] == [4.0, 4.0]  # the goal's duration wins over the text
    typical = pipeline.generator.vocabulary.typical_seconds
    bow, wave = pipeline.request("bow, then wave for three seconds").parts
    assert (bow.seconds, wave.seconds) == (typical["bow"], 3.0)  # a part without one: its skill's typical clip
    twice = pipeline.request("wave your left hand twice").parts
    assert [p.text for p in twice] == ["wave your left hand"] * 2


def test_warn_and_accept_let_unknown_commands_through(pipeline):
    config = pipeline.config
    try:
        pipeline.config = dataclasses.replace(config, unknown_command="warn")
        warned = pipeline.request("do a backflip, then bow")
        assert len(warned.warnings) == 1 and "'do a backflip': not a known skill" in warned.warnings[0]
        assert warned.weakest.status == "unknown"
        pipeline.config = dataclasses.replace(config, unknown_command="accept")
        accepted = pipeline.request("do a backflip")
        assert accepted.warnings == () and accepted.parts[0].match.status == "unknown"
        pipeline.config = dataclasses.replace(config, rare_clips=1)
        assert pipeline.request("throw a punch").parts[0].match.status == "known"  # one clip is enough now
    finally:
        pipeline.config = config
