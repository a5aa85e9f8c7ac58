"""Reliability, round two, with the real ``moscale_node`` process (console script, shipped
config/moscale.yaml, the small untrained generator):

* every hostile setting of the adversarial pass, at start-up: exit code 2, one ``start-up failed:``
  line naming the value and its range, no traceback; with ``on_startup_error: stay_up`` the node
  stays up instead and refuses commands;
* signals: SIGTERM 1 s into start-up and SIGINT during warm-up end the process within 2 s with
  exit code 0;
* shutdown: SIGTERM in the middle of a goal, and SIGINT when idle, exit 0 with no ERROR line, no
  traceback and no "Failed to publish log message to rosout".
"""

from __future__ import annotations

import signal
import time

import pytest

from moscale_common.paths import resource
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT
from moscale_ros.node.client import MoScaleClient
from moscale_ros.node.launcher import NodeProcess
from moscale_ros.node.startup import STARTUP_FAILURE_EXIT

CASES = {
    "bad_controller_topic": ({"controller_topic": "bad topic!"},
                             "controller_topic: 'bad topic!' is not a valid topic name"),
    "bad_joint_state_topic": ({"joint_state_topic": "/a//b"}, "joint_state_topic: '/a//b' is not a valid topic name"),
    "tiny_temperature": ({"temperature": 1e-300},
                         "bad parameter: temperature: 1e-300 is outside [0.05, 10] (or -1: the model's, 0: greedy)"),
    "huge_guidance": ({"guidance": 1e308}, "bad parameter: guidance: 1e+308 is outside [0, 30] (or -1: the model's)"),
    "unbounded_control_rate": ({"control_rate": 1e6}, "bad parameter: control_rate: 1000000.0 is outside [1, 500] Hz"),
    "control_rate_over_the_model": ({"control_rate": 400.0},
                                    "control_rate: 400 Hz x 9.8 s (the longest motion) = 3920 trajectory points, "
                                    "over 2500"),
    "huge_refine_iterations": ({"refine_iterations": [100000]},
                               "bad parameter: refine_iterations: entry 100000 of [100000] is outside [0, 16]"),
    "infinite_playback_rate": ({"playback_rate": float("inf")},
                               "bad parameter: playback_rate: inf is outside [1, 200] Hz (or 0: off)"),
    "tiny_diagnostics_period": ({"diagnostics_period": 1e-9},
                                "bad parameter: diagnostics_period: 1e-09 is outside [0.1, 3600] s (or 0: off)"),
    "huge_limit_tolerance": ({"limit_tolerance": 1e300},
                             "bad parameter: limit_tolerance: 1e+300 is outside [0, 0.01] rad"),
    "huge_max_queue": ({"max_queue": 10**9}, "bad parameter: max_queue: 1000000000 is outside [0, 64]"),
    "checkpoint_is_a_directory": ({"checkpoint": "/"}, "/: not a regular file (a directory)"),
}  # fmt: skip
STAY_UP = ("bad_controller_topic", "tiny_temperature", "control_rate_over_the_model", "checkpoint_is_a_directory")


def _settings(untrained_generator: str, **params) -> dict:
    return {"checkpoint": untrained_generator, "device": "cpu", "warmup": False, **params}


@pytest.fixture(scope="module")
def outcomes(untrained_generator, tmp_path_factory):
    """Every case under ``exit`` and the STAY_UP ones under ``stay_up``, all started together.
    ``{(case, policy): (exit code or None while still up, log)}``; stay-up nodes are stopped with
    SIGTERM after showing they stayed up."""
    folder = tmp_path_factory.mktemp("startup_limits")
    processes = {}
    for case, (params, _) in CASES.items():
        for policy in ("exit", "stay_up") if case in STAY_UP else ("exit",):
            settings = _settings(untrained_generator, on_startup_error=policy, **params)
            name = f"{case}_{policy}"
            processes[(case, policy)] = NodeProcess(settings, remaps=[("__node", name)], log_path=folder / name).start()
    results = {}
    try:
        for key, process in processes.items():
            if key[1] == "exit":
                results[key] = (process.process.wait(timeout=120), process.log())
                continue
            assert process.wait_for_log("not ready, every command will be refused", 120.0), process.log()[-3000:]
            time.sleep(1.0)
            still_up = process.alive()
            process.signal(signal.SIGTERM)
            code = process.process.wait(timeout=10)
            results[key] = (None if still_up else code, process.log(), code)
    finally:
        for process in processes.values():
            process.stop(timeout=5.0)
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_setting_at_start_up_exits_2_with_one_line(outcomes, case):
    code, log = outcomes[(case, "exit")]
    expected = CASES[case][1]
    assert code == STARTUP_FAILURE_EXIT == 2, log[-3000:]
    lines = [line for line in log.splitlines() if "start-up failed:" in line]
    assert len(lines) == 1 and f"start-up failed: {expected}" in lines[0], log[-3000:]
    assert "Traceback" not in log and "ready:" not in log, log[-3000:]


