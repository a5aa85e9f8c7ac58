"""``locomotion: cmd_vel`` in the pipeline (ROS-free), with the shipped model and the real G1 retargeter,
under the default ``controller_plans: every_scale``: every plan of a generated walk carries body-frame
base velocities along its own root path (limited, ending at zero), a run is held to the G1's
``max_base_velocity``, and a standing gesture stays whole-body."""

from __future__ import annotations

import numpy as np
import pytest

from moscale_common.paths import resource
from moscale_ros.pipeline import PipelineConfig, build_pipeline
from retarget.locomotion import base_velocity_commands, heading_from_quaternions, integrate_commands


@pytest.fixture(scope="module")
def pipeline():
    if not resource("models/moscale-bandai.safetensors").is_file():
        pytest.skip("the shipped model is not in this checkout")
    config = PipelineConfig(device="cpu", locomotion="cmd_vel", unknown_command="accept")
    return build_pipeline(config)


def plans(pipeline, text: str, seed: int) -> list:
    pipeline.forget_continuation()
    return list(pipeline.run(pipeline.request(text, 4.0, seed)))


def test_every_plan_of_a_walk_carries_velocities_that_retrace_its_root_path(pipeline):
    steps = plans(pipeline, "walk forward", 7)
    limits_3 = np.asarray(pipeline.robot.config.max_base_velocity)
    assert len(steps) >= 2 and all(step.locomotion == "cmd_vel" for step in steps)
    for step in steps:
        base_N7, commands_N3 = step.trajectory.base_poses, step.base_velocity_N3
        assert commands_N3.shape == (len(step.trajectory.times), 3)
        assert np.all(np.abs(commands_N3) <= limits_3) and np.all(commands_N3[-1] == 0.0)
        heading_N = heading_from_quaternions(base_N7[:, 3:7])
        path_N3 = integrate_commands(commands_N3, pipeline.config.control_rate, base_N7[0, :2], heading_N[0])
        travelled = np.linalg.norm(np.diff(base_N7[:, :2], axis=0), axis=1).sum()
        error = np.linalg.norm(path_N3[:, :2] - base_N7[:, :2], axis=1).max()
        assert travelled > 2.0 and error <= 0.1 * travelled, (step.scale_index, error, travelled)
        assert np.median(commands_N3[:, 0]) > 0.5  # forwards, in the base frame


def test_a_run_faster_than_the_robot_walks_is_held_to_its_limit(pipeline):
    steps = plans(pipeline, "run forward", 1)
    final = steps[-1]
    base_N7 = final.trajectory.base_poses
    heading_N = heading_from_quaternions(base_N7[:, 3:7])
    unlimited_N3 = base_velocity_commands(base_N7[:, :3], heading_N, pipeline.config.control_rate, np.full(3, np.inf))
    # the run's own forward speed is above the G1's max_base_velocity (2 m/s); the commands stop there
    limit = float(pipeline.robot.config.max_base_velocity[0])
    assert final.locomotion == "cmd_vel" and unlimited_N3[:, 0].max() > limit
    assert final.base_velocity_N3[:, 0].max() == pytest.approx(limit)


def test_a_standing_gesture_stays_whole_body(pipeline):
    steps = plans(pipeline, "wave the right hand", 3)
    assert all(step.locomotion == "whole_body" and step.base_velocity_N3 is None for step in steps)
