"""Tokenizer model contracts on small random inputs: scale lengths, resampling, masking, prefixes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from moscale_common.errors import ConfigError, InputError
from moscale_ros.models.quantizer import ResidualScaleQuantizer, perplexity, scale_lengths_for
from moscale_ros.models.resample import area_downsample, linear_upsample, resample_matrix
from moscale_ros.models.tokenizer import MotionTokenizer, TokenizerConfig, build_tokenizer

SMALL = TokenizerConfig(width=32, depth=1, code_dim=16, codebook_size=32)


def _model(seed: int = 0) -> MotionTokenizer:
    torch.manual_seed(seed)
    return MotionTokenizer(SMALL)


def test_scale_lengths_follow_moscale_and_shrink_with_the_motion():
    assert scale_lengths_for([6, 12, 24, 49], 49) == [6, 12, 24, 49]
    assert scale_lengths_for([6, 12, 24, 49], 16) == [2, 4, 8, 16]
    assert scale_lengths_for([6, 12, 24, 49], 1) == [1, 1, 1, 1]
    for n in range(1, 120):
        lengths = scale_lengths_for([6, 12, 24, 49], n)
        assert lengths[-1] == n
        assert all(1 <= a <= b for a, b in zip(lengths, lengths[1:]))


def test_resample_matrices_match_torch_interpolation():
    for src, dst in [(6, 49), (12, 49), (24, 49), (3, 10), (7, 7)]:
        x = torch.randn(2, src, 5)
        ours = linear_upsample(x, torch.full((2,), dst))
        ref = F.interpolate(x.transpose(1, 2), size=dst, mode="linear", align_corners=False).transpose(1, 2)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    for src, dst in [(48, 12), (49, 49), (10, 5)]:
        x = torch.randn(2, src, 5)
        ref = F.interpolate(x.transpose(1, 2), size=dst, mode="area").transpose(1, 2)
        torch.testing.assert_close(area_downsample(x, torch.full((2,), dst)), ref, atol=1e-5, rtol=0)
    # Non-integer ratios: exact fractional overlaps, rows sum to one, mean preserved.
    matrix = resample_matrix("area", 6, 49)
    torch.testing.assert_close(matrix.sum(1), torch.ones(6))
    x = torch.randn(1, 49, 3)
    torch.testing.assert_close(area_downsample(x, torch.tensor([6])).mean(1), x.mean(1), atol=1e-5, rtol=0)


def test_padded_batch_equals_each_sample_alone():
    """Padding never leaks: encoder, every scale's codes and the decoder agree with unpadded runs."""
    model = _model().eval()
    feats_BTD = torch.randn(3, 50, 263)
    lengths_B = torch.tensor([50, 33, 7])
    with torch.no_grad():
        f_BNC, latent_lengths_B = model.encode_latents(feats_BTD, lengths_B)
        assert latent_lengths_B.tolist() == [13, 9, 2]
        quant = model.quantize(f_BNC, latent_lengths_B)
        recon_BTD = model.decode_indices(quant.idx, latent_lengths_B, lengths_B)
        for b in range(3):
            T, N = int(lengths_B[b]), int(latent_lengths_B[b])
            f_alone, _ = model.encode_latents(feats_BTD[b : b + 1, :T], lengths_B[b : b + 1])
            torch.testing.assert_close(f_alone[0], f_BNC[b, :N], atol=1e-5, rtol=1e-5)
            assert f_BNC[b, N:].abs().max() == 0 if N < f_BNC.shape[1] else True
            alone = model.quantize(f_alone, latent_lengths_B[b : b + 1])
            for k in range(model.num_scales):
                L = int(quant.scale_lengths[b, k])
                assert L == model.scale_lengths(N)[k]
                assert torch.equal(alone.idx[k][0], quant.idx[k][b, :L])
                assert quant.masks[k][b].sum() == L
            recon_alone = model.decode_indices(alone.idx, latent_lengths_B[b : b + 1], lengths_B[b : b + 1])
            torch.testing.assert_close(recon_alone[0], recon_BTD[b, :T], atol=1e-5, rtol=1e-5)
            assert recon_BTD[b, T:].abs().sum() == 0


def test_every_prefix_of_scales_decodes_to_full_length():
    model = _model().eval()
    model.quantizer.codebook_VC.copy_(torch.randn(SMALL.codebook_size, SMALL.code_dim))
    feats_BTD, lengths_B = torch.randn(2, 37, 263), torch.tensor([37, 20])
    with torch.no_grad():
        idx = model.encode(feats_BTD, lengths_B)
        latent_lengths_B = model.latent_lengths(lengths_B)
        assert [i.shape for i in idx] == [(2, L) for L in model.scale_lengths(10)]
        outputs = [model.decode_indices(idx[:k], latent_lengths_B, lengths_B) for k in range(1, model.num_scales + 1)]
    for out in outputs:
        assert out.shape == (2, 37, 263)
        assert out[1, 20:].abs().sum() == 0
        assert torch.isfinite(out).all()
    assert not torch.allclose(outputs[0], outputs[-1])  # finer scales add detail
    # Without lengths: 4 frames per latent.
    assert model.decode_indices(idx[:1], latent_lengths_B).shape == (2, 40, 263)
    assert model.decode_indices(idx[:2], 10).shape == (2, 40, 263)


