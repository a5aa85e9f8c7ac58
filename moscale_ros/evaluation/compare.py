"""``moscale eval compare``: the controlled comparison of generation orders, written to docs/RESULTS.md.

Same data, same transformer (``config/train/transformer.yaml``), same training time per variant:

(a) next-scale order with both refinements (cross-scale code corruption in training, in-scale
    re-masking at inference), on the multi-scale tokenizer;
(b) next-scale order without them (VAR-style: every scale predicted in one shot, no corruption),
    on the same tokenizer;
(c) next-token order (T2M-GPT style, :mod:`.next_token`), on a single-scale tokenizer with the same
    codebook, code size and latent rate (one scale of ``N`` latents) trained for the same time.

Every stage lives in its own run directory under ``--out`` (default ``cache/runs/compare``) and is
resumed when present: a rerun with the same budgets only re-evaluates, a larger budget trains on.
The two tokenizers share ``--tokenizer-minutes``, the three transformers ``--minutes-per-variant``.
Then every variant and the real test motions are scored with the evaluator (trained here for
``--evaluator-minutes`` unless ``--evaluator`` names one) under the protocol of :mod:`.evaluate`,
and the tables, the setup and the timings go to ``--results`` (Markdown) and ``results.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from moscale_common.config import load_config, to_dict
from moscale_common.errors import ConfigError
from moscale_common.paths import cache_root, local_or_resource, resource
from moscale_ros.checkpoint import load_checkpoint
from moscale_ros.data.dataset import load_prepared
from moscale_ros.evaluation.evaluate import (
    TEXT_SET_TITLES,
    NextScaleSource,
    NextTokenSource,
    ProtocolConfig,
    RowResult,
    evaluate_reference,
    evaluate_source,
    load_test_set,
    markdown_table,
    matched_reference,
    matching_encoder,
    measure_latency,
    real_statistics,
)
from moscale_ros.evaluation.model import EVALUATOR_FILE, load_evaluator
from moscale_ros.evaluation.provenance import command_line, git_commit, machine_info
from moscale_ros.generation.generator import MotionGenerator
from moscale_ros.generation.next_token import NextTokenGenerator
from moscale_ros.models.transformer import count_parameters
from moscale_ros.runtime import select_device, torch_threads
from moscale_ros.training import evaluator as evaluator_train
from moscale_ros.training import next_token as next_token_train
from moscale_ros.training import tokenizer as tokenizer_train
from moscale_ros.training import transformer as transformer_train
from moscale_ros.training.common import MetricsLog

Order = Literal["next_scale", "next_token"]


@dataclass
class VariantConfig:
    """One arm of the comparison: its order and the transformer-config overrides that define it."""

    name: str
    label: str
    order: Order = "next_scale"
    overrides: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ConfigError(f"variants: name {self.name!r} must be letters, digits, '-' or '_' (a folder name)")


@dataclass
class BudgetConfig:
    """Training minutes of each stage (the command line's ``--*-minutes`` replace them)."""

    tokenizer: float = 20.0
    evaluator: float = 15.0
    variant: float = 30.0

    def __post_init__(self) -> None:
        for name in ("tokenizer", "evaluator", "variant"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"minutes.{name}: must be > 0, got {getattr(self, name)}")


@dataclass
class CompareConfig:
    """The whole of ``config/eval/compare.yaml``."""

    data_dir: str | None = None
    tokenizer_config: str = "config/train/tokenizer.yaml"
    transformer_config: str = "config/train/transformer.yaml"
    evaluator_config: str = "config/train/evaluator.yaml"
    single_scale: list[int] = field(default_factory=lambda: [49])
    tokenizer_overrides: list[str] = field(default_factory=list)
    evaluator_overrides: list[str] = field(default_factory=list)
    transformer_overrides: list[str] = field(default_factory=list)
    minutes: BudgetConfig = field(default_factory=BudgetConfig)
    variants: list[VariantConfig] = field(default_factory=list)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)

    def __post_init__(self) -> None:
        if len(self.single_scale) != 1:
            raise ConfigError(f"single_scale: the next-token tokenizer has exactly one scale, got {self.single_scale}")
        if not self.variants:
            raise ConfigError("variants: name at least one variant to train and evaluate")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"variants: names must be unique, got {names}")


@dataclass
class StageResult:
    """A trained stage: its output file, training minutes, steps and last validation figures."""

    path: Path
    minutes: float
    steps: int
    val: dict[str, float] = field(default_factory=dict)


# ---- stages -------------------------------------------------------------------------------------------------


