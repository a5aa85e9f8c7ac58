"""The one config system rejects unknown keys and wrong types with messages naming them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from moscale_common.config import ConfigError, apply_overrides, from_dict, load_config, to_dict


@dataclass
class Inner:
    width: int = 64
    dropout: float = 0.1


@dataclass
class Outer:
    name: str = "model"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    scales: list[int] = field(default_factory=lambda: [6, 12, 24, 49])
    inner: Inner = field(default_factory=Inner)
    path: str | None = None


def test_defaults_and_nested_values_are_filled():
    cfg = from_dict(Outer, {"inner": {"width": 128}, "scales": [1, 2]})
    assert cfg.inner.width == 128 and cfg.inner.dropout == 0.1
    assert cfg.scales == [1, 2]
    assert to_dict(cfg)["inner"] == {"width": 128, "dropout": 0.1}


def test_int_is_accepted_as_float_but_not_the_reverse():
    assert from_dict(Inner, {"dropout": 0}).dropout == 0.0
    with pytest.raises(ConfigError, match=r"config.width: expected int, got float"):
        from_dict(Inner, {"width": 1.5})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"nmae": "x"}, r"unknown key\(s\) nmae; allowed: device, inner, name, path, scales"),
        ({"inner": {"widht": 3}}, r"config.inner: unknown key\(s\) widht"),
        ({"inner": {"width": "six"}}, r"config.inner.width: expected int, got str 'six'"),
        ({"device": "tpu"}, r"config.device: expected one of \['auto', 'cpu', 'cuda'\]"),
        ({"scales": [1, "a"]}, r"config.scales\[1\]: expected int"),
        ({"inner": [1]}, r"config.inner: expected a mapping"),
        ({"inner": {"width": True}}, r"expected int, got bool"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: tiny\ninner:\n  width: 32\n")
    cfg = load_config(Outer, path, overrides=["inner.dropout=0.5", "scales=[3, 6]"])
    assert (cfg.name, cfg.inner.width, cfg.inner.dropout, cfg.scales) == ("tiny", 32, 0.5, [3, 6])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides({}, ["novalue"])


def test_malformed_yaml_and_missing_file_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(Outer, bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(Outer, scalar)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Outer, tmp_path / "missing.yaml")
