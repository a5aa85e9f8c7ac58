"""The ROS 2 conventions a robot stack expects of moscale_node, each through real node processes over
DDS, talking to this test process:

* the G1 split over two controllers, legs + waist and arms (config/controllers/moscale_g1_split.yaml,
  the node's side of the worked Gazebo setup): each controller topic receives exactly its joints;
* a command with nothing running starts from the measured pose on ``/joint_states``;
* ``robot_description`` taken from the ``/robot_description`` topic (transient local);
* goals the node will not run are rejected at the goal callback, the reason on ``~/rejections``;
* the managed (lifecycle) node driven through ``~/change_state`` and ``~/get_state``.

One node process serves the first four (module-scoped), a second one the lifecycle.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticStatus
from fixtures_ros import call_service, wait_until
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from moscale_ros.node import convert
from moscale_ros.node.client import MoScaleClient
from moscale_ros.node.controllers import parse_controllers
from moscale_ros.node.launcher import NodeProcess
from moscale_ros.node.measured import MeasuredJointState
from retarget.robot import load_robot

ROOT = Path(__file__).resolve().parents[1]
SPLIT_PARAMS = ROOT / "config" / "controllers" / "moscale_g1_split.yaml"
NODE = "conventions_node"
URDF_NAME = "g1_from_the_topic"
ARMS_TOPIC = "/lifecycle_arms_controller/joint_trajectory"
RATE, BURST = 0.5, 3  # commands/s and burst of the rate limit: a burst of BURST goals meets it
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _split_controllers() -> dict[str, list[str]]:
    return parse_controllers(yaml.safe_load(SPLIT_PARAMS.read_text())["/**"]["ros__parameters"]["controllers"])


class Robot:
    """The test's side of the robot: publishes /robot_description and /joint_states, records the
    controller topics (a real rclpy node spinning in this process)."""

    def __init__(self, topics: list[str]) -> None:
        self.node = rclpy.create_node(f"conventions_robot_{uuid.uuid4().hex[:8]}")
        self.received: dict[str, list[JointTrajectory]] = {topic: [] for topic in topics}
        for topic in topics:
            self.node.create_subscription(JointTrajectory, topic, self.received[topic].append, 50)
        self.description_pub = self.node.create_publisher(String, "/robot_description", LATCHED)
        self.joint_state_pub = self.node.create_publisher(JointState, "/joint_states", 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def publish_joint_state(self, names: list[str], positions_J: np.ndarray) -> None:
        msg = JointState(name=list(names), position=[float(q) for q in positions_J])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.joint_state_pub.publish(msg)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=2.0)
        self.node.destroy_node()


def _g1_urdf_renamed() -> str:
    """The G1's URDF (the robot config's source) with another ``<robot name>``, to recognise it."""
    text = Path(load_robot("g1").source).read_text()
    start = text.index("<robot name=")
    end = text.index(">", start)
    return text[:start] + f'<robot name="{URDF_NAME}"' + text[end:]


@pytest.fixture(scope="module")
def g1():
    return load_robot("g1")


@pytest.fixture(scope="module")
def robot(ros):
    """The robot side, with the URDF latched on /robot_description before any node starts."""
    robot = Robot(list(_split_controllers()))
    robot.description_pub.publish(String(data=_g1_urdf_renamed()))
    yield robot
    robot.close()


@pytest.fixture(scope="module")
def split(robot, untrained_generator, tmp_path_factory, g1):
    """The node with the shipped split parameter file on top of config/moscale.yaml; a client of it."""
    controllers = _split_controllers()
    log = tmp_path_factory.mktemp("conventions") / f"{NODE}.log"
    process = NodeProcess(
        {
            "checkpoint": untrained_generator,
            "device": "cpu",
            "warmup": False,
            "playback_rate": 0.0,
            "max_command_rate": RATE,
            "command_burst": BURST,
        },
        extra_params_files=[SPLIT_PARAMS],
        remaps=[("__node", NODE)],
        log_path=log,
    ).start()
    client = MoScaleClient(f"/{NODE}", controller_topic="/arms_controller/joint_trajectory")
    try:
        assert client.wait_ready(120.0), process.log()[-3000:]
        assert wait_until(lambda: all(robot.node.count_publishers(t) == 1 for t in controllers), 10.0)
        yield process, client, robot, controllers
    finally:
        client.close()
        assert process.stop() == 0, process.log()[-3000:]
        assert "Traceback" not in process.log(), process.log()[-3000:]


@pytest.fixture(scope="module")
def measured_motion(split, g1):
    """One goal sent while the robot stands at a measured pose (not the IK pose): that pose and the
    controller messages of the goal."""
    process, client, robot, _ = split
    measured_J = np.clip(0.2 * np.sin(np.arange(g1.num_joints) + 1.0), g1.lower + 0.05, g1.upper - 0.05)
    assert wait_until(lambda: robot.joint_state_pub.get_subscription_count() > 0, 10.0), process.log()[-2000:]
    order = np.random.default_rng(0).permutation(g1.num_joints)  # by name: any order
    for _ in range(5):
        robot.publish_joint_state([g1.joint_names[i] for i in order], measured_J[order])
        time.sleep(0.05)
    outcome = client.generate("raise both hands", duration=2.0, seed=3, timeout=60.0)
    assert outcome.status == "succeeded", f"{outcome.message}\n{process.log()[-3000:]}"
    return measured_J, outcome


def test_two_controllers_each_receive_exactly_their_joints(split, measured_motion, g1):
    process, _, robot, controllers = split
    _, outcome = measured_motion
    assert set(controllers) == {"/legs_waist_controller/joint_trajectory", "/arms_controller/joint_trajectory"}
    assert sorted(j for joints in controllers.values() for j in joints) == sorted(g1.joint_names)
    # The result says how many trajectories went out; each controller gets every one of them (the
    # last may still be in flight when the result arrives).
    sent = int(re.search(r"(\d+) trajectories sent", outcome.message).group(1))
    assert sent >= 2, outcome.message
    assert wait_until(lambda: all(len(robot.received[t]) >= sent for t in controllers), 10.0)
    for topic, joints in controllers.items():
        for msg in robot.received[topic]:
            assert list(msg.joint_names) == joints, topic
            assert all(len(p.positions) == len(joints) for p in msg.points)
    # Both carry the same trajectories: equal stamps, and together the whole-body final plan.
    legs, arms = (robot.received[t] for t in controllers)
    assert [m.header.stamp for m in legs] == [m.header.stamp for m in arms]
    names, _, positions_NJ, _ = convert.trajectory_arrays(outcome.final_plan.trajectory)
    final_stamp = outcome.final_plan.trajectory.header.stamp
    assert sent == len(outcome.plans), "the final plan came after the motion had ended (a loaded machine?)"
    for topic, joints in controllers.items():
        # A stamp is the control grid time at or before the sending (the lead-in starts there), so
        # two plans sent within one control period share it; a reliable topic keeps their order.
        final = [m for m in robot.received[topic] if m.header.stamp == final_stamp][-1]
        assert final is robot.received[topic][-1], topic
        _, _, part_NJ, _ = convert.trajectory_arrays(final)
        np.testing.assert_array_equal(part_NJ, positions_NJ[:, [names.index(j) for j in joints]])
    assert "controller /legs_waist_controller/joint_trajectory: 15 joints" in process.log()
    assert "controller /arms_controller/joint_trajectory: 14 joints" in process.log()


def test_a_command_with_nothing_running_starts_from_the_measured_pose(split, measured_motion, g1):
    process, _, robot, controllers = split
    measured_J, outcome = measured_motion
    assert "starting from the measured pose on /joint_states" in process.log()
    for topic, joints in controllers.items():
        first = robot.received[topic][0]
        expected = measured_J[[g1.joint_names.index(j) for j in joints]]
        np.testing.assert_allclose(np.asarray(first.points[0].positions), expected, atol=1e-9)
    # the plan's IK pose is elsewhere: the blend, not the IK, put the measured pose first
    plan_first_J = np.asarray(outcome.plans[0].msg.trajectory.points[0].positions)
    np.testing.assert_allclose(plan_first_J, measured_J, atol=1e-9)
    assert np.abs(np.asarray(outcome.final_plan.trajectory.points[-1].positions) - measured_J).max() > 0.05


def test_robot_description_is_taken_from_the_topic(split):
    process, *_ = split
    assert f"robot_description from /robot_description: robot '{URDF_NAME}'" in process.log(), process.log()[-3000:]


def test_invalid_and_rate_limited_goals_are_rejected_with_their_reason(split):
    process, client, _, _ = split
    outcome = client.generate("   ", duration=2.0, timeout=20.0)
    assert outcome.status == "rejected"
    assert "goal rejected: " in outcome.message and "empty" in outcome.message, outcome.message
    outcome = client.generate("wave", duration=600.0, timeout=20.0)
    assert outcome.status == "rejected" and "outside the supported range" in outcome.message, outcome.message
    assert outcome.plans == []
    assert process.wait_for_log("goal ('wave') rejected: ", 5.0)
    rejection = client.rejections[-1].msg
    assert rejection.level == DiagnosticStatus.WARN and rejection.name == f"/{NODE}: action command refused"
    assert {kv.key: kv.value for kv in rejection.values} == {"source": "action", "kind": "invalid", "text": "wave"}
    # The two goals above used two of the BURST tokens (the rate limit comes before validation):
    # of BURST more goals sent at once, at least one is over the limit.
    handles = [client.send_goal(f"nod {i}", duration=1.0) for i in range(BURST)]
    outcomes = [h.wait(60.0) for h in handles]
    limited = [o for o in outcomes if o.status == "rejected"]
    assert limited and all(f"more than max_command_rate={RATE:g} commands/s" in o.message for o in limited), [
        (o.status, o.message) for o in outcomes
    ]
    assert all(o.status in ("succeeded", "aborted") for o in outcomes if o not in limited)


@pytest.fixture(scope="module")
def lifecycle(robot, untrained_generator, tmp_path_factory, g1):
    """The managed node (moscale_lifecycle_node) with one controller for the arms only (given with
    ``-p``) and its URDF from /robot_description, its lifecycle service clients and a MoScale client."""
    name = "conventions_lifecycle"
    arms = "{" + ARMS_TOPIC + ": [" + ", ".join(g1.joint_names[15:]) + "]}"
    process = NodeProcess(
        {"checkpoint": untrained_generator, "device": "cpu", "warmup": False, "playback_rate": 0.0,
         "controllers": arms, "robot_description_topic": "/robot_description"},
        remaps=[("__node", name)], log_path=tmp_path_factory.mktemp("lifecycle") / f"{name}.log", managed=True,
    ).start()  # fmt: skip
    client = MoScaleClient(f"/{name}", controller_topic=ARMS_TOPIC)
    change = client.node.create_client(ChangeState, f"/{name}/change_state")
    get = client.node.create_client(GetState, f"/{name}/get_state")
    try:
        assert change.wait_for_service(timeout_sec=60.0) and get.wait_for_service(timeout_sec=10.0), process.log()
        yield process, client, change, get
    finally:
        client.close()
        assert process.stop() == 0, process.log()[-3000:]
        assert "Traceback" not in process.log(), process.log()[-3000:]


def _state(get) -> str:
    return call_service(get, GetState.Request()).current_state.label


# the primary state each transition ends in when it succeeds
_TARGET_STATE = {
    Transition.TRANSITION_CONFIGURE: "inactive",
    Transition.TRANSITION_ACTIVATE: "active",
    Transition.TRANSITION_DEACTIVATE: "inactive",
    Transition.TRANSITION_CLEANUP: "unconfigured",
    Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "finalized",
}


def _transition(change, get, transition_id: int, timeout: float = 60.0) -> bool:
    """Request one transition; if its answer was lost, the state (asked again) tells whether it ran,
    so a transition is never requested twice."""
    future = change.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
    deadline = time.monotonic() + timeout
    check_at = time.monotonic() + 10.0
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
        if not future.done() and time.monotonic() > check_at:
            if _state(get) == _TARGET_STATE[transition_id]:
                change.remove_pending_request(future)
                return True
            check_at = time.monotonic() + 10.0  # still transitioning: keep waiting for the answer
    assert future.done(), f"no answer from {change.srv_name} within {timeout} s"
    return future.result().success


def test_lifecycle_transitions_through_the_lifecycle_services(lifecycle):
    process, client, change, get = lifecycle
    assert _state(get) == "unconfigured"
    assert wait_until(lambda: client.action.server_is_ready(), 10.0)
    outcome = client.generate("wave", duration=2.0, timeout=20.0)
    assert outcome.status == "rejected" and "not configured" in outcome.message, outcome.message

    assert _transition(change, get, Transition.TRANSITION_CONFIGURE), process.log()[-3000:]
    assert _state(get) == "inactive"
    assert "configured: model and robot loaded" in process.log()
    # start-up objects frozen out of the garbage collector's passes (no 100 ms pauses mid-command)
    assert re.search(r"; [1-9]\d{4,} start-up objects frozen out of the garbage collector's passes", process.log())
    assert f"robot_description from /robot_description: robot '{URDF_NAME}'" in process.log()  # read at configure
    # the joints no controller lists are named at start-up (here: legs and waist)
    assert "15 joint(s) no controller lists, never sent: ['left_hip_pitch_joint', " in process.log()
    outcome = client.generate("wave", duration=2.0, timeout=20.0)
    assert outcome.status == "rejected" and "inactive" in outcome.message, outcome.message

    assert _transition(change, get, Transition.TRANSITION_ACTIVATE)
    assert _state(get) == "active"
    assert client.wait_ready(30.0)
    outcome = client.generate("walk forward", duration=2.0, seed=1, timeout=60.0)
    assert outcome.status == "succeeded", outcome.message
    assert "trajectories sent to the controller" in outcome.message
    arm_joints = list(outcome.final_plan.trajectory.joint_names)[15:]
    assert outcome.trajectories and all(list(r.msg.joint_names) == arm_joints for r in outcome.trajectories)

    # deactivate stops a running motion (as ~/stop does) and refuses what comes after
    handle = client.send_goal("dance energetically", duration=9.0, seed=2)
    assert handle.wait_for_plans(1, timeout=30.0)
    assert _transition(change, get, Transition.TRANSITION_DEACTIVATE)
    assert _state(get) == "inactive"
    assert process.wait_for_log("deactivated: stopping within", 5.0), process.log()[-2000:]
    # aborted if it was still generating ("stopped (deactivate)"), else it had already succeeded
    assert handle.wait(30.0).status in ("aborted", "succeeded")
    assert client.generate("wave", duration=2.0, timeout=20.0).status == "rejected"

    assert _transition(change, get, Transition.TRANSITION_CLEANUP)
    assert _state(get) == "unconfigured"
    assert "cleaned up: model and robot released" in process.log()
    assert _transition(change, get, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    assert _state(get) == "finalized"
    assert State.PRIMARY_STATE_FINALIZED == call_service(get, GetState.Request()).current_state.id


def test_the_measured_state_is_kept_by_name_and_names_what_is_missing():
    measured = MeasuredJointState()
    assert measured.pose(["a", "b"]) == (None, ["a", "b"])
    measured.update(["b", "c"], [0.5, float("nan")], stamp=1.0)  # a NaN is not a measurement
    assert measured.pose(["a", "b", "c"]) == (None, ["a", "c"])
    measured.update(["a", "c"], [0.25, -1.0], stamp=2.0)  # messages may carry any subset
    positions_J, missing = measured.pose(["c", "a", "b"])
    assert missing == [] and positions_J.tolist() == [-1.0, 0.25, 0.5] and measured.stamp == 2.0
