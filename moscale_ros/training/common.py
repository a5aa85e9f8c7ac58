"""Pieces every trainer shares: seeds, device choice, run directory, resumable checkpoints, the loop.

A trainer builds its model, optimiser and data, then hands two callables to :func:`run_loop`:
``train_step(step) -> {name: float}`` and ``validate() -> {name: float}``. The loop owns the
progress bar, the learning-rate schedule, periodic validation, periodic checkpoints (through
:mod:`moscale_ros.checkpoint`, so nothing is ever unpickled), the JSON-lines metrics log, the
wall-time budget and resume. Checkpoints written by :func:`save_training_checkpoint` carry the
model parts, the optimiser, the RNG states, the step, the accumulated training time and the
configs, so ``--resume`` continues the same run bit for bit where the data order allows it.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import yaml
from tqdm import tqdm

from moscale_common.config import load_config, to_dict
from moscale_common.errors import CheckpointError, ConfigError
from moscale_common.paths import cache_root, local_or_resource
from moscale_ros.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from moscale_ros.runtime import select_device, torch_threads

LAST_CHECKPOINT = "last.safetensors"
BEST_CHECKPOINT = "best.safetensors"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
ConfigT = TypeVar("ConfigT")


@dataclass
class LoopConfig:
    """Optimisation and bookkeeping settings shared by every trainer (the ``train:`` YAML section).

    Learning rate: linear warm-up over ``warmup_steps`` to ``lr``, then cosine decay to
    ``lr * lr_min_ratio`` at ``steps``. ``max_minutes`` bounds the accumulated training time
    (resumes included); the loop saves a checkpoint and stops when it is spent. With
    ``time_schedule`` the schedule's progress is ``max(step / steps, minutes / max_minutes)``, so
    the decay completes within the time budget on a slow or busy machine (the learning-rate
    curve, and so the result, then depends on the machine's speed).
    """

    steps: int = 10000
    batch_size: int = 64
    lr: float = 2e-4
    lr_min_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    val_every: int = 1000
    checkpoint_every: int = 1000
    max_minutes: float | None = None
    time_schedule: bool = False
    num_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "val_every", "checkpoint_every", "num_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr: must be > 0, got {self.lr}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ConfigError(f"train.lr_min_ratio: must be in [0, 1], got {self.lr_min_ratio}")
        if self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps: must be >= 0, got {self.warmup_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"train.max_minutes: must be > 0 or null, got {self.max_minutes}")


# ---------------------------------------------------------------------------------------------
# Seeds, threads, devices


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_multiplier(step: int, cfg: LoopConfig, elapsed_s: float | None = None) -> float:
    """Warm-up then cosine: ``(step+1)/warmup`` for ``step < warmup``, then ``r + (1-r)(1+cos(pi*p))/2``
    with ``p = (step - warmup) / (steps - warmup)`` (or the time fraction, if larger, with
    ``cfg.time_schedule`` and an ``elapsed_s``)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = (step - cfg.warmup_steps) / span
    if cfg.time_schedule and cfg.max_minutes and elapsed_s is not None:
        progress = max(progress, elapsed_s / (cfg.max_minutes * 60.0))
    progress = min(1.0, progress)
    return cfg.lr_min_ratio + (1.0 - cfg.lr_min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------
# Run directory and metrics log


class MetricsLog:
    """Append-only JSON lines: one ``{"step", "split", "time", ...metrics}`` object per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
        record = {"step": int(step), "split": split, "time": round(time.time(), 3)}
        record.update({k: float(v) for k, v in metrics.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read(self, split: str | None = None) -> list[dict[str, Any]]:
        """All records (of one ``split`` if given); a missing file reads as empty."""
        if not self.path.is_file():
            return []
        records = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [r for r in records if split is None or r.get("split") == split]


class RunDir:
    """A training run's folder: ``last.safetensors``, ``best.safetensors``, ``metrics.jsonl``, ``config.yaml``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.last = self.path / LAST_CHECKPOINT
        self.best = self.path / BEST_CHECKPOINT
        self.metrics = MetricsLog(self.path / METRICS_FILE)

    @classmethod
    def for_model(cls, out: str | Path | None, model: str) -> RunDir:
        """``out`` if given, else ``cache/runs/<model>``."""
        return cls(Path(out) if out else cache_root() / "runs" / model)

    def prepare(self, resume: bool) -> bool:
        """Create the folder; return whether a checkpoint to resume from exists.

        Starting afresh over an existing checkpoint raises :class:`ConfigError` (pass ``--resume``
        or another ``--out``), so a run is never overwritten by accident.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if self.last.is_file():
            if not resume:
                raise ConfigError(
                    f"{self.path}: run directory already holds {LAST_CHECKPOINT}; pass --resume to continue "
                    "it or --out to start a new run elsewhere"
                )
            return True
        if resume:
            print(f"{self.path}: no checkpoint to resume from; starting a new run", file=sys.stderr)
        return False

    def save_config(self, config: Mapping[str, Any]) -> Path:
        path = self.path / CONFIG_FILE
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
        return path


@dataclass(frozen=True)
class TrainingSession:
    """What every trainer starts from: the device, its run folder, whether it resumes, its CPU threads."""

    device: torch.device
    run_dir: RunDir
    resuming: bool
    threads: int
    loop: LoopConfig

    def adamw(self, params: Any) -> torch.optim.AdamW:
        """The trainers' optimiser: AdamW, ``betas = (0.9, 0.99)``, the loop's ``lr`` and ``weight_decay``."""
        return torch.optim.AdamW(params, lr=self.loop.lr, betas=(0.9, 0.99), weight_decay=self.loop.weight_decay)

    def step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: Any) -> None:
        """Clear the gradients, back-propagate ``loss``, clip the gradient norm of ``params`` at the
        loop's ``grad_clip`` (0: no clipping) and step."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.loop.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.loop.grad_clip)
        optimizer.step()


@contextmanager
def training_session(args: Any, run_name: str, train: LoopConfig) -> Iterator[TrainingSession]:
    """A trainer's start from its CLI ``args`` (``device``, ``out``, ``resume``, all optional): torch
    threads scoped to the block, the device, ``--out`` or ``cache/runs/<run_name>`` prepared for
    ``--resume`` (see :meth:`RunDir.prepare`), and every RNG seeded with ``train.seed``."""
    with torch_threads(train.num_threads) as threads:
        device = select_device(getattr(args, "device", "auto"))
        run_dir = RunDir.for_model(getattr(args, "out", None), run_name)
        resuming = run_dir.prepare(bool(getattr(args, "resume", False)))
        seed_everything(train.seed)
        yield TrainingSession(device, run_dir, resuming, threads, train)


def load_train_config(cls: type[ConfigT], args: Any) -> ConfigT:
    """A trainer's config: the defaults of ``cls``, then the YAML ``args.config`` (a path, else a
    shipped resource such as ``config/train/tokenizer.yaml``; absent: defaults only), then the
    ``key.path=value`` overrides ``args.set``."""
    path = None
    if getattr(args, "config", None):
        path = local_or_resource(args.config)
    return load_config(cls, path, getattr(args, "set", []) or [])


def train_command(
    args: Any, config_cls: type[ConfigT], run_name: str, train: Callable[[ConfigT, TrainingSession], int]
) -> int:
    """Every ``moscale train`` command: its config (:func:`load_train_config`, ``config_cls`` has a
    ``train: LoopConfig``), then ``train(cfg, session)`` inside :func:`training_session`."""
    cfg = load_train_config(config_cls, args)
    with training_session(args, run_name, cfg.train) as session:
        return train(cfg, session)


# ---------------------------------------------------------------------------------------------
# Resumable checkpoints (optimiser and RNG states flattened to tensors + JSON metadata)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into flat tensors ``"<param>.<name>"`` and JSON-ready rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], where: str
) -> None:
    """Inverse of :func:`optimizer_to_tensors`; a layout that does not fit raises CheckpointError."""
    try:
        slots: dict[int, dict[str, Any]] = {}
        for key, tensor in tensors.items():
            param_id, _, name = key.partition(".")
            slots.setdefault(int(param_id), {})[name] = tensor
        for param_id, values in meta.get("scalars", {}).items():
            slots.setdefault(int(param_id), {}).update(values)
        optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: optimizer state does not match this model ({exc})") from exc


def rng_to_tensors() -> dict[str, torch.Tensor]:
    """The torch (CPU, CUDA), NumPy and Python RNG states as tensors."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda{index}"] = cuda_state
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    states["numpy"] = torch.from_numpy(np.concatenate([keys.astype(np.int64), [pos, has_gauss]]))
    states["numpy_gauss"] = torch.tensor([gauss], dtype=torch.float64)
    version, internal, gauss_next = random.getstate()
    states["python"] = torch.tensor([version, *internal], dtype=torch.int64)
    states["python_gauss"] = torch.tensor([math.nan if gauss_next is None else gauss_next], dtype=torch.float64)
    return states


def rng_from_tensors(states: Mapping[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_to_tensors` saved (missing entries are left alone)."""
    if "torch" in states:
        torch.set_rng_state(states["torch"].cpu().to(torch.uint8))
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            if f"cuda{index}" in states:
                torch.cuda.set_rng_state(states[f"cuda{index}"].cpu().to(torch.uint8), index)
    if "numpy" in states:
        values = states["numpy"].cpu().numpy()
        gauss = float(states["numpy_gauss"][0]) if "numpy_gauss" in states else 0.0
        np.random.set_state(("MT19937", values[:-2].astype(np.uint32), int(values[-2]), int(values[-1]), gauss))
    if "python" in states:
        values = states["python"].tolist()
        gauss = float(states["python_gauss"][0]) if "python_gauss" in states else math.nan
        random.setstate((values[0], tuple(values[1:]), None if math.isnan(gauss) else gauss))


@dataclass
class ResumeState:
    """What a resumed trainer needs besides the restored modules/optimiser."""

    step: int = 0
    elapsed_s: float = 0.0
    best: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def save_training_checkpoint(
    path: str | Path,
    kind: str,
    modules: Mapping[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | None,
    configs: Mapping[str, Any],
    state: ResumeState,
    extra_tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write modules (one part each), optimiser, RNG states, step, time, configs and ``state.extra``.

    ``extra_tensors`` adds more parts (e.g. feature mean/std); every part is a flat tensor dict.
    The same file serves inference: :func:`moscale_ros.checkpoint.load_checkpoint` reads it.
    """
    states: dict[str, dict[str, torch.Tensor]] = {name: m.state_dict() for name, m in modules.items()}
    extra: dict[str, Any] = dict(state.extra)
    extra.update({"step": state.step, "elapsed_s": state.elapsed_s, "best": state.best})
    if optimizer is not None:
        states["optimizer"], extra["optimizer"] = optimizer_to_tensors(optimizer)
    states["rng"] = rng_to_tensors()
    for name, tensors in (extra_tensors or {}).items():
        if name in states:
            raise ValueError(f"extra tensor part {name!r} clashes with a module or reserved part")
        states[name] = dict(tensors)
    return save_checkpoint(path, kind, states=states, configs=dict(configs), extra=extra)


def load_training_checkpoint(
    path: str | Path,
    kind: str,
    modules: Mapping[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    device: str | torch.device = "cpu",
    restore_rng: bool = True,
) -> ResumeState:
    """Restore modules (strictly), optimiser and RNG states from a training checkpoint."""
    ckpt = load_checkpoint(path, kind=kind, device=str(device))
    for name, module in modules.items():
        if name not in ckpt.states:
            raise CheckpointError(f"{path}: checkpoint has no {name!r} part (parts: {sorted(ckpt.states)})")
        load_state_strict(module, ckpt.states[name], where=f"{path} [{name}]")
    extra = dict(ckpt.extra)
    if optimizer is not None:
        if "optimizer" not in extra:
            raise CheckpointError(f"{path}: checkpoint has no optimizer state to resume from")
        optimizer_from_tensors(optimizer, ckpt.states.get("optimizer", {}), extra["optimizer"], str(path))
    if restore_rng and "rng" in ckpt.states:
        rng_from_tensors(ckpt.states["rng"])
    state = ResumeState(
        step=int(extra.pop("step", 0)),
        elapsed_s=float(extra.pop("elapsed_s", 0.0)),
        best=extra.pop("best", None),
    )
    extra.pop("optimizer", None)
    state.extra = extra
    return state


@dataclass
class Checkpointed:
    """What a trainer's checkpoints hold: their ``kind``, the ``modules`` (one part each), the
    optimiser, the ``configs`` and extra tensor parts (e.g. the feature normalisation)."""

    kind: str
    modules: Mapping[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    configs: Mapping[str, Any]
    extra_tensors: Mapping[str, Mapping[str, torch.Tensor]] = field(default_factory=dict)

    def save(self, path: Path, state: ResumeState) -> None:
        save_training_checkpoint(
            path, self.kind, self.modules, self.optimizer, self.configs, state, extra_tensors=self.extra_tensors
        )


# ---------------------------------------------------------------------------------------------
# Progress bar and the loop


def progress_bar(total: int, initial: int = 0, desc: str = "train") -> Any:
    """A tqdm bar on stderr; refreshes rarely when stderr is a file (``nohup`` logs stay small)."""
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        dynamic_ncols=interactive,
        mininterval=0.5 if interactive else 30.0,
        file=sys.stderr,
        smoothing=0.05,
    )


@dataclass
class LoopResult:
    """How a :func:`run_loop` call ended."""

    step: int
    elapsed_s: float
    stopped_by: str  # "steps" | "time" | "interrupt"
    last_val: dict[str, float] = field(default_factory=dict)
    best: float | None = None


def run_loop(
    cfg: LoopConfig,
    run: RunDir,
    state: ResumeState,
    train_step: Callable[[int], Mapping[str, float]],
    validate: Callable[[], Mapping[str, float]],
    save: Callable[[Path, ResumeState], None],
    optimizer: torch.optim.Optimizer | None = None,
    best_key: str | None = None,
    desc: str = "train",
) -> LoopResult:
    """Run ``train_step(step)`` from ``state.step`` to ``cfg.steps``, with everything around it.

    Sets each param group's lr to ``base_lr * lr_multiplier(step)`` (base = ``cfg.lr``) before the
    step; averages the returned metrics over ``log_every`` steps into the metrics log (split
    ``train``); every ``val_every`` steps and at the end calls ``validate()`` (split ``val``) and,
    when ``best_key`` is given, keeps ``best.safetensors`` for its lowest value; every
    ``checkpoint_every`` steps, at the end, when ``cfg.max_minutes`` is spent and on Ctrl-C
    calls ``save(run.last, state)``. ``state.step`` counts completed steps.
    """
    bar = progress_bar(cfg.steps, initial=state.step, desc=desc)
    sums: dict[str, float] = {}
    count = 0
    stopped_by = "steps"
    last_val: dict[str, float] = {}
    segment_start = time.monotonic()
    elapsed_before = state.elapsed_s

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - segment_start

    def do_validate() -> None:
        nonlocal last_val
        last_val = {k: float(v) for k, v in validate().items()}
        run.metrics.log(state.step, "val", last_val)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in last_val.items())
        bar.write(f"[{desc}] step {state.step}: val {shown}")
        if best_key is not None and best_key in last_val:
            if state.best is None or last_val[best_key] < state.best:
                state.best = last_val[best_key]
                state.elapsed_s = elapsed()
                save(run.best, state)

    try:
        while state.step < cfg.steps:
            if cfg.max_minutes is not None and elapsed() >= cfg.max_minutes * 60.0:
                stopped_by = "time"
                break
            if optimizer is not None:
                factor = lr_multiplier(state.step, cfg, elapsed())
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * factor
            metrics = train_step(state.step)
            state.step += 1
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            count += 1
            bar.update(1)
            if state.step % cfg.log_every == 0 and count:
                means = {k: v / count for k, v in sums.items()}
                if optimizer is not None:
                    means["lr"] = optimizer.param_groups[0]["lr"]
                run.metrics.log(state.step, "train", means)
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(means.items())[:4]}, refresh=False)
                sums, count = {}, 0
            if state.step % cfg.val_every == 0:
                do_validate()
            if state.step % cfg.checkpoint_every == 0:
                state.elapsed_s = elapsed()
                save(run.last, state)
    except KeyboardInterrupt:
        state.elapsed_s = elapsed()
        save(run.last, state)
        bar.close()
        raise
    if state.step % cfg.val_every != 0 or not last_val:
        do_validate()
    state.elapsed_s = elapsed()
    save(run.last, state)
    bar.close()
    if stopped_by == "time":
        print(
            f"[{desc}] stopped at step {state.step}/{cfg.steps}: time budget of {cfg.max_minutes} min spent",
            file=sys.stderr,
        )
    return LoopResult(state.step, state.elapsed_s, stopped_by, last_val, state.best)


def run_training(
    session: TrainingSession,
    cfg: Any,
    saved: Checkpointed,
    train_step: Callable[[int], Mapping[str, float]],
    validate: Callable[[], Mapping[str, float]],
    best_key: str,
    desc: str,
) -> LoopResult:
    """Every trainer's shell around :func:`run_loop`: resume ``saved`` from the run's last checkpoint
    when the session resumes, write the whole config ``cfg`` (with its ``train: LoopConfig``) as
    ``config.yaml``, then train with checkpoints of ``saved``."""
    run_dir = session.run_dir
    state = ResumeState()
    if session.resuming:
        state = load_training_checkpoint(run_dir.last, saved.kind, saved.modules, saved.optimizer, session.device)
        print(f"{desc}: resumed {run_dir.last} at step {state.step}", file=sys.stderr)
    run_dir.save_config(to_dict(cfg))
    return run_loop(
        cfg.train, run_dir, state, train_step, validate, saved.save, saved.optimizer, best_key=best_key, desc=desc
    )
