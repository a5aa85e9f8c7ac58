"""The CUDA path: the shipped model on a GPU computes what it computes on the CPU.

Runs only where torch sees a CUDA device (skipped elsewhere, saying so); ``scripts/device_check.sh``
runs it on a GPU machine together with ``moscale bench generation --device cuda`` and a short
training step of both models. Sampling draws from a ``torch.Generator`` of the model's device, so
a seed gives another motion on another device; these tests therefore compare the deterministic
parts step by step (text features, every scale's logits with the same tokens fed to both, the
decoded joints, the vocabulary check) and check that a seeded stream repeats itself on the GPU.

Tolerances: float32 on both devices, TF32 off (torch's default for matmuls); differences come from
reduction order only, so 1e-3 absolute on features of unit scale and on logits, 1 mm on joints.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moscale_common.paths import resource
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT, MotionGenerator
from moscale_ros.runtime import select_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

TEXTS = ["a person waves the right hand", "a person walks forward and then turns left"]


@pytest.fixture(scope="module")
def generators() -> tuple[MotionGenerator, MotionGenerator]:
    path = resource(DEFAULT_CHECKPOINT)
    return MotionGenerator.from_checkpoint(path, device="cpu"), MotionGenerator.from_checkpoint(path, device="cuda")


def test_every_part_of_the_gpu_generator_lives_on_the_gpu(generators):
    _, gpu = generators
    assert select_device("cuda").type == "cuda" and select_device("auto").type == "cuda"
    for module in (gpu.tokenizer, gpu.transformer, gpu.text_encoder.model):
        devices = {p.device.type for p in module.parameters()} | {b.device.type for b in module.buffers()}
        assert devices == {"cuda"}, (type(module).__name__, devices)
    assert gpu.mean_D.device.type == gpu.std_D.device.type == "cuda"


def test_text_features_match_the_cpu(generators):
    cpu, gpu = generators
    with torch.inference_mode():
        want, got = cpu.text_encoder.encode(TEXTS), gpu.text_encoder.encode(TEXTS)
    assert got.tokens_BND.device.type == "cuda"
    assert torch.equal(want.mask_BN, got.mask_BN.cpu())
    torch.testing.assert_close(got.tokens_BND.cpu(), want.tokens_BND, atol=1e-3, rtol=0)
    torch.testing.assert_close(got.pooled_BD.cpu(), want.pooled_BD, atol=1e-3, rtol=0)


def _teacher_forced(gen: MotionGenerator, tokens_per_scale: list[torch.Tensor] | None, frames: int):
    """Logits of every scale and the decoded joints, with ``tokens_per_scale`` (CPU tensors) fed as
    each scale's result, or the argmax of the logits when None; returns (logits, tokens, joints)."""
    device = gen.device
    N = -(-frames // gen.frames_per_latent)
    B = len(TEXTS)
    with torch.inference_mode():
        text = gen.text_encoder.encode(TEXTS)
        N_B = torch.full((B,), N, dtype=torch.long, device=device)
        state = gen.transformer.start(gen.transformer.condition(text, N_B))
        f_hat_BNC = torch.zeros(B, N, gen.tokenizer.code_dim, device=device)
        all_logits, all_tokens = [], []
        for k, L in enumerate(gen.tokenizer.scale_lengths(N)):
            L_B = torch.full((B,), L, dtype=torch.long, device=device)
            latent_in_BLC = gen.tokenizer.quantizer.next_scale_input(f_hat_BNC, L_B)
            masked_BL = torch.full((B, L), gen.transformer.mask_id, dtype=torch.long, device=device)
            logits_BLV = gen.transformer.step(state, latent_in_BLC, masked_BL, commit=True)
            idx_BL = logits_BLV.argmax(-1) if tokens_per_scale is None else tokens_per_scale[k].to(device)
            f_hat_BNC = gen.tokenizer.quantizer.add_scale(f_hat_BNC, idx_BL, N_B)
            all_logits.append(logits_BLV.cpu())
            all_tokens.append(idx_BL.cpu())
        joints_BTJ3 = gen._decode(f_hat_BNC, N_B, torch.full((B,), frames, dtype=torch.long, device=device))
    return all_logits, all_tokens, joints_BTJ3


def test_every_scale_and_the_decoded_motion_match_the_cpu(generators):
    """Same tokens into both: each scale's logits, and the joints decoded from all scales."""
    cpu, gpu = generators
    frames = 120
    want_logits, tokens, want_joints = _teacher_forced(cpu, None, frames)
    got_logits, _, got_joints = _teacher_forced(gpu, tokens, frames)
    assert len(got_logits) == len(want_logits) == cpu.num_scales
    for k, (got, want) in enumerate(zip(got_logits, want_logits)):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4, msg=f"scale {k + 1} logits")
    assert got_joints.shape == want_joints.shape == (len(TEXTS), frames, 22, 3)
    assert np.abs(got_joints - want_joints).max() < 1e-3  # metres


def test_a_seeded_gpu_stream_is_complete_finite_and_repeats(generators):
    _, gpu = generators
    runs = [list(gpu.stream(TEXTS[0], 4.0, seed=7)) for _ in range(2)]
    first, second = runs
    assert [r.scale_index for r in first] == list(range(1, gpu.num_scales + 1))
    assert first[-1].is_final and not any(r.is_final for r in first[:-1])
    for a, b in zip(first, second):
        assert a.joints.shape == (int(round(4.0 * a.fps)), 22, 3) and np.isfinite(a.joints).all()
        np.testing.assert_array_equal(a.joints, b.joints)
    assert np.ptp(first[-1].joints[:, 21], axis=0).max() > 0.05  # the right wrist moves (> 5 cm)


def test_batched_gpu_generation_matches_single(generators):
    """A batch of equal-length texts on the GPU gives each text its own motion (no cross-talk)."""
    _, gpu = generators
    batch = gpu.generate_batch(TEXTS, 4.0, seed=3)
    assert len(batch) == len(TEXTS)
    assert all(np.isfinite(out.joints).all() for out in batch)
    assert not np.allclose(batch[0].joints, batch[1].joints)


def test_the_vocabulary_check_gives_the_cpu_verdicts(generators):
    """The skill check reads the GPU's pooled features against prototypes kept on the host."""
    cpu, gpu = generators
    texts = ["wave the right hand", "do a backflip", "walk forward"]
    want, got = cpu.match_skills(texts), gpu.match_skills(texts)
    assert [(m.status, m.skill) for m in got] == [(m.status, m.skill) for m in want]
    assert max(abs(a.confidence - b.confidence) for a, b in zip(got, want)) < 1e-4
