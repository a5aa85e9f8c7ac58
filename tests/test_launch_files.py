"""launch/moscale.launch.py, config/moscale.yaml and the plain entry points agree.

``launch``/``launch_ros`` are not installable here, so the launch file is checked statically (its
AST: the standard launch_ros form, the package, executable, node name and parameter file it names)
and the same node is run through the plain entry points with the same parameter file: the
``moscale_node`` console script and ``moscale node``. The running node's parameters, read back over
the ROS parameter services, are the file's.
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from fixtures_ros import call_service
from rcl_interfaces.srv import GetParameters, ListParameters
from rclpy.parameter import parameter_value_to_python

from moscale_ros.node.client import MoScaleClient
from moscale_ros.node.node import NODE_NAME
from moscale_ros.node.parameters import DEFAULT_CONTROLLER_TOPIC, parameter_defaults, split_parameters

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "moscale.launch.py"
PARAMS_FILE = ROOT / "config" / "moscale.yaml"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def _keywords(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords}


@pytest.fixture(scope="module")
def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


@pytest.fixture(scope="module")
def yaml_parameters() -> dict:
    data = yaml.safe_load(PARAMS_FILE.read_text())
    assert list(data) == ["/**"], f"{PARAMS_FILE} must hold exactly the /** section (any namespace, any name)"
    return data["/**"]["ros__parameters"]


def test_launch_file_is_the_standard_launch_ros_form(launch_tree):
    imported = {n.module.split(".")[0] for n in ast.walk(launch_tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"launch", "launch_ros"}
    functions = [n.name for n in launch_tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in functions
    nodes = {ast.literal_eval(_keywords(c)["executable"]): c for c in _calls(launch_tree, "Node")}
    assert set(nodes) == {"moscale_node", "moscale_sim_node"}
    kw = _keywords(nodes["moscale_node"])
    assert ast.literal_eval(kw["package"]) == "moscale_ros"
    assert ast.literal_eval(kw["executable"]) == "moscale_node"
    assert ast.literal_eval(kw["name"]) == NODE_NAME
    assert isinstance(kw["parameters"], ast.List) and "params_file" in ast.unparse(kw["parameters"].elts[0])
    assert "remappings" in kw
    sim = _keywords(nodes["moscale_sim_node"])  # sim:=true only
    assert ast.unparse(sim["condition"]) == "IfCondition(sim)" and ast.literal_eval(sim["name"]) == "moscale_sim_node"


def test_launch_file_defaults_name_the_shipped_parameter_file_and_topic(launch_tree):
    arguments = {ast.literal_eval(c.args[0]): _keywords(c) for c in _calls(launch_tree, "DeclareLaunchArgument")}
    assert {"params_file", "controller_topic", "use_sim_time", "sim", "sim_robot"} <= set(arguments)
    assert ast.literal_eval(arguments["sim"]["default_value"]) == "false"
    (join,) = _calls(arguments["params_file"]["default_value"], "PathJoinSubstitution")
    share, *parts = join.args[0].elts
    assert ast.unparse(share) == "FindPackageShare('moscale_ros')"
    relative = Path(*[ast.literal_eval(p) for p in parts])
    assert relative == Path("config/moscale.yaml") and (ROOT / relative).is_file()
    constants = {
        t.id: ast.literal_eval(n.value)
        for n in launch_tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert constants["DEFAULT_CONTROLLER_TOPIC"] == DEFAULT_CONTROLLER_TOPIC


def test_the_named_executable_and_files_are_installed():
    setup_py = (ROOT / "setup.py").read_text()
    assert re.search(r'"moscale_node = moscale_ros\.node\.main:main"', setup_py)
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"install\(PROGRAMS scripts/moscale_node .*DESTINATION lib/\$\{PROJECT_NAME\}\)", cmake)
    assert re.search(r"install\(DIRECTORY launch config DESTINATION share/\$\{PROJECT_NAME\}\)", cmake)
    script = ROOT / "scripts" / "moscale_node"
    assert script.is_file() and os.access(script, os.X_OK)
    assert (Path(sys.executable).parent / "moscale_node").is_file(), "moscale_node console script not installed"


def test_parameter_file_matches_the_declared_parameters(yaml_parameters):
    defaults = parameter_defaults()
    assert sorted(yaml_parameters) == sorted(defaults)
    for name, value in yaml_parameters.items():
        expected = type(defaults[name])
        assert isinstance(value, expected) and not (expected is int and isinstance(value, bool)), (name, value)
    pipeline, settings = split_parameters(yaml_parameters)  # schema-checked, as the node does
    assert settings.controller_topic == DEFAULT_CONTROLLER_TOPIC
    assert pipeline.checkpoint == "" and pipeline.robot == "g1"


def test_console_script_reads_the_parameter_file():
    """The ``moscale_node`` entry point with ``--ros-args --params-file`` (an unknown robot on top,
    so it reports without loading a model, and exits with code 2: the file's on_startup_error)."""
    script = Path(sys.executable).parent / "moscale_node"
    argv = [str(script), "--ros-args", "--params-file", str(PARAMS_FILE), "-p", "robot:=nao_v9",
            "-r", "__node:=console_script_check", "--log-level", "console_script_check:=info"]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        deadline = time.monotonic() + 60.0
        output = ""
        while "start-up failed" not in output and time.monotonic() < deadline and process.poll() is None:
            output += process.stdout.readline()
        try:  # it exits by itself (code 2); a SIGINT only if it does not (one sent while it exits races it)
            output += process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            process.send_signal(2)
            output += process.communicate(timeout=20)[0]
    assert "start-up failed: unknown robot 'nao_v9'" in output, output
    assert process.returncode == 2, output
    assert "Traceback" not in output


def _call(client: MoScaleClient, service_type, name: str, request):
    return call_service(client.node.create_client(service_type, name), request, timeout=30.0)


def test_moscale_node_cli_runs_the_node_with_the_parameter_file(moscale_node, moscale_client, yaml_parameters):
    """The shared test node is started as ``moscale node --params-file config/moscale.yaml -p checkpoint:=...``;
    every other parameter it reports over the parameter services is the file's."""
    client = moscale_client
    assert moscale_node.entry == "cli" and "moscale_ros.cli" in moscale_node.argv()
    listed = _call(client, ListParameters, f"/{NODE_NAME}/list_parameters", ListParameters.Request())
    assert set(yaml_parameters) <= set(listed.result.names)
    names = sorted(yaml_parameters)
    got = _call(client, GetParameters, f"/{NODE_NAME}/get_parameters", GetParameters.Request(names=names))
    values = {name: parameter_value_to_python(v) for name, v in zip(names, got.values)}
    overridden = {"checkpoint"}
    for name in set(names) - overridden:
        expected, actual = yaml_parameters[name], values[name]
        if isinstance(expected, float):
            assert math.isclose(actual, expected), name
        else:
            assert list(actual) == expected if isinstance(expected, list) else actual == expected, name
    assert values["checkpoint"].endswith("untrained-generator.safetensors")
    outcome = client.generate("nod twice", duration=2.0, seed=4)
    assert outcome.status == "succeeded", outcome.message
