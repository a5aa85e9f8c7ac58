"""``locomotion: cmd_vel`` end to end: the real ``moscale_node`` with the shipped model in a subprocess,
a real rclpy client and a Twist subscriber here, over DDS on the run's own domain.

A generated walk goes to the walking controller as ``geometry_msgs/Twist`` on ``cmd_vel_topic`` (its
integral retraces the plan's root path and it ends with zero) and to the trajectory controller as
upper-body joints only; a standing gesture stays whole-body and sends no velocity.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fixtures_ros import node_process, ready_client
from geometry_msgs.msg import Twist
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from moscale_common.paths import resource
from moscale_ros.node import convert
from retarget.locomotion import heading_from_quaternions, integrate_commands
from retarget.robot import load_robot

NODE = "moscale_locomotion_node"
CONTROLLER_TOPIC = "/locomotion_controller/joint_trajectory"
CMD_VEL_TOPIC = "/locomotion_test/cmd_vel"


@pytest.fixture(scope="module")
def robot():
    return load_robot("g1")


@pytest.fixture(scope="module")
def shipped_node(tmp_path_factory):
    if not resource("models/moscale-bandai.safetensors").is_file():
        pytest.skip("the shipped model is not in this checkout")
    log = tmp_path_factory.mktemp("moscale_node") / "moscale_node.log"
    settings = {
        "device": "cpu", "warmup": False, "controller_topic": CONTROLLER_TOPIC, "locomotion": "cmd_vel",
        "cmd_vel_topic": CMD_VEL_TOPIC, "controller_plans": "final_only", "unknown_command": "accept",
        "prefix_seconds": 0.0,
    }  # fmt: skip
    # final_only: one plan per command, whose root path the Twists are compared with. prefix_seconds 0:
    # a command is generated afresh; continuing a walk, a gesture keeps some of its momentum (0.46 m
    # with these seeds) and travels by the rule.
    # its own name and topics: other test modules' nodes may share this DDS domain
    with node_process(settings, log, remaps=[("__node", NODE)]) as process:
        yield process


@pytest.fixture(scope="module")
def client(ros, shipped_node):
    with ready_client(shipped_node, f"/{NODE}", CONTROLLER_TOPIC) as client:
        yield client


class TwistRecorder:
    """Every Twist on ``CMD_VEL_TOPIC`` with the time the node wrote it (the sample's ``source_timestamp``,
    the system clock the node stamps with; the receipt time when not given). This process's own
    callback can run long after the sample arrived, while the client's megabyte messages hold its GIL
    (a CI run called back a walking command 0.27 s after the stamp of the plan that stopped the walk)."""

    def __init__(self) -> None:
        self.node = Node("locomotion_twist_recorder")
        self.received: list[tuple[float, np.ndarray]] = []
        self._lock = threading.Lock()
        self.node.create_subscription(Twist, CMD_VEL_TOPIC, self._on_twist, 100)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _on_twist(self, msg: Twist, info: dict) -> None:
        now, written_ns = time.time(), (info or {}).get("source_timestamp") or 0
        written = written_ns * 1e-9 if abs(now - written_ns * 1e-9) < 60.0 else now
        with self._lock:
            self.received.append((written, np.array([msg.linear.x, msg.linear.y, msg.angular.z])))

    def since(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            rows = [(at, command) for at, command in self.received if at >= t]
        return np.array([at for at, _ in rows]), np.array([command for _, command in rows]).reshape(-1, 3)

    def close(self) -> None:
        self._executor.shutdown()
        self.node.destroy_node()


@pytest.fixture(scope="module")
def twists(ros, client):
    recorder = TwistRecorder()
    yield recorder
    recorder.close()


def wait_until_quiet(twists: TwistRecorder, since: float, quiet_s: float = 1.0, timeout: float = 30.0) -> None:
    """Until no Twist has arrived for ``quiet_s`` (the motion's stream is over)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        times, _ = twists.since(since)
        if len(times) and time.time() - times[-1] > quiet_s:
            return
        time.sleep(0.2)


def test_a_generated_walk_streams_velocities_that_retrace_its_root_path_and_end_at_zero(client, twists, robot):
    client.clear()
    started = time.time()
    outcome = client.generate("walk forward", duration=4.0, seed=7, timeout=120.0)
    assert outcome.status == "succeeded", outcome.message
    plan = outcome.final_plan
    assert plan.locomotion == "cmd_vel"
    # The legs are the walking controller's: the joint trajectory carries the upper body only.
    legs = {robot.joint_names[j] for j in set(range(robot.num_joints)) - set(robot.upper_body_columns)}
    assert len(legs) == 12
    assert outcome.trajectories, "no trajectory reached the controller"
    for received in outcome.trajectories:
        assert not legs & set(received.msg.joint_names)
        assert set(received.msg.joint_names) == set(robot.joint_names) - legs
    wait_until_quiet(twists, started)
    times_M, commands_M3 = twists.since(started)
    assert len(commands_M3) > 50, len(commands_M3)
    np.testing.assert_array_equal(commands_M3[-1], 0.0)  # an explicit zero ends the stream
    assert np.all(np.abs(commands_M3) <= np.asarray(robot.config.max_base_velocity) + 1e-6)
    # The plan's root path (base poses at its trajectory points, on the node's clock) ...
    base_N7 = np.asarray(plan.base_poses).reshape(-1, 7)
    start = convert.time_to_seconds(plan.trajectory.header.stamp)
    point_times_N = start + np.array([convert.time_to_seconds(p.time_from_start) for p in plan.trajectory.points])
    travelled = np.linalg.norm(np.diff(base_N7[:, :2], axis=0), axis=1).sum()
    assert travelled > 0.5, travelled  # it really travels
    # ... and the Twists as received, each held until the next one (zero-order hold), integrated.
    moving = times_M >= start - 0.05
    rate = 200.0  # Hz of the integration grid
    grid_G = np.arange(start, times_M[-1], 1.0 / rate)
    held_G = np.clip(np.searchsorted(times_M[moving], grid_G, side="right") - 1, 0, None)
    commands_G3 = commands_M3[moving][held_G]
    commands_G3[grid_G < times_M[moving][0]] = 0.0
    heading_0 = heading_from_quaternions(base_N7[:1, 3:7])[0]
    path_G3 = integrate_commands(commands_G3, rate, base_N7[0, :2], heading_0)
    at_points_N2 = np.stack([np.interp(point_times_N, grid_G, path_G3[:, i]) for i in range(2)], axis=1)
    error = np.linalg.norm(at_points_N2 - base_N7[:, :2], axis=1).max()
    print(f"walk: travelled {travelled:.2f} m, integrated Twist path off by at most {error:.3f} m "
          f"({100 * error / travelled:.1f} %), {len(commands_M3)} Twists")  # fmt: skip
    assert error <= 0.1 * travelled, (error, travelled)
    # The plan carries the same commands (one per trajectory point).
    assert len(plan.base_velocities) == 3 * len(plan.trajectory.points)


def test_a_standing_gesture_stays_whole_body_and_sends_no_velocity(client, twists, robot):
    client.clear()
    started = time.time()
    outcome = client.generate("wave the right hand", duration=3.0, seed=3, timeout=120.0)
    assert outcome.status == "succeeded", outcome.message
    plan = outcome.final_plan
    assert plan.locomotion == "whole_body" and len(plan.base_velocities) == 0
    assert outcome.trajectories
    assert list(outcome.trajectories[-1].msg.joint_names) == list(robot.joint_names)  # legs included
    time.sleep(1.0)
    _, commands_M3 = twists.since(started)
    assert np.all(commands_M3 == 0.0), commands_M3[np.any(commands_M3 != 0.0, axis=1)][:5]


def start_walking(client, twists) -> tuple[float, object]:
    """Send a 6 s walk and return (time sent, goal handle) once its velocities are on the topic."""
    client.clear()
    started = time.time()
    handle = client.send_goal("walk forward", duration=6.0, seed=7)
    deadline = time.time() + 60.0
    while time.time() < deadline and not np.any(twists.since(started)[1] != 0.0):
        time.sleep(0.05)
    assert np.any(twists.since(started)[1] != 0.0), "the walk never reached the walking controller"
    time.sleep(0.5)  # walking
    return started, handle


def test_stop_sends_zero_to_the_walking_controller(client, twists, robot):
    from std_srvs.srv import Trigger

    started, handle = start_walking(client, twists)
    stop = client.node.create_client(Trigger, f"/{NODE}/stop")
    assert stop.wait_for_service(10.0)
    response = stop.call(Trigger.Request())
    assert response.success, response.message
    stopped = time.time()
    handle.wait(30.0)
    time.sleep(1.0)
    times_M, commands_M3 = twists.since(started)
    np.testing.assert_array_equal(commands_M3[-1], 0.0)  # the explicit zero, sent before the reply
    moving_M = np.any(commands_M3 != 0.0, axis=1)
    assert times_M[moving_M].max() < stopped  # nothing but zero once ~/stop has answered
    # the stop trajectory that brings the upper body to rest carries no leg joints either
    sent = [received.msg for received in list(client.trajectories)]
    assert len(sent) >= 2 and all(len(msg.joint_names) == len(robot.upper_body_columns) for msg in sent)


def test_a_standing_command_preempting_a_walk_sends_zero_from_its_switch_time(client, twists, robot):
    started, _ = start_walking(client, twists)
    outcome = client.generate("wave the right hand", duration=3.0, seed=3, timeout=120.0)
    assert outcome.status == "succeeded", outcome.message
    wave = outcome.final_trajectory
    assert outcome.final_plan.locomotion == "whole_body"
    assert list(wave.joint_names) == list(robot.joint_names)  # whole-body again
    switch = convert.time_to_seconds(wave.header.stamp)
    # what the node has written cannot be recalled: zero from the wave's stamp, or from when the node
    # sent the wave if that was later (final_only: its stamp is set a few ms before it is sent)
    sent = outcome.trajectories[-1].sent or switch
    time.sleep(max(switch - time.time(), 0.0) + 0.5)
    times_M, commands_M3 = twists.since(started)
    moving_M = np.any(commands_M3 != 0.0, axis=1)
    assert np.any(moving_M[times_M < switch - 0.05])  # it walked until the wave took over ...
    assert times_M[moving_M].max() < max(switch, sent) + 0.05, (switch, sent)  # ... and got zero from then
    np.testing.assert_array_equal(commands_M3[-1], 0.0)
