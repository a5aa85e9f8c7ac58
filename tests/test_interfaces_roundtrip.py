"""Two-process round trip of the project's ROS 2 interfaces (MotionPlan, GenerateMotion).

A child process (real rclpy, own domain from fixtures_ros) echoes every MotionPlan it receives
and serves the GenerateMotion action by turning the goal into three feedback plans and a result.
The parent checks every field survives serialisation across processes, in both directions.
"""

from __future__ import annotations

import array
import subprocess
import sys
import textwrap
import time

import pytest
import rclpy
from builtin_interfaces.msg import Duration
from moscale_ros.action import GenerateMotion
from moscale_ros.msg import MotionPlan
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from trajectory_msgs.msg import JointTrajectoryPoint

ECHO_SERVER = textwrap.dedent(
    """
    import time
    import rclpy
    from rclpy.action import ActionServer, CancelResponse
    from rclpy.executors import MultiThreadedExecutor
    from moscale_ros.action import GenerateMotion
    from moscale_ros.msg import MotionPlan

    rclpy.init()
    node = rclpy.create_node("interface_echo")
    echo = node.create_publisher(MotionPlan, "/interface_test/plan_echo", 10)
    node.create_subscription(MotionPlan, "/interface_test/plan", echo.publish, 10)

    def execute(goal_handle):
        goal = goal_handle.request
        for k in (1, 2, 3):
            plan = MotionPlan(command=goal.text, scale_index=k, num_scales=3, is_final=k == 3)
            plan.request_id = f"seed-{goal.seed}"
            plan.latency = goal.duration * k
            goal_handle.publish_feedback(GenerateMotion.Feedback(plan=plan))
            time.sleep(0.02)
        goal_handle.succeed()
        return GenerateMotion.Result(success=True, message="echo: " + goal.text, final_plan=plan)

    ActionServer(node, GenerateMotion, "/interface_test/generate", execute,
                 cancel_callback=lambda request: CancelResponse.ACCEPT)
    print("ready", flush=True)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    deadline = time.monotonic() + 60.0
    while rclpy.ok() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    """
)


def _sample_plan() -> MotionPlan:
    plan = MotionPlan()
    plan.header.stamp.sec = 1_700_000_123
    plan.header.stamp.nanosec = 456_789
    plan.header.frame_id = "world"
    plan.request_id = "req-42"
    plan.command = "wave the right hand — ünïcödé"
    plan.scale_index = 2
    plan.num_scales = 4
    plan.is_final = False
    plan.latency = 0.0625
    plan.trajectory.header.stamp = plan.header.stamp
    plan.trajectory.joint_names = ["left_hip_pitch_joint", "right_elbow_joint"]
    for k in range(3):
        point = JointTrajectoryPoint()
        point.positions = array.array("d", [0.1 * k, -0.2 * k])
        point.velocities = array.array("d", [1.0, -1.0])
        point.accelerations = array.array("d", [0.0, 0.5])
        point.time_from_start = Duration(sec=0, nanosec=20_000_000 * (k + 1))
        plan.trajectory.points.append(point)
    plan.human_fps = 20.0
    plan.human_joint_names = ["pelvis", "left_hip"]
    plan.human_positions = array.array("f", [0.0, 0.9, 0.0, 0.1, 0.85, 0.0])
    return plan


@pytest.fixture(scope="module")
def ros_node(ros):
    child = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    node = rclpy.create_node("interface_test_client")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    child.terminate()
    child.wait(timeout=10)


def _spin_until(executor, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def test_motion_plan_crosses_two_processes_unchanged(ros_node):
    node, executor = ros_node
    received: list[MotionPlan] = []
    publisher = node.create_publisher(MotionPlan, "/interface_test/plan", 10)
    node.create_subscription(MotionPlan, "/interface_test/plan_echo", received.append, 10)
    assert _spin_until(executor, lambda: publisher.get_subscription_count() > 0, 15.0), "echo never subscribed"
    sent = _sample_plan()
    # Discovery of the echo's publisher back to us can lag the subscription match: resend until one arrives.
    deadline = time.monotonic() + 15.0
    while not received and time.monotonic() < deadline:
        publisher.publish(sent)
        _spin_until(executor, lambda: bool(received), 0.5)
    assert received, "no MotionPlan came back from the echo process"
    got = received[0]
    assert got == sent
    assert got.command == "wave the right hand — ünïcödé"
    assert list(got.trajectory.points[2].positions) == pytest.approx([0.2, -0.4])
    assert got.trajectory.points[2].time_from_start.nanosec == 60_000_000
    assert list(got.human_positions) == pytest.approx([0.0, 0.9, 0.0, 0.1, 0.85, 0.0])


def test_generate_motion_action_round_trip(ros_node):
    node, executor = ros_node
    client = ActionClient(node, GenerateMotion, "/interface_test/generate")
    assert client.wait_for_server(timeout_sec=15.0), "action server not discovered"
    feedback: list[MotionPlan] = []
    goal = GenerateMotion.Goal(text="bow politely", duration=1.5, seed=7)
    send_future = client.send_goal_async(goal, feedback_callback=lambda msg: feedback.append(msg.feedback.plan))
    assert _spin_until(executor, send_future.done, 10.0)
    goal_handle = send_future.result()
    assert goal_handle.accepted
    result_future = goal_handle.get_result_async()
    assert _spin_until(executor, result_future.done, 10.0)
    result = result_future.result().result
    assert result.success is True
    assert result.message == "echo: bow politely"
    assert result.final_plan.is_final and result.final_plan.scale_index == 3
    assert result.final_plan.request_id == "seed-7"
    assert result.final_plan.latency == pytest.approx(4.5)
    _spin_until(executor, lambda: len(feedback) == 3, 2.0)
    assert [plan.scale_index for plan in feedback] == [1, 2, 3]
    assert [plan.command for plan in feedback] == ["bow politely"] * 3
