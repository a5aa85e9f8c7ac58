"""Streaming generation with a tiny tokenizer + transformer trained for a few steps on real clips.

The models are far too small and short-trained to make good motion; these tests check the
contracts: scale order, full detail at the end, determinism, continuation, editing, batching,
checkpoints and clear errors on bad arguments.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from moscale_common.errors import CheckpointError, ConfigError, InputError
from moscale_ros.generation.bundle import save_generator
from moscale_ros.generation.config import GenerationConfig, SamplingOverrides
from moscale_ros.generation.generator import MotionGenerator

TEXT = "a person waves the right hand"


def train_tiny_tokenizer(prepared_dir: Path, path: Path, steps: int = 12) -> Path:
    """A 64-code tokenizer trained for ``steps`` steps on 48-frame windows of the training clips."""
    from moscale_ros.data.dataset import load_prepared, normalization
    from moscale_ros.models.tokenizer import MotionTokenizer, TokenizerConfig, save_tokenizer
    from moscale_ros.training.tokenizer import TokenizerLossConfig, tokenizer_loss

    torch.manual_seed(0)
    prepared = load_prepared(prepared_dir, load_joints=False)
    mean_D, std_D = normalization(prepared)
    windows = [torch.as_tensor(np.array(c.features[:48])) for c in prepared.train if c.num_frames >= 48]
    feats_BTD = (torch.stack(windows) - mean_D) / std_D
    lengths_B = torch.full((len(windows),), 48)
    model = MotionTokenizer(TokenizerConfig(width=32, depth=1, code_dim=16, codebook_size=64)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(steps):
        loss, _ = tokenizer_loss(model, feats_BTD, lengths_B, TokenizerLossConfig(), mean_D, std_D)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_tokenizer(path, model.eval(), mean_D, std_D)


@functools.lru_cache(maxsize=1)
def shared_text_encoder():
    """One real MiniLM encoder for the test modules of generation and training."""
    from moscale_ros.models.text_encoder import TextEncoder, TextEncoderConfig

    return TextEncoder(TextEncoderConfig(cache_size=512))


def tiny_tokenizer(prepared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny tokenizer, trained once per test session."""
    path = tmp_path_factory.getbasetemp() / "tiny_tokenizer.safetensors"
    return path if path.is_file() else train_tiny_tokenizer(prepared_dir, path)


def tiny_train_config(tokenizer_path: Path, prepared_dir: Path, **train):
    from moscale_common.config import from_dict
    from moscale_ros.training.transformer import TransformerTrainConfig

    return from_dict(
        TransformerTrainConfig,
        {
            "tokenizer": str(tokenizer_path),
            "text_encoder": {"cache_size": 512},
            "model": {"width": 32, "depth": 2, "num_heads": 4, "num_position_freqs": 8},
            "length": {"hidden": 32},
            "data": {"cache_dir": str(prepared_dir), "max_frames": 120, "val_max_clips": 8},
            "train": {"batch_size": 8, "warmup_steps": 1, "log_every": 1, **train},
        },
    )


