"""The node's other policies, in one real node process (the ``moscale_node`` console script): a
bounded queue instead of preemption, final-only controller output, and appending a queued motion
after the one before it.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from moscale_ros.node import convert
from moscale_ros.node.client import MoScaleClient
from moscale_ros.node.launcher import NodeProcess


@pytest.fixture(scope="module")
def client(ros, untrained_generator, tmp_path_factory):
    node = NodeProcess(
        {
            "checkpoint": untrained_generator,
            "device": "cpu",
            "concurrency": "queue",
            "max_queue": 1,
            "controller_plans": "final_only",
            "append": True,
            "warmup": False,
            "playback_rate": 0.0,
        },
        remaps=[("__node", "moscale_queue")],
        log_path=tmp_path_factory.mktemp("node") / "moscale_queue.log",
        entry="console",  # the moscale_node console script
    ).start()
    client = MoScaleClient("/moscale_queue")
    try:
        assert client.wait_ready(90.0), f"node not ready:\n{node.log()[-3000:]}"
        yield client
    finally:
        client.close()
        assert node.stop() == 0, node.log()[-3000:]


def _ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def test_queue_is_bounded_and_queued_motion_appends(client):
    running = client.send_goal("walk forward slowly", duration=3.0, seed=1)
    assert running.wait_for_plans(1, timeout=30.0)
    queued = client.send_goal("turn around", duration=2.0, seed=2)
    # Goals are executed on the node's executor threads, in no fixed order: let "turn around" reach
    # the worker before the others are sent.
    assert queued.wait_accepted(10.0)
    time.sleep(1.0)
    # One place in the queue. It frees at most once while these are sent: when "walk" is done, the
    # worker takes "turn around" (and holds it until "walk" is about to end). So of three more goals
    # sent at once, at most one gets that place and at least two find the queue full, whenever
    # "walk" ends.
    extras = [client.send_goal(text, duration=2.0, seed=3) for text in ("jump", "wave the right hand", "bow")]
    first, second = running.wait(30.0), queued.wait(30.0)
    outcomes = [goal.wait(30.0) for goal in extras]

    refused = [o for o in outcomes if o.status == "aborted"]
    assert len(refused) >= 2, [o.message for o in outcomes]
    for outcome in refused:
        assert "max_queue=1" in outcome.message and outcome.plans == [], outcome.message
    assert all(o.status in ("succeeded", "aborted") for o in outcomes), [o.message for o in outcomes]
    assert first.status == "succeeded" and second.status == "succeeded", (first.message, second.message)

    for outcome in (first, second):
        num_scales = outcome.plans[0].msg.num_scales
        assert [r.msg.scale_index for r in outcome.plans] == list(range(1, num_scales + 1))
        # final_only: the controller hears only the final plan of each command.
        assert len(outcome.trajectories) == 1
        assert outcome.trajectories[0].msg == outcome.final_plan.trajectory

    # append: the queued motion starts (its plans' header.stamp, t0) where and when the previous one
    # ends (to 1 µs: start times are float seconds of the clock, resolution ~0.24 µs near the current
    # epoch). Its trajectory is stamped when sent, on the previous motion's path up to t0.
    _, times, positions, _ = convert.trajectory_arrays(first.final_trajectory)
    last = first.final_trajectory.points[-1].time_from_start
    first_end_ns = _ns(first.final_trajectory.header.stamp) + last.sec * 10**9 + last.nanosec
    assert abs(_ns(second.final_plan.header.stamp) - first_end_ns) <= 1000
    lead_in_ns = _ns(second.final_plan.header.stamp) - _ns(second.final_trajectory.header.stamp)
    assert lead_in_ns >= 0
    _, next_times, next_positions, _ = convert.trajectory_arrays(second.final_trajectory)
    at_start = int(np.searchsorted(next_times, lead_in_ns * 1e-9 - 1e-6))
    np.testing.assert_allclose(next_positions[at_start], positions[-1], atol=1e-6)
