"""The shipped model, a fixed text, seed and duration, on CPU: bit-identical motions across refactors.

The digests were recorded with the code as it was before the generation code was reorganised
(scale step in the tokenizer, one request path, sampling overrides); any change to the numbers the
generator produces (order of floating-point operations, RNG use, sampling) changes them. They are
SHA-256 of the float32 joints ``(T, 22, 3)`` as C-ordered bytes (CPU, one torch thread: the
shipped ``generation.num_threads``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from moscale_common.paths import resource
from moscale_ros.generation.config import SamplingOverrides
from moscale_ros.generation.generator import MotionGenerator

WAVE_FINAL = "a182738d45d86a8d4d02d482720d8fb9ab5e881f43aeba7a371060661c77134a"
WAVE_SCALES = [
    "21ae3b24dd35f06605f8be661258e237808e52a0e01c9af157d714081ab6bb84",
    "7dd4a941941c7cf96271de54f9e0028b5cb4b2fe0b4422d274eb445526c9b9d6",
    "7d2064190622a2cddc1f7a3e15c21c0164d0cd612c8fccdf3f848311e95abb5f",
    WAVE_FINAL,
]
WAVE_LAST_SCALE_CODES = [392, 271, 289, 172, 172, 130]
CONTINUATION = "83f08fd315ed4aabd62fe286813b20370e41abc21377844707350e174a6034f1"
EDIT = "94937848845eee7a6a024c39e162f00de4c08526e454c62888ba3dc3ea694352"
BATCH = [
    "340dc6c0a76d855a247ba2d64b4a97f3263250f840f868cc6eb03beafa3f4986",
    "59e78e990d893137588403ba5f2f2db4770200f6fb505ca3685153bff623fc64",
]
OVERRIDDEN = "59a7f4a2072e9c7d7f97b531ca3d6dbf68971765025a7d785f48788533ddc3ad"


def digest(joints: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(joints, dtype=np.float32).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def shipped() -> MotionGenerator:
    if not resource("models/moscale-bandai.safetensors").is_file():
        pytest.skip("the shipped model is not in this checkout")
    return MotionGenerator.from_checkpoint(None, device="cpu", warm_up=False)


def test_shipped_model_streams_the_recorded_motion_at_every_scale(shipped: MotionGenerator) -> None:
    scales = list(shipped.stream("a person waves the right hand", 3.0, 7))
    assert [digest(s.joints) for s in scales] == WAVE_SCALES
    assert scales[-1].codes[-1][:6].tolist() == WAVE_LAST_SCALE_CODES


def test_shipped_model_continues_edits_and_batches_as_recorded(shipped: MotionGenerator) -> None:
    wave = shipped.generate("a person waves the right hand", 3.0, 7).joints
    assert digest(wave) == WAVE_FINAL
    assert digest(shipped.generate("then walk forward", 2.0, 3, prefix_joints=wave[-20:]).joints) == CONTINUATION
    assert digest(shipped.edit(wave, 1.0, 2.0, "kick with the left leg", seed=5).joints) == EDIT
    assert [digest(r.joints) for r in shipped.generate_batch(["walk forward", "jump"], 2.0, seed=1)] == BATCH


def test_sampling_overrides_give_the_recorded_motion() -> None:
    overrides = SamplingOverrides(refine_iterations=[1, 2, 3, 4], guidance=3.0, top_p=0.8)
    if not resource("models/moscale-bandai.safetensors").is_file():
        pytest.skip("the shipped model is not in this checkout")
    generator = MotionGenerator.from_checkpoint(None, device="cpu", warm_up=False, overrides=overrides)
    assert digest(generator.generate("a person jumps", 2.5, 11).joints) == OVERRIDDEN
