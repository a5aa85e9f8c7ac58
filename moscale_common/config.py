"""One configuration system: typed dataclasses, filled from YAML and checked against their schema.

Every configurable part declares a ``@dataclass`` with defaults. :func:`from_dict` builds it from
plain data and rejects unknown keys and wrong types with a message that names the offending key
path (``model.num_layers: expected int, got str 'six'``). :func:`load_config` reads a YAML file and
applies ``key.sub=value`` overrides from the command line.

A numeric field may declare its range in the schema itself with :func:`setting` (a :class:`Range`
in the field's metadata, with a one-line description); :func:`check_ranges`, called from the
dataclass's ``__post_init__``, refuses a value outside it with one line naming the range. The ROS
node builds its parameter descriptors from the same declarations, so the parameter file, ``-p``
and live parameter changes share one set of limits.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from moscale_common.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: ``low <= x <= high`` (finite), or one of ``special``
    (``{value: meaning}``, e.g. ``{0.0: "off"}``). For a list setting, every entry is checked."""

    low: float
    high: float
    unit: str = ""
    special: tuple[tuple[float, str], ...] = ()

    def allows(self, value: float) -> bool:
        if any(value == special for special, _ in self.special):
            return True
        return math.isfinite(value) and self.low <= value <= self.high

    def describe(self) -> str:
        """``[1, 500] Hz (or 0: off)``."""
        text = f"[{_number(self.low)}, {_number(self.high)}]" + (f" {self.unit}" if self.unit else "")
        if self.special:
            text += " (or " + ", ".join(f"{_number(v)}: {meaning}" for v, meaning in self.special) + ")"
        return text

    @property
    def outer(self) -> tuple[float, float]:
        """The smallest interval holding every allowed value (ROS descriptors hold one interval)."""
        values = [self.low, self.high, *(v for v, _ in self.special)]
        return min(values), max(values)


def _number(value: float) -> str:
    """``500``, ``0.05``, ``2147483647`` (integers in full, others as ``%g``)."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def setting(
    default: Any = dataclasses.MISSING,
    description: str = "",
    value_range: Range | None = None,
    *,
    factory: Any = dataclasses.MISSING,
    live: bool = False,
) -> Any:
    """A dataclass field with its description, its :class:`Range` (numbers) and whether a running
    node may change it (``live``); all kept in the field's metadata."""
    metadata = {"description": description, "range": value_range, "live": live}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_range(field: dataclasses.Field) -> Range | None:
    return field.metadata.get("range") if field.metadata else None


def check_ranges(obj: Any) -> None:
    """ConfigError (one line: the field, the value, the range) for the first field of dataclass
    ``obj`` outside its declared :class:`Range`."""
    for field in dataclasses.fields(obj):
        allowed = field_range(field)
        if allowed is None:
            continue
        value = getattr(obj, field.name)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not allowed.allows(float(item)):
                what = f"{item!r}" if not isinstance(value, (list, tuple)) else f"entry {item!r} of {list(value)!r}"
                raise ConfigError(f"{field.name}: {what} is outside {allowed.describe()}"[:300])


def _type_name(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: no allowed type matches {_type_name(value)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: expected one of {list(get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, Sequence) or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_type_name(value)}")
        (item_tp,) = get_args(tp) or (Any,)
        return [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_type_name(value)}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_type_name(value)}")
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {_convert(key_tp, k, f"{where}.<key>"): _convert(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_type_name(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected int, got {_type_name(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected float, got {_type_name(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected str, got {_type_name(value)}")
        return value
    raise ConfigError(f"{where}: unsupported schema type {tp!r}")


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, field in known.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}" if where else name)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Plain, YAML/JSON-ready data of a (nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; a missing file, a parse error or a non-mapping raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a mapping")
        node[parts[-1]] = value
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Defaults of ``cls``, updated from the YAML file at ``path`` and then from ``overrides``."""
    data = load_yaml(path) if path is not None else {}
    apply_overrides(data, overrides)
    return from_dict(cls, data, where=str(path) if path is not None else "config")
