"""The node's Fast DDS profile (moscale_ros/node/transport.py, config/fastdds.xml): when it applies,
and that real Fast DDS loads it (a 16 MB shared-memory segment for the writer, no parse error) and
carries a 450 kB trajectory to a reader on the default profile, as a controller would be."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from moscale_common.paths import resource
from moscale_ros.node.launcher import NodeProcess
from moscale_ros.node.transport import PROFILE, SHARED_MEMORY, remove_dead_shared_memory, use_node_profile

SEGMENT_BYTES = 16 * 1024 * 1024


def test_the_profile_is_used_unless_the_user_chose_one_or_another_middleware():
    environ: dict[str, str] = {}
    assert use_node_profile(environ) == resource(PROFILE)
    assert environ == {"FASTDDS_DEFAULT_PROFILES_FILE": str(resource(PROFILE))}
    assert resource(PROFILE).is_file()
    for chosen in (
        {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"},
        {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"},
        {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
    ):
        environ = dict(chosen)
        assert use_node_profile(environ) is None
        assert environ == chosen  # left alone
    environ = {"RMW_IMPLEMENTATION": "rmw_fastrtps_dynamic_cpp"}
    assert use_node_profile(environ) == resource(PROFILE)


READER = textwrap.dedent(
    """
    import time, rclpy
    from rclpy.node import Node
    from trajectory_msgs.msg import JointTrajectory
    rclpy.init()
    node = Node("transport_reader")
    got = []
    node.create_subscription(JointTrajectory, "/transport_probe", lambda m: got.append(len(m.points)), 10)
    deadline = time.time() + 40
    while not got and time.time() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print("points", got[0] if got else 0, flush=True)
    """
)

WRITER = textwrap.dedent(
    """
    import os, time, rclpy
    from rclpy.node import Node
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    def segments():
        return {n for n in os.listdir("/dev/shm") if n.startswith("fastdds_")
                and os.path.getsize(os.path.join("/dev/shm", n)) >= SEGMENT_BYTES}
    before = segments()
    rclpy.init()
    node = Node("transport_writer")
    print("new_segments", len(segments() - before), flush=True)
    pub = node.create_publisher(JointTrajectory, "/transport_probe", 10)
    matched = published = 0
    msg = JointTrajectory(joint_names=[f"j{i}" for i in range(29)])
    for n in range(630):  # about 450 kB, a 6 s plan at 50 Hz with its lead-in
        msg.points.append(JointTrajectoryPoint(positions=[0.1] * 29, velocities=[0.0] * 29, accelerations=[0.0] * 29))
    deadline = time.time() + 40
    while time.time() < deadline:
        if pub.get_subscription_count():
            matched = 1
            pub.publish(msg)
            published += 1
        time.sleep(0.2)
        if os.environ.get("STOP_FILE") and os.path.exists(os.environ["STOP_FILE"]):
            break
    print("matched", matched, "published", published, flush=True)
    """
).replace("SEGMENT_BYTES", str(SEGMENT_BYTES))


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this machine")
def test_fast_dds_loads_the_profile_and_carries_a_large_trajectory(tmp_path):
    base = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    base.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    base.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    writer_env = dict(base, STOP_FILE=str(tmp_path / "stop"))
    assert use_node_profile(writer_env) is not None
    reader = subprocess.Popen([sys.executable, "-c", READER], env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    writer = subprocess.Popen([sys.executable, "-c", WRITER], env=writer_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        read_out, read_err = reader.communicate(timeout=60)
    finally:
        (tmp_path / "stop").touch()
        write_out, write_err = writer.communicate(timeout=60)
    assert "points 630" in read_out, f"writer: {write_out}\n{read_err[-2000:]}"
    assert "new_segments 1" in write_out, write_err[-2000:]  # the writer's 16 MB segment: the profile applies
    assert "Error" not in write_err, write_err[-2000:]  # Fast DDS loaded it without complaint


PARTICIPANT = (
    "import rclpy, time; rclpy.init(); node = rclpy.create_node('shm_owner'); print('up', flush=True); time.sleep(60)"
)


def _start_participant(env: dict[str, str]) -> tuple[subprocess.Popen, set[str]]:
    """A process with a ROS 2 participant on the node's profile; it and the Fast DDS files it made."""
    before = set(os.listdir(SHARED_MEMORY))
    process = subprocess.Popen([sys.executable, "-c", PARTICIPANT], env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "up"
    time.sleep(0.5)
    return process, {n for n in set(os.listdir(SHARED_MEMORY)) - before if n.startswith(("fastdds_", "sem.fastdds_"))}


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this machine")
def test_what_a_killed_participant_left_in_shared_memory_is_removed_and_a_live_one_s_is_kept():
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    use_node_profile(env)
    killed, killed_files = _start_participant(env)
    alive, alive_files = _start_participant(env)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(10.0)
        segments = {n for n in killed_files if not n.startswith(("fastdds_port", "sem."))}
        assert any(os.path.getsize(SHARED_MEMORY / n) >= SEGMENT_BYTES for n in segments), killed_files  # 16 MB
        assert remove_dead_shared_memory() >= 2  # at least its segment and a port
        left = set(os.listdir(SHARED_MEMORY))
        assert not (segments | {f"{n}_el" for n in segments}) & left, sorted(segments & left)
        assert alive_files and alive_files <= left, sorted(alive_files - left)  # locked by a live owner
        assert remove_dead_shared_memory(Path("/nonexistent")) == 0
    finally:
        killed.kill()
        alive.send_signal(signal.SIGINT)  # a clean exit frees its own files
        for process in (killed, alive):
            try:
                process.wait(10.0)
            except subprocess.TimeoutExpired:
                process.kill()


def _fast_dds_files() -> set[str]:
    return {n for n in os.listdir(SHARED_MEMORY) if n.startswith(("fastdds_", "sem.fastdds_"))}


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this machine")
@pytest.mark.parametrize("managed", [False, True], ids=["node", "lifecycle_node"])
def test_a_node_that_exits_cleanly_leaves_nothing_in_shared_memory(managed, ros, untrained_generator, tmp_path):
    """The node frees its 17 MB segment at exit only once its action server is destroyed
    (MoScaleNode.destroy_node): before, each start and stop of the plain node left one in /dev/shm
    (the lifecycle node, never configured here, did not)."""
    before = _fast_dds_files()
    params = {"checkpoint": untrained_generator, "device": "cpu", "warmup": False}
    name = [("__node", f"shm_node_{int(managed)}")]
    node = NodeProcess(params, managed=managed, remaps=name, log_path=tmp_path / "node.log").start()
    try:
        ready = "unconfigured" if managed else "ready:"
        assert node.wait_for_log(ready, 60.0), node.log()[-2000:]
        made = _fast_dds_files() - before
        segments = {n for n in made if os.path.getsize(SHARED_MEMORY / n) >= SEGMENT_BYTES}
        assert segments, sorted(made)  # the node's own 16 MB segment (its profile)
    finally:
        assert node.stop() == 0, node.log()[-2000:]
    assert not made & _fast_dds_files(), sorted(made & _fast_dds_files())
