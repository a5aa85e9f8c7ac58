"""The next-token (T2M-GPT order) baseline: causality, KV-cache equivalence, learning on real clips
with a single-scale tokenizer, sampling, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moscale_common.errors import ConfigError
from moscale_ros.generation.next_token import NextTokenGenerator
from moscale_ros.models.next_token import NextTokenTransformer, shifted_inputs
from moscale_ros.models.text_encoder import TextFeatures
from moscale_ros.models.transformer import TransformerConfig
from moscale_ros.training.next_token import next_token_loss


def _random_model() -> NextTokenTransformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        width=32,
        depth=2,
        num_heads=4,
        codebook_size=16,
        code_dim=8,
        text_dim=12,
        max_latents=10,
        num_position_freqs=4,
        dropout=0.0,
    )
    model = NextTokenTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # the adaLN gates start at zero: make every path count
            if not p.abs().sum():
                p.normal_(std=0.05)
    return model


def test_causal_forward_equals_token_by_token_decoding_and_ignores_the_future():
    model = _random_model()
    B, N = 3, 7
    text = TextFeatures(torch.randn(B, 5, 12), torch.ones(B, 5, dtype=torch.bool), torch.randn(B, 12))
    N_B = torch.full((B,), N)
    cond = model.condition(text, N_B, drop_B=torch.zeros(B, dtype=torch.bool))
    prev = torch.randint(0, 16, (B, N))
    prev[:, 0] = model.mask_id
    latents = torch.randn(B, N, 8)
    latents[:, 0] = 0
    with torch.no_grad():
        full = model(cond, prev, latents, N_B)
        state = model.start(cond)
        stepped = torch.cat(
            [model.step_token(state, prev[:, i : i + 1], latents[:, i : i + 1], N_B) for i in range(N)], dim=1
        )
        torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)
        changed = prev.clone()
        changed[:, 4] = (changed[:, 4] + 1) % 16
        other = model(cond, changed, latents, N_B)
    assert torch.equal(other[:, :4], full[:, :4])  # positions before 4 never see token 4
    assert (other[:, 4:] - full[:, 4:]).abs().max() > 1e-4


@pytest.fixture(scope="module")
def single_scale_tokenizer(prepared_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny single-scale tokenizer (one scale of all latents) trained a few steps on real windows."""
    from moscale_ros.data.dataset import load_prepared, normalization
    from moscale_ros.models.tokenizer import MotionTokenizer, TokenizerConfig, save_tokenizer
    from moscale_ros.training.tokenizer import TokenizerLossConfig, tokenizer_loss

    torch.manual_seed(0)
    prepared = load_prepared(prepared_small, load_joints=False)
    mean_D, std_D = normalization(prepared)
    windows = [torch.as_tensor(np.array(c.features[:48])) for c in prepared.train if c.num_frames >= 48]
    feats_BTD = (torch.stack(windows) - mean_D) / std_D
    model = MotionTokenizer(TokenizerConfig(width=32, depth=1, code_dim=16, codebook_size=64, scales=[49])).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    lengths_B = torch.full((len(windows),), 48)
    for _ in range(6):
        loss, _ = tokenizer_loss(model, feats_BTD, lengths_B, TokenizerLossConfig(), mean_D, std_D)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_tokenizer(tmp_path_factory.mktemp("tok1") / "single.safetensors", model.eval(), mean_D, std_D)


def test_a_few_steps_fit_real_clips_and_sampling_is_seeded(single_scale_tokenizer, prepared_small, tmp_path):
    from test_generation import shared_text_encoder, tiny_train_config

    from moscale_ros.data.dataset import load_prepared
    from moscale_ros.training.transformer import build_models, clip_batches

    torch.set_num_threads(2)
    cfg = tiny_train_config(single_scale_tokenizer, prepared_small)
    torch.manual_seed(0)
    models, mean_D, std_D = build_models(cfg, torch.device("cpu"), shared_text_encoder(), NextTokenTransformer)
    assert models.tokenizer.num_scales == 1
    data = clip_batches(load_prepared(prepared_small, load_joints=False), "train", cfg.data, 4, mean_D, std_D)
    batch = data.batch(list(range(8)))
    params = list(models.transformer.parameters()) + list(models.length.parameters())
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    models.transformer.eval()
    cpu = torch.device("cpu")
    with torch.no_grad():
        before, _ = next_token_loss(models, batch, cfg.masking, cfg.loss, cpu, train=False)
    for _ in range(15):
        torch.manual_seed(1)
        loss, _ = next_token_loss(models, batch, cfg.masking, cfg.loss, cpu, train=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after, parts = next_token_loss(models, batch, cfg.masking, cfg.loss, cpu, train=False)
    assert after < 0.8 * before, (before.item(), after.item())
    assert set(parts) == {"loss", "ce", "length_ce", "acc_s1"}

    generator = NextTokenGenerator(
        models.tokenizer, models.transformer.eval(), models.text_encoder, mean_D, std_D, cfg.generation
    )
    texts, frames = ["a person waves", "someone bows", "a person waves"], [40, 64, 40]
    first = generator.generate_features(texts, frames, seed=3)
    assert [f.shape for f in first] == [(40, 263), (64, 263), (40, 263)]
    assert all(np.isfinite(f).all() for f in first)
    again = generator.generate_features(texts, frames, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.allclose(first[0], generator.generate_features(texts, frames, seed=4)[0])
    assert not np.allclose(first[0], first[2])  # two samples of one text in a batch differ
    with torch.no_grad():
        idx = generator.sample_codes(["someone bows"], 16, torch.Generator().manual_seed(0))
    assert idx.shape == (1, 16) and int(idx.max()) < models.tokenizer.codebook_size


def test_errors_name_the_problem(prepared_small, tmp_path_factory):
    from test_generation import shared_text_encoder, tiny_tokenizer, tiny_train_config

    from moscale_common.errors import InputError
    from moscale_ros.data.dataset import load_prepared
    from moscale_ros.training.transformer import build_models, clip_batches

    multi = tiny_tokenizer(prepared_small, tmp_path_factory)
    cfg = tiny_train_config(multi, prepared_small)
    models, mean_D, std_D = build_models(cfg, torch.device("cpu"), shared_text_encoder(), NextTokenTransformer)
    batch = clip_batches(load_prepared(prepared_small, load_joints=False), "train", cfg.data, 4, mean_D, std_D).batch(
        [0, 1]
    )
    with pytest.raises(ConfigError, match=r"single-scale tokenizer .* has 4 scales"):
        next_token_loss(models, batch, cfg.masking, cfg.loss, torch.device("cpu"), train=True)
    generator = NextTokenGenerator(
        models.tokenizer, models.transformer, models.text_encoder, mean_D, std_D, cfg.generation
    )
    with pytest.raises(InputError, match="lengths"):
        generator.generate_features(["a person waves"], [400], seed=0)


def test_shifted_inputs_start_with_bos_and_a_zero_latent(single_scale_tokenizer):
    from moscale_ros.models.tokenizer import load_tokenizer

    tokenizer, _, _ = load_tokenizer(single_scale_tokenizer)
    idx = torch.tensor([[5, 7, 9]])
    prev, latents = shifted_inputs(tokenizer, idx, bos_id=64)
    assert prev.tolist() == [[64, 5, 7]]
    assert torch.equal(latents[0, 0], torch.zeros(16))
    torch.testing.assert_close(latents[0, 1:], tokenizer.embed(torch.tensor([[5, 7]]))[0])