@pytest.fixture(scope="module")
def generator(prepared_small: Path, tmp_path_factory: pytest.TempPathFactory) -> MotionGenerator:
    from moscale_ros.data.dataset import load_prepared
    from moscale_ros.training.transformer import build_models, clip_batches, token_loss

    torch.set_num_threads(2)
    cfg = tiny_train_config(tiny_tokenizer(prepared_small, tmp_path_factory), prepared_small)
    torch.manual_seed(0)
    models, mean_D, std_D = build_models(cfg, torch.device("cpu"), shared_text_encoder())
    data = clip_batches(load_prepared(prepared_small, load_joints=False), "train", cfg.data, 4, mean_D, std_D)
    params = list(models.transformer.parameters()) + list(models.length.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    for _ in range(8):
        loss, _ = token_loss(models, data.sample(8), cfg.masking, cfg.loss, torch.device("cpu"), train=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    config = GenerationConfig(refine_iterations=[1, 2, 2, 3], guidance=3.0, guidance_end=2.0)
    return MotionGenerator(
        models.tokenizer, models.transformer, models.text_encoder, mean_D, std_D, models.length, config
    )


@pytest.fixture(scope="module")
def real_joints(prepared_small: Path) -> np.ndarray:
    from moscale_ros.data.dataset import load_prepared

    clip = next(c for c in load_prepared(prepared_small).train if c.num_frames >= 80)
    return np.asarray(clip.joints[:80], dtype=np.float32)


def test_stream_yields_every_scale_in_order_and_the_last_is_full_detail(generator):
    torch.set_num_threads(2)
    outputs = []
    for output in generator.stream(TEXT, seconds=3.2, seed=0):
        # Between yields the caller's code runs with its own settings: nothing leaks out of the stream.
        assert not torch.is_inference_mode_enabled() and torch.get_num_threads() == 2
        outputs.append(output)
    K = generator.num_scales
    assert [o.scale_index for o in outputs] == list(range(1, K + 1))
    assert [o.is_final for o in outputs] == [False] * (K - 1) + [True]
    assert all(o.num_scales == K and o.fps == 20.0 for o in outputs)
    elapsed = [o.elapsed_s for o in outputs]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0
    scale_lengths = generator.tokenizer.scale_lengths(16)
    for o in outputs:
        assert o.joints.shape == (64, 22, 3) and o.joints.dtype == np.float32 and np.isfinite(o.joints).all()
        assert [c.shape[0] for c in o.codes] == scale_lengths[: o.scale_index]
        # Yield k is exactly the decoded motion of scales 1..k (later scales left at zero).
        with torch.no_grad():
            feats = generator.tokenizer.decode_indices(
                [torch.as_tensor(c)[None] for c in o.codes], 16, torch.tensor([64])
            )
            from moscale_ros.data.features import features_to_joints_torch

            joints = features_to_joints_torch(feats * generator.std_D + generator.mean_D)[0].numpy()
        np.testing.assert_allclose(o.joints, joints, atol=1e-4)
    # Each scale adds detail: the motion changes from one scale to the next.
    for a, b in zip(outputs, outputs[1:]):
        assert np.abs(a.joints - b.joints).max() > 1e-4
    np.testing.assert_array_equal(generator.generate(TEXT, seconds=3.2, seed=0).joints, outputs[-1].joints)


def test_same_seed_same_motion_other_seed_other_motion(generator):
    a = generator.generate(TEXT, 2.0, seed=7)
    b = generator.generate(TEXT, 2.0, seed=7)
    c = generator.generate(TEXT, 2.0, seed=8)
    np.testing.assert_array_equal(a.joints, b.joints)
    assert a.seed == 7
    assert any(not np.array_equal(x, y) for x, y in zip(a.codes, c.codes))


def test_continuation_starts_with_the_prefix_and_has_no_jump(generator, real_joints):
    # The prefix is the end of a real clip, moved and turned in the world: the new motion must
    # start exactly there (tolerance 1e-5 m), at every scale.
    angle = 0.7
    R = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    prefix = (real_joints[-24:] @ R.T + np.array([1.5, 0.0, -2.0])).astype(np.float32)
    outputs = list(generator.stream(TEXT, seconds=2.0, seed=3, prefix_joints=prefix))
    assert len(outputs) == generator.num_scales
    for o in outputs:
        assert o.prefix_frames == 24 and o.joints.shape == (24 + 40, 22, 3)
        np.testing.assert_allclose(o.joints[:24], prefix, atol=1e-5)
        # No jump at the seam: the step into the new part is no larger than the motion's own steps.
        steps = np.linalg.norm(np.diff(o.joints, axis=0), axis=-1).max(-1)
        assert steps[23] <= max(0.05, 1.5 * np.percentile(steps[24:], 95)), (o.scale_index, steps[20:30])
    # Height is kept: the new part starts at the prefix's height, not at the origin.
    assert abs(outputs[-1].joints[24, 0, 1] - prefix[-1, 0, 1]) < 0.1
    # A one-frame prefix (the last pose sent) is enough to chain.
    single = generator.generate("walk forward", seconds=1.0, seed=0, prefix_joints=prefix[-1:])
    np.testing.assert_allclose(single.joints[0], prefix[-1], atol=1e-5)


def test_range_edit_keeps_the_motion_outside_the_range(generator, real_joints):
    edited = generator.edit(real_joints, 1.0, 2.6, "a person kicks", seed=0)
    assert edited.joints.shape == real_joints.shape
    np.testing.assert_allclose(edited.joints[:20], real_joints[:20], atol=1e-5)
    np.testing.assert_allclose(edited.joints[52:], real_joints[52:], atol=1e-5)
    assert np.abs(edited.joints[20:52] - real_joints[20:52]).max() > 1e-3
    with pytest.raises(InputError, match="edit range"):
        generator.edit(real_joints, 3.0, 2.0, "kick")


def test_batched_generation(generator):
    texts = ["a person walks forward", "a person runs", "a person bows"]
    results = generator.generate_batch(texts, seconds=[2.0, 3.2, 2.0], seed=1)
    assert [r.joints.shape[0] for r in results] == [40, 64, 40]
    assert [r.text for r in results] == texts and all(r.is_final for r in results)
    again = generator.generate_batch(texts, seconds=[2.0, 3.2, 2.0], seed=1)
    for a, b in zip(results, again):
        np.testing.assert_array_equal(a.joints, b.joints)
    with pytest.raises(InputError, match="3 texts but 2 durations"):
        generator.generate_batch(texts, seconds=[1.0, 2.0])


def test_length_estimator_gives_the_duration_when_none_is_asked(generator):
    out = generator.generate("a person runs", seed=0)
    with torch.no_grad():
        pooled = generator.text_encoder.encode("a person runs").pooled_BD
        latents = int(generator.length_estimator.predict_latents(pooled, min_latents=2)[0])
    assert out.joints.shape[0] == min(latents * 4, generator.max_frames)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": ""}, "text is empty"),
        ({"text": "   \n "}, "text is empty"),
        ({"text": "wave " * 100}, "more than max_text_length=300"),
        ({"text": None}, "text must be a string"),
        ({"seconds": 0}, "must be positive, got 0 s"),
        ({"seconds": -2.5}, "must be positive, got -2.5 s"),
        ({"seconds": float("nan")}, "finite"),
        ({"seconds": float("inf")}, "finite"),
        ({"seconds": 1e6}, r"outside the supported range \[0\.4, 6\] s \(too long\)"),
        ({"seconds": 0.05}, "too short"),
        ({"seconds": "4"}, "number of seconds"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"prefix_joints": np.zeros((10, 21, 3))}, r"prefix_joints: expected shape \(T, 22, 3\)"),
        ({"prefix_joints": np.full((4, 22, 3), np.nan)}, "prefix_joints: contains NaN"),
    ],
)
def test_bad_arguments_give_clear_errors(generator, kwargs, message):
    args = {"text": TEXT, "seconds": 2.0, "seed": 0, **kwargs}
    with pytest.raises(InputError, match=message):
        generator.stream(**args)  # raised at the call, before any work


