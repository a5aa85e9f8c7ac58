"""Safe checkpoints: tensors in safetensors, configuration and provenance in its JSON metadata.

Loading never unpickles anything. A checkpoint file holds named parts (``tokenizer``,
``transformer``, ``optimizer``...), each a flat state dict stored under ``<part>.<key>``, and
metadata ``{"format": FORMAT, "format_version": ..., "kind": ..., "configs": {...}, "extra": {...}}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from moscale_common.errors import CheckpointError
from moscale_common.paths import check_regular_file

FORMAT = "moscale-ros-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``states[part][key] -> tensor``, configs and extra info per part."""

    path: Path
    kind: str
    states: dict[str, dict[str, torch.Tensor]]
    configs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    kind: str,
    states: dict[str, dict[str, torch.Tensor]],
    configs: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write atomically (temp file + rename). ``dtype`` casts floating tensors (e.g. fp16 to ship)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat: dict[str, torch.Tensor] = {}
    for part, state in states.items():
        for key, tensor in state.items():
            if not isinstance(tensor, torch.Tensor):
                tensor = torch.as_tensor(tensor)
            tensor = tensor.detach().cpu()
            if dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(dtype)
            flat[f"{part}.{key}"] = tensor.contiguous()
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "configs": json.dumps(configs or {}),
        "extra": json.dumps(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(flat, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, kind: str | None = None, device: str = "cpu") -> Checkpoint:
    """Read a checkpoint; a missing, corrupt, truncated, foreign or wrong-version file raises."""
    path = Path(path)
    check_regular_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        flat = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({exc})") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} file (format={metadata.get('format')!r})")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: checkpoint format version {metadata.get('format_version')} is not supported "
            f"(this version reads {FORMAT_VERSION}); retrain or convert it"
        )
    if kind is not None and metadata.get("kind") != kind:
        raise CheckpointError(f"{path}: expected a {kind!r} checkpoint, got {metadata.get('kind')!r}")
    try:
        configs = json.loads(metadata.get("configs", "{}"))
        extra = json.loads(metadata.get("extra", "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({exc})") from exc
    states: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in flat.items():
        part, _, key = name.partition(".")
        states.setdefault(part, {})[key] = tensor
    return Checkpoint(path=path, kind=metadata["kind"], states=states, configs=configs, extra=extra)


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``module.load_state_dict`` that turns missing/unexpected/mis-shaped keys into CheckpointError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}")
        if wrong:
            details.append(
                "shape mismatch "
                + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:5])
            )
        raise CheckpointError(f"{where}: checkpoint does not match the model ({'; '.join(details)})")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
