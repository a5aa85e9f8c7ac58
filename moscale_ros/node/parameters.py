"""The node's ROS parameters: the fields of :class:`PipelineConfig` plus :class:`NodeSettings`.

Both are plain dataclasses of the project's config system, so values from a parameter file or
``-p name:=value`` are schema-checked by :func:`moscale_common.config.from_dict` (a wrong type or an
out-of-range value names the parameter). ``config/moscale.yaml`` lists exactly these names.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from moscale_common.config import from_dict
from moscale_common.errors import ConfigError
from moscale_ros.pipeline import PipelineConfig

DEFAULT_CONTROLLER_TOPIC = "/joint_trajectory_controller/joint_trajectory"


@dataclass
class NodeSettings:
    """Topics, concurrency, playback and QoS of the ROS node (everything the core does not need)."""

    controller_topic: str = DEFAULT_CONTROLLER_TOPIC  # JointTrajectory for the trajectory controller
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


def parameter_defaults() -> dict[str, Any]:
    """``{name: default}`` of every node parameter, pipeline first."""
    defaults: dict[str, Any] = {}
    for cls in (PipelineConfig, NodeSettings):
        instance = cls()
        for f in dataclasses.fields(cls):
            defaults[f.name] = getattr(instance, f.name)
    return defaults


def parameter_types() -> dict[str, Any]:
    """``{name: annotated type}`` of every node parameter."""
    types: dict[str, Any] = {}
    for cls in (PipelineConfig, NodeSettings):
        types.update(typing.get_type_hints(cls))
    return types


def split_parameters(values: dict[str, Any]) -> tuple[PipelineConfig, NodeSettings]:
    """Schema-checked configs from ``{name: value}`` (ConfigError names a bad parameter)."""
    pipeline_names = {f.name for f in dataclasses.fields(PipelineConfig)}
    node_names = {f.name for f in dataclasses.fields(NodeSettings)}
    unknown = sorted(set(values) - pipeline_names - node_names)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}")
    pipeline = from_dict(PipelineConfig, {k: v for k, v in values.items() if k in pipeline_names}, "parameter")
    node = from_dict(NodeSettings, {k: v for k, v in values.items() if k in node_names}, "parameter")
    return pipeline, node
