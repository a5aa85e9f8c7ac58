"""With ``on_startup_error: stay_up`` start-up failures leave the node up and explaining itself: a
missing checkpoint, an unknown robot and an invalid parameter value. Each goal is rejected with the
start-up error (its reason on ``~/rejections``); a topic command is logged and nothing is published;
the process never crashes.
(The default, ``exit``, ends the process with code 2: tests/test_faults_startup.py.)
"""

from __future__ import annotations

import time

import pytest
from std_msgs.msg import String

from moscale_ros.node.client import MoScaleClient
from moscale_ros.node.launcher import NodeProcess

CASES = {
    "missing_checkpoint": ({"checkpoint": "/nonexistent/moscale-missing.safetensors"},
                           "/nonexistent/moscale-missing.safetensors: checkpoint not found"),
    "unknown_robot": ({"robot": "nao_v9"}, "unknown robot 'nao_v9'; available robots: g1"),
    "bad_parameter": ({"control_rate": "fast", "guidance_scale": 2.0},
                      "bad parameter: parameter.control_rate: expected float, got str 'fast'"),
}  # fmt: skip


@pytest.fixture(scope="module")
def nodes(ros, untrained_generator, tmp_path_factory):
    """One node process per case, started together under different node names, and a client of each."""
    logs = tmp_path_factory.mktemp("nodes")
    processes = {}
    for name, (params, _) in CASES.items():
        settings = {
            "checkpoint": untrained_generator,
            "device": "cpu",
            "warmup": False,
            "on_startup_error": "stay_up",
            **params,
        }
        processes[name] = NodeProcess(settings, remaps=[("__node", name)], log_path=logs / f"{name}.log").start()
    clients = {name: MoScaleClient(f"/{name}") for name in CASES}
    yield {name: (processes[name], clients[name]) for name in CASES}
    for client in clients.values():
        client.close()
    for process in processes.values():
        process.interrupt()  # all at once; stop() then waits for each
    for process in processes.values():
        assert process.stop() == 0, process.log()[-3000:]
        assert "Traceback" not in process.log(), process.log()[-3000:]


@pytest.mark.parametrize("case", list(CASES))
def test_start_up_error_is_reported_and_the_node_stays_up(nodes, case):
    (node, client), (_, expected) = nodes[case], CASES[case]
    assert node.wait_for_log("not ready, every command will be refused", 60.0), node.log()[-3000:]
    assert expected in node.log()
    assert client.wait_ready(30.0), node.log()[-3000:]
    outcome = client.generate("wave the right hand", duration=3.0, timeout=20.0)
    assert outcome.status == "rejected"
    assert "the node is not ready" in outcome.message and expected in outcome.message
    client.command_pub.publish(String(data="wave the right hand"))
    assert node.wait_for_log("command 'wave the right hand' refused: the node is not ready", 10.0)
    time.sleep(0.3)
    assert client.plans == [] and client.trajectories == []
    assert node.alive()
    if case == "bad_parameter":  # a misspelt name is reported too
        assert "ignoring unknown parameter(s) ['guidance_scale']" in node.log()
