"""Training the next-scale transformer: masking and corruption, learning on real clips, and the
``moscale train transformer`` command (progress, checkpoints, resume, the exported generator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moscale_common.errors import CheckpointError, ConfigError
from moscale_ros.training.transformer import MaskingConfig, corrupt_codes, mask_tokens, noisy_tokens


@pytest.fixture(scope="module")
def tiny_tokenizer(prepared_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_generation import tiny_tokenizer as shared_tiny_tokenizer

    torch.set_num_threads(2)
    return shared_tiny_tokenizer(prepared_small, tmp_path_factory)


def test_masking_follows_the_schedule_and_never_touches_padding():
    torch.manual_seed(0)
    B, L = 512, 12
    idx = torch.randint(0, 50, (B, L))
    valid = torch.arange(L)[None] < torch.randint(1, L + 1, (B, 1))
    tokens, masked = mask_tokens(idx, valid, mask_id=50, full_mask_prob=0.2)
    assert not (masked & ~valid).any()
    assert (masked.sum(1) >= 1).all()
    assert torch.equal(tokens[masked], torch.full_like(tokens[masked], 50))
    assert torch.equal(tokens[~masked], idx[~masked])
    ratio = masked.sum(1).float() / valid.sum(1)
    # E[cos(pi/2 u)] = 2/pi ~ 0.64; with 20 % fully masked rows: 0.8 * 0.64 + 0.2 ~ 0.71 (+ rounding up).
    assert 0.65 < ratio.mean() < 0.85
    assert (ratio == 1).float().mean() > 0.2


def test_corruption_replaces_at_most_the_configured_share():
    torch.manual_seed(0)
    idx = torch.zeros(2000, 24, dtype=torch.long)
    valid = torch.ones_like(idx, dtype=torch.bool)
    valid[:, 20:] = False
    out = corrupt_codes(idx, valid, codebook_size=1000, corrupt_max=0.6, corrupt_prob=0.5)
    changed = (out != idx).float()
    assert changed[:, 20:].sum() == 0
    per_row = changed[:, :20].mean(1)
    assert (per_row == 0).float().mean() > 0.45  # about half the samples untouched
    assert per_row.max() <= 0.9 and 0.1 < per_row[per_row > 0].mean() < 0.4  # rho ~ U(0, 0.6)
    assert torch.equal(corrupt_codes(idx, valid, 1000, 0.0, 1.0), idx)


def test_distinct_corruption_never_keeps_the_true_code():
    torch.manual_seed(0)
    idx = torch.randint(0, 4, (4000, 20))
    valid = torch.ones_like(idx, dtype=torch.bool)
    plain = (corrupt_codes(idx, valid, 4, 0.6, 1.0) != idx).float().mean().item()
    torch.manual_seed(0)
    distinct = (corrupt_codes(idx, valid, 4, 0.6, 1.0, distinct=True) != idx).float().mean().item()
    # Same draws of which codes to replace: with 4 codes, a uniform replacement keeps the true one 1/4 of the time.
    assert distinct == pytest.approx(0.3, abs=0.02)  # E[rho] = 0.3, every sample corrupted
    assert plain == pytest.approx(0.75 * distinct, abs=0.02)


def test_noisy_tokens_with_the_v1_defaults_are_mask_tokens():
    idx = torch.randint(0, 50, (64, 12))
    valid = torch.arange(12)[None] < torch.randint(1, 13, (64, 1))
    torch.manual_seed(3)
    expected = mask_tokens(idx, valid, 50, 0.1)
    torch.manual_seed(3)
    tokens, loss = noisy_tokens(idx, idx, valid, 50, 50, MaskingConfig())
    assert torch.equal(tokens, expected[0]) and torch.equal(loss, expected[1])


def test_noisy_tokens_80_10_10_and_visible_noise():
    torch.manual_seed(0)
    V, mask_id = 500, 500
    target = torch.randint(0, V, (3000, 16))
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[:, 14:] = False
    # 80/10/10 alone: of the selected tokens (the loss positions) ~80 % masked, ~10 % random, ~10 % unchanged.
    masking = MaskingConfig(full_mask_prob=0.0, mask_fraction=0.8, random_fraction=0.1)
    tokens, loss = noisy_tokens(target, target, valid, mask_id, V, masking)
    assert torch.equal(tokens[~valid], target[~valid]) and not loss[~valid].any()
    assert torch.equal(tokens[~loss], target[~loss])  # unselected visible tokens untouched
    shown, truth = tokens[loss], target[loss]
    assert (shown == mask_id).float().mean().item() == pytest.approx(0.8, abs=0.02)
    assert (shown == truth).float().mean().item() == pytest.approx(0.1, abs=0.02)
    # Visible noise alone: a few percent of the unselected tokens become other codes, each in the loss.
    torch.manual_seed(1)
    tokens, loss = noisy_tokens(
        target, target, valid, mask_id, V, MaskingConfig(full_mask_prob=0.0, visible_noise=0.03)
    )
    selected = tokens == mask_id
    noised = (tokens != target) & ~selected & valid
    assert (noised.sum() / (valid & ~selected).sum()).item() == pytest.approx(0.03 * (1 - 1 / V), abs=0.005)
    assert torch.equal(loss, selected | noised)
    # A corrupted context (visible codes that differ from the targets) is shown as is and is in the loss.
    visible = (target + 1) % V
    tokens, loss = noisy_tokens(visible, target, valid, mask_id, V, MaskingConfig(context="corrupted"))
    shown_context = (tokens != mask_id) & valid
    assert torch.equal(tokens[shown_context], visible[shown_context]) and loss[valid].all()
    with pytest.raises(ConfigError, match="mask_fraction"):
        MaskingConfig(mask_fraction=0.95, random_fraction=0.1)
    with pytest.raises(ConfigError, match="visible_noise"):
        MaskingConfig(visible_noise=0.7)


@pytest.mark.parametrize("recipe", ["config/train/transformer.yaml", "config/train/transformer_v2.yaml"])
def test_a_few_steps_fit_a_batch_of_real_clips(tiny_tokenizer, prepared_small, recipe):
    from test_generation import shared_text_encoder, tiny_train_config

    from moscale_common.config import load_config
    from moscale_ros.data.dataset import load_prepared
    from moscale_ros.training.transformer import TransformerTrainConfig, build_models, clip_batches, token_loss

    cfg = tiny_train_config(tiny_tokenizer, prepared_small)
    cfg.masking = load_config(TransformerTrainConfig, recipe, [f"tokenizer={tiny_tokenizer}"]).masking
    torch.manual_seed(0)
    models, mean_D, std_D = build_models(cfg, torch.device("cpu"), shared_text_encoder())
    data = clip_batches(load_prepared(prepared_small, load_joints=False), "train", cfg.data, 4, mean_D, std_D)
    batch = data.batch(list(range(8)))
    params = list(models.transformer.parameters()) + list(models.length.parameters())
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    models.transformer.eval()  # no dropout: the loss of the fixed batch must fall
    with torch.no_grad():
        before, _ = token_loss(models, batch, cfg.masking, cfg.loss, torch.device("cpu"), train=False)
    for _ in range(15):
        torch.manual_seed(1)  # the same masks every step
        loss, _ = token_loss(models, batch, cfg.masking, cfg.loss, torch.device("cpu"), train=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after, parts = token_loss(models, batch, cfg.masking, cfg.loss, torch.device("cpu"), train=False)
    assert after < 0.8 * before, (before.item(), after.item())
    assert set(parts) >= {"ce", "length_ce", "acc_s1", "acc_s4"}


def _train(tokenizer: Path, data: Path, out: Path, steps: int, *extra: str) -> int:
    from moscale_ros.cli import main

    sets = [
        f"tokenizer={tokenizer}",
        f"data.cache_dir={data}",
        "model.width=32",
        "model.depth=1",
        "model.num_position_freqs=8",
        "length.hidden=32",
        "data.max_frames=120",
        "data.val_max_clips=4",
        "train.batch_size=4",
        "train.warmup_steps=1",
        "train.log_every=1",
        "train.val_every=2",
        "train.checkpoint_every=1",
        f"train.steps={steps}",
        "text_encoder.cache_size=64",
    ]
    argv = ["train", "transformer", "--out", str(out), "--device", "cpu", *extra]
    for item in sets:
        argv += ["--set", item]
    return main(argv)


def test_train_command_checkpoints_resumes_and_exports_a_generator(tiny_tokenizer, prepared_small, tmp_path, capsys):
    from test_generation import shared_text_encoder

    from moscale_ros.checkpoint import load_checkpoint
    from moscale_ros.generation.generator import MotionGenerator

    out = tmp_path / "run"
    assert _train(tiny_tokenizer, prepared_small, out, 2) == 0
    assert {"last.safetensors", "best.safetensors", "model.safetensors", "metrics.jsonl"} <= {
        p.name for p in out.iterdir()
    }
    # Starting again over a run is refused; --resume continues at step 2.
    assert _train(tiny_tokenizer, prepared_small, out, 3) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert _train(tiny_tokenizer, prepared_small, out, 3, "--resume") == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
    assert {"val_loss", "val_length_ce", "val_acc_s1"} <= set(records[-1])
    assert load_checkpoint(out / "model.safetensors").configs["text_encoder"]["name"] == "all-MiniLM-L6-v2"
    generator = MotionGenerator.from_checkpoint(
        out / "model.safetensors", text_encoder=shared_text_encoder(), warm_up=False
    )
    result = generator.generate("a person bows", seconds=1.6, seed=0)
    assert result.joints.shape == (32, 22, 3)
    # The training checkpoint itself also loads for generation.
    assert (
        MotionGenerator.from_checkpoint(
            out / "last.safetensors", warm_up=False, text_encoder=generator.text_encoder
        ).num_scales
        == 4
    )
    # Shipped with chosen sampling defaults (as a sweep picks them); a setting generation lacks is refused.
    from moscale_ros.cli import main

    shipped = tmp_path / "shipped.safetensors"
    argv = ["model", "export", str(out / "model.safetensors"), str(shipped), "--generation", "guidance=2.5"]
    assert main([*argv, "--generation", "refine_iterations=[1, 2, 2, 3]"]) == 0
    defaults = load_checkpoint(shipped).configs["generation"]
    assert defaults["guidance"] == 2.5 and defaults["refine_iterations"] == [1, 2, 2, 3]
    assert defaults["top_p"] == load_checkpoint(out / "model.safetensors").configs["generation"]["top_p"]
    capsys.readouterr()
    assert main([*argv[:-1], "beam_width=2"]) == 2
    assert "--generation: unknown key(s) beam_width" in capsys.readouterr().err


def test_train_command_errors_name_the_problem(tmp_path, prepared_small):
    import argparse

    from moscale_common.config import from_dict
    from moscale_ros.training.transformer import TransformerTrainConfig, run

    missing = tmp_path / "nope.safetensors"
    args = argparse.Namespace(
        config="config/train/transformer.yaml",
        out=str(tmp_path / "run"),
        resume=False,
        device="cpu",
        set=[f"tokenizer={missing}", f"data.cache_dir={prepared_small}"],
    )
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        run(args)
    with pytest.raises(ConfigError, match="masking.corrupt_max"):
        from_dict(TransformerTrainConfig, {"masking": {"corrupt_max": 1.5}})
    with pytest.raises(ConfigError, match="model: unknown key"):
        from_dict(TransformerTrainConfig, {"model": {"widht": 64}})


def test_a_generator_file_lends_its_tokenizer(tmp_path):
    """v2 trains on v1's codes: ``tokenizer:`` may name the shipped generator file."""
    from moscale_common.paths import resource
    from moscale_ros.generation.bundle import load_any_tokenizer, load_generator_parts

    shipped = resource("models/moscale-bandai.safetensors")
    tokenizer, mean_D, std_D = load_any_tokenizer(shipped)
    parts = load_generator_parts(shipped)
    assert all(p.dtype == torch.float32 for p in tokenizer.parameters()) and not tokenizer.training
    assert tokenizer.num_scales == parts.tokenizer.num_scales and torch.equal(mean_D, parts.mean_D)
    feats = torch.randn(2, 40, mean_D.shape[0])
    f_BNC, N_B = tokenizer.encode_latents(feats, torch.tensor([40, 32]))
    assert f_BNC.shape[0] == 2 and torch.isfinite(f_BNC).all()
    other = tmp_path / "not-a-model.safetensors"
    other.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not-a-model"):
        load_any_tokenizer(other)
