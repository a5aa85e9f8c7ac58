"""Which joints go to which trajectory controller (ROS-free).

The ``controllers`` parameter is a YAML mapping, controller topic -> its joints, e.g.

    {/legs_waist_controller/joint_trajectory: [left_hip_pitch_joint, ...],
     /arms_controller/joint_trajectory: [left_shoulder_pitch_joint, ...]}

Empty means one controller, ``controller_topic``, with every joint of the robot. A ros2_control
``joint_trajectory_controller`` refuses a message whose joint set is not its own
(``allow_partial_joints_goal: false``), so each controller gets exactly its joints: the columns of
the whole-body trajectory with those names, in the order listed. A joint in two controllers, or one
the robot does not have, is a :class:`ConfigError`; joints no controller lists are reported, never sent.

Under ``locomotion: cmd_vel`` a travelling motion leaves the legs to the robot's walking controller
(:meth:`ControllerAssignment.upper_body`): with ``controllers``, only the controllers that own no leg
joint get their trajectories (a controller refuses a message without all its joints, so one that
mixes legs and waist gets nothing); with the single ``controller_topic``, the message carries the
upper-body joints only (that controller must own only those, or accept partial goals).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from moscale_common.errors import ConfigError


def parse_controllers(text: str) -> dict[str, list[str]]:
    """``{topic: [joint, ...]}`` from the parameter's YAML text ({} for empty text); ConfigError on
    anything but a mapping of non-empty topic names to non-empty lists of distinct joint names,
    each joint under one controller only."""
    if not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"controllers: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"controllers: expected a mapping controller topic -> [joints], got {text[:80]!r}")
    controllers: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for topic, joints in data.items():
        if not isinstance(topic, str) or not topic.strip():
            raise ConfigError(f"controllers: a controller topic must be a non-empty string, got {topic!r}")
        if not isinstance(joints, list) or not joints or not all(isinstance(j, str) and j for j in joints):
            raise ConfigError(f"controllers: {topic}: expected a non-empty list of joint names, got {joints!r}")
        for joint in joints:
            if joint in owner:
                raise ConfigError(f"controllers: joint {joint!r} is listed under both {owner[joint]} and {topic}")
            owner[joint] = topic
        controllers[topic] = list(joints)
    return controllers


@dataclass(frozen=True)
class ControllerAssignment:
    """Column indices into the robot's joint order for each controller topic, and the joints left out."""

    columns: dict[str, list[int]]
    joint_names: dict[str, list[str]]
    unlisted: list[str]

    @property
    def whole_body(self) -> bool:
        """One controller with every joint in the robot's order (the message can be sent as it is)."""
        return (
            len(self.columns) == 1 and not self.unlisted and all(cols == sorted(cols) for cols in self.columns.values())
        )

    def upper_body(self, upper_columns: list[int]) -> dict[str, list[int]]:
        """Columns each controller gets while the legs are the walking controller's (module
        docstring): ``upper_columns`` for a single controller, else the controllers whose columns
        are all in ``upper_columns``, with all of theirs."""
        upper = set(upper_columns)
        if len(self.columns) == 1:
            ((topic, columns),) = self.columns.items()
            return {topic: [c for c in columns if c in upper]}
        return {topic: list(columns) for topic, columns in self.columns.items() if set(columns) <= upper}


def assign_joints(
    controllers: dict[str, list[str]], default_topic: str, robot_joints: list[str]
) -> ControllerAssignment:
    """Map ``controllers`` (``{}``: ``default_topic`` with every joint) onto ``robot_joints``.
    ConfigError names joints the robot does not have."""
    if not controllers:
        controllers = {default_topic: list(robot_joints)}
    index = {name: i for i, name in enumerate(robot_joints)}
    unknown = sorted({j for joints in controllers.values() for j in joints} - set(index))
    if unknown:
        raise ConfigError(f"controllers: joint(s) {unknown} are not joints of the robot (it has {len(index)})")
    listed = {j for joints in controllers.values() for j in joints}
    return ControllerAssignment(
        columns={topic: [index[j] for j in joints] for topic, joints in controllers.items()},
        joint_names={topic: list(joints) for topic, joints in controllers.items()},
        unlisted=[name for name in robot_joints if name not in listed],
    )
