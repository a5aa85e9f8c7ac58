"""Start-up faults end the real node process with a clear error and exit code 2 (the default
``on_startup_error: exit``): a missing, corrupt, truncated or version-mismatched checkpoint, an
invalid robot config, CUDA asked for but absent, a wrongly typed parameter, and SROS2 enforced
without an enclave for the node. One ``moscale_node`` process per fault (the console script with
config/moscale.yaml), all started at once.
(``on_startup_error: stay_up`` keeps the node up instead: tests/test_node_startup.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moscale_ros.node.launcher import NodeProcess
from moscale_ros.node.node import STARTUP_FAILURE_EXIT

ROOT = Path(__file__).resolve().parents[1]


def _with_format_version(source: Path, target: Path, version: str) -> Path:
    """A copy of safetensors file ``source`` whose metadata says ``format_version: version``."""
    raw = source.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    header["__metadata__"]["format_version"] = version
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    target.write_bytes(len(encoded).to_bytes(8, "little") + encoded + raw[8 + size :])
    return target


def _fault_cases(untrained_generator: str, folder: Path) -> dict[str, tuple[dict, str, dict]]:
    """``{case: (parameters, expected text after 'start-up failed: ', environment)}``."""
    good = Path(untrained_generator)
    data = good.read_bytes()
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = folder / "corrupt.safetensors"
    corrupt.write_bytes(data[:8] + b"\xff" * 256 + data[8 + 256 :])  # the JSON header overwritten
    version = _with_format_version(good, folder / "version99.safetensors", "99")
    robot = folder / "robot_typo.yaml"
    robot.write_text((ROOT / "config" / "robots" / "g1.yaml").read_text().replace("feet:\n", "feets:\n", 1))
    missing = folder / "missing.safetensors"
    keystore = folder / "keystore"  # SROS2 enforced, but the keystore has no enclave for the node
    keystore.mkdir()
    sros2 = {"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_STRATEGY": "Enforce", "ROS_SECURITY_KEYSTORE": str(keystore)}
    return {
        "missing_checkpoint": ({"checkpoint": str(missing)}, f"{missing}: checkpoint not found", {}),
        "corrupt_checkpoint": ({"checkpoint": str(corrupt)}, f"{corrupt}: corrupt or truncated checkpoint", {}),
        "truncated_checkpoint": ({"checkpoint": str(truncated)}, f"{truncated}: corrupt or truncated checkpoint", {}),
        "version_mismatch": ({"checkpoint": str(version)},
                             f"{version}: checkpoint format version 99 is not supported (this version reads 1)", {}),
        "invalid_robot_config": ({"robot": str(robot)},
                                 f"{robot}: unknown key(s) feets; allowed: collision, feet, frames", {}),
        "cuda_absent": ({"device": "cuda:99"}, "device 'cuda:99': ", {}),
        "wrongly_typed_parameter": ({"max_command_rate": "fast"},
                                    "bad parameter: parameter.max_command_rate: expected float, got str 'fast'", {}),
        "sros2_enclave_missing": ({}, f"cannot initialise ROS: failed to initialize rcl: SECURITY ERROR: directory "
                                      f"'{keystore}/enclaves' does not exist", sros2),
    }  # fmt: skip


@pytest.fixture(scope="module")
def exits(untrained_generator, tmp_path_factory):
    """Every fault's node process, started together; ``{case: (exit code, log, expected text)}``."""
    folder = tmp_path_factory.mktemp("faults")
    cases = _fault_cases(untrained_generator, folder)
    processes = {}
    for case, (params, _, env) in cases.items():
        settings = {"checkpoint": untrained_generator, "device": "cpu", "playback_rate": 0.0, **params}
        log = folder / f"{case}.log"
        processes[case] = NodeProcess(settings, remaps=[("__node", case)], log_path=log, env=env).start()
    results = {}
    try:
        for case, process in processes.items():
            code = process.process.wait(timeout=120)
            results[case] = (code, process.log(), cases[case][1])
    finally:
        for process in processes.values():
            process.stop(timeout=5.0)
    return results


@pytest.mark.parametrize(
    "case",
    ["missing_checkpoint", "corrupt_checkpoint", "truncated_checkpoint", "version_mismatch", "invalid_robot_config",
     "cuda_absent", "wrongly_typed_parameter", "sros2_enclave_missing"],
)  # fmt: skip
def test_start_up_fault_exits_non_zero_with_a_clear_error(exits, case):
    code, log, expected = exits[case]
    assert code == STARTUP_FAILURE_EXIT == 2, log[-3000:]
    assert f"start-up failed: {expected}" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "ready:" not in log
    if case != "sros2_enclave_missing":  # (ROS itself did not start there: no node, no parameters)
        assert "on_startup_error:=stay_up keeps the node up instead" in log


def test_cuda_absent_names_the_reason(exits):
    """``cuda:99`` is absent on every machine: without CUDA the reason is that, else the device count."""
    import torch

    _, log, _ = exits["cuda_absent"]
    count = torch.cuda.device_count()
    reason = f"only {count} CUDA device(s) present" if count else "CUDA is not available here"
    assert f"device 'cuda:99': {reason}" in log, log[-2000:]
