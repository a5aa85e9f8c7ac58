"""The shared training utilities (moscale_ros/training/common.py) on a small real optimisation."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from moscale_common.errors import CheckpointError, ConfigError
from moscale_ros.runtime import select_device
from moscale_ros.training.common import (
    LoopConfig,
    ResumeState,
    RunDir,
    load_training_checkpoint,
    lr_multiplier,
    run_loop,
    save_training_checkpoint,
    seed_everything,
)


def _regression_run(run: RunDir, cfg: LoopConfig, resume: bool) -> tuple[torch.nn.Module, list[float]]:
    """A least-squares fit driven by run_loop; returns the model and the per-step losses."""
    seed_everything(cfg.seed)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    state = ResumeState()
    if resume:
        state = load_training_checkpoint(run.last, "unit", {"model": model}, optimizer)
    x_N3 = torch.linspace(-1, 1, 96).reshape(32, 3)
    y_N1 = x_N3 @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    losses = []

    def step(_: int) -> dict[str, float]:
        pick = torch.randint(0, 32, (8,))
        loss = (model(x_N3[pick]) - y_N1[pick]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        return {"loss": loss.item()}

    def validate() -> dict[str, float]:
        return {"mse": (model(x_N3) - y_N1).pow(2).mean().item()}

    def save(path, st: ResumeState) -> None:
        save_training_checkpoint(path, "unit", {"model": model}, optimizer, {"loop": {"lr": cfg.lr}}, st)

    run_loop(cfg, run, state, step, validate, save, optimizer, best_key="mse", desc="unit")
    return model, losses


def test_loop_logs_validates_checkpoints_and_resumes_exactly(tmp_path):
    cfg = LoopConfig(steps=40, lr=0.05, warmup_steps=5, log_every=10, val_every=20, checkpoint_every=10)
    straight = RunDir(tmp_path / "straight")
    assert straight.prepare(resume=False) is False
    _, losses_a = _regression_run(straight, cfg, resume=False)
    assert np.mean(losses_a[-10:]) < 0.2 * np.mean(losses_a[:10])

    records = straight.metrics.read()
    assert [r["step"] for r in records if r["split"] == "train"] == [10, 20, 30, 40]
    assert [r["step"] for r in records if r["split"] == "val"] == [20, 40]
    assert all("lr" in r for r in records if r["split"] == "train")
    assert straight.best.is_file() and straight.last.is_file()
    with pytest.raises(ConfigError, match="--resume"):
        straight.prepare(resume=False)

    # The same run cut in two (20 steps, then --resume to 40) gives the same losses and weights.
    # A constant lr makes the first half's schedule independent of its shorter ``steps``.
    const = LoopConfig(**{**cfg.__dict__, "lr_min_ratio": 1.0, "warmup_steps": 0})
    first = LoopConfig(**{**const.__dict__, "steps": 20})
    whole_dir, cut_dir = RunDir(tmp_path / "whole"), RunDir(tmp_path / "cut")
    whole_dir.prepare(False)
    model_whole, losses_whole = _regression_run(whole_dir, const, resume=False)
    cut_dir.prepare(False)
    _, losses_first = _regression_run(cut_dir, first, resume=False)
    assert cut_dir.prepare(resume=True) is True
    model_cut, losses_second = _regression_run(cut_dir, const, resume=True)
    assert losses_first + losses_second == losses_whole
    assert torch.equal(model_cut.weight, model_whole.weight)
    ckpt_state = load_training_checkpoint(cut_dir.last, "unit", {"model": torch.nn.Linear(3, 1)})
    assert ckpt_state.step == 40 and ckpt_state.elapsed_s > 0
    assert ckpt_state.best == pytest.approx(min(r["mse"] for r in cut_dir.metrics.read("val")))


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    seed_everything(7)
    model = torch.nn.Linear(2, 2)
    path = save_training_checkpoint(tmp_path / "c.safetensors", "unit", {"model": model}, None, {}, ResumeState(3))
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    random.random(), np.random.rand(), torch.rand(5)  # move every generator on
    state = load_training_checkpoint(path, "unit", {"model": model})
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
    assert state.step == 3


def test_checkpoint_errors_name_the_file(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = save_training_checkpoint(tmp_path / "c.safetensors", "unit", {"model": model}, None, {}, ResumeState())
    with pytest.raises(CheckpointError, match="does not match"):
        load_training_checkpoint(path, "unit", {"model": torch.nn.Linear(3, 2)})
    with pytest.raises(CheckpointError, match="no 'other' part"):
        load_training_checkpoint(path, "unit", {"other": model})
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_training_checkpoint(path, "unit", {"model": model}, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="expected a 'tokenizer'"):
        load_training_checkpoint(path, "tokenizer", {"model": model})
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="t.safetensors"):
        load_training_checkpoint(truncated, "unit", {"model": model})


def test_device_selection_and_config_checks(tmp_path):
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert select_device("cuda").type == "cuda"
    else:
        with pytest.raises(ConfigError, match="'cuda'.*not available"):
            select_device("cuda")
    with pytest.raises(ConfigError, match="'tpu'"):
        select_device("tpu")
    with pytest.raises(ConfigError, match="train.steps"):
        LoopConfig(steps=0)
    cfg = LoopConfig(steps=100, warmup_steps=10, lr_min_ratio=0.1)
    assert lr_multiplier(0, cfg) == pytest.approx(0.1)
    assert lr_multiplier(10, cfg) == pytest.approx(1.0)
    assert lr_multiplier(100, cfg) == pytest.approx(0.1)
    run = RunDir(tmp_path / "r")
    run.metrics.log(5, "train", {"loss": 1.5})
    assert json.loads((tmp_path / "r" / "metrics.jsonl").read_text())["loss"] == 1.5


def test_time_budget_stops_the_loop_and_drives_the_schedule(tmp_path):
    import time

    cfg = LoopConfig(steps=1000, warmup_steps=0, lr_min_ratio=0.0, max_minutes=0.001, time_schedule=True)
    assert lr_multiplier(10, cfg, elapsed_s=0.0) > 0.99
    assert lr_multiplier(10, cfg, elapsed_s=0.03) == pytest.approx(0.5, abs=0.01)  # half the 0.06 s budget
    assert lr_multiplier(10, cfg, elapsed_s=1.0) == pytest.approx(0.0)
    run = RunDir(tmp_path / "timed")
    run.prepare(False)
    saved = []

    def step(_: int) -> dict[str, float]:
        time.sleep(0.02)
        return {"loss": 1.0}

    result = run_loop(
        cfg, run, ResumeState(), step, lambda: {"mse": 0.0}, lambda path, st: saved.append((path.name, st.step))
    )
    assert result.stopped_by == "time" and 2 <= result.step < 10
    assert saved[-1] == ("last.safetensors", result.step) and result.elapsed_s >= 0.06
