"""A command of several parts as one motion: each part continues from the end of the one before.

For parts ``1..n`` (text, seconds, seed) and scales ``k = 1..K``, the motion at scale ``k`` is the
chain

    m_k = prefix ++ new_k(1 | prefix) ++ new_k(2 | tail(m_k after part 1)) ++ ... ++ new_k(n | ...)

where ``new_k(i | p)`` are the new frames of part ``i`` generated at the detail of scales ``1..k``
continuing the frames ``p`` (the generator's prefix continuation) and ``tail`` the last
``prefix_seconds``. Every chain is continuous (each part starts where the previous one of *that*
chain ends), so the coarse plan of the whole sequence comes first (``K = 1``: ``n`` first scales)
and every refinement is again one whole, continuous motion. A part keeps its seed in every chain,
so a refinement refines the same sample.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PartSpec:
    """One part to generate: the text the model gets, its duration, its seed."""

    text: str
    seconds: float
    seed: int


@dataclass
class SequenceOutput:
    """One scale of the whole sequence (the same fields the pipeline reads from a ScaleOutput),
    plus ``part_frames``: the number of new frames of each part, in order."""

    scale_index: int
    num_scales: int
    is_final: bool
    joints: np.ndarray
    fps: float
    elapsed_s: float
    prefix_frames: int = 0
    part_frames: list[int] = field(default_factory=list)


def random_seed() -> int:
    """A random seed for a command given none (every part derives its own from it)."""
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


def part_seed(seed: int, index: int) -> int:
    """The seed of part ``index`` of a command with ``seed`` (part 0 keeps it)."""
    return (seed + 7919 * index) & 0x7FFFFFFF


def stream_sequence(
    generator: Any,
    parts: Sequence[PartSpec],
    prefix_joints: np.ndarray | None,
    prefix_seconds: float,
) -> Iterator[SequenceOutput]:
    """Yield the whole sequence after every scale (see the module docstring). ``generator`` is a
    :class:`~moscale_ros.generation.generator.MotionGenerator` (its ``stream``, ``num_scales``, ``fps``)."""
    start = time.perf_counter()
    fps = float(generator.fps)
    tail_frames = max(1, int(round(prefix_seconds * fps)))
    num_scales = int(generator.num_scales)
    for k in range(1, num_scales + 1):
        pieces: list[np.ndarray] = []
        part_frames: list[int] = []
        prefix = prefix_joints
        first_prefix_frames = 0
        for index, part in enumerate(parts):
            stream = generator.stream(part.text, part.seconds, part.seed, prefix_joints=prefix)
            try:
                output = None
                for output in stream:
                    if output.scale_index >= k:
                        break
            finally:
                stream.close()
            given = int(output.prefix_frames)
            if index == 0:
                first_prefix_frames = given
                pieces.append(np.asarray(output.joints[:given], np.float32))
            new_T223 = np.asarray(output.joints[given:], np.float32)
            pieces.append(new_T223)
            part_frames.append(len(new_T223))
            so_far = np.concatenate(pieces)
            prefix = so_far[-tail_frames:]
        yield SequenceOutput(
            scale_index=k,
            num_scales=num_scales,
            is_final=k == num_scales,
            joints=np.concatenate(pieces),
            fps=fps,
            elapsed_s=time.perf_counter() - start,
            prefix_frames=first_prefix_frames,
            part_frames=part_frames,
        )
