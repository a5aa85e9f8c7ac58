"""Checkpoints round-trip without pickle; corrupt, truncated, foreign or mismatched files fail clearly."""

from __future__ import annotations

import json

import pytest
import torch

from moscale_common.errors import CheckpointError
from moscale_ros.checkpoint import load_checkpoint, load_state_strict, save_checkpoint


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))


def test_round_trip_keeps_tensors_configs_and_extra(tmp_path):
    model = _model()
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        "unit",
        {"net": model.state_dict()},
        configs={"net": {"width": 8}},
        extra={"step": 3},
    )
    ckpt = load_checkpoint(path, kind="unit")
    assert ckpt.configs == {"net": {"width": 8}} and ckpt.extra == {"step": 3}
    other = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    load_state_strict(other, ckpt.states["net"], "net")
    x = torch.randn(3, 4)
    assert torch.equal(model(x), other(x))


def test_fp16_shipping_halves_the_size(tmp_path):
    model = _model()
    full = save_checkpoint(tmp_path / "a.safetensors", "unit", {"net": model.state_dict()})
    half = save_checkpoint(tmp_path / "b.safetensors", "unit", {"net": model.state_dict()}, dtype=torch.float16)
    assert load_checkpoint(half).states["net"]["0.weight"].dtype == torch.float16
    assert half.stat().st_size < full.stat().st_size


def test_missing_truncated_garbage_and_pickle_files_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")
    path = save_checkpoint(tmp_path / "m.safetensors", "unit", {"net": _model().state_dict()})
    data = path.read_bytes()
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(garbage)
    pickled = tmp_path / "p.pt"
    torch.save(_model().state_dict(), pickled)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(pickled)


def test_wrong_kind_version_and_shapes_are_named(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", "unit", {"net": _model().state_dict()})
    with pytest.raises(CheckpointError, match="expected a 'tokenizer' checkpoint, got 'unit'"):
        load_checkpoint(path, kind="tokenizer")
    # Rewrite the header with another format version: the loader must refuse it.
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    header["__metadata__"]["format_version"] = "99"
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    (tmp_path / "v.safetensors").write_bytes(len(new_header).to_bytes(8, "little") + new_header + raw[8 + size :])
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_checkpoint(tmp_path / "v.safetensors")
    wide = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.GELU(), torch.nn.Linear(16, 2))
    with pytest.raises(CheckpointError, match=r"shape mismatch .*0.weight \(8, 4\) vs \(16, 4\)"):
        load_state_strict(wide, load_checkpoint(path).states["net"], "net")
