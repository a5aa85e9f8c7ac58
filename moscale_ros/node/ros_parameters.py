"""The node's parameters as ROS parameters: descriptors generated from the config schema, and the
declaration that survives bad values.

Every descriptor carries the field's description, its range (``floating_point_range`` /
``integer_range``; the one interval that holds every allowed value, the exact range and any special
values spelled out in the description) and ``read_only`` unless the field is ``live``. Parameters
are dynamically typed: a value of the wrong type reaches the schema check, which names it, instead
of rclpy refusing it with an exception at start-up.
"""

from __future__ import annotations

from typing import Any

import yaml
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from moscale_common.config import field_range
from moscale_ros.node.parameters import parameter_fields, parameter_types


def descriptor(name: str) -> ParameterDescriptor:
    """The descriptor of node parameter ``name`` (see the module docstring)."""
    field = parameter_fields()[name]
    allowed = field_range(field)
    live = bool(field.metadata.get("live"))
    text = field.metadata.get("description", "")
    if allowed is not None:
        text += f"; range {allowed.describe()}"
    text += "" if live else "; read at start-up (read-only while running)"
    result = ParameterDescriptor(name=name, description=text, read_only=not live, dynamic_typing=True)
    if allowed is not None:
        low, high = allowed.outer
        kind = parameter_types()[name]
        if kind is int:
            result.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        elif kind is float:
            result.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        result.additional_constraints = f"range {allowed.describe()}"
    return result


def python_value(value: Any) -> Any:
    """A parameter value as plain Python (arrays as lists)."""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return list(value)
    return value


def requested_values(node: Node, defaults: dict[str, Any]) -> dict[str, Any]:
    """``{name: value}``: the parameter file / ``-p`` override of each parameter, else its default."""
    overrides = getattr(node, "_parameter_overrides", {})
    values = {}
    for name, default in defaults.items():
        value = overrides[name].value if name in overrides else default
        values[name] = default if value is None else python_value(value)  # an empty list has no type
    return values


def command_line_overrides(argv: list[str]) -> list[Parameter]:
    """The ``-p name:=value`` rules of ``argv``'s ``--ros-args`` sections as Parameters (values
    parsed as YAML, as rcl does), to pass as the node's ``parameter_overrides``.

    Why: rcl keeps ``-p`` rules under the node key ``/**``, and a parameter file whose key is also
    ``/**`` (config/moscale.yaml) overwrites them there whatever the order on the command line
    (checked with this rclpy), so ``-p`` would silently lose to the file. Node-prefixed rules
    (``node:name:=value``) are left to rcl, which applies them over ``/**`` already."""
    rules, in_ros_args, index = [], False, 0
    while index < len(argv):
        token = argv[index]
        if token == "--ros-args":
            in_ros_args = True
        elif token == "--":
            in_ros_args = False
        elif in_ros_args and token in ("-p", "--param") and index + 1 < len(argv):
            index += 1
            rules.append(argv[index])
        index += 1
    overrides = []
    for rule in rules:
        name, separator, text = rule.partition(":=")
        if not separator or ":" in name:
            continue
        try:
            overrides.append(Parameter(name, value=rcl_value(text)))
        except (yaml.YAMLError, TypeError, ValueError):  # rcl has refused or kept it: its value stands
            continue
    return overrides


def rcl_value(text: str) -> Any:
    """A ``-p`` value as rcl reads it: YAML, except that a plain scalar that C's ``strtod`` reads
    as a number is one (``1e-300`` is a float for rcl, a string for YAML 1.1)."""

    def number(item: Any, raw: str) -> Any:
        if isinstance(item, str) and raw.strip() and raw.strip()[0] not in "'\"":
            try:
                return float(raw)
            except ValueError:
                return item
        return item

    value = yaml.safe_load(text)
    if isinstance(value, list):
        inner = text.strip()[1:-1].split(",") if text.strip().startswith("[") else []
        if len(inner) == len(value):
            return [number(item, raw) for item, raw in zip(value, inner)]
        return value
    return python_value(number(value, text))


def declare_all(node: Node, defaults: dict[str, Any]) -> list[str]:
    """Declare every parameter with its descriptor; one whose override rclpy refuses (outside the
    descriptor's range) is declared with its default instead. Returns the names so declared."""
    refused = []
    for name, default in defaults.items():
        try:
            node.declare_parameter(name, default, descriptor(name))
        except (InvalidParameterValueException, InvalidParameterTypeException):
            node.declare_parameter(name, default, descriptor(name), ignore_override=True)
            refused.append(name)
    return refused
