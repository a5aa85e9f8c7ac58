"""Reliability and security of the node's ROS-free parts: the command rate limit, request validation
under fuzzed input, the worker's bounded queue under a flood (real pipeline: small untrained
generator, real G1 retargeter), memory readings, schema checks of parameters and robot configs,
checkpoints that never unpickle, and no input reaching a shell or eval anywhere in the code.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import pickle
import random
import threading
import time
from pathlib import Path

import pytest

from moscale_common.errors import CheckpointError, ConfigError, InputError
from moscale_ros.checkpoint import load_checkpoint
from moscale_ros.node.health import CommandStats, NotReadyError, refusal_kind, resident_memory_mb
from moscale_ros.node.parameters import parameter_defaults, split_parameters
from moscale_ros.node.rate_limit import CommandRateLimiter, RateLimitError
from moscale_ros.node.worker import GenerationWorker, Job, QueueFullError
from moscale_ros.pipeline import PipelineConfig, TrajectoryError, build_pipeline, validate_request
from retarget.robot import load_robot

ROOT = Path(__file__).resolve().parents[1]


def _soak_module():
    spec = importlib.util.spec_from_file_location("fuzz_soak", ROOT / "scripts" / "fuzz_soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------ rate limit


def test_rate_limit_admits_the_burst_then_the_rate():
    clock = ManualClock()
    limiter = CommandRateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.admit()
    with pytest.raises(RateLimitError, match=r"max_command_rate=2 commands/s \(command_burst=3\); try again in 0.50 s"):
        limiter.admit("topic command")
    clock.now += 0.49
    with pytest.raises(RateLimitError):
        limiter.admit()
    clock.now += 0.02  # 0.51 s after the burst: one token (2/s)
    limiter.admit()
    with pytest.raises(RateLimitError):
        limiter.admit()
    clock.now += 60.0  # a long pause refills to the burst, not beyond
    for _ in range(3):
        limiter.admit()
    with pytest.raises(RateLimitError):
        limiter.admit()


def test_rate_limit_zero_means_no_limit_and_bad_settings_are_named():
    limiter = CommandRateLimiter(rate=0.0, burst=1, clock=ManualClock())
    for _ in range(10_000):
        limiter.admit()
    with pytest.raises(ConfigError, match="max_command_rate"):
        CommandRateLimiter(rate=-1.0, burst=1)
    with pytest.raises(ConfigError, match="command_burst"):
        CommandRateLimiter(rate=1.0, burst=0)


def test_rate_limit_is_exact_across_threads():
    limiter = CommandRateLimiter(rate=1e-6, burst=50, clock=ManualClock())  # no refill during the test
    admitted = []

    def hammer():
        for _ in range(100):
            try:
                limiter.admit()
                admitted.append(1)
            except RateLimitError:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 50


def test_refusals_are_counted_by_kind():
    stats = CommandStats()
    errors = [RateLimitError("r"), QueueFullError("q"), NotReadyError("n"), InputError("i"), RateLimitError("r")]
    assert [stats.refused(e) for e in errors] == ["rate_limited", "queue_full", "not_ready", "invalid", "rate_limited"]
    assert stats.snapshot() == {
        "refused_rate_limited": 2, "refused_queue_full": 1, "refused_not_ready": 1, "refused_invalid": 1,
    }  # fmt: skip
    assert refusal_kind(InputError("x")) == "invalid"


# ------------------------------------------------------------------------------ request fuzzing


def test_fuzzed_requests_are_accepted_clean_or_refused_with_a_short_message():
    """Every input kind of the soak (empty, whitespace, 100 kB, random Unicode, control characters,
    ordinary text) with fuzzed durations: a clean request or an InputError, nothing else."""
    soak = _soak_module()
    rng = random.Random(5)
    config = PipelineConfig()
    outcomes = {kind: {"accepted": 0, "refused": 0} for kind in soak.KINDS}
    for _ in range(3000):
        kind = rng.choice(soak.KINDS)
        text, duration = soak.fuzz_text(kind, rng), soak.fuzz_duration(kind, rng)
        try:
            request = validate_request(text, duration, rng.randint(-5, 5), config, 0.0)
        except InputError as exc:
            outcomes[kind]["refused"] += 1
            assert 0 < len(str(exc)) < 400, str(exc)[:500]
            continue
        outcomes[kind]["accepted"] += 1
        assert request.text == request.text.strip() and 0 < len(request.text) <= config.max_text_length
        assert all(c in "\t\n\r" or c.isprintable() or not c.isascii() for c in request.text)
        assert config.min_duration <= request.duration <= config.max_duration
    for kind in ("empty", "whitespace", "huge", "control"):
        assert outcomes[kind]["accepted"] == 0, (kind, outcomes)
    assert outcomes["ordinary"]["accepted"] > 0 and outcomes["ordinary"]["refused"] > 0  # bad durations
    assert outcomes["unicode"]["accepted"] > 0 and outcomes["unicode"]["refused"] > 0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("wave\x00 hand", "U+0000 at index 4"),
        ("\x1b[31mwave", "U+001B at index 0"),
        ("bo\x85w", "U+0085 at index 2"),
        ("walk \ud800", "U+D800 at index 5"),
        ("nod \U0010ffff", "U+10FFFF at index 4"),
        ("x" * 100_000, "100000 characters long, more than max_text_length=200"),
        (" \u3000\u2003\t\n" * 20_000, "100000 characters long"),
    ],
)
def test_control_characters_and_huge_texts_are_refused_naming_them(text, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace("+", r"\+")) as info:
        validate_request(text, 0.0, -1, PipelineConfig(), 0.0)
    assert len(str(info.value)) < 300  # the text is quoted in part (40 characters, escaped)


def test_durations_at_the_bounds_survive_float32_rounding():
    """GenerateMotion.duration is float32: 9.8 arrives as 9.80000019 and must still be accepted."""
    import numpy as np

    config = PipelineConfig(min_duration=1.1)
    for bound in (config.max_duration, config.min_duration):
        sent = float(np.float32(bound))
        assert sent != bound
        assert validate_request("wave", sent, -1, config, 0.0).duration == bound
    with pytest.raises(InputError, match="outside the supported range"):
        validate_request("wave", config.max_duration + 1e-3, -1, config, 0.0)


def test_tabs_newlines_and_non_latin_text_are_accepted():
    request = validate_request("  wave\tthe right hand\nslowly 🙂 手を振る ", 0.0, -1, PipelineConfig(), 0.0)
    assert request.text == "wave\tthe right hand\nslowly 🙂 手を振る"


# ------------------------------------------------------------------------------ bounded queues


@pytest.fixture(scope="module")
def pipeline(untrained_generator):
    import torch

    torch.set_num_threads(2)
    return build_pipeline(PipelineConfig(checkpoint=untrained_generator, device="cpu"))


def test_a_flood_under_preempt_keeps_at_most_one_job_waiting(pipeline):
    """500 commands from two threads as fast as they come: at most one waits at any moment, every
    job ends, all but the last are preempted and never publish after that, the last succeeds."""
    published: list[tuple[Job, int, bool]] = []

    def publish(job, step):  # as the node does: the final plan makes the job a success
        published.append((job, step.scale_index, step.is_final))
        if step.is_final:
            job.final_plan = step

    worker = GenerationWorker(pipeline, publish, lambda *a: None)
    jobs: list[Job] = []
    peak = [0]
    lock = threading.Lock()

    def flood(count: int) -> None:
        for i in range(count):
            job = Job(pipeline.request(f"walk forward {i}", 2.0, i), "topic")
            with lock:  # one submit at a time, so ``jobs`` is in submission order
                worker.submit(job)
                jobs.append(job)
            peak[0] = max(peak[0], worker.pending_count)

    try:
        threads = [threading.Thread(target=flood, args=(250,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert jobs[-1].done.wait(60.0), "the last job never finished"
        assert all(job.done.wait(5.0) for job in jobs)
    finally:
        worker.stop()
    assert peak[0] <= 1
    statuses = [job.status for job in jobs]
    assert statuses[-1] == "succeeded", jobs[-1].message
    assert set(statuses[:-1]) == {"preempted"}
    assert all("preempted by request" in job.message for job in jobs[:-1])
    last_scales = [(scale, final) for job, scale, final in published if job is jobs[-1]]
    assert [scale for scale, _ in last_scales] == list(range(1, len(last_scales) + 1)) and last_scales[-1][1]
    assert not any(final for job, _, final in published if job is not jobs[-1]), "a preempted job finished"


def test_a_trajectory_failing_validation_is_never_yielded(pipeline):
    """The pipeline validates every scale before yielding it: against a robot whose elbow range is
    narrower than the one the motion was retargeted for, the first scale already fails, naming the
    joint, and nothing at all is yielded (so the node publishes nothing)."""
    robot = pipeline.robot
    joint = robot.joint_names.index("left_elbow_joint")
    upper = robot.upper.copy()
    upper[joint] = robot.lower[joint] + 1e-3
    pipeline.robot = dataclasses.replace(robot, upper=upper)
    yielded = []
    try:
        needle = r"scale 1/\d+: joint left_elbow_joint at .* outside its limits .*; not published"
        with pytest.raises(TrajectoryError, match=needle):
            for step in pipeline.run(pipeline.request("wave the left hand", 2.0, 0)):
                yielded.append(step)
    finally:
        pipeline.robot = robot
    assert yielded == []
    assert [s.scale_index for s in pipeline.run(pipeline.request("wave the left hand", 2.0, 0))][-1] >= 2


def test_the_queue_policy_refuses_beyond_max_queue(pipeline):
    worker = GenerationWorker(pipeline, lambda job, step: None, lambda *a: None, policy="queue", max_queue=2)
    try:
        jobs = [Job(pipeline.request("bow", 2.0, i), "action") for i in range(6)]
        refused = []
        for job in jobs:
            try:
                worker.submit(job)
            except QueueFullError as exc:
                refused.append(str(exc))
            assert worker.pending_count <= 2
        assert refused and all("max_queue=2" in message for message in refused)
    finally:
        worker.stop()


# ------------------------------------------------------------------------------------- memory


def test_resident_memory_matches_the_kernel_figure():
    status = Path("/proc/self/status").read_text()
    vm_rss_mb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024
    assert resident_memory_mb() == pytest.approx(vm_rss_mb, rel=0.05, abs=2.0)
    assert resident_memory_mb() > 20


# ----------------------------------------------------------------------------- schema checks


def test_node_parameters_reject_unknown_names_and_wrong_types():
    values = parameter_defaults()
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['max_comand_rate'\]"):
        split_parameters({**values, "max_comand_rate": 5.0})
    with pytest.raises(ConfigError, match="parameter.max_command_rate: expected float, got str 'fast'"):
        split_parameters({**values, "max_command_rate": "fast"})
    with pytest.raises(ConfigError, match="parameter.command_burst: expected int, got float 2.5"):
        split_parameters({**values, "command_burst": 2.5})
    with pytest.raises(ConfigError, match=r"max_command_rate: -3.0 is outside \[0.1, 1000\] commands/s \(or 0: "):
        split_parameters({**values, "max_command_rate": -3.0})
    with pytest.raises(ConfigError, match=r"on_startup_error: expected one of \['exit', 'stay_up'\], got 'ignore'"):
        split_parameters({**values, "on_startup_error": "ignore"})
    with pytest.raises(ConfigError, match="max_text_length: expected int, got str '200'"):
        split_parameters({**values, "max_text_length": "200"})


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("name: g1\n", "name: g1\nnmae: g2\n", r"robot\.yaml: unknown key\(s\) nmae; allowed: collision, feet, frames"),
        ("  contact_gain: 100.0\n", "  contact_gain: 100.0\n  hand_postion: 3.0\n",
         r"robot\.yaml\.weights: unknown key\(s\) hand_postion"),
        ("  default: 6.0\n", "  default: fast\n",
         r"robot\.yaml\.velocity_limits\.default: expected float, got str 'fast'"),
        ("  hand_position: 40.0\n", "  hand_position: [40.0]\n",
         r"robot\.yaml\.weights\.hand_position: expected float, got list"),
        ("  left_knee_joint: 0.6\n", "  left_knee_joint: true\n",
         r"initial_joint_positions\.left_knee_joint: expected float, got bool True"),
        ("  path: robots/g1_description/urdf/g1_29dof_rev_1_0.urdf\n", "  path: [robots]\n",
         r"robot\.yaml\.urdf\.path: expected str, got list \['robots'\]"),
    ],
)  # fmt: skip
def test_robot_config_rejects_unknown_keys_and_wrong_types(tmp_path, old, new, needle):
    text = (ROOT / "config" / "robots" / "g1.yaml").read_text()
    assert old in text
    path = tmp_path / "robot.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=needle):
        load_robot(path)


def test_cuda_asked_for_but_absent_is_a_clear_error():
    """``cuda:99`` exists on no machine: the error names the request (no CUDA here, or too few devices)."""
    import torch

    from moscale_ros.runtime import select_device

    expected = "only .* CUDA device" if torch.cuda.is_available() else "CUDA is not available here"
    with pytest.raises(ConfigError, match=f"device 'cuda:99': {expected}"):
        select_device("cuda:99")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")  # the documented fallback


# -------------------------------------------------------------------------------- no code runs


class _Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a malicious pickled checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    for name in ("evil.safetensors", "evil.pt"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"state": _Payload(marker)}))
        with pytest.raises(CheckpointError, match=f"{name}: corrupt or truncated checkpoint"):
            load_checkpoint(path)
        with pytest.raises(CheckpointError, match=name):
            build_pipeline(PipelineConfig(checkpoint=str(path), device="cpu"))
    assert not marker.exists(), "loading a checkpoint executed pickled code"
    pickle.loads(pickle.dumps(_Payload(marker)))  # the payload is live: unpickling it does run it
    assert marker.exists()


FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "os.system", "os.popen", "pickle.load", "pickle.loads",
                   "torch.load", "yaml.load", "yaml.unsafe_load", "marshal.loads", "shelve.open",
                   "subprocess.getoutput", "subprocess.getstatusoutput"}  # fmt: skip


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def test_no_input_reaches_a_shell_eval_or_unpickler():
    """Static check of every Python file of the product (packages, scripts, launch files): no eval/exec,
    no shell, no pickle/torch.load/yaml.load, no np.load(allow_pickle=True), no trust_remote_code=True;
    subprocesses get an argument list, never a string."""
    files = [p for d in ("moscale_ros", "retarget", "scripts", "launch") for p in (ROOT / d).rglob("*.py")]
    files += [ROOT / "setup.py"]
    assert len(files) > 40
    problems = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name, where = _call_name(node), f"{path.relative_to(ROOT)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name in FORBIDDEN_CALLS:
                problems.append(f"{where}: {name}()")
            for flag in ("shell", "allow_pickle", "trust_remote_code"):
                value = keywords.get(flag)
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    problems.append(f"{where}: {name}({flag}=...)")
            if name.startswith("subprocess.") or name == "Popen":
                first = node.args[0] if node.args else keywords.get("args")
                if isinstance(first, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    problems.append(f"{where}: {name} with a command string")
    assert problems == []


def test_the_static_check_finds_what_it_looks_for(tmp_path):
    """The scanner itself: each forbidden pattern in a sample file is reported."""
    sample = (
        "import os, subprocess, pickle, yaml\n"
        "eval(text)\nos.system(text)\npickle.loads(data)\nyaml.load(f)\n"
        "subprocess.run(text, shell=True)\nsubprocess.run('ls ' + text)\n"
    )
    tree = ast.parse(sample)
    found = {_call_name(n) for n in ast.walk(tree) if isinstance(n, ast.Call)} & FORBIDDEN_CALLS
    assert found == {"eval", "os.system", "pickle.loads", "yaml.load"}
    shell = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and any(k.arg == "shell" for k in n.keywords)]
    assert len(shell) == 1


def test_timing_of_refusing_a_huge_command_is_negligible():
    """A 100 kB command is refused before any per-character work (bounded cost per command)."""
    config = PipelineConfig()
    text = "wave " * 20_000
    tick = time.perf_counter()
    for _ in range(200):
        with pytest.raises(InputError):
            validate_request(text, 0.0, -1, config, 0.0)
    assert (time.perf_counter() - tick) / 200 < 0.005
