"""The real ``moscale_node`` with the shipped model (and its vocabulary) in a subprocess, a real rclpy
client here, over DDS on the run's own domain: unknown commands are refused with the reason and the
nearest skills and publish nothing; known paraphrases and sequences are generated and report their
skill, confidence and segments."""

from __future__ import annotations

import time

import pytest
from fixtures_ros import node_process, ready_client
from std_msgs.msg import String

from moscale_common.errors import UnknownCommandError
from moscale_common.paths import resource
from moscale_ros.node.health import refusal_kind

NODE = "moscale_vocabulary_node"
CONTROLLER_TOPIC = "/vocabulary_controller/joint_trajectory"


@pytest.fixture(scope="module")
def shipped_node(tmp_path_factory):
    if not resource("models/moscale-bandai.safetensors").is_file():
        pytest.skip("the shipped model is not in this checkout")
    log = tmp_path_factory.mktemp("moscale_node") / "moscale_node.log"
    settings = {"device": "cpu", "warmup": False, "controller_topic": CONTROLLER_TOPIC}
    # its own name and controller topic: other test modules' nodes may share this DDS domain
    with node_process(settings, log, remaps=[("__node", NODE)]) as process:
        yield process


@pytest.fixture(scope="module")
def client(ros, shipped_node):
    with ready_client(shipped_node, f"/{NODE}", CONTROLLER_TOPIC) as client:
        yield client


def test_an_unknown_command_is_refused_with_the_nearest_skills_and_publishes_nothing(client, shipped_node):
    client.clear()
    outcome = client.generate("do a backflip", duration=3.0, timeout=30.0)
    # Refused in request validation, in the goal callback: the goal is rejected, the reason is on ~/rejections.
    assert outcome.status == "rejected", (outcome.status, outcome.message)
    assert "not trained for it" in outcome.message and "nearest known skills:" in outcome.message
    assert "'do a backflip': not a known skill" in outcome.message
    assert shipped_node.wait_for_log("'do a backflip': not a known skill", 10.0), shipped_node.log()[-2000:]
    time.sleep(0.5)
    assert outcome.plans == [] and client.plans == [] and client.trajectories == []


def test_an_unknown_topic_command_is_logged_with_the_nearest_skills_and_publishes_nothing(client, shipped_node):
    client.clear()
    client.command_pub.publish(String(data="pick up the box"))
    assert shipped_node.wait_for_log("command 'pick up the box' refused", 15.0), shipped_node.log()[-2000:]
    time.sleep(0.5)
    assert client.plans == [] and client.trajectories == []
    refusal = next(line for line in shipped_node.log().splitlines() if "'pick up the box' refused" in line)
    assert "nearest known skills:" in refusal


def test_a_weak_skill_is_refused_as_known_but_weak(client):
    outcome = client.generate("throw a punch", duration=2.0, timeout=30.0)
    assert outcome.status == "rejected"
    assert "known but weak skill punch" in outcome.message and "barely seen" in outcome.message
    assert outcome.plans == []
    assert refusal_kind(UnknownCommandError("kick")) == "unknown_command"  # its /diagnostics counter


def test_a_known_paraphrase_is_accepted_and_carries_its_skill_and_confidence(client):
    outcome = client.generate("move forward at a steady pace", duration=2.0, seed=1, timeout=60.0)
    assert outcome.status == "succeeded", outcome.message
    plans = [r.msg for r in outcome.plans]
    assert plans and all(p.skill == "walk" and p.skill_status == "known" for p in plans)
    assert all(p.confidence == plans[0].confidence and 0 < p.confidence <= 1 for p in plans)
    assert list(outcome.result.segments) and outcome.result.segments[0].startswith(
        "move forward at a steady pace [walk"
    )


def test_a_sequence_over_the_action_lists_its_segments(client):
    outcome = client.generate("bow, then wave for two seconds", seed=2, timeout=90.0)
    assert outcome.status == "succeeded", outcome.message
    final = outcome.final_plan
    assert list(final.segment_texts) == ["bow", "wave"]
    assert list(final.segment_skills)[0] == "bow" and final.skill.startswith("bow -> ")
    assert final.segment_durations[1] == pytest.approx(2.0)
    assert final.segment_starts[0] < final.segment_starts[1]
    assert len(outcome.result.segments) == 2 and all(c > 0 for c in final.segment_confidences)
    frames = len(final.human_positions) // (22 * 3)
    assert frames == pytest.approx(20 * (final.segment_starts[1] + final.segment_durations[1]), abs=1)
