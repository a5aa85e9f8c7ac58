"""What a real ROS 2 joint_trajectory_controller makes of the node's output, over DDS.

Three real ``moscale_node`` processes (the ``moscale_node`` console script with config/moscale.yaml
and the untrained test generator), each under its own name and controller topic: ``every_scale``
(the default), ``final_only``, and ``append`` (with ``start_lead: 0``, so that every refinement
takes over while its own motion runs). A client in this process records every message on the
controller topic with its ROS receipt time; :meth:`MoScaleClient.controller_replay` feeds them, at
those times, to the model of the controller (:mod:`moscale_ros.control.jtc_rules`, rules cited
from ros2_controllers), which starts holding the first message's first point. For each case:

* the controller rejects nothing (rule R3: every trajectory ends at rest; R4: none ends in the past);
* at every replacement the command moves at most what the velocity limit allows in one control
  cycle (``max_step_fraction <= 1``): a refinement, a preempting command, a stop or an appended
  motion takes over without a jump;
* every trajectory's last point has zero velocity, and the commanded path (the replay at 50 Hz,
  splines between points) never moves faster than a limit, nor does any message's own finite
  difference of positions.

``~/stop`` (std_srvs/Trigger) and cancelling a goal must bring the command to rest within
``switch_lead + stop_duration`` of the request (plus the transport and a few control cycles).

A message the middleware delivered more than ``TRANSPORT_LATE_S`` after the node wrote it (its
``source_timestamp``) is a transport event, not the node's output: Fast DDS repairs a lost sample
at the writer's next heartbeat (every 3 s by default), and ``moscale bench node`` saw two such
trajectories, delivered 1.1 and 2.3 s late, in 18 runs of 80 on 2026-11-30 (its
``transport_delay_max_s``). The case then runs once more (``once_more_if_transport_late``); late
again, it fails.

The untrained generator moves slowly (well inside the limits); ``MOSCALE_CONFORMANCE_CHECKPOINT=
models/moscale-bandai.safetensors`` runs the same cases with a trained model, whose motions reach
the velocity limits.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from std_msgs.msg import String
from std_srvs.srv import Trigger

from moscale_ros.control.jtc_rules import Replay
from moscale_ros.node import convert
from moscale_ros.node.client import MoScaleClient
from moscale_ros.node.launcher import NodeProcess
from retarget.robot import load_robot

pytestmark = pytest.mark.slow

UPDATE_RATE = 50.0  # Hz of the modelled controller (its controller manager's update_rate)
SWITCH_LEAD = 0.1  # s, node parameters (config/moscale.yaml defaults), set explicitly below
STOP_DURATION = 0.6
# Slack on "at rest within switch_lead + stop_duration of the request": the request reaching the
# node and its reply being computed (a loaded 2-core machine: up to ~0.1 s), the stop trajectory's
# length rounded up to whole control cycles (< 2 cycles) and the replay's own cycle (1 cycle).
STOP_SLACK = 0.25
TRANSPORT_LATE_S = 0.5  # s from the node writing a message to the middleware delivering it (module docstring)
COMMON = {
    "device": "cpu",
    "warmup": False,
    "playback_rate": 0.0,
    "diagnostics_period": 0.0,
    "default_duration": 2.0,  # topic commands: 2 s motions
    "switch_lead": SWITCH_LEAD,
    "stop_duration": STOP_DURATION,
    "min_run_time": 0.0,  # every new command preempts at once (no coalescing): the harshest case for the controller
}
NODES = {
    "conformance_every": {},
    "conformance_final": {"controller_plans": "final_only"},
    "conformance_append": {"append": True, "start_lead": 0.0},
}


def topic_of(name: str) -> str:
    return f"/{name}_controller/joint_trajectory"


@pytest.fixture(scope="module")
def robot():
    return load_robot("g1")


@pytest.fixture(scope="module")
def clients(ros, untrained_generator, tmp_path_factory):
    """One client per node; the three nodes start together (start-up is mostly imports)."""
    logs = tmp_path_factory.mktemp("conformance")
    checkpoint = os.environ.get("MOSCALE_CONFORMANCE_CHECKPOINT") or untrained_generator
    processes = {
        name: NodeProcess(
            {**COMMON, **params, "checkpoint": checkpoint, "controller_topic": topic_of(name)},
            remaps=[("__node", name)],
            log_path=logs / f"{name}.log",
            entry="console",
        ).start()
        for name, params in NODES.items()
    }
    clients = {name: MoScaleClient(f"/{name}", topic_of(name)) for name in NODES}
    try:
        for name, client in clients.items():
            assert client.wait_ready(120.0), f"{name} not ready:\n{processes[name].log()[-3000:]}"
        yield {name: (client, processes[name]) for name, client in clients.items()}
    finally:
        for client in clients.values():
            client.close()
        for name, process in processes.items():
            code = process.stop()
            assert code == 0, f"{name} exited with {code}:\n{process.log()[-3000:]}"
            assert "Traceback" not in process.log(), process.log()[-3000:]
            assert "the controller rejects" not in process.log(), process.log()[-3000:]


# -------------------------------------------------------------------------------------- helpers


def now(client: MoScaleClient) -> float:
    """The client node's ROS clock (the clock receipt times are on), seconds."""
    return client.node.get_clock().now().nanoseconds * 1e-9


