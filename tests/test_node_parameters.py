"""ROS parameter conventions with the real ``moscale_node`` process over DDS:

* the parameter file's ``/**`` key applies under a namespace and a renamed node;
* descriptors carry the description, the range and ``read_only`` (from the config schema);
* a live ``set_parameters`` of a sampling setting takes effect on the next command (greedy
  sampling makes two seeds give the same motion, which they do not before), and out-of-range,
  NaN, read-only and ``use_sim_time`` changes are refused with their reason, changing nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from fixtures_ros import call_service
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.parameter import Parameter, parameter_value_to_python

from moscale_common.paths import resource
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT
from moscale_ros.node.client import MoScaleClient
from moscale_ros.node.launcher import NodeProcess
from moscale_ros.node.ros_parameters import command_line_overrides, rcl_value

NAMESPACE, NAME = "/robot1", "motion_generator"
FULL_NAME = f"{NAMESPACE}/{NAME}"


@pytest.fixture(scope="module")
def node(ros, tmp_path_factory):
    """The node under a namespace and another name, with a copy of the shipped parameter file whose
    values differ from the defaults (given in the file, not with -p). The shipped model: the
    untrained test model's decoder ignores its codes, so sampling would not show in its motions."""
    folder = tmp_path_factory.mktemp("parameters")
    data = yaml.safe_load(resource("config/moscale.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    params.update(checkpoint=DEFAULT_CHECKPOINT, device="cpu", warmup=False, max_text_length=123,
                  prefix_seconds=0.0, playback_rate=0.0, min_run_time=0.0)  # fmt: skip
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(data))
    process = NodeProcess(
        params_file=params_file, remaps=[("__ns", NAMESPACE), ("__node", NAME)], log_path=folder / "node.log"
    ).start()
    client = MoScaleClient(FULL_NAME)
    assert client.wait_ready(120.0), process.log()[-3000:]
    yield process, client
    client.close()
    assert process.stop() == 0, process.log()[-3000:]
    assert "Traceback" not in process.log()


def _call(client: MoScaleClient, service_type, name: str, request):
    return call_service(client.node.create_client(service_type, name), request, timeout=30.0)


def _get(client: MoScaleClient, *names: str) -> dict:
    got = _call(client, GetParameters, f"{FULL_NAME}/get_parameters", GetParameters.Request(names=list(names)))
    return {name: parameter_value_to_python(value) for name, value in zip(names, got.values)}


def _set(client: MoScaleClient, name: str, value) -> tuple[bool, str]:
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    result = _call(client, SetParameters, f"{FULL_NAME}/set_parameters", request).results[0]
    return result.successful, result.reason


def test_the_parameter_file_applies_under_a_namespace_and_another_name(node):
    process, client = node
    values = _get(client, "max_text_length", "checkpoint", "warmup", "prefix_seconds")
    assert values["max_text_length"] == 123 and values["warmup"] is False and values["prefix_seconds"] == 0.0
    assert values["checkpoint"] == DEFAULT_CHECKPOINT
    outcome = client.generate("w" * 124, duration=2.0, timeout=20.0)  # the file's limit is in force
    assert outcome.status == "rejected" and "more than max_text_length=123" in outcome.message


def test_descriptors_carry_description_range_and_read_only(node):
    _, client = node
    names = ["control_rate", "guidance", "diagnostics_period", "max_queue"]
    described = _call(
        client, DescribeParameters, f"{FULL_NAME}/describe_parameters", DescribeParameters.Request(names=names)
    ).descriptors
    by_name = {d.name: d for d in described}
    control = by_name["control_rate"]
    assert control.read_only and "Hz of the published joint trajectories" in control.description
    assert (control.floating_point_range[0].from_value, control.floating_point_range[0].to_value) == (1.0, 500.0)
    guidance = by_name["guidance"]
    assert not guidance.read_only and "range [0, 30] (or -1: the model's)" in guidance.description
    assert by_name["diagnostics_period"].additional_constraints == "range [0.1, 3600] s (or 0: off)"
    assert (by_name["max_queue"].integer_range[0].from_value, by_name["max_queue"].integer_range[0].to_value) == (0, 64)


def _final_human_positions(client: MoScaleClient, seed: int) -> np.ndarray:
    outcome = client.generate("walk forward", duration=2.0, seed=seed, timeout=60.0)
    assert outcome.status == "succeeded", outcome.message
    return np.asarray(outcome.final_plan.human_positions)


def test_a_live_sampling_change_takes_effect_on_the_next_command(node):
    process, client = node
    before = [_final_human_positions(client, seed) for seed in (1, 2)]
    assert not np.allclose(before[0], before[1]), "two seeds should sample two motions"
    assert _set(client, "temperature", 0.0) == (True, "")
    assert _get(client, "temperature")["temperature"] == 0.0
    after = [_final_human_positions(client, seed) for seed in (3, 4)]
    assert np.array_equal(after[0], after[1]), "greedy sampling (temperature 0) must not depend on the seed"
    assert "parameters changed: temperature=0.0" in process.log()
    assert _set(client, "temperature", -1.0) == (True, "")  # back to the model's


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("guidance", 1e308, "guidance out of range Min: -1.0, Max: 30.0"),  # rclpy, by the descriptor's interval
        ("temperature", 1e-300, "temperature: 1e-300 is outside [0.05, 10] (or -1: the model's, 0: greedy)"),
        ("guidance", float("nan"), "guidance out of range Min: -1.0, Max: 30.0, value: nan"),
        ("guidance", -0.5, "guidance: -0.5 is outside [0, 30] (or -1: the model's)"),  # the schema, finer
        ("refine_iterations", [100000], "refine_iterations: entry 100000 of [100000] is outside [0, 16]"),
        ("min_duration", 9.9, "min_duration 9.9 is above max_duration 9.8"),
        ("max_command_rate", "fast", "expected float, got str 'fast'"),
        ("control_rate", 100.0, "read-only"),
        ("diagnostics_period", 1e-9, "read-only"),
        ("use_sim_time", True, "use_sim_time cannot change while the node runs"),
    ],
)
def test_a_bad_live_change_is_refused_with_its_reason(node, name, value, reason):
    _, client = node
    before = _get(client, name)[name]
    successful, why = _set(client, name, value)
    assert not successful and reason in why, why
    assert "\n" not in why
    after = _get(client, name)[name]
    assert after == before or (isinstance(after, float) and np.isnan(after) and np.isnan(before))


def test_command_line_values_are_read_as_rcl_reads_them():
    """``-p`` rules become the node's parameter_overrides (so they beat the ``/**`` file), typed as
    rcl types them: ``1e-300`` is a float there although YAML 1.1 reads it as a string."""
    argv = ["moscale_node", "--ros-args", "--params-file", "x.yaml", "-p", "temperature:=1e-300",
            "-p", "controller_topic:='bad topic!'", "-p", "refine_iterations:=[1, 2]", "-p", "warmup:=false",
            "-p", "other_node:guidance:=2.0", "-r", "__node:=n", "--", "-p", "not_ros:=1"]  # fmt: skip
    overrides = {p.name: p.value for p in command_line_overrides(argv)}
    assert overrides == {"temperature": 1e-300, "controller_topic": "bad topic!", "refine_iterations": [1, 2],
                         "warmup": False}  # fmt: skip
    assert rcl_value(".inf") == float("inf") and rcl_value("'1e-3'") == "1e-3" and rcl_value("50") == 50
