"""The real ``moscale_node`` in a subprocess (started as ``moscale node`` with config/moscale.yaml and
an untrained generator; the real G1 retargeter) and a real rclpy client in this process, over DDS
on the run's own domain (fixtures in tests/fixtures_ros.py).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from fixtures_ros import call_service
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from moscale_ros.control.jtc_rules import ControllerSettings, JointTrajectoryControllerModel
from moscale_ros.node import convert
from retarget.robot import load_robot


@pytest.fixture(scope="module")
def robot():
    return load_robot("g1")


@pytest.fixture(scope="module")
def node(moscale_node):
    return moscale_node


@pytest.fixture(scope="module")
def client(moscale_client):
    return moscale_client


def stamp(msg) -> float:
    return convert.time_to_seconds(msg.header.stamp)


def test_plans_arrive_coarse_first_on_one_timeline(client):
    sent_wall = time.time()
    outcome = client.generate("wave the right hand", duration=3.0, seed=3, timeout=60.0)
    assert outcome.status == "succeeded", outcome.message
    plans = [r.msg for r in outcome.plans]
    num_scales = plans[0].num_scales
    assert num_scales >= 2
    assert [p.scale_index for p in plans] == list(range(1, num_scales + 1))
    assert [p.is_final for p in plans] == [False] * (num_scales - 1) + [True]
    assert all(p.num_scales == num_scales and p.command == "wave the right hand" for p in plans)
    # One motion start time t0 for every plan. Each plan's trajectory is stamped at t0 when nothing was
    # sent before, else when it is sent: it follows the commanded path up to its switch time, so a
    # controller (which replaces on receipt and samples a past stamp at "now") continues without a jump.
    starts = {stamp(p) for p in plans}
    assert len(starts) == 1
    (start,) = starts
    first_receipt_wall = sent_wall + (outcome.plans[0].at - outcome.sent_at)
    assert sent_wall + 0.25 <= start <= first_receipt_wall + 0.25 + 1e-3  # ready time + start_lead
    for received, plan in zip(outcome.plans, plans):
        receipt_wall = sent_wall + (received.at - outcome.sent_at)
        assert stamp(plan.trajectory) == pytest.approx(start, abs=1e-9) or stamp(plan.trajectory) <= receipt_wall
    # The controller got every scale (controller_plans: every_scale), in order, final last.
    assert len(outcome.trajectories) == num_scales
    assert outcome.trajectories[-1].msg == plans[-1].trajectory
    assert outcome.result.final_plan == plans[-1]
    latencies = [p.latency for p in plans]
    assert latencies == sorted(latencies) and latencies[0] > 0
    human = convert.human_joints(plans[-1])
    # 3 s at 20 fps (plus the start pose's frame when it continues a previous motion).
    assert human.shape[0] in (60, 61) and human.shape[1:] == (22, 3) and plans[-1].human_fps == 20.0


def test_final_trajectory_is_valid_for_the_robot(client, robot):
    outcome = client.generate("walk forward", duration=4.0, seed=5)
    assert outcome.status == "succeeded", outcome.message
    names, times, positions, velocities = convert.trajectory_arrays(outcome.final_trajectory)
    assert names == robot.joint_names
    assert times[0] == 0.0 and np.all(np.diff(times) > 0)
    # 80 frames at 20 fps (+ 1 when continuing), + half of each 0.5 s ease, less what ran before its switch
    assert times[-1] <= 4.0 + 0.5 + 1e-9
    assert len(times) == round(times[-1] * 50) + 1  # 50 Hz
    np.testing.assert_array_equal(velocities[-1], 0.0)  # at rest: a joint_trajectory_controller accepts it
    assert np.all(np.isfinite(positions)) and np.all(np.isfinite(velocities))
    assert np.all(positions >= robot.lower - 1e-6) and np.all(positions <= robot.upper + 1e-6)
    assert np.all(np.abs(velocities) <= robot.velocity_limits * (1 + 1e-6) + 1e-6)


def test_topic_command_continues_from_the_last_commanded_pose(client):
    first = client.command("bow politely")
    assert first.status == "succeeded" and first.final_trajectory is not None
    second = client.command("raise the left hand")
    assert second.status == "succeeded"
    assert [r.msg.scale_index for r in second.plans] == list(range(1, second.plans[0].msg.num_scales + 1))
    assert stamp(second.final_trajectory) > stamp(first.final_trajectory)
    # Each new trajectory starts from what the controller commands at its switch time, by the
    # controller's own rules (the coarse plans and the final one alike): no jump in position.
    sent = [r for r in client.trajectories if r.at >= first.sent_at]
    for k, received in enumerate(sent[1:], start=1):
        model = JointTrajectoryControllerModel(ControllerSettings(list(received.msg.joint_names)), np.zeros(29))
        for before in sent[:k]:
            model.receive(convert.controller_message(before.msg), before.clock)
            model.update(before.clock)
        expected = model.commanded_at(stamp(received.msg)).positions_J
        _, _, positions, _ = convert.trajectory_arrays(received.msg)
        np.testing.assert_allclose(positions[0], expected, atol=1e-6)


def test_cancel_mid_generation(client):
    # Canceled as soon as it is accepted: waiting for its first plan raced with the rest of an untrained
    # generation (a loaded machine delivered all four plans before the cancel). It is canceled while
    # waiting for the worker or generating, and either way no final plan may go out.
    handle = client.send_goal("run in a circle", duration=9.0, seed=11)
    handle.cancel()
    outcome = handle.wait(timeout=30.0)
    assert outcome.status == "canceled", outcome.message
    assert "canceled" in outcome.message
    assert not any(r.msg.is_final for r in outcome.plans)
    assert not any(r.msg.is_final for r in handle.feedback)
    time.sleep(0.5)
    client.collect(outcome, handle.goal_id)
    assert not any(r.msg.is_final for r in outcome.plans), "a canceled goal kept publishing"
    # The node is free again: the next command runs to its final plan.
    again = client.generate("bow", duration=2.0, seed=12)
    assert again.status == "succeeded" and again.final_plan is not None, again.message


def _set_parameter(client, name: str, value) -> None:
    """Set one parameter of the node live (its on-set callback applies it)."""
    service = client.node.create_client(SetParameters, "/moscale_node/set_parameters")
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    response = call_service(service, request, timeout=30.0)
    assert response.results[0].successful, response


def test_new_command_preempts_the_one_before_it(client):
    # The second goal is sent at once: waiting for the first one's first plan raced with the rest of
    # its generation (an untrained 9 s motion can finish before a loaded machine delivers the second
    # goal). Sent back to back, the first is waiting or running when the second arrives, and the
    # worker preempts both alike (node/worker.py). min_run_time 0: no protected run time (the
    # policy against starvation is tested in tests/test_reliability_limits.py).
    _set_parameter(client, "min_run_time", 0.0)
    try:
        first = client.send_goal("dance energetically", duration=9.0, seed=1)
        second = client.send_goal("bow", duration=2.0, seed=2)
        first_outcome, second_outcome = first.wait(30.0), second.wait(30.0)
    finally:
        _set_parameter(client, "min_run_time", 1.0)
    assert first_outcome.status == "aborted" and "preempted by request" in first_outcome.message
    assert "'bow'" in first_outcome.message
    assert not any(r.msg.is_final for r in first_outcome.plans)
    assert second_outcome.status == "succeeded", second_outcome.message
    assert second_outcome.final_plan is not None


@pytest.mark.parametrize(
    ("text", "duration", "needle"),
    [
        ("", 0.0, "empty"),
        ("   \t ", 0.0, "empty"),
        ("wave " * 50, 0.0, "more than max_text_length=200"),
        ("wave", -2.0, "-2"),
        ("wave", math.nan, "nan"),
        ("wave", 0.1, "outside the supported range"),
        ("wave", 600.0, "outside the supported range"),
    ],
)
def test_bad_goals_are_rejected_with_a_clear_message(client, text, duration, needle):
    outcome = client.generate(text, duration=duration, timeout=20.0)
    assert outcome.status == "rejected"  # at the goal callback; the reason comes on ~/rejections
    assert needle in outcome.message
    assert outcome.plans == []


def test_bad_topic_commands_are_logged_and_publish_nothing(client, node):
    client.clear()
    for text in ("", "  ", "x" * 300):
        client.command_pub.publish(String(data=text))
    assert node.wait_for_log("refused: command text is 300 characters", 10.0), node.log()[-2000:]
    time.sleep(0.5)
    assert client.plans == [] and client.trajectories == []
    assert "command '' refused: command text is empty" in node.log()
    assert "command '  ' refused: command text is empty" in node.log()
    assert node.alive()
    after = client.generate("nod", duration=2.0)
    assert after.status == "succeeded", "the node stopped working after bad input"


def test_playback_joint_states_and_skeleton_markers(client, robot):
    """After a command the node plays the committed motion back: JointState with the robot's joints
    inside their limits, and the human skeleton as bones (LINE_LIST) and joints (SPHERE_LIST)."""
    states, markers = [], []
    subscriptions = [
        client.node.create_subscription(JointState, "/moscale_node/joint_states", states.append, 10),
        client.node.create_subscription(MarkerArray, "/moscale_node/skeleton", markers.append, 10),
    ]
    try:
        outcome = client.generate("wave both hands", duration=2.0, seed=8)
        assert outcome.status == "succeeded", outcome.message
        deadline = time.monotonic() + 5.0
        while (len(states) < 3 or len(markers) < 3) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(states) >= 3 and len(markers) >= 3, "no playback at playback_rate"
        state = states[-1]
        assert list(state.name) == robot.joint_names
        position = np.asarray(state.position)
        assert np.all(position >= robot.lower - 1e-6) and np.all(position <= robot.upper + 1e-6)
        bones, joints = markers[-1].markers
        assert (bones.type, joints.type) == (bones.LINE_LIST, joints.SPHERE_LIST)
        assert len(joints.points) == 22 and len(bones.points) == 2 * 21
        assert bones.header.frame_id == "world"
        heights = [p.z for p in joints.points]  # z-up for RViz: the head is above the feet
        assert heights[15] > heights[10] and heights[15] > heights[11]
    finally:
        for subscription in subscriptions:
            client.node.destroy_subscription(subscription)