def stamp(msg) -> float:
    return convert.time_to_seconds(msg.header.stamp)


def end_of(msg) -> float:
    """Absolute end time of a received JointTrajectory."""
    return stamp(msg) + convert.time_to_seconds(msg.points[-1].time_from_start)


def received(client: MoScaleClient) -> list:
    with client._lock:
        return list(client.trajectories)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def sleep_until(client: MoScaleClient, t: float) -> None:
    time.sleep(max(0.0, t - now(client)))


def wait_until_rest(client: MoScaleClient, margin: float = 0.1) -> None:
    """Until the trajectory received last (the one the controller follows: each replaces the one
    before) has ended: the commanded path is at rest."""
    trajectories = received(client)
    if trajectories:
        sleep_until(client, end_of(trajectories[-1].msg) + margin)


@pytest.fixture
def fresh(clients):
    """``get(name)``: that node's client, its motion over and its recording cleared."""

    def get(name: str) -> tuple[MoScaleClient, NodeProcess]:
        client, process = clients[name]
        wait_until_rest(client)
        client.clear()
        return client, process

    return get


def timing(trajectories: list) -> str:
    """Each message's stamp, and when it was written and received, relative to its stamp (s): what a
    failure needs to tell a node that published late from a transport that delivered late."""
    rows = [
        f"stamp {stamp(r.msg):.3f}: sent {r.sent - stamp(r.msg):+.3f}, received {r.clock - stamp(r.msg):+.3f} "
        f"(called back {r.callback_delay:.3f} s later), "
        f"{len(r.msg.points)} points over {convert.time_to_seconds(r.msg.points[-1].time_from_start):.2f} s"
        for r in trajectories
    ]
    return "messages: " + "; ".join(rows)


class TransportLateError(AssertionError):
    """A controller message was delivered over ``TRANSPORT_LATE_S`` after it was written."""


