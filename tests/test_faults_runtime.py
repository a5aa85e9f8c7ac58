"""Faults while the node runs, on real node processes over DDS:

* nobody subscribes to the controller topic: goals still succeed;
* a client process dies (SIGKILL) mid-goal: the goal still ends, the node serves the next client;
* commands faster than ``max_command_rate``: the excess is refused with a message, every goal ends;
* a model whose output cannot be turned into a valid trajectory (NaN decoder weights): nothing is
  published, the failure is reported in the goal result and the log, the node stays up.

The clients are :class:`SoakClient` of scripts/fuzz_soak.py (no controller-topic subscription; it
records every goal's terminal status and message and the node's /diagnostics).
"""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures_ros import wait_until
from moscale_ros.msg import MotionPlan
from trajectory_msgs.msg import JointTrajectory

from moscale_ros.checkpoint import load_checkpoint, save_checkpoint
from moscale_ros.node.launcher import NodeProcess

ROOT = Path(__file__).resolve().parents[1]
NO_CONTROLLER = "/no_controller/joint_trajectory"
BROKEN_CONTROLLER = "/broken_model/joint_trajectory"
RATE, BURST = 4.0, 4


def _soak_module():
    spec = importlib.util.spec_from_file_location("fuzz_soak", ROOT / "scripts" / "fuzz_soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _diverged_checkpoint(untrained_generator: str, path: Path) -> str:
    """The untrained generator with NaN weights in the decoder's last layer: it loads, but every
    motion it makes is NaN."""
    checkpoint = load_checkpoint(untrained_generator)
    tokenizer = checkpoint.states["tokenizer"]
    last = sorted(k for k in tokenizer if k.startswith("decoder") and k.endswith("weight"))[-1]
    tokenizer[last] = torch.full_like(tokenizer[last], float("nan"))
    save_checkpoint(path, checkpoint.kind, checkpoint.states, checkpoint.configs, checkpoint.extra)
    return str(path)


@pytest.fixture(scope="module")
def nodes(ros, untrained_generator, tmp_path_factory):
    """Two node processes started together, and a SoakClient of each: ``faults_node`` (rate limit
    4/s, burst 4; controller topic nobody listens to) and ``broken_model`` (the diverged model)."""
    folder = tmp_path_factory.mktemp("runtime_faults")
    common = {"device": "cpu", "warmup": False, "playback_rate": 0.0, "diagnostics_period": 0.2}
    faults = NodeProcess(
        {**common, "checkpoint": untrained_generator, "controller_topic": NO_CONTROLLER,
         "max_command_rate": RATE, "command_burst": BURST},
        remaps=[("__node", "faults_node")], log_path=folder / "faults_node.log",
    ).start()  # fmt: skip
    broken = NodeProcess(
        {**common, "checkpoint": _diverged_checkpoint(untrained_generator, folder / "diverged.safetensors"),
         "controller_topic": BROKEN_CONTROLLER},
        remaps=[("__node", "broken_model")], log_path=folder / "broken_model.log",
    ).start()  # fmt: skip
    soak = _soak_module()
    clients = {"faults": soak.SoakClient("/faults_node", window=16), "broken": soak.SoakClient("/broken_model", 16)}
    try:
        for name, process in (("faults", faults), ("broken", broken)):
            assert clients[name].wait_ready(120.0), process.log()[-3000:]
        yield {"faults": (faults, clients["faults"]), "broken": (broken, clients["broken"])}
    finally:
        for client in clients.values():
            client.close()
        for process in (faults, broken):
            process.interrupt()
        for process in (faults, broken):
            assert process.stop() == 0, process.log()[-3000:]
            assert "Traceback" not in process.log(), process.log()[-3000:]


def _run_goals(client, goals: list[tuple[str, float]], timeout: float = 60.0) -> list[dict]:
    """Send ``(text, duration)`` goals back to back and wait until each has ended; their records."""
    first = max(client.goals, default=0) + 1
    indices = list(range(first, first + len(goals)))
    for index, (text, duration) in zip(indices, goals):
        client.send_goal(index, "test", text, duration, 1)
    deadline = time.monotonic() + timeout
    while client.unfinished() and time.monotonic() < deadline:
        client.rerequest_results(after_s=3.0)  # a lost result response is asked for again
        time.sleep(0.02)
    return [dict(client.goals[i]) for i in indices]


def _counter(client, name: str) -> int:
    return int(client.latest_diagnostics().get(name, 0))


def _log_time(log: str, needle: str) -> float | None:
    """The ROS timestamp (s) of the first log line containing ``needle``."""
    for line in log.splitlines():
        if needle in line:
            match = re.match(r"\[\w+\] \[(\d+\.\d+)\]", line)
            return float(match.group(1)) if match else None
    return None


# ----------------------------------------------------------------------------------- no controller


def test_goals_succeed_with_no_subscriber_on_the_controller_topic(nodes):
    node, client = nodes["faults"]
    assert client.node.count_subscribers(NO_CONTROLLER) == 0
    assert client.node.count_publishers(NO_CONTROLLER) == 1
    time.sleep(1.0 / RATE)
    (record,) = _run_goals(client, [("wave the right hand", 2.0)])
    assert record["status"] == "succeeded", record
    # 2 s at 50 Hz, + half of each 0.5 s ease (from and to rest), + a lead-in of at most start_lead (0.25 s)
    assert 95 <= record["final_points"] <= 126 + 13
    assert client.node.count_subscribers(NO_CONTROLLER) == 0
    assert node.alive()


# --------------------------------------------------------------------------------- dying client

DOOMED_CLIENT = """
import os, signal, sys, time, rclpy
from rclpy.action import ActionClient
from moscale_ros.action import GenerateMotion
rclpy.init()
node = rclpy.create_node("doomed_client")
client = ActionClient(node, GenerateMotion, "/faults_node/generate")
assert client.wait_for_server(timeout_sec=60.0)
for _ in range(15):  # let the feedback and result subscriptions match the server's publishers
    rclpy.spin_once(node, timeout_sec=0.1)
def feedback(msg):  # the first plan: the client dies on the spot (SIGKILL to itself), nothing cleaned up
    plan = msg.feedback.plan
    print("FEEDBACK", plan.request_id, plan.scale_index, plan.num_scales, time.time(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
client.send_goal_async(GenerateMotion.Goal(text="walk in a circle", duration=9.8, seed=3), feedback_callback=feedback)
while True:
    rclpy.spin_once(node, timeout_sec=0.1)
"""


def test_a_client_that_dies_mid_goal_leaves_the_node_serving(nodes):
    """The client SIGKILLs itself in the callback of the first coarse plan: the goal still runs to its
    end (the final plan comes after the death), its result is dropped, the next client is served. (The
    client kills itself so that the death follows the plan's arrival at once, with no delay of this
    process in between.)"""
    node, client = nodes["faults"]
    time.sleep(1.0 / RATE)
    received = _counter(client, "goals_received")
    doomed = subprocess.Popen([sys.executable, "-c", DOOMED_CLIENT], stdout=subprocess.PIPE, text=True)
    try:
        output, _ = doomed.communicate(timeout=90.0)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert doomed.returncode == -signal.SIGKILL, output
    _, request_id, scale, num_scales, killed_at = next(line for line in output.splitlines()
                                                       if line.startswith("FEEDBACK")).split()  # fmt: skip
    assert int(scale) == 1 and int(num_scales) >= 2
    killed_at = float(killed_at)
    ended = f"goal {request_id[:8]} succeeded"
    assert node.wait_for_log(ended, 60.0), node.log()[-3000:]
    final = _log_time(node.log(), f"[{request_id[:8]}] scale {num_scales}/{num_scales}")
    assert final is not None and final > killed_at, "the goal was not in progress when its client died"
    assert wait_until(lambda: _counter(client, "goals_received") >= received + 1, 5.0)
    assert wait_until(lambda: _counter(client, "goals_active") == 0, 5.0), client.latest_diagnostics()
    (record,) = _run_goals(client, [("bow politely", 2.0)])
    assert record["status"] == "succeeded", record
    assert node.alive()


# -------------------------------------------------------------------------------------- rate limit


def test_commands_beyond_the_rate_limit_are_refused_and_every_goal_ends(nodes):
    node, client = nodes["faults"]
    time.sleep(1.5)  # a full bucket
    before = _counter(client, "refused_rate_limited")
    records = _run_goals(client, [(f"walk forward {i}", 2.0) for i in range(10)])
    outcomes = [(r["status"], r["message"][:80]) for r in records]
    assert all(r["status"] in ("succeeded", "aborted", "rejected") and r["message"] for r in records), outcomes
    refusal = f"more than max_command_rate={RATE:g} commands/s (command_burst={BURST})"
    limited = [r for r in records if refusal in r["message"]]
    passed = [r for r in records if r not in limited]
    assert len(passed) >= BURST and len(limited) >= 3, [r["message"] for r in records]
    assert all(r["status"] == "rejected" for r in limited)  # at the goal callback, reason on ~/rejections
    assert all(r["status"] == "succeeded" or "preempted by request" in r["message"] for r in passed)
    assert wait_until(lambda: _counter(client, "refused_rate_limited") == before + len(limited), 5.0)

    time.sleep(1.5)
    before = _counter(client, "refused_rate_limited")
    for i in range(10):  # the same limit holds on the topic, shared with the action
        client.publish(f"nod {i}")
    assert wait_until(lambda: _counter(client, "refused_rate_limited") >= before + 3, 10.0), client.latest_diagnostics()
    assert node.wait_for_log("refused: topic command over the rate limit: more than max_command_rate=4", 5.0)
    # two bursts of refusals, logged at most once a second: one line per burst (two if one straddles a second)
    assert 2 <= node.log().count("over the rate limit") <= 4, node.log()[-3000:]
    time.sleep(1.5)
    (record,) = _run_goals(client, [("raise both hands", 2.0)])
    assert record["status"] == "succeeded", record


# ------------------------------------------------------------------------------------ broken model


def test_an_invalid_trajectory_is_never_published_and_the_failure_is_reported(nodes):
    node, client = nodes["broken"]
    plans, trajectories = [], []
    subscriptions = [
        client.node.create_subscription(MotionPlan, "/broken_model/plan", plans.append, 10),
        client.node.create_subscription(JointTrajectory, BROKEN_CONTROLLER, trajectories.append, 10),
    ]
    try:
        assert wait_until(lambda: client.node.count_publishers(BROKEN_CONTROLLER) == 1, 10.0)
        (record,) = _run_goals(client, [("wave the right hand", 2.0)])
        assert record["status"] == "aborted", record
        assert re.search(r"scale 1/\d+: the generated motion cannot be retargeted: .*NaN", record["message"]), record
        assert record["final_points"] == 0
        client.publish("walk forward")
        assert node.wait_for_log("('walk forward') failed: request", 10.0), node.log()[-2000:]
        time.sleep(0.5)
        assert plans == [] and trajectories == []
        diagnostics = client.latest_diagnostics()
        assert diagnostics["_message"] == "ready" and node.alive()
        # garbage-collector passes since start-up are timed (moscale_common/collector.py)
        assert int(diagnostics["gc_passes"]) > 0 and float(diagnostics["gc_pause_max_ms"]) > 0.0, diagnostics
    finally:
        for subscription in subscriptions:
            client.node.destroy_subscription(subscription)