def _save(generator: MotionGenerator, path: Path) -> Path:
    """The in-memory generator as a checkpoint file (the project's save path)."""
    return save_generator(
        path,
        generator.tokenizer,
        generator.transformer,
        generator.length_estimator,
        generator.mean_D,
        generator.std_D,
        generator.text_encoder.config,
        generator.config,
    )


def test_checkpoint_round_trip_and_overrides(generator, tmp_path):
    path = _save(generator, tmp_path / "gen.safetensors")
    loaded = MotionGenerator.from_checkpoint(path, text_encoder=generator.text_encoder, warm_up=False)
    np.testing.assert_allclose(
        loaded.generate(TEXT, 2.0, seed=5).joints, generator.generate(TEXT, 2.0, seed=5).joints, atol=1e-5
    )
    one_shot = MotionGenerator.from_checkpoint(
        path,
        text_encoder=generator.text_encoder,
        warm_up=False,
        overrides=SamplingOverrides(refine_iterations=[1], guidance=1.0),
    )
    assert one_shot.config.refine_iterations == [1] and one_shot.config.guidance == 1.0
    assert one_shot.generate(TEXT, 2.0, seed=5).joints.shape == (40, 22, 3)
    v2_sampling = MotionGenerator.from_checkpoint(
        path,
        text_encoder=generator.text_encoder,
        warm_up=False,
        overrides=SamplingOverrides(refine_iterations=[1, 2, 5, 10], refine_schedule="linspace_cosine"),
    )
    assert v2_sampling.config.refine_schedule == "linspace_cosine" and loaded.config.refine_schedule == "cosine"
    v2_joints = v2_sampling.generate(TEXT, 2.0, seed=5).joints
    assert v2_joints.shape == (40, 22, 3) and np.isfinite(v2_joints).all()
    assert not np.allclose(v2_joints, loaded.generate(TEXT, 2.0, seed=5).joints)  # the schedule is used
    with pytest.raises(ConfigError, match="refine_schedule"):
        SamplingOverrides(refine_schedule="linear").apply(generator.config)
    with pytest.raises(ConfigError, match="top_p"):
        MotionGenerator.from_checkpoint(
            path, text_encoder=generator.text_encoder, warm_up=False, overrides=SamplingOverrides(top_p=0.0)
        )
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        MotionGenerator.from_checkpoint(broken)
    with pytest.raises(CheckpointError, match="not found"):
        MotionGenerator.from_checkpoint(tmp_path / "missing.safetensors")