def once_more_if_transport_late(test: Callable) -> Callable:
    """Run ``test`` again (once) when it raised :class:`TransportLateError` (module docstring)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except TransportLateError as late:
            print(f"running {test.__name__} once more: {late}")
            return test(*args, **kwargs)

    return run


def check_controller(client: MoScaleClient, robot, expect: int | None = None) -> Replay:
    """Every controller message so far, at its receipt time, through the controller's rules (module
    docstring); returns the replay. Raises :class:`TransportLateError` first if the middleware delivered
    one of them over ``TRANSPORT_LATE_S`` after the node wrote it."""
    trajectories = received(client)
    assert trajectories, "no controller trajectory arrived"
    late = [r for r in trajectories if r.sent and r.clock - r.sent > TRANSPORT_LATE_S]
    if late:
        delivered = f"{len(late)} message(s) delivered over {TRANSPORT_LATE_S} s after sending"
        raise TransportLateError(f"{delivered}; {timing(trajectories)}")
    if expect is not None:
        assert len(trajectories) == expect, [stamp(r.msg) for r in trajectories]
    limits_J = robot.velocity_limits
    for r in trajectories:  # velocity limits are in the robot's joint order: so is every message
        assert list(r.msg.joint_names) == robot.joint_names
        _, times_N, positions_NJ, velocities_NJ = convert.trajectory_arrays(r.msg)
        speed_NJ = np.abs(np.diff(positions_NJ, axis=0)) / np.diff(times_N)[:, None]
        assert np.max(speed_NJ / limits_J) <= 1 + 1e-6, f"finite-difference speed over a limit at {stamp(r.msg)}"
        np.testing.assert_array_equal(velocities_NJ[-1], 0.0)
    first = convert.trajectory_arrays(trajectories[0].msg)[2][0]
    replay = client.controller_replay(first, update_rate=UPDATE_RATE)
    assert replay.rejections == [], replay.rejections
    # One replacement per control cycle that took a message (two in one cycle: the later one wins).
    assert 0 < len(replay.replacements) <= len(trajectories)
    assert replay.end_velocities == [0.0] * len(trajectories)
    # Exactly <= 1: the node splices from what the controller commands, so a replacement is a
    # cycle of the blended path, whose speeds are within the limits (no tolerance needed).
    worst = max(replay.replacements, key=lambda r: float(np.max(r.step_J / (limits_J / UPDATE_RATE))))
    assert replay.max_step_fraction(limits_J) <= 1.0, (
        f"step of {worst.max_step():.4f} rad at the replacement received at {worst.received_at:.3f}; "
        + timing(trajectories)
    )
    assert replay.max_speed_fraction(limits_J) <= 1 + 1e-6
    np.testing.assert_array_equal(replay.velocities_TJ[-1], 0.0)
    return replay


def rest_time(replay: Replay) -> float:
    """When the commanded positions stop changing for good."""
    moving_T = np.any(np.diff(replay.positions_TJ, axis=0) != 0, axis=1)
    if not np.any(moving_T):
        return float(replay.times_T[0])
    return float(replay.times_T[int(np.flatnonzero(moving_T)[-1]) + 1])


def call_stop(client: MoScaleClient, name: str) -> Trigger.Response:
    service = client.node.create_client(Trigger, f"/{name}/stop")
    try:
        assert service.wait_for_service(10.0), f"/{name}/stop is not offered"
        done = threading.Event()
        future = service.call_async(Trigger.Request())
        future.add_done_callback(lambda _future: done.set())
        assert done.wait(10.0), "~/stop did not answer"
        return future.result()
    finally:
        client.node.destroy_client(service)


# ---------------------------------------------------------------------------------------- every_scale


@once_more_if_transport_late
def test_commands_in_a_row_short_long_and_preempting(fresh, robot):
    """A 1 s and a 3 s motion, one after the other has ended (the controller holding), then a
    command while the 3 s one runs: its plans take over mid-motion."""
    client, _ = fresh("conformance_every")
    short = client.generate("nod", duration=1.0, seed=1)
    assert short.status == "succeeded", short.message
    wait_until_rest(client, margin=0.3)
    long = client.generate("walk forward", duration=3.0, seed=2)
    assert long.status == "succeeded", long.message
    t0 = stamp(long.final_plan)
    sleep_until(client, t0 + 1.0)
    preempting = client.generate("wave the right hand", duration=2.0, seed=3)
    assert preempting.status == "succeeded", preempting.message
    assert all(stamp(r.msg) < end_of(long.final_trajectory) for r in preempting.trajectories)
    wait_until_rest(client)
    num_scales = long.plans[0].msg.num_scales
    check_controller(client, robot, expect=3 * num_scales)


@once_more_if_transport_late
def test_preempt_during_generation(fresh, robot):
    """A command arriving while another is still being generated: the first's coarse plans have
    reached the controller; the second takes over from them."""
    client, _ = fresh("conformance_every")
    first = client.send_goal("dance energetically", duration=9.0, seed=4)
    assert first.wait_for_plans(1, timeout=30.0)
    second = client.send_goal("bow", duration=2.0, seed=5)
    first_outcome, second_outcome = first.wait(30.0), second.wait(30.0)
    assert first_outcome.status in ("aborted", "succeeded"), first_outcome.message
    assert second_outcome.status == "succeeded", second_outcome.message
    wait_until_rest(client)
    check_controller(client, robot)


@once_more_if_transport_late
def test_stop_service_brings_the_running_motion_to_rest(fresh, robot):
    client, _ = fresh("conformance_every")
    outcome = client.generate("walk forward slowly", duration=3.0, seed=6)
    assert outcome.status == "succeeded", outcome.message
    t0, planned_end = stamp(outcome.final_plan), end_of(outcome.final_trajectory)
    sleep_until(client, t0 + 1.0)
    asked = now(client)
    response = call_stop(client, "conformance_every")
    assert response.success and response.message.startswith("stopping"), response.message
    wait_for(lambda: len(received(client)) > len(outcome.trajectories), 5.0, "the stop trajectory")
    wait_until_rest(client)
    replay = check_controller(client, robot, expect=len(outcome.trajectories) + 1)
    k = int(np.searchsorted(replay.times_T, asked))
    assert np.any(replay.velocities_TJ[k] != 0), "the motion was not running when stopped"
    at_rest = rest_time(replay)
    assert at_rest <= asked + SWITCH_LEAD + STOP_DURATION + STOP_SLACK < planned_end, at_rest - asked
    assert call_stop(client, "conformance_every").message == "nothing was moving"


@once_more_if_transport_late
def test_cancel_brings_the_motion_to_rest(fresh, robot):
    """A cancel sent once the first plan is out. The node's plans follow each other within about
    0.15 s (issue #19), so on a loaded machine the goal may finish before the cancel arrives: then
    the motion simply runs, and the test tries again (a cancel must land in one of five tries)."""
    for _ in range(5):
        client, _ = fresh("conformance_every")
        handle = client.send_goal("run in a circle", duration=9.0, seed=7)
        assert handle.wait_for_plans(1, timeout=30.0)
        asked = now(client)
        handle.cancel()
        outcome = handle.wait(timeout=30.0)
        if outcome.status != "succeeded":
            break
    assert outcome.status == "canceled", outcome.message
    wait_until_rest(client)
    replay = check_controller(client, robot)
    assert rest_time(replay) <= asked + SWITCH_LEAD + STOP_DURATION + STOP_SLACK
    assert end_of(received(client)[-1].msg) <= asked + SWITCH_LEAD + STOP_DURATION + STOP_SLACK


@once_more_if_transport_late
def test_forty_overlapping_commands_chained_by_continuation(fresh, robot):
    """Topic commands every 0.3-0.5 s, each replacing the rest of the one before (2 s motions)."""
    client, process = fresh("conformance_every")
    log_before = len(process.log())
    pick = random.Random(0)
    texts = ["wave the right hand", "bow", "walk forward", "raise both hands", "turn left", "kick"]
    for i in range(40):
        client.command_pub.publish(String(data=texts[i % len(texts)]))
        time.sleep(pick.uniform(0.3, 0.5))

    def quiet() -> bool:  # nothing new for a second: the last command is done
        with client._lock:
            arrivals = [r.at for r in client.plans[-1:] + client.trajectories[-1:]]
        return bool(arrivals) and time.monotonic() - max(arrivals) > 1.0

    wait_for(quiet, 60.0, "the last command's plans")
    failures = [line for line in process.log()[log_before:].splitlines() if "failed:" in line]
    assert failures == [], "\n".join(failures[:5])
    with client._lock:
        assert client.plans[-1].msg.is_final, "the last command ended without its final plan"
        requests = {r.msg.request_id for r in client.plans}
    # A command preempted before its first plan was ready publishes nothing: allow a few.
    assert len(requests) >= 36, f"{len(requests)} of 40 commands produced plans"
    wait_until_rest(client)
    trajectories = received(client)
    overlapping = sum(stamp(b.msg) < end_of(a.msg) for a, b in zip(trajectories, trajectories[1:]))
    assert overlapping == len(trajectories) - 1, "a command arrived after the motion before it had ended"
    check_controller(client, robot)


# -------------------------------------------------------------------------------- final_only, append


@once_more_if_transport_late
def test_final_only(fresh, robot):
    """Only final plans reach the controller: one per command, in a row, preempting, after rest."""
    client, _ = fresh("conformance_final")
    first = client.generate("walk forward", duration=3.0, seed=8)
    assert first.status == "succeeded", first.message
    sleep_until(client, stamp(first.final_plan) + 1.0)
    second = client.generate("wave both hands", duration=2.0, seed=9)
    assert second.status == "succeeded", second.message
    wait_until_rest(client, margin=0.3)
    third = client.command("bow")
    assert third.status == "succeeded", third.message
    wait_until_rest(client)
    for outcome in (first, second, third):
        assert [r.msg for r in outcome.trajectories] == [outcome.final_plan.trajectory]
    check_controller(client, robot, expect=3)


@once_more_if_transport_late
def test_append_with_refinements_during_the_motion(fresh, robot):
    """``append`` with ``start_lead: 0``: a command sent while a motion runs starts when it ends,
    and every refinement takes over while its own motion is already running."""
    client, _ = fresh("conformance_append")
    first = client.generate("walk forward", duration=2.0, seed=10)
    assert first.status == "succeeded", first.message
    second = client.generate("raise the left hand", duration=2.0, seed=11)
    assert second.status == "succeeded", second.message
    wait_until_rest(client, margin=0.3)
    third = client.generate("nod", duration=1.0, seed=12)
    assert third.status == "succeeded", third.message
    wait_until_rest(client)
    assert stamp(second.final_plan) >= end_of(first.final_trajectory) - 1e-6
    for outcome in (first, second, third):
        t0 = stamp(outcome.final_plan)
        stamps = [stamp(r.msg.trajectory) for r in outcome.plans]
        # start_lead 0: every plan is ready, and stamped when sent (on the motion's grid, at or before
        # sending), once its motion has started: no stamp more than one grid step before t0
        assert all(s >= t0 - 1 / 50 - 1e-6 for s in stamps), "a plan was sent before its motion started"
    check_controller(client, robot, expect=sum(len(o.plans) for o in (first, second, third)))