@pytest.mark.parametrize("case", STAY_UP)
def test_stay_up_covers_every_kind_of_start_up_failure(outcomes, case):
    still_up, log, code = outcomes[(case, "stay_up")]
    assert still_up is None, f"exited with {still_up} although on_startup_error is stay_up:\n{log[-3000:]}"
    assert f"start-up failed: {CASES[case][1]}" in log and f"every command will be refused: {CASES[case][1]}" in log
    assert code == 0 and "Traceback" not in log and "exception was never retrieved" not in log, log[-3000:]


def test_a_stay_up_node_with_a_bad_setting_refuses_goals_with_the_reason(ros, untrained_generator, tmp_path):
    settings = _settings(untrained_generator, on_startup_error="stay_up", playback_rate=float("inf"))
    with NodeProcess(settings, remaps=[("__node", "stay_up_goal")], log_path=tmp_path / "node.log") as node:
        client = MoScaleClient("/stay_up_goal")
        try:
            assert client.wait_ready(60.0), node.log()[-3000:]
            outcome = client.generate("wave the right hand", duration=2.0, timeout=20.0)
        finally:
            client.close()
        assert outcome.status == "aborted" and "playback_rate: inf is outside [1, 200] Hz" in outcome.message
        assert node.stop() == 0 and "Traceback" not in node.log()


def _model() -> str:
    """The shipped model (its load and warm-up take seconds: the realistic start-up to interrupt)."""
    path = resource(DEFAULT_CHECKPOINT)
    return str(path) if path.is_file() else ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_1_s_into_start_up_ends_the_process_within_2_s(untrained_generator, tmp_path, signum):
    checkpoint = _model() or untrained_generator
    node = NodeProcess({"checkpoint": checkpoint, "device": "cpu"}, log_path=tmp_path / "node.log").start()
    try:
        time.sleep(1.0)
        assert node.alive(), node.log()[-3000:]
        tick = time.monotonic()
        node.signal(signum)
        code = node.process.wait(timeout=10)
        took = time.monotonic() - tick
    finally:
        node.stop(timeout=5.0)
    assert code == 0 and took < 2.0, (code, took, node.log()[-3000:])
    assert "Traceback" not in node.log() and "ready:" not in node.log()


def test_sigterm_during_the_warm_up_ends_the_process_within_2_s(untrained_generator, tmp_path):
    checkpoint = _model() or untrained_generator
    node = NodeProcess({"checkpoint": checkpoint, "device": "cpu"}, log_path=tmp_path / "node.log").start()
    try:
        assert node.wait_for_log("warming up", 120.0), node.log()[-3000:]
        tick = time.monotonic()
        node.signal(signal.SIGTERM)
        code = node.process.wait(timeout=10)
        took = time.monotonic() - tick
    finally:
        node.stop(timeout=5.0)
    assert code == 0 and took < 2.0, (code, took, node.log()[-3000:])
    assert "Traceback" not in node.log()


def _assert_clean_shutdown(log: str) -> None:
    assert "[ERROR]" not in log and "[FATAL]" not in log, log[-3000:]
    assert "Traceback" not in log and "Failed to publish log message to rosout" not in log, log[-3000:]
    assert "exception was never retrieved" not in log, log[-3000:]


def test_sigterm_in_the_middle_of_a_goal_shuts_down_cleanly(ros, untrained_generator, tmp_path):
    settings = _settings(untrained_generator, refine_iterations=[16], min_run_time=0.0)
    node = NodeProcess(settings, remaps=[("__node", "mid_goal")], log_path=tmp_path / "node.log").start()
    client = MoScaleClient("/mid_goal")
    try:
        assert client.wait_ready(60.0), node.log()[-3000:]
        goal = client.send_goal("walk forward slowly", duration=9.0, seed=1)
        deadline = time.monotonic() + 60.0
        while not goal.feedback and time.monotonic() < deadline:
            time.sleep(0.01)
        assert goal.feedback, node.log()[-3000:]
        node.signal(signal.SIGTERM)
        code = node.process.wait(timeout=10)
    finally:
        client.close()
        node.stop(timeout=5.0)
    assert code == 0
    _assert_clean_shutdown(node.log())


def test_sigint_when_idle_shuts_down_cleanly(untrained_generator, tmp_path):
    node = NodeProcess(_settings(untrained_generator), remaps=[("__node", "idle")], log_path=tmp_path / "node.log")
    node.start()
    try:
        assert node.wait_for_log("ready:", 60.0), node.log()[-3000:]
        time.sleep(0.5)
        node.signal(signal.SIGINT)
        code = node.process.wait(timeout=10)
    finally:
        node.stop(timeout=5.0)
    assert code == 0
    _assert_clean_shutdown(node.log())
