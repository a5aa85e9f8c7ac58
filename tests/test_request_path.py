"""One request path: one validator of text, duration and seed under limits passed in; one
``SamplingOverrides`` type, whose "unset" the node's ROS placeholders (-1, [0]) turn into once."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from moscale_common.errors import ConfigError, InputError
from moscale_ros.cli import build_parser
from moscale_ros.generation.config import GenerationConfig, SamplingOverrides
from moscale_ros.generation.request import RequestLimits, validate_seconds, validate_seed, validate_text
from moscale_ros.node.parameters import SamplingParameters, parameter_defaults, split_parameters
from moscale_ros.node.worker import GenerationWorker
from moscale_ros.pipeline import PipelineConfig, validate_request

LIMITS = RequestLimits(max_text_chars=10, min_seconds=1.0, max_seconds=4.0)


# ------------------------------------------------------------------------------------ the validator


def test_text_is_stripped_and_checked_against_the_given_limit():
    assert validate_text("  wave\tit \n", LIMITS) == "wave\tit"
    assert validate_text("x" * 10, LIMITS) == "x" * 10
    with pytest.raises(InputError, match="11 characters long, more than max_text_length=10"):
        validate_text("x" * 11, LIMITS)
    for bad, needle in ((" \n", "empty"), (None, "must be a string"), ("a\x07b", r"U\+0007 at index 1")):
        with pytest.raises(InputError, match=needle):
            validate_text(bad, LIMITS)


def test_seconds_are_checked_against_the_given_range_with_float32_bounds_snapped():
    assert validate_seconds(2, LIMITS) == 2.0
    assert validate_seconds(np.float32(2.5), LIMITS) == 2.5
    assert validate_seconds(float(np.float32(4.0 + 1e-7)), LIMITS) == 4.0
    for bad, needle in (
        (0.0, "must be positive"),
        (float("nan"), "finite"),
        ("3", "number of seconds"),
        (True, "number of seconds"),
        (0.5, r"outside the supported range \[1, 4\] s \(too short\)"),
        (4.01, r"\(too long\)"),
    ):
        with pytest.raises(InputError, match=needle):
            validate_seconds(bad, LIMITS)


def test_seed_is_a_non_negative_integer_or_none():
    assert validate_seed(None) is None
    assert validate_seed(np.int64(7)) == 7
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InputError, match="seed must be"):
            validate_seed(bad)


def test_limits_within_take_the_tighter_of_both():
    model = RequestLimits(max_text_chars=300, min_seconds=0.4, max_seconds=3.0)
    assert LIMITS.within(model) == RequestLimits(10, 1.0, 3.0)


def test_the_node_request_uses_the_same_validator_with_its_policy_and_the_model_limits():
    config = PipelineConfig(max_text_length=12, default_duration=6.0)
    model = RequestLimits(max_text_chars=300, min_seconds=0.4, max_seconds=3.0)
    limits = config.request_limits.within(model)
    request = validate_request(" bow ", 0.0, -3, config, 1.0, "r", limits)
    assert (request.text, request.duration, request.seed) == ("bow", 3.0, None)  # default capped at the model's
    with pytest.raises(InputError, match="more than max_text_length=12"):
        validate_request("x" * 13, 2.0, 0, config, 1.0, limits=limits)
    with pytest.raises(InputError, match=r"outside the supported range \[1, 3\] s"):
        validate_request("bow", 3.5, 0, config, 1.0, limits=limits)


# ------------------------------------------------------------------------------ sampling overrides


def test_sampling_overrides_replace_only_what_is_set_and_are_schema_checked():
    base = GenerationConfig()
    assert SamplingOverrides().apply(base) is base
    changed = SamplingOverrides(refine_iterations=[1, 1], temperature=0.0).apply(base)
    assert changed.refine_iterations == [1, 1] and changed.temperature == 0.0
    assert (changed.guidance, changed.top_p) == (base.guidance, base.top_p)
    with pytest.raises(ConfigError, match="top_p"):
        SamplingOverrides(top_p=1.5).apply(base)


def test_node_parameters_turn_the_ros_placeholders_into_unset_once():
    assert SamplingParameters().overrides() == SamplingOverrides()
    set_ = SamplingParameters(guidance=2.0, guidance_end=0.0, top_p=0.8, temperature=-1.0, refine_iterations=[1, 2])
    assert set_.overrides() == SamplingOverrides(refine_iterations=[1, 2], guidance=2.0, guidance_end=0.0, top_p=0.8)
    values = {**parameter_defaults(), "guidance": 3.0, "refine_iterations": [2]}
    assert {"guidance", "refine_iterations", "top_p"} <= set(values) and "sampling" not in values
    pipeline, _ = split_parameters(values)
    assert pipeline.sampling == SamplingOverrides(refine_iterations=[2], guidance=3.0)
    with pytest.raises(ConfigError, match="refine_iterations"):
        split_parameters({**values, "refine_iterations": [0, 2]})
    with pytest.raises(ConfigError, match="top_p"):
        split_parameters({**values, "top_p": 0.0})


def test_cli_flags_are_named_as_the_config_fields():
    parser = build_parser()
    args = parser.parse_args(["generate", "wave", "--refine-iterations", "1", "2", "--top-p", "0.8"])
    assert SamplingOverrides.from_args(args) == SamplingOverrides(refine_iterations=[1, 2], top_p=0.8)
    old = parser.parse_args(["generate", "wave", "--iterations", "3"])  # the former name still works
    assert SamplingOverrides.from_args(old) == SamplingOverrides(refine_iterations=[3])
    assert "--iterations" not in parser._subparsers._group_actions[0].choices["generate"].format_help()  # noqa: SLF001
    evaluation = parser.parse_args(["eval", "generator", "--guidance", "2.5"])
    assert SamplingOverrides.from_args(evaluation) == SamplingOverrides(guidance=2.5)
    assert SamplingOverrides.from_args(argparse.Namespace()) == SamplingOverrides()


def test_a_bad_concurrency_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="concurrency: expected preempt or queue"):
        GenerationWorker(None, lambda job, step: None, lambda level, text: None, policy="lifo")