def _last_val(run_dir: Path) -> dict[str, float]:
    records = MetricsLog(run_dir / "metrics.jsonl").read("val")
    return {k: v for k, v in records[-1].items() if k not in ("step", "split", "time")} if records else {}


def _stage(run_dir: Path, output: str) -> StageResult:
    path = run_dir / output
    extra = load_checkpoint(path).extra
    return StageResult(path, float(extra.get("elapsed_s", 0.0)) / 60.0, int(extra.get("step", 0)), _last_val(run_dir))


def train_stage(
    trainer, config: str, overrides: list[str], run_dir: Path, output: str, device: str, log
) -> StageResult:
    """Train (resuming when ``run_dir`` has a checkpoint) with ``trainer.run(args)``; the stage's result."""
    args = argparse.Namespace(
        config=str(local_or_resource(config)), set=list(overrides), out=str(run_dir), resume=True, device=device
    )
    log(f"compare: training {run_dir.name} ({' '.join(overrides)})")
    started = time.monotonic()
    code = trainer(args)
    if code:
        raise ConfigError(f"{run_dir}: training stage ended with exit code {code}")
    result = _stage(run_dir, output)
    log(
        f"compare: {run_dir.name}: {result.steps} steps, {result.minutes:.1f} min of training "
        f"({(time.monotonic() - started) / 60:.1f} min this call)"
    )
    return result


def _data_override(cfg: CompareConfig, key: str = "data.cache_dir") -> list[str]:
    return [f"{key}={cfg.data_dir}"] if cfg.data_dir else []


@dataclass
class CompareOptions:
    """Command-line choices of one comparison run."""

    out: Path
    results: Path
    device: str = "auto"
    evaluator: Path | None = None
    threads: int = 1
    command: str = ""


