"""Reliability, round two, in the ROS-free parts: every numeric setting has a range in the schema;
text that shows nothing (or hides itself) is refused and every echo of a text is capped and escaped
alike; the text-feature cache is bounded by bytes; the worker does not starve under a fast stream;
start-up reasons are one line; checkpoint paths that are not regular files say so; a tiny
temperature samples greedily instead of producing NaN.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from moscale_common.config import Range, check_ranges, field_range
from moscale_common.errors import CheckpointError, ConfigError, InputError
from moscale_ros.checkpoint import load_checkpoint
from moscale_ros.generation import sampling
from moscale_ros.generation.request import ECHO_CHARS, RequestLimits, echo_text, validate_text
from moscale_ros.generation.text_cache import TextFeatureCache, entry_bytes
from moscale_ros.node.parameters import (
    live_parameters,
    parameter_defaults,
    parameter_fields,
    parameter_table,
    split_parameters,
)
from moscale_ros.node.startup import MAX_TRAJECTORY_POINTS, check_model_limits, failure_reason
from moscale_ros.node.worker import GenerationWorker, Job
from moscale_ros.pipeline import PipelineConfig, build_pipeline

LIMITS = RequestLimits(200, 1.0, 9.8)


# ------------------------------------------------------------------------------------ ranges


def test_every_numeric_parameter_declares_a_range():
    for name, field in parameter_fields().items():
        default = parameter_defaults()[name]
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        numeric = numeric or (isinstance(default, list) and all(isinstance(v, int) for v in default))
        assert (field_range(field) is not None) == numeric, name
        assert field.metadata.get("description"), f"{name} has no description"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("control_rate", 1e6, "control_rate: 1000000.0 is outside [1, 500] Hz"),
        ("playback_rate", float("inf"), "playback_rate: inf is outside [1, 200] Hz (or 0: off)"),
        ("diagnostics_period", 1e-9, "diagnostics_period: 1e-09 is outside [0.1, 3600] s (or 0: off)"),
        ("limit_tolerance", 1e300, "limit_tolerance: 1e+300 is outside [0, 0.01] rad"),
        ("max_queue", 10**9, "max_queue: 1000000000 is outside [0, 64]"),
        ("refine_iterations", [100000], "refine_iterations: entry 100000 of [100000] is outside [0, 16]"),
        ("temperature", 1e-300, "temperature: 1e-300 is outside [0.05, 10] (or -1: the model's, 0: greedy)"),
        ("guidance", 1e308, "guidance: 1e+308 is outside [0, 30] (or -1: the model's)"),
        ("guidance", float("nan"), "guidance: nan is outside [0, 30]"),
        ("text_cache_mb", -1.0, "text_cache_mb: -1.0 is outside [0, 4096] MB"),
        ("min_run_time", 60.0, "min_run_time: 60.0 is outside [0, 10] s"),
    ],
)
def test_a_value_outside_its_range_is_refused_in_one_line_naming_the_range(name, value, message):
    with pytest.raises(ConfigError) as caught:
        split_parameters({**parameter_defaults(), name: value})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_special_values_and_bounds_are_allowed():
    values = {**parameter_defaults(), "playback_rate": 0.0, "diagnostics_period": 0.0, "temperature": 0.0,
              "guidance": -1.0, "max_command_rate": 0.0, "control_rate": 500.0,
              "refine_iterations": [16, 1]}  # fmt: skip
    pipeline, settings = split_parameters(values)
    assert pipeline.control_rate == 500.0 and settings.playback_rate == 0.0
    assert pipeline.sampling.temperature == 0.0 and pipeline.sampling.guidance is None


def test_the_range_check_also_guards_direct_construction():
    with pytest.raises(ConfigError, match=r"stop_duration: 0.0 is outside \[0.05, 5\] s"):
        PipelineConfig(stop_duration=0.0)
    assert Range(1.0, 2.0, "Hz", ((0.0, "off"),)).outer == (0.0, 2.0)

    @dataclasses.dataclass
    class Plain:
        x: float = 1.0

    check_ranges(Plain(x=float("nan")))  # no declared range: nothing to check


def test_the_documented_parameter_table_is_the_schema():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "ROS.md").read_text()
    assert parameter_table() in docs


def test_only_settings_that_work_live_are_live():
    live = live_parameters()
    assert {"guidance", "guidance_end", "top_p", "temperature", "refine_iterations"} <= live
    assert {"default_duration", "min_duration", "max_duration", "min_run_time", "text_cache_mb"} <= live
    assert not live & {"checkpoint", "device", "robot", "robot_description", "control_rate", "controller_topic",
                       "concurrency", "max_queue", "qos_depth", "playback_rate", "diagnostics_period", "warmup",
                       "blend_duration", "switch_lead", "on_startup_error"}  # fmt: skip


def test_the_control_rate_is_checked_against_the_longest_motion():
    check_model_limits(50.0, 9.8, 9.6)
    check_model_limits(250.0, 9.8, 9.6)  # 2400 points
    with pytest.raises(ConfigError, match=r"control_rate: 1000 Hz x 9.6 s \(the longest motion\) = 9600 trajectory"):
        check_model_limits(1000.0, 9.8, 9.6)
    check_model_limits(1000.0, 2.0, 9.6)  # short motions only: 2000 points
    assert MAX_TRAJECTORY_POINTS == 2500


def test_a_start_up_failure_reason_is_one_line():
    assert failure_reason(ConfigError("bad\nthing")) == "bad thing"
    assert failure_reason(RuntimeError("probability tensor contains either inf, nan or element < 0")) == (
        "RuntimeError: probability tensor contains either inf, nan or element < 0"
    )
    assert len(failure_reason(ValueError("x" * 5000))) == 400


# -------------------------------------------------------------------------------- text checks


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("\ufeff", "no visible letter or digit ('\\ufeff')"),
        ("\u200b\u200b\u200b", "no visible letter or digit ('\\u200b\\u200b\\u200b')"),
        ("\u3164" * 200, "no visible letter or digit ('" + "\\u3164" * ECHO_CHARS + "...' (200 characters))"),
        ("\u2800" * 50, "no visible letter or digit"),
        ("!!! ... ???", "no visible letter or digit"),
        ("wave \u202ethe hand", "bidirectional-override or tag character U+202E at index 5"),
        ("wave \u2066hand\u2069", "bidirectional-override or tag character U+2066 at index 5"),
        ("wave\U000e0041\U000e0042", "bidirectional-override or tag character U+E0041 at index 4"),
    ],
)
def test_invisible_only_text_and_bidi_or_tag_characters_are_refused(text, needle):
    with pytest.raises(InputError) as caught:
        validate_text(text, LIMITS)
    assert needle in str(caught.value)


@pytest.mark.parametrize("text", ["wave the right hand", "挥手", "3", "wave\u200dhand 👋", "Łódź walk"])
def test_visible_text_passes(text):
    assert validate_text(text, LIMITS) == text


def test_every_echo_is_capped_and_escaped_the_same_way():
    assert echo_text("walk") == "'walk'"
    assert echo_text("a\u200bb\x1b[31m") == "'a\\u200bb\\u001b[31m'"
    long = "w" * 200
    assert echo_text(long) == "'" + "w" * ECHO_CHARS + "...' (200 characters)"
    assert echo_text("it's") == "'it\\'s'"
    # the refusal, the worker's success and preemption messages all use it
    with pytest.raises(InputError, match=r"\('" + "x" * ECHO_CHARS + r"\.\.\.' \(300 characters\)\)"):
        validate_text("x" * 300, LIMITS)


# ---------------------------------------------------------------------------------- text cache


def _features(tokens: int, dim: int = 384) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(tokens, dim), torch.zeros(dim)


def test_the_text_cache_is_bounded_by_bytes_and_evicts_least_recently_used():
    one = entry_bytes("text 0000", _features(10))
    cache = TextFeatureCache(max_bytes=5 * one)
    for i in range(50):
        cache.put(f"text {i:04d}", _features(10))
        assert cache.bytes <= 5 * one
    assert len(cache) == 5 and cache.get("text 0049") is not None and cache.get("text 0000") is None
    assert cache.get("text 0045") is not None  # now the most recent: survives the next insertion
    cache.put("text 9999", _features(10))
    assert cache.get("text 0045") is not None and cache.get("text 0046") is None
    assert cache.hit_rate == pytest.approx(3 / 5)
    cache.resize(2 * one)
    assert len(cache) == 2 and cache.bytes <= 2 * one
    cache.put("huge", _features(10_000))  # over the whole budget: not kept, nothing evicted for it
    assert cache.get("huge") is None and len(cache) == 2
    cache.resize(0)
    assert len(cache) == 0 and cache.bytes == 0


def test_the_text_cache_counts_each_entry_by_its_size():
    small, large = entry_bytes("a", _features(2)), entry_bytes("a", _features(32))
    assert large - small == 30 * 384 * 4
    cache = TextFeatureCache(max_bytes=large + small)
    assert entry_bytes("big", _features(33)) <= large + small  # (fits alone)
    cache.put("l", _features(32))
    cache.put("s", _features(2))
    assert len(cache) == 2
    cache.put("m", _features(32))  # the oldest (large) entry goes; the small one still fits
    assert len(cache) == 2 and cache.get("l") is None and cache.get("s") is not None
    cache.put("big", _features(33))  # with the small one it is over the budget: both older entries go
    assert len(cache) == 1 and cache.get("big") is not None


def test_the_text_cache_is_thread_safe():
    cache = TextFeatureCache(max_bytes=20 * entry_bytes("t 000", _features(4)))

    def work(offset: int) -> None:
        for i in range(300):
            cache.put(f"t {offset + i:03d}", _features(4))
            cache.get(f"t {offset + i // 2:03d}")

    threads = [threading.Thread(target=work, args=(k * 300,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 20 and cache.bytes == sum(entry_bytes(k, v) for k, (v, _) in cache._entries.items())


# ------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("kind", ["directory", "dev_zero", "fifo", "symlink_loop"])
def test_a_checkpoint_that_is_not_a_regular_file_says_so(tmp_path, kind):
    if kind == "directory":
        path, what = tmp_path, "a directory"
    elif kind == "dev_zero":
        path, what = "/dev/zero", "a character device"
    elif kind == "fifo":
        path, what = tmp_path / "fifo", "a FIFO"
        os.mkfifo(path)
    else:
        path, what = tmp_path / "loop1", "a symbolic link loop"
        os.symlink(tmp_path / "loop2", tmp_path / "loop1")
        os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    tick = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"not a regular file \\({what}\\)"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"not a regular file \\({what}\\)"):
        build_pipeline(PipelineConfig(checkpoint=str(path), device="cpu"))
    assert time.perf_counter() - tick < 5.0
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------------- sampling


def test_a_tiny_temperature_samples_greedily_without_nan():
    torch.manual_seed(0)
    logits_BLV = torch.randn(2, 5, 64) * 30
    for temperature in (1e-300, 1e-6, 0.0):
        idx_BL, confidence_BL = sampling.sample_tokens(logits_BLV, temperature, 0.9, torch.Generator())
        assert torch.equal(idx_BL, logits_BLV.argmax(-1)) and torch.isfinite(confidence_BL).all()


# ------------------------------------------------------------------------------- starvation


@pytest.fixture(scope="module")
def pipeline(untrained_generator):
    torch.set_num_threads(2)
    return build_pipeline(PipelineConfig(checkpoint=untrained_generator, device="cpu"))


def test_a_fast_stream_still_gets_final_plans_out(pipeline):
    """14 commands/s for 6 s into the worker with ``min_run_time`` 1 s: newer commands coalesce (one
    waits at most), and each command that starts publishes its final plan, so at least one final plan
    per second comes out; with ``min_run_time`` 0 (plain preemption) the same stream ends almost every
    command before its final plan."""

    def stream(min_run_time: float, seconds: float = 6.0, rate: float = 14.0) -> tuple[int, int, list[Job]]:
        finals, peak = [], [0]

        def publish(job, step):
            if step.is_final:
                job.final_plan = step
                finals.append(time.monotonic())

        worker = GenerationWorker(pipeline, publish, lambda *a: None, min_run_time=min_run_time)
        jobs = []
        try:
            start = time.monotonic()
            for i in range(int(seconds * rate)):
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                jobs.append(Job(pipeline.request(f"walk forward, take {i} steps", 2.0, i), "topic"))
                worker.submit(jobs[-1])
                peak[0] = max(peak[0], worker.pending_count)
            elapsed = time.monotonic() - start
            assert all(job.done.wait(30.0) for job in jobs)
        finally:
            worker.stop()
        assert peak[0] <= 1
        return len([t for t in finals if t <= start + elapsed]), int(elapsed), jobs

    finals, seconds, jobs = stream(min_run_time=1.0)
    assert finals >= seconds, f"{finals} final plans in {seconds} s"
    assert jobs[-1].status == "succeeded"
    assert {job.status for job in jobs} <= {"succeeded", "preempted"}
    # the protected run is what makes the difference
    plain_finals, _, _ = stream(min_run_time=0.0, seconds=3.0)
    assert plain_finals < finals


def test_the_protection_follows_how_long_commands_take_to_finish(pipeline):
    def publish(job, step):
        if step.is_final:
            job.final_plan = step

    worker = GenerationWorker(pipeline, publish, lambda *a: None, min_run_time=0.01)
    try:
        assert worker.protection_s() == 0.01 and worker.expected_run_s is None
        job = Job(pipeline.request("bow politely", 2.0, 0), "topic")
        worker.submit(job)
        assert job.done.wait(60.0) and job.status == "succeeded", job.message
        assert worker.expected_run_s > 0.01
        assert worker.protection_s() == pytest.approx(max(0.01, min(1.25 * worker.expected_run_s, 5.0)))
        worker.min_run_time = 0.0
        assert worker.protection_s() == 0.0
    finally:
        worker.stop()
