"""Next-scale transformer contracts on random tensors: block-causal attention, KV cache, padding,
condition dropout, length estimator, sampling helpers."""

from __future__ import annotations

import pytest
import torch

from moscale_common.errors import ConfigError
from moscale_ros.generation import sampling
from moscale_ros.models.length import LengthEstimator, LengthEstimatorConfig
from moscale_ros.models.text_encoder import TextFeatures
from moscale_ros.models.transformer import NextScaleTransformer, TransformerConfig

CFG = TransformerConfig(
    width=32,
    depth=2,
    num_heads=4,
    codebook_size=16,
    code_dim=8,
    text_dim=12,
    dropout=0.0,
    max_latents=16,
    num_null_tokens=2,
)
LENGTHS = [2, 4, 8]


def _model(seed: int = 0) -> NextScaleTransformer:
    """A random model whose zero-initialised adaLN gates are perturbed, so every path matters."""
    torch.manual_seed(seed)
    model = NextScaleTransformer(CFG)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.1)
    return model.eval()


def _text(B: int, N: int = 5) -> TextFeatures:
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[0, 3:] = False
    return TextFeatures(torch.randn(B, N, CFG.text_dim), mask, torch.randn(B, CFG.text_dim))


def _inputs(B: int, lengths=LENGTHS):
    latents = [torch.randn(B, L, CFG.code_dim) for L in lengths]
    tokens = [torch.randint(0, CFG.codebook_size + 1, (B, L)) for L in lengths]
    return latents, tokens


def test_kv_cache_steps_equal_the_block_causal_forward():
    model = _model()
    B = 3
    text = _text(B)
    latents, tokens = _inputs(B)
    with torch.no_grad():
        cond = model.condition(text, torch.full((B,), 8))
        full = model(cond, latents, tokens, torch.tensor([LENGTHS] * B))
        state = model.start(cond)
        for k in range(len(LENGTHS)):
            # An uncommitted refinement pass with other tokens must not disturb the cache.
            model.step(state, latents[k], torch.randint(0, CFG.codebook_size, tokens[k].shape), commit=False)
            logits = model.step(state, latents[k], tokens[k], commit=True)
            torch.testing.assert_close(logits, full[k], atol=1e-5, rtol=1e-4)
        assert state.cached_tokens == sum(LENGTHS)


def test_attention_is_causal_across_scales_and_bidirectional_inside():
    model = _model()
    text = _text(1)
    latents, tokens = _inputs(1)
    lengths = torch.tensor([LENGTHS])
    with torch.no_grad():
        cond = model.condition(text, torch.tensor([8]))
        base = model(cond, latents, tokens, lengths)
        changed = [t.clone() for t in tokens]
        changed[1][0, -1] = (changed[1][0, -1] + 1) % CFG.codebook_size
        after = model(cond, latents, changed, lengths)
    torch.testing.assert_close(after[0], base[0])  # scale 1 cannot see scale 2
    assert not torch.allclose(after[1][0, 0], base[1][0, 0])  # scale 2's first token sees its last
    assert not torch.allclose(after[2], base[2])  # scale 3 sees scale 2


def test_padded_batch_equals_each_sample_alone():
    model = _model()
    lengths = torch.tensor([[2, 4, 8], [1, 2, 5]])
    latents, tokens = _inputs(2)
    text = _text(2)
    with torch.no_grad():
        cond = model.condition(text, torch.tensor([8, 5]))
        batch = model(cond, latents, tokens, lengths)
        alone_text = TextFeatures(text.tokens_BND[1:], text.mask_BN[1:], text.pooled_BD[1:])
        cond1 = model.condition(alone_text, torch.tensor([5]))
        ls = lengths[1].tolist()
        alone = model(
            cond1, [x[1:, :L] for x, L in zip(latents, ls)], [t[1:, :L] for t, L in zip(tokens, ls)], lengths[1:]
        )
    for k, L in enumerate(ls):
        torch.testing.assert_close(batch[k][1, :L], alone[k][0], atol=1e-5, rtol=1e-4)


def test_condition_dropout_uses_the_learned_null_text():
    model = _model()
    latents, tokens = _inputs(2)
    lengths = torch.tensor([LENGTHS] * 2)
    drop = torch.tensor([True, True])
    with torch.no_grad():
        a = model(model.condition(_text(2, N=5), torch.full((2,), 8), drop), latents, tokens, lengths)
        b = model(model.condition(_text(2, N=1), torch.full((2,), 8), drop), latents, tokens, lengths)
        c = model(model.condition(_text(2, N=5), torch.full((2,), 8)), latents, tokens, lengths)
    torch.testing.assert_close(a[2], b[2])  # dropped rows ignore the text entirely
    assert not torch.allclose(a[2], c[2])
    # In training mode rows drop with cond_drop_prob; the null text gets gradients.
    model.train()
    generator = torch.Generator().manual_seed(0)
    cond = model.condition(_text(64), torch.full((64,), 8), generator=generator)
    cond.cond_BW.sum().backward()
    assert model.null_pooled_D.grad is not None and model.null_pooled_D.grad.abs().sum() > 0


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="num_heads"):
        TransformerConfig(width=30, num_heads=4)
    with pytest.raises(ConfigError, match="cond_drop_prob"):
        TransformerConfig(cond_drop_prob=1.5)
    model = _model()
    with pytest.raises(ConfigError, match="max_scales"):
        model.embed_scale(
            torch.zeros(1, 1, CFG.code_dim), torch.zeros(1, 1, dtype=torch.long), CFG.max_scales, torch.zeros(1, 1)
        )


def test_length_estimator_learns_a_length_per_text():
    torch.manual_seed(0)
    est = LengthEstimator(LengthEstimatorConfig(text_dim=12, hidden=32, max_latents=20, dropout=0.0))
    pooled = torch.randn(4, 12)
    target = torch.tensor([3, 7, 12, 18])
    opt = torch.optim.Adam(est.parameters(), 1e-2)
    for _ in range(150):
        loss = est.loss(pooled, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert est.predict_latents(pooled).tolist() == target.tolist()
    assert est.predict_latents(pooled, min_latents=10).min() >= 10


def test_sampling_helpers():
    assert sampling.guidance_schedule(5.0, 3.0, 3) == [5.0, 4.0, 3.0]
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(sampling.top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    gen = torch.Generator().manual_seed(0)
    idx, conf = sampling.sample_tokens(logits.expand(1, 1000, 4).reshape(1, 1000, 4), 1.0, 0.7, gen)
    assert set(idx.unique().tolist()) == {0, 1}
    greedy, _ = sampling.sample_tokens(logits[None], 0.0, 0.9, None)
    assert greedy.item() == 0
    assert [sampling.num_masked_after(i, 4, 10) for i in range(4)] == [9, 7, 3, 0]
    # MoMask's linspace schedule: ratios cos(pi/2 t) at t = 1/3, 2/3, then 1 (at least one token while
    # passes remain); at n = 2 it re-masks one token where the cosine schedule re-masks 7 of 10.
    assert [sampling.num_masked_after(i, 4, 10, "linspace_cosine") for i in range(4)] == [9, 5, 1, 0]
    assert sampling.num_masked_after(0, 2, 10) == 7 and sampling.num_masked_after(0, 2, 10, "linspace_cosine") == 1
    assert sampling.num_masked_after(0, 1, 10, "linspace_cosine") == 0
    confidence = torch.tensor([[0.9, 0.1, 0.5, 0.2]])
    candidates = torch.tensor([[True, True, True, False]])
    assert sampling.remask_least_confident(confidence, candidates, 2).tolist() == [[False, True, True, False]]