def run_compare(cfg: CompareConfig, options: CompareOptions, log=print) -> dict:
    """Train every stage, evaluate every variant and the real motions, write the results; returns them."""
    started = time.monotonic()
    out = options.out
    minutes = cfg.minutes
    stages: dict[str, StageResult] = {}
    if options.evaluator is None:
        stages["evaluator"] = train_stage(
            evaluator_train.run,
            cfg.evaluator_config,
            [*_data_override(cfg), *cfg.evaluator_overrides, f"train.max_minutes={minutes.evaluator}"],
            out / "evaluator",
            EVALUATOR_FILE,
            options.device,
            log,
        )
    tokenizer_sets = {"multiscale": [], "single": [f"model.scales={list(cfg.single_scale)}"]}
    for name, extra in tokenizer_sets.items():
        stages[f"tokenizer-{name}"] = train_stage(
            tokenizer_train.run,
            cfg.tokenizer_config,
            [*_data_override(cfg), *cfg.tokenizer_overrides, *extra, f"train.max_minutes={minutes.tokenizer}"],
            out / f"tokenizer-{name}",
            "tokenizer.safetensors",
            options.device,
            log,
        )
    for variant in cfg.variants:
        tokenizer = stages["tokenizer-single" if variant.order == "next_token" else "tokenizer-multiscale"].path
        trainer = next_token_train.run if variant.order == "next_token" else transformer_train.run
        overrides = [
            f"tokenizer={tokenizer}",
            *_data_override(cfg),
            *cfg.transformer_overrides,
            *variant.overrides,
            f"train.max_minutes={minutes.variant}",
        ]
        stages[variant.name] = train_stage(
            trainer, cfg.transformer_config, overrides, out / variant.name, "model.safetensors", options.device, log
        )
    training_s = time.monotonic() - started

    device = select_device(options.device)
    evaluator_path = options.evaluator or stages["evaluator"].path
    evaluator = load_evaluator(evaluator_path, device)
    protocol = cfg.protocol
    prepared = load_prepared(cfg.data_dir, load_joints=False)
    test = load_test_set(prepared, protocol.split, protocol, protocol.max_clips)
    real = real_statistics(evaluator, test)
    fid_reference = None
    if protocol.reference_fid_split:
        fid_reference, _ = matched_reference(prepared, test, protocol, [protocol.reference_fid_split, "train"])
    rows: list[RowResult] = []
    for text_set in protocol.text_sets:
        rows.append(evaluate_reference(evaluator, test, real, protocol, text_set, fid_reference))
    setup = []
    loaded_encoders: list = []  # the generators' text encoders, loaded once for all variants
    for variant in cfg.variants:
        path = stages[variant.name].path
        te = matching_encoder(path, [evaluator.text_encoder, *loaded_encoders])
        if variant.order == "next_token":
            generator = NextTokenGenerator.from_checkpoint(path, device, te, num_threads=options.threads)
            source, transformer, tokenizer = NextTokenSource(generator), generator.transformer, generator.tokenizer
            iterations = "token by token"
        else:
            generator = MotionGenerator.from_checkpoint(
                path, device=device, text_encoder=te, warm_up=True, num_threads=options.threads
            )
            source, transformer, tokenizer = NextScaleSource(generator), generator.transformer, generator.tokenizer
            iterations = "passes per scale " + str(generator.config.iterations_for(tokenizer.num_scales))
        loaded_encoders.append(generator.text_encoder)
        latency = measure_latency(source, protocol)
        for text_set in protocol.text_sets:
            row = evaluate_source(source, variant.label, evaluator, test, real, protocol, text_set, log)
            row.timing.update(latency)
            rows.append(row)
        tok_stage = stages["tokenizer-single" if variant.order == "next_token" else "tokenizer-multiscale"]
        setup.append(
            {
                "variant": variant.label,
                "name": variant.name,
                "order": variant.order,
                "tokenizer_scales": list(tokenizer.cfg.scales),
                "tokens_at_196": sum(tokenizer.scale_lengths(49)),
                "tokenizer_mpjpe_mm": tok_stage.val.get("mpjpe_mm"),
                "transformer_params": count_parameters(transformer),
                "train_minutes": stages[variant.name].minutes,
                "train_steps": stages[variant.name].steps,
                "val_loss": stages[variant.name].val.get("val_loss"),
                "inference": iterations,
                "overrides": variant.overrides,
            }
        )
    results = {
        "command": options.command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "wall_minutes": (time.monotonic() - started) / 60.0,
        "training_wall_minutes": training_s / 60.0,
        "minutes": to_dict(minutes),
        "evaluator": {
            "path": str(evaluator_path),
            **({"val": stages["evaluator"].val, "steps": stages["evaluator"].steps} if "evaluator" in stages else {}),
        },
        "tokenizers": {
            k: {"minutes": v.minutes, "steps": v.steps, "val": v.val}
            for k, v in stages.items()
            if k.startswith("tokenizer-")
        },
        "protocol": to_dict(protocol),
        "test_clips": len(test),
        "setup": setup,
        "rows": [r.to_dict() for r in rows],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    options.results.parent.mkdir(parents=True, exist_ok=True)
    options.results.write_text(results_markdown(results, rows), encoding="utf-8")
    log(f"compare: wrote {options.results} and {out / 'results.json'} ({results['wall_minutes']:.1f} min in all)")
    return results


def _evaluator_line(results: dict) -> str:
    evaluator = results["evaluator"]
    if "val" not in evaluator:
        return f"given (`{evaluator['path']}`)"
    val = evaluator["val"]
    figures = ", ".join(
        f"{k.removeprefix('val_')} {val[k]:.3f}"
        for k in ("val_r1", "val_r3", "val_content_acc", "val_style_acc")
        if k in val
    )
    return f"{results['minutes']['evaluator']:g} min ({evaluator['steps']} steps; validation {figures})"


def results_markdown(results: dict, rows: list[RowResult]) -> str:
    """docs/RESULTS.md: setup, one table per text set (reference row first), protocol and caveats."""
    protocol = results["protocol"]
    lines = [
        "# Results",
        "",
        "Written by `moscale eval compare` (`moscale_ros/evaluation/compare.py`); rerun it to regenerate this file.",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, commit {git_commit()}; machine: {results['machine']}",
        f"- Wall time of the command: {results['wall_minutes']:.1f} min (training stages "
        f"{results['training_wall_minutes']:.1f} min, the rest evaluation).",
        f"- Budgets: tokenizers {results['minutes']['tokenizer']:g} min each, transformers "
        f"{results['minutes']['variant']:g} min each; evaluator: {_evaluator_line(results)}.",
        "",
        "## Controlled comparison: next-scale vs next-token order",
        "",
        "Same prepared data, same transformer configuration and size, same training time. The only differences "
        "are the order (and what follows from it: the tokenizer's scales) and, for (a) vs (b), the two MoScale "
        "refinements.",
        "",
        "| Variant | Tokenizer scales | Tokens / 196 frames | Tokenizer val MPJPE (mm) | Transformer params | "
        "Training min | Steps | Val CE | Inference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["setup"]:
        mpjpe = "–" if s["tokenizer_mpjpe_mm"] is None else f"{s['tokenizer_mpjpe_mm']:.1f}"
        val = "–" if s["val_loss"] is None else f"{s['val_loss']:.3f}"
        lines.append(
            f"| {s['variant']} | {s['tokenizer_scales']} | {s['tokens_at_196']} | {mpjpe} | "
            f"{s['transformer_params'] / 1e6:.2f} M | {s['train_minutes']:.1f} | {s['train_steps']} | {val} | "
            f"{s['inference']} |"
        )
    lines += [
        "",
        "Val CE is each order's own validation cross-entropy (next-scale: every scale predicted in one shot from "
        "clean coarser scales; next-token: teacher forcing); the two are not comparable with each other.",
    ]
    timing_columns = [
        ("Gen ms/motion", lambda r: f"{r.timing['generation_ms_per_motion']:.1f}" if r.timing else "–"),
        ("First plan s", lambda r: f"{r.timing['latency_first_plan_s']:.3f}" if r.timing else "–"),
        ("Final s", lambda r: f"{r.timing['latency_final_s']:.3f}" if r.timing else "–"),
    ]
    for text_set in protocol["text_sets"]:
        lines += [
            "",
            f"### {protocol['split'].capitalize()} split, {TEXT_SET_TITLES[text_set]} "
            f"({results['test_clips']} clips, {protocol['runs']} runs, mean ± 95 % interval)",
            "",
        ]
        lines.append(markdown_table([r for r in rows if r.text_set == text_set], timing_columns))
    lines += [
        "",
        "## Protocol",
        "",
        f"- Test set: every `{protocol['split']}` clip of at least {protocol['min_frames']} frames, its centred window "
        f"of min(T, {protocol['max_frames']}) frames floored to a multiple of 4. Each run draws one description per "
        "clip (from its training templates, or from its held-out paraphrases, which share no content phrase, "
        "style phrase or sentence frame with training) and generates one motion of the window's length.",
        "- Metrics (Guo et al. 2022) on the evaluator's unit-norm embeddings: R-precision top-1/2/3 in shuffled "
        f"groups of {protocol['r_precision_group']}; FID against the real test windows; MM-Dist (text to its "
        f"motion); diversity over {protocol['diversity_pairs']} random pairs; multimodality over "
        f"{protocol['mm_texts']} descriptions x {protocol['mm_samples']} motions ({protocol['mm_pairs']} pairs each); "
        "content and style accuracy of the evaluator's classifiers against the clip's labels (styles as the "
        "description's style concept). Mean ± Student-t 95 % interval over the runs (n stated in each table).",
        "- Reference row: the real test windows in place of generated motions, with the same descriptions; its "
        f"FID compares the test windows with real windows of other clips (from `{protocol['reference_fid_split']}`, "
        "else train) with the same content label and length, the floor a generator can reach.",
        "- Evaluator: a motion encoder (strided convolutions + transformer) and a head on the frozen MiniLM sentence "
        "embedding, trained contrastively (InfoNCE, TMR-style) on the training split, with content and style "
        "classifiers on the motion embedding (`moscale train evaluator`).",
        "- Gen ms/motion: wall time of the batched generation of the test set divided by the motions (equal "
        "lengths batched; the next-scale path also decodes the intermediate plan of every scale, as the streaming "
        "product does). First plan / Final: one request of "
        f"{protocol['latency_frames']} frames, median of {protocol['latency_repeats']}: seconds to the first "
        "full-length plan (next-scale: after scale 1; next-token: only the complete motion) and to the final motion.",
        "- Budgets are wall-clock minutes on a shared machine: a busier machine gives fewer steps; the step counts "
        "are in the setup table.",
        "",
    ]
    return "\n".join(lines)


# ---- ``moscale eval compare`` ---------------------------------------------------------------------------


def load_compare_config(args: argparse.Namespace) -> CompareConfig:
    overrides = list(args.set or [])
    for flag, key in (
        ("minutes_per_variant", "minutes.variant"),
        ("tokenizer_minutes", "minutes.tokenizer"),
        ("evaluator_minutes", "minutes.evaluator"),
        ("runs", "protocol.runs"),
        ("max_clips", "protocol.max_clips"),
    ):
        if getattr(args, flag, None) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    return load_config(CompareConfig, local_or_resource(args.config), overrides)


def run(args: argparse.Namespace) -> int:
    cfg = load_compare_config(args)
    options = CompareOptions(
        out=Path(args.out) if args.out else cache_root() / "runs" / "compare",
        results=Path(args.results) if args.results else resource("docs/RESULTS.md"),
        device=args.device,
        evaluator=Path(args.evaluator) if args.evaluator else None,
        threads=args.threads,
        command=command_line(args, "eval compare"),
    )
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    with torch_threads(0):  # the stages set their own counts; the caller's is restored
        results = run_compare(cfg, options, log)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0
