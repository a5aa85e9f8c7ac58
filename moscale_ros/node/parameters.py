"""The node's ROS parameters: the fields of :class:`PipelineConfig` (its ``sampling`` spelled out
as :class:`SamplingParameters`) plus :class:`NodeSettings`.

All are plain dataclasses of the project's config system, so values from a parameter file or
``-p name:=value`` are schema-checked by :func:`moscale_common.config.from_dict` (a wrong type or an
out-of-range value names the parameter). ``config/moscale.yaml`` lists exactly these names.

A ROS parameter has no "unset" value, so the sampling parameters use placeholders: a negative number,
or ``refine_iterations: [0]``, keeps the checkpoint's own setting. This is the one place where they
become :class:`~moscale_ros.generation.config.SamplingOverrides` (``None`` = unset).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from moscale_common.config import from_dict
from moscale_common.errors import ConfigError
from moscale_ros.generation.config import SamplingOverrides
from moscale_ros.node.controllers import parse_controllers
from moscale_ros.pipeline import PipelineConfig

DEFAULT_CONTROLLER_TOPIC = "/joint_trajectory_controller/joint_trajectory"


@dataclass
class SamplingParameters:
    """The sampling overrides as ROS parameters; a negative number or ``[0]`` means unset."""

    guidance: float = -1.0  # classifier-free guidance at scale 1
    guidance_end: float = -1.0  # ... decaying linearly to this at the last scale
    top_p: float = -1.0  # nucleus sampling mass
    temperature: float = -1.0  # sampling temperature (0: greedy)
    refine_iterations: list[int] = dataclasses.field(default_factory=lambda: [0])  # in-scale passes per scale

    def __post_init__(self) -> None:
        iterations = self.refine_iterations
        if iterations != [0] and (not iterations or any(n < 1 for n in iterations)):
            raise ConfigError(f"refine_iterations: expected [0] (the model's) or entries >= 1, got {iterations}")
        if self.top_p == 0 or self.top_p > 1:
            raise ConfigError(f"top_p: must be in (0, 1], or negative for the model's, got {self.top_p}")

    def overrides(self) -> SamplingOverrides:
        """The placeholders turned into "unset" (None)."""

        def number(value: float) -> float | None:
            return None if value < 0 else value

        return SamplingOverrides(
            refine_iterations=None if self.refine_iterations == [0] else list(self.refine_iterations),
            guidance=number(self.guidance),
            guidance_end=number(self.guidance_end),
            top_p=number(self.top_p),
            temperature=number(self.temperature),
        )


@dataclass
class NodeSettings:
    """Topics, concurrency, playback and QoS of the ROS node (everything the core does not need)."""

    controller_topic: str = DEFAULT_CONTROLLER_TOPIC  # JointTrajectory for the trajectory controller
    controllers: str = ""  # YAML {controller topic: [joints]}; empty: controller_topic with every joint
    joint_state_topic_in: str = ""  # measured JointState (e.g. /joint_states); empty: start from an IK pose
    robot_description_topic: str = ""  # e.g. /robot_description (transient local); empty: not read
    robot_description_timeout: float = 10.0  # s to wait at start-up for a message on robot_description_topic
    concurrency: Literal["preempt", "queue"] = "preempt"  # what a new command does to the one in progress
    max_queue: int = 4  # commands allowed to wait under "queue"
    topic_seed: int = -1  # seed of ~/command commands; -1: random
    playback_rate: float = 30.0  # Hz of JointState + skeleton playback; 0: off
    joint_state_topic: str = "~/joint_states"  # remap to /joint_states for an RViz-only preview
    marker_frame: str = "world"  # frame of the skeleton markers
    qos_depth: int = 10
    qos_reliability: Literal["reliable", "best_effort"] = "reliable"
    qos_durability: Literal["volatile", "transient_local"] = "volatile"
    warmup: bool = True  # run one throw-away command at start-up (first-call costs)
    on_startup_error: Literal["exit", "stay_up"] = "exit"  # exit code 2, or stay up refusing every command
    max_command_rate: float = 10.0  # commands/s accepted on ~/command and ~/generate together; 0: no limit
    command_burst: int = 10  # commands accepted back to back before max_command_rate applies
    diagnostics_period: float = 1.0  # s between /diagnostics reports; 0: off

    def __post_init__(self) -> None:
        if self.max_queue < 0:
            raise ConfigError(f"max_queue: must be >= 0, got {self.max_queue}")
        if self.qos_depth < 1:
            raise ConfigError(f"qos_depth: must be >= 1, got {self.qos_depth}")
        if not self.playback_rate >= 0:
            raise ConfigError(f"playback_rate: must be >= 0 Hz, got {self.playback_rate}")
        if not self.controller_topic.strip():
            raise ConfigError("controller_topic: must not be empty")
        if not (math.isfinite(self.max_command_rate) and self.max_command_rate >= 0):
            raise ConfigError(f"max_command_rate: must be >= 0 commands/s (0: no limit), got {self.max_command_rate}")
        if self.command_burst < 1:
            raise ConfigError(f"command_burst: must be >= 1, got {self.command_burst}")
        if not (math.isfinite(self.diagnostics_period) and self.diagnostics_period >= 0):
            raise ConfigError(f"diagnostics_period: must be >= 0 s, got {self.diagnostics_period}")
        parse_controllers(self.controllers)  # ConfigError names what is wrong
        if self.joint_state_topic_in and self.joint_state_topic_in == self.joint_state_topic:
            raise ConfigError(
                f"joint_state_topic_in: {self.joint_state_topic_in!r} is also joint_state_topic, the node's own "
                "playback; the measured state must come from the robot"
            )
        if not (math.isfinite(self.robot_description_timeout) and self.robot_description_timeout > 0):
            raise ConfigError(f"robot_description_timeout: must be > 0 s, got {self.robot_description_timeout}")

    @property
    def controller_joints(self) -> dict[str, list[str]]:
        """``controllers`` parsed (``{}``: the one whole-body ``controller_topic``)."""
        return parse_controllers(self.controllers)


PARAMETER_GROUPS = (PipelineConfig, SamplingParameters, NodeSettings)
NOT_PARAMETERS = {"sampling"}  # PipelineConfig's field that SamplingParameters spells out


def _parameter_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in NOT_PARAMETERS]


def parameter_defaults() -> dict[str, Any]:
    """``{name: default}`` of every node parameter, pipeline first."""
    defaults: dict[str, Any] = {}
    for cls in PARAMETER_GROUPS:
        instance = cls()
        defaults.update({name: getattr(instance, name) for name in _parameter_names(cls)})
    return defaults


def parameter_types() -> dict[str, Any]:
    """``{name: annotated type}`` of every node parameter."""
    types: dict[str, Any] = {}
    for cls in PARAMETER_GROUPS:
        hints = typing.get_type_hints(cls)
        types.update({name: hints[name] for name in _parameter_names(cls)})
    return types


def split_parameters(values: dict[str, Any]) -> tuple[PipelineConfig, NodeSettings]:
    """Schema-checked configs from ``{name: value}`` (ConfigError names a bad parameter); the
    sampling placeholders become :class:`SamplingOverrides` here."""
    groups = [set(_parameter_names(cls)) for cls in PARAMETER_GROUPS]
    unknown = sorted(set(values) - set().union(*groups))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}")
    pipeline, sampling, node = (
        from_dict(cls, {k: v for k, v in values.items() if k in names}, "parameter")
        for cls, names in zip(PARAMETER_GROUPS, groups)
    )
    return dataclasses.replace(pipeline, sampling=sampling.overrides()), node
