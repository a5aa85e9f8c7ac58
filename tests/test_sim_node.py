"""``moscale_sim_node`` as users start it (its console script, a real process on this test run's
ROS domain): a JointTrajectory sent over DDS is executed and /joint_states follows it; one the
controller rules reject is not executed and the rejection is logged; /clock, /odom and
/diagnostics are published, and the simulation keeps up with real time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from retarget.robot import load_robot

TOPIC = "/joint_trajectory_controller/joint_trajectory"
ELBOW = "left_elbow_joint"


@pytest.fixture(scope="module")
def sim_node(tmp_path_factory):
    log = tmp_path_factory.mktemp("sim_node") / "moscale_sim_node.log"
    console = Path(sys.executable).parent / "moscale_sim_node"
    argv = [str(console)] if console.is_file() else [sys.executable, "-m", "moscale_ros.node.sim_node"]
    with log.open("wb") as handle:
        process = subprocess.Popen([*argv, "--ros-args", "-p", "robot:=g1"], stdout=handle, stderr=subprocess.STDOUT)
    yield process, log
    process.send_signal(2)
    try:
        code = process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    text = log.read_text(errors="replace")
    assert code == 0 and "Traceback" not in text, text[-3000:]


class Listener:
    """A test node: publishes trajectories, keeps the latest of every sim output."""

    def __init__(self) -> None:
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.node = Node("sim_node_test")
        self.latest: dict[str, object] = {}
        self.publisher = self.node.create_publisher(
            JointTrajectory, TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        for kind, topic in ((JointState, "/joint_states"), (Clock, "/clock"), (Odometry, "/odom")):
            self.node.create_subscription(kind, topic, lambda m, t=topic: self.latest.__setitem__(t, m), 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Keep the simulator's status (other nodes of the test run publish /diagnostics too)."""
        for status in msg.status:
            if status.name == "moscale_sim_node: physics":
                self.latest["/diagnostics"] = status

    def spin_for(self, seconds: float) -> None:
        import rclpy

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def wait_for(self, topic: str, timeout: float = 60.0) -> object:
        import rclpy

        deadline = time.monotonic() + timeout
        while topic not in self.latest and time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return self.latest.get(topic)

    def joint(self, name: str) -> float:
        msg = self.latest["/joint_states"]
        return float(msg.position[list(msg.name).index(name)])


def elbow_move(robot, delta: float, seconds: float, end_velocity: float = 0.0) -> JointTrajectory:
    """Start pose to start pose + ``delta`` on the left elbow (smootherstep), stamp 0: start on receipt."""
    msg = JointTrajectory(joint_names=list(robot.joint_names))
    j = robot.joint_names.index(ELBOW)
    for t in np.linspace(0.0, seconds, 26):
        u = t / seconds
        q_J = robot.q_initial[7:].copy()
        q_J[j] += delta * u**3 * (10 - 15 * u + 6 * u**2)
        v_J = np.zeros_like(q_J)
        v_J[j] = delta * 30 * u**2 * (1 - u) ** 2 / seconds
        if u == 1.0:
            v_J[j] = end_velocity
        ns = int(round(t * 1e9))
        at = Duration(sec=ns // 10**9, nanosec=ns % 10**9)
        msg.points.append(JointTrajectoryPoint(positions=q_J.tolist(), velocities=v_J.tolist(), time_from_start=at))
    return msg


def test_trajectory_over_dds_is_executed_and_rejections_are_logged(ros, sim_node) -> None:
    process, log = sim_node
    robot = load_robot("g1")
    start = float(robot.q_initial[7 + robot.joint_names.index(ELBOW)])
    listener = Listener()
    try:
        assert listener.wait_for("/joint_states") is not None, log.read_text()[-2000:]
        assert listener.joint(ELBOW) == pytest.approx(start, abs=0.02)
        deadline = time.monotonic() + 20
        while listener.publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
            listener.spin_for(0.1)

        # Rejected (last point still moving, rule R3): not executed, logged.
        listener.publisher.publish(elbow_move(robot, -0.6, 1.0, end_velocity=0.5))
        listener.spin_for(2.0)
        assert listener.joint(ELBOW) == pytest.approx(start, abs=0.02)
        text = log.read_text()
        assert "trajectory rejected" in text and "R3" in text and "not executed" in text, text[-2000:]

        # Accepted: the elbow arrives at its target.
        listener.publisher.publish(elbow_move(robot, -0.6, 1.0))
        listener.spin_for(2.5)
        assert listener.joint(ELBOW) == pytest.approx(start - 0.6, abs=0.03)
        assert "trajectory accepted" in log.read_text()

        # The other outputs: sim time, base pose, diagnostics (upright, counts, real time).
        clock = listener.latest["/clock"].clock
        assert clock.sec + clock.nanosec * 1e-9 > 3.0
        assert 0.5 < listener.latest["/odom"].pose.pose.position.z < 1.0
        listener.spin_for(1.2)
        status = listener.wait_for("/diagnostics")
        values = {kv.key: kv.value for kv in status.values}
        assert status.name == "moscale_sim_node: physics" and values["upright"] == "true", values
        assert values["trajectories_accepted"] == "1" and values["trajectories_rejected"] == "1"
        assert float(values["real_time_factor"]) >= 0.9, values
    finally:
        listener.node.destroy_node()
    assert process.poll() is None
