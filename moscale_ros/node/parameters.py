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
import typing
from dataclasses import dataclass
from typing import Any, Literal

from moscale_common.config import Range, check_ranges, from_dict, setting
from moscale_common.errors import ConfigError
from moscale_ros.generation.config import SamplingOverrides
from moscale_ros.node.controllers import parse_controllers
from moscale_ros.pipeline import PipelineConfig

DEFAULT_CONTROLLER_TOPIC = "/joint_trajectory_controller/joint_trajectory"


MODELS = "the model's"


@dataclass
class SamplingParameters:
    """The sampling overrides as ROS parameters; -1 (or ``refine_iterations: [0]``) means unset."""

    guidance: float = setting(
        -1.0, "classifier-free guidance at scale 1", Range(0.0, 30.0, special=((-1.0, MODELS),)), live=True
    )
    guidance_end: float = setting(
        -1.0, "guidance at the last scale (linear in between)", Range(0.0, 30.0, special=((-1.0, MODELS),)), live=True
    )
    top_p: float = setting(-1.0, "nucleus sampling mass", Range(0.01, 1.0, special=((-1.0, MODELS),)), live=True)
    temperature: float = setting(
        -1.0, "sampling temperature", Range(0.05, 10.0, special=((-1.0, MODELS), (0.0, "greedy"))), live=True
    )
    refine_iterations: list[int] = setting(
        description="in-scale refinement passes per scale, e.g. [1, 1, 2, 2]; [0]: the model's",
        value_range=Range(0, 16),
        factory=lambda: [0],
        live=True,
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        iterations = self.refine_iterations
        if iterations != [0] and (not 1 <= len(iterations) <= 16 or any(n < 1 for n in iterations)):
            raise ConfigError(
                f"refine_iterations: expected [0] (the model's) or 1 to 16 entries in [1, 16], got {iterations}"[:300]
            )

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


QOS_DEPTH = Range(1, 1000)


@dataclass
class NodeSettings:
    """Topics, concurrency, playback and QoS of the ROS node (everything the core does not need)."""

    controller_topic: str = setting(DEFAULT_CONTROLLER_TOPIC, "JointTrajectory topic of the trajectory controller")
    controllers: str = setting(
        "", "YAML {controller topic: [joints]}, each controller gets exactly its joints; empty: controller_topic"
    )
    cmd_vel_topic: str = setting(
        "/cmd_vel", "geometry_msgs/Twist topic of the robot's walking controller (locomotion: cmd_vel)"
    )
    joint_state_topic_in: str = setting(
        "", "measured JointState (e.g. /joint_states): a command with nothing running starts there; empty: IK pose"
    )
    robot_description_topic: str = setting(
        "", "URDF topic read at start-up or configure (e.g. /robot_description, transient local); empty: not read"
    )
    robot_description_timeout: float = setting(
        10.0, "s to wait for a message on robot_description_topic", Range(0.1, 600.0, "s")
    )
    concurrency: Literal["preempt", "queue"] = setting(
        "preempt", "preempt | queue: what a new command does to the one in progress"
    )
    max_queue: int = setting(4, "commands allowed to wait under queue", Range(0, 64))
    min_run_time: float = setting(
        1.0,
        "s a command runs at least before a newer one preempts it (longer if commands usually take longer "
        "to their final plan, up to 5 s; newer ones coalesce meanwhile); 0: at once",
        Range(0.0, 10.0, "s"),
        live=True,
    )
    topic_seed: int = setting(-1, "seed of ~/command commands; -1: random", Range(-1, 2**31 - 1), live=True)
    playback_rate: float = setting(
        30.0, "Hz of JointState + skeleton playback", Range(1.0, 200.0, "Hz", ((0.0, "off"),))
    )
    joint_state_topic: str = setting("~/joint_states", "playback JointState topic (/joint_states for RViz only)")
    marker_frame: str = setting("world", "frame of the ~/skeleton markers")
    qos_depth: int = setting(10, "history depth of the controller topics", QOS_DEPTH)
    qos_reliability: Literal["reliable", "best_effort"] = setting("reliable", "reliable | best_effort")
    qos_durability: Literal["volatile", "transient_local"] = setting("volatile", "volatile | transient_local")
    warmup: bool = setting(True, "run one throw-away command at start-up (first-call costs)")
    on_startup_error: Literal["exit", "stay_up"] = setting(
        "exit", "exit (code 2) | stay_up (refuse every command with the reason)"
    )
    max_command_rate: float = setting(
        10.0,
        "commands/s accepted on ~/command and ~/generate together",
        Range(0.1, 1000.0, "commands/s", ((0.0, "no limit"),)),
        live=True,
    )
    command_burst: int = setting(10, "commands accepted back to back before max_command_rate applies",
                                 Range(1, 1000), live=True)  # fmt: skip
    diagnostics_period: float = setting(1.0, "s between /diagnostics reports", Range(0.1, 3600.0, "s", ((0.0, "off"),)))
    text_cache_mb: float = setting(
        16.0, "memory budget of the text-feature cache; 0: no cache", Range(0.0, 4096.0, "MB"), live=True
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.controller_topic.strip():
            raise ConfigError("controller_topic: must not be empty")
        parse_controllers(self.controllers)  # ConfigError names what is wrong
        if self.joint_state_topic_in and self.joint_state_topic_in == self.joint_state_topic:
            raise ConfigError(
                f"joint_state_topic_in: {self.joint_state_topic_in!r} is also joint_state_topic, the node's own "
                "playback; the measured state must come from the robot"
            )

    @property
    def controller_joints(self) -> dict[str, list[str]]:
        """``controllers`` parsed (``{}``: the one whole-body ``controller_topic``)."""
        return parse_controllers(self.controllers)


PARAMETER_GROUPS = (PipelineConfig, SamplingParameters, NodeSettings)
NOT_PARAMETERS = {"sampling"}  # PipelineConfig's field that SamplingParameters spells out


def _parameter_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in NOT_PARAMETERS]


def parameter_fields() -> dict[str, dataclasses.Field]:
    """``{name: dataclass field}`` of every node parameter: its metadata holds the description,
    the :class:`~moscale_common.config.Range` and whether it is ``live``."""
    return {f.name: f for cls in PARAMETER_GROUPS for f in dataclasses.fields(cls) if f.name not in NOT_PARAMETERS}


def live_parameters() -> set[str]:
    """Names of the parameters a running node applies when they change (the others are read-only)."""
    return {name for name, f in parameter_fields().items() if f.metadata.get("live")}


def parameter_table() -> str:
    """The Markdown table of every parameter (docs/ROS.md holds it; a test keeps them equal):
    name, default, range, whether it changes live, description."""

    def shown(value: Any) -> str:
        return f"`{value!r}`".replace("'", '"') if isinstance(value, str) else f"`{value}`".replace("True", "true")

    rows = ["| parameter | default | range | live | meaning |", "| --- | --- | --- | --- | --- |"]
    defaults = parameter_defaults()
    for name, field in parameter_fields().items():
        allowed = field.metadata.get("range")
        shown_default = shown(defaults[name]).replace("False", "false")
        description = field.metadata.get("description", "").replace("|", "\\|")
        rows.append(
            f"| `{name}` | {shown_default} | {allowed.describe() if allowed else ''} | "
            f"{'yes' if field.metadata.get('live') else ''} | {description} |"
        )
    return "\n".join(rows)


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