def test_generate_and_bench_commands(generator, tmp_path, capsys):
    import argparse

    from moscale_ros.bench import generation as bench
    from moscale_ros.cli import main

    path = _save(generator, tmp_path / "gen.safetensors")
    npz, gif, bvh = tmp_path / "wave.npz", tmp_path / "wave.gif", tmp_path / "next.bvh"
    common = ["--checkpoint", str(path), "--seed", "4"]
    assert main(["generate", TEXT, "--seconds", "1.2", "--out", str(npz), "--gif", str(gif), *common]) == 0
    with np.load(npz) as data:
        assert data["joints"].shape == (24, 22, 3) and data["scale_joints"].shape == (4, 24, 22, 3)
        assert int(data["seed"]) == 4 and str(data["text"]) == TEXT
        np.testing.assert_array_equal(data["scale_joints"][-1], data["joints"])
        final = data["joints"]
    assert gif.stat().st_size > 1000
    assert (
        main(
            [
                "generate",
                "then bow",
                "--seconds",
                "1",
                "--continue-from",
                str(npz),
                "--prefix-seconds",
                "0.5",
                "--out",
                str(bvh),
                *common,
            ]
        )
        == 0
    )
    from moscale_ros.data.skeleton import bvh_to_canonical

    joints, fps = bvh_to_canonical(bvh)
    assert fps == 20.0 and joints.shape == (10 + 20, 22, 3)
    # The BVH starts with the last 0.5 s of the previous motion, up to its placement (reading a BVH
    # canonicalises it: first frame at the origin facing +z, on the ground) and the BVH's fixed bone lengths.
    from moscale_ros.generation.editing import fit_yaw_translation

    R, t = fit_yaw_translation(joints[:10], final[-10:])
    placed = joints[:10] @ R.T + t
    placed[..., 1] += final[-10:, :, 1].min() - placed[..., 1].min()
    np.testing.assert_allclose(placed, final[-10:], atol=0.05)
    assert main(["generate", TEXT, "--out", str(tmp_path / "x.txt"), *common]) == 2
    assert main(["generate", "  ", "--seconds", "2", *common]) == 2
    assert "text is empty" in capsys.readouterr().err

    args = argparse.Namespace(checkpoint=str(path), device="cpu", repeats=2)
    figures = bench.run(args)
    assert figures["model"] == str(path) and figures["repeats"] == 2
    assert 0 < figures["first_scale_ms_new_text"] <= figures["final_ms_new_text"]
    assert len(figures["per_scale_ms_cached_text"]) == 4 and figures["batch32_motions_per_s"] > 0


def test_prefix_fixes_the_tokens_it_fully_covers(generator, real_joints):
    """Zero-shot outpainting at the token level: a scale position whose latents all lie in the
    prefix takes the quantiser's code of the prefix, whatever the seed."""
    from moscale_ros.generation import editing

    prefix = real_joints[:48]
    known = editing.continuation(prefix, 48 + 32)
    f_known, known_N = editing.known_latents(generator.tokenizer, known, 20, generator.mean_D, generator.std_D)
    # 47 feature frames -> 11 whole latents; the last one saw padding, so 10 are known.
    assert known_N.tolist() == [True] * 10 + [False] * 10
    assert generator.tokenizer.scale_lengths(20)[0] == 2
    with torch.no_grad():
        expected = int(generator.tokenizer.quantizer.nearest(f_known[0, :10].mean(0, keepdim=True))[0])
    first_codes = [generator.generate(TEXT, seconds=1.6, seed=s, prefix_joints=prefix).codes[0] for s in range(4)]
    assert all(int(c[0]) == expected for c in first_codes)