def test_quantize_exposes_transformer_inputs_and_corruption():
    model = _model().eval()
    f_BNC = torch.randn(2, 13, SMALL.code_dim)
    latent_lengths_B = torch.tensor([13, 9])
    model.quantizer.codebook_VC.copy_(torch.randn(SMALL.codebook_size, SMALL.code_dim))
    seen = []

    def corrupt(k: int, idx_BL: torch.Tensor, valid_BL: torch.Tensor) -> torch.Tensor:
        seen.append((k, tuple(idx_BL.shape), int(valid_BL.sum())))
        return torch.where(valid_BL, (idx_BL + 1) % SMALL.codebook_size, idx_BL)

    clean = model.quantize(f_BNC, latent_lengths_B)
    noisy = model.quantize(f_BNC, latent_lengths_B, corrupt_fn=corrupt)
    lengths = [model.scale_lengths(13), model.scale_lengths(9)]
    assert seen == [(k, (2, lengths[0][k]), lengths[0][k] + lengths[1][k]) for k in range(4)]
    assert torch.equal(noisy.idx[0], clean.idx[0])  # the coarsest targets do not depend on corruption
    assert not torch.equal(noisy.used_idx[0], noisy.idx[0])
    # The running latent is what the used codes add up to; inputs are it, downsampled, before each scale.
    torch.testing.assert_close(noisy.f_hat, model.indices_to_latent(noisy.used_idx, latent_lengths_B))
    assert noisy.inputs[0].abs().sum() == 0
    partial = model.indices_to_latent(noisy.used_idx[:2], latent_lengths_B)
    expected = model.quantizer.next_scale_input(partial, noisy.scale_lengths[:, 2], latent_lengths_B)
    torch.testing.assert_close(noisy.inputs[2], expected)
    # The scale step: adding scale 3's used codes to the latent of scales 1..2 gives the latent of 1..3.
    step = model.quantizer.add_scale(partial, noisy.used_idx[2], latent_lengths_B, noisy.scale_lengths[:, 2])
    assert torch.equal(step, noisy.prefix_f_hat[2])
    assert torch.equal(
        model.quantizer.nearest_scale_codes(f_BNC - partial, noisy.scale_lengths[:, 2], latent_lengths_B)[
            1
        ].masked_fill(~noisy.masks[2], 0),
        noisy.idx[2],
    )
    z_BLC = model.embed(clean.idx[1])
    assert z_BLC.shape == (2, lengths[0][1], SMALL.code_dim)


def test_ema_statistics_ignore_padding_and_dead_codes_are_reset():
    torch.manual_seed(0)
    quantizer = ResidualScaleQuantizer(8, 4, [2, 4, 8], ema_decay=0.5, dead_code_threshold=1.0)
    f_BNC = torch.randn(1, 8, 4)
    quantizer.quantize(f_BNC, torch.tensor([8]), update=True)
    assert int(quantizer.resets) > 0  # all codes start dead and are filled from the data
    assert (quantizer.ema_count_V >= 1.0).all()
    state = {k: v.clone() for k, v in quantizer.state_dict().items()}
    garbage_BNC = torch.cat([f_BNC, 1e3 * torch.randn(1, 8, 4)], dim=1)
    torch.manual_seed(1)
    quantizer.quantize(f_BNC, torch.tensor([8]), update=True)
    alone = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer.load_state_dict(state)
    torch.manual_seed(1)
    padded = quantizer.quantize(garbage_BNC, torch.tensor([8]), update=True)
    for key, value in quantizer.state_dict().items():
        torch.testing.assert_close(value, alone[key], msg=key)
    assert padded.code_counts.sum() == 2 + 4 + 8
    assert perplexity(torch.tensor([5.0, 0, 0])) == pytest.approx(1.0)
    assert perplexity(torch.tensor([1.0, 1, 1, 1])) == pytest.approx(4.0)


def test_bad_configs_and_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="model.scales"):
        TokenizerConfig(scales=[6, 6, 49])
    with pytest.raises(ConfigError, match="codebook_size"):
        build_tokenizer({"codebook_size": 1})
    with pytest.raises(ConfigError, match="widht"):
        build_tokenizer({"widht": 3})
    model = _model()
    with pytest.raises(InputError, match="lengths_B"):
        model.encode_latents(torch.randn(2, 10, 263), torch.tensor([10, 11]))
