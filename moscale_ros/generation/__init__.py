"""Generation: streaming coarse-to-fine text-to-motion, guidance, refinement, continuation, editing.

``from moscale_ros.generation import MotionGenerator, ScaleOutput, GenerationConfig`` (imported
lazily, so ``moscale_ros.generation.config`` stays light).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "MotionGenerator": "moscale_ros.generation.generator",
    "ScaleOutput": "moscale_ros.generation.generator",
    "GenerationConfig": "moscale_ros.generation.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'moscale_ros.generation' has no attribute {name!r}")
