"""`moscale train tokenizer` / `moscale eval tokenizer` on real Bandai clips with a tiny model."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from moscale_common.errors import CheckpointError, ConfigError
from moscale_ros.checkpoint import load_checkpoint, save_checkpoint
from moscale_ros.commands import eval as eval_command
from moscale_ros.commands import train as train_command
from moscale_ros.evaluation.tokenizer import joint_errors_mm, segment_clips
from moscale_ros.models.tokenizer import load_tokenizer

TINY = [
    "model.width=64",
    "model.depth=1",
    "model.code_dim=32",
    "model.codebook_size=64",
    "data.min_window=32",
    "data.max_window=48",
    "data.val_max_clips=6",
    "loss.prefix_prob=0.3",
    "loss.joint_weight=0.1",
    "loss.commit_weight=0.02",
    "train.batch_size=32",
    "train.lr=0.001",
    "train.warmup_steps=0",
    "train.lr_min_ratio=1.0",
    "train.log_every=10",
    "train.val_every=60",
    "train.checkpoint_every=20",
    "train.max_minutes=null",
    "train.time_schedule=false",
    "train.num_threads=1",
    "precision=fp32",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moscale")
    sub = parser.add_subparsers(dest="command", required=True)
    train_command.register(sub)
    eval_command.register(sub)
    return parser


def _train(data: Path, out: Path, steps: int, *extra: str) -> int:
    argv = ["train", "tokenizer", "--out", str(out), "--device", "cpu"]
    for item in [*TINY, f"data.cache_dir={data}", f"train.steps={steps}"]:
        argv += ["--set", item]
    args = _parser().parse_args(argv + list(extra))
    return args.func(args)


@pytest.fixture(scope="module")
def trained(prepared_small: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer_run")
    assert _train(prepared_small, out, 120) == 0
    return out


def _records(run: Path, split: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_training_loss_falls_and_the_run_is_complete(trained: Path):
    train = _records(trained, "train")
    assert [r["step"] for r in train] == list(range(10, 130, 10))
    assert train[-1]["rec"] < 0.9 * train[0]["rec"]
    assert train[-1]["loss"] < train[0]["loss"]
    val = _records(trained, "val")
    assert [r["step"] for r in val] == [60, 120]
    for record in val:
        assert all(np.isfinite(record[f"mpjpe_mm_{k}"]) and record[f"mpjpe_mm_{k}"] > 0 for k in range(1, 5))
    for name in ("last.safetensors", "best.safetensors", "tokenizer.safetensors", "config.yaml"):
        assert (trained / name).is_file(), name


def test_resumed_run_matches_an_uninterrupted_one(prepared_small: Path, trained: Path, tmp_path: Path):
    assert _train(prepared_small, tmp_path, 60) == 0
    assert _train(prepared_small, tmp_path, 120, "--resume") == 0
    whole = load_checkpoint(trained / "last.safetensors", kind="tokenizer")
    cut = load_checkpoint(tmp_path / "last.safetensors", kind="tokenizer")
    assert cut.extra["step"] == 120
    for key, value in whole.states["tokenizer"].items():
        torch.testing.assert_close(cut.states["tokenizer"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert [r["step"] for r in _records(tmp_path, "val")] == [60, 120]


def test_checkpoint_round_trip_and_prefix_decoding_of_real_clips(prepared_small: Path, trained: Path):
    from moscale_ros.data.dataset import MotionTextDataset, collate_motion_text, load_prepared

    prepared = load_prepared(prepared_small, load_joints=False)
    full, mean_D, std_D = load_tokenizer(trained / "last.safetensors")
    slim, mean2_D, std2_D = load_tokenizer(trained / "tokenizer.safetensors")
    torch.testing.assert_close(mean_D, torch.as_tensor(prepared.mean))
    torch.testing.assert_close(std_D, torch.as_tensor(prepared.std))
    assert torch.equal(mean_D, mean2_D) and torch.equal(std_D, std2_D)
    for key, value in full.state_dict().items():
        assert torch.equal(slim.state_dict()[key], value), key

    dataset = MotionTextDataset(prepared, "test", max_frames=196, deterministic=True)
    batch = collate_motion_text([dataset[i] for i in range(min(6, len(dataset)))])
    feats_BTD, lengths_B = batch["feats_BTD"], batch["lengths_B"]
    assert len(set(lengths_B.tolist())) > 1  # real clips of different lengths
    with torch.no_grad():
        f_BNC, latent_lengths_B = full.encode_latents(feats_BTD, lengths_B)
        assert latent_lengths_B.tolist() == [(int(t) + 3) // 4 for t in lengths_B]
        quant = full.quantize(f_BNC, latent_lengths_B)
        for k, idx_BL in enumerate(quant.idx):
            expected = [full.scale_lengths(int(n))[k] for n in latent_lengths_B]
            assert quant.scale_lengths[:, k].tolist() == expected
            assert quant.masks[k].sum(1).tolist() == expected
            assert idx_BL.shape == (len(lengths_B), max(expected))
            assert int(idx_BL.max()) < full.codebook_size
        assert quant.scale_lengths[:, -1].tolist() == latent_lengths_B.tolist()
        previous = None
        for k in range(1, full.num_scales + 1):
            out_BTD = full.decode_indices(quant.idx[:k], latent_lengths_B, lengths_B)
            assert out_BTD.shape == feats_BTD.shape
            for b, T in enumerate(lengths_B.tolist()):
                assert out_BTD[b, T:].abs().sum() == 0
            assert previous is None or not torch.equal(out_BTD, previous)
            previous = out_BTD
        same = slim.decode_indices(slim.encode(feats_BTD, lengths_B), latent_lengths_B, lengths_B)
        torch.testing.assert_close(same, previous)


def test_corrupt_or_mismatched_checkpoints_raise_clear_errors(trained: Path, tmp_path: Path):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((trained / "tokenizer.safetensors").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        load_tokenizer(truncated)
    ckpt = load_checkpoint(trained / "tokenizer.safetensors")
    wider = dict(ckpt.configs["tokenizer"], width=48)
    mismatched = save_checkpoint(tmp_path / "wider.safetensors", "tokenizer", ckpt.states, {"tokenizer": wider})
    with pytest.raises(CheckpointError, match="wider.safetensors.*does not match"):
        load_tokenizer(mismatched)
    bad_config = dict(ckpt.configs["tokenizer"], scales=[4, 2])
    broken = save_checkpoint(tmp_path / "badcfg.safetensors", "tokenizer", ckpt.states, {"tokenizer": bad_config})
    with pytest.raises(CheckpointError, match="scales"):
        load_tokenizer(broken)
    no_norm = {"tokenizer": ckpt.states["tokenizer"]}
    unnormalised = save_checkpoint(tmp_path / "nonorm.safetensors", "tokenizer", no_norm, ckpt.configs)
    with pytest.raises(CheckpointError, match="mean/std"):
        load_tokenizer(unnormalised)
    other_kind = save_checkpoint(tmp_path / "other.safetensors", "transformer", ckpt.states, ckpt.configs)
    with pytest.raises(CheckpointError, match="expected a 'tokenizer'"):
        load_tokenizer(other_kind)
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "missing.safetensors")


def test_eval_command_prints_the_per_prefix_table(prepared_small: Path, trained: Path, capsys):
    from moscale_ros.data.dataset import load_prepared

    base = ["eval", "tokenizer", "--checkpoint", str(trained / "last.safetensors"), "--data", str(prepared_small)]
    args = _parser().parse_args(base + ["--split", "test", "--json", "--device", "cpu"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    clips = [c.features for c in load_prepared(prepared_small, load_joints=False).clips("test")]
    assert report["num_frames"] == sum(len(p) for p in segment_clips(clips, 196))
    assert [p["scales"] for p in report["prefixes"]] == [1, 2, 3, 4]
    assert [p["tokens_at_max"] for p in report["prefixes"]] == [6, 18, 42, 91]
    assert all(0 < p["mpjpe_mm"] < 1e4 and p["mpjpe_global_mm"] >= 0 for p in report["prefixes"])
    assert report["zero_latent"]["scales"] == 0 and report["zero_latent"]["mpjpe_mm"] > 0
    assert report["used_codes"] + report["unused_codes"] == 64 and report["perplexity"] >= 1
    assert report["info"]["step"] == 120

    args = _parser().parse_args(base + ["--device", "cpu"])
    assert args.func(args) == 0
    table = capsys.readouterr().out
    for label in ("none", "1 ", "1..2", "1..3", "1..4", "MPJPE mm", "codebook: 64 codes"):
        assert label in table


def test_mpjpe_is_root_aligned_and_global():
    true_BTJ3 = torch.randn(2, 5, 22, 3)
    valid_BT = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    assert joint_errors_mm(true_BTJ3, true_BTJ3, valid_BT) == (0.0, 0.0, 8)
    shifted = true_BTJ3 + torch.tensor([0.01, 0.0, 0.0])  # 10 mm along x, every joint
    aligned, global_, frames = joint_errors_mm(shifted, true_BTJ3, valid_BT)
    assert aligned == pytest.approx(0.0, abs=1e-3) and global_ / frames == pytest.approx(10.0, rel=1e-4)
    bent = true_BTJ3.clone()
    bent[:, :, 21] += torch.tensor([0.0, 0.022, 0.0])  # one joint of 22 off by 22 mm
    aligned, _, frames = joint_errors_mm(bent, true_BTJ3, valid_BT)
    assert aligned / frames == pytest.approx(1.0, rel=1e-4)


def test_bad_runs_are_refused_with_clear_errors(prepared_small: Path, trained: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="--resume"):
        _train(prepared_small, trained, 120)
    with pytest.raises(ConfigError, match="widht"):
        _train(prepared_small, tmp_path / "typo", 2, "--set", "model.widht=3")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="'cuda'.*not available"):
            _train(prepared_small, tmp_path / "gpu", 2, "--device", "cuda")
    from moscale_common.errors import DataError

    with pytest.raises(DataError, match="missing-data"):
        _train(tmp_path / "missing-data", tmp_path / "nodata", 2)
    # bf16 autocast (the default CPU precision) runs the same code.
    assert _train(prepared_small, tmp_path / "bf16", 3, "--set", "precision=bf16") == 0
    shutil.rmtree(tmp_path / "bf16")
