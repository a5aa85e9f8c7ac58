"""The evaluation protocol and ``moscale eval generator``.

Test set: every clip of the split with at least ``min_frames`` frames, as the centred window of
``min(T, max_frames)`` frames floored to a multiple of 4 (:class:`~moscale_ros.data.dataset.MotionTextDataset`
with ``deterministic=True``). Its real windows, embedded by the evaluator, are the real statistics of FID.

Run ``r`` (seed ``seed + r``): every clip gets one description drawn at random from its training
templates (text set ``train``) or its held-out paraphrases (``heldout``); the generator makes one
motion per clip with that description and the window's length; then R-precision (groups of 32),
FID against the real windows, MM-Dist, diversity and the classifiers' content/style accuracy against
the clip's labels (see :mod:`.metrics`). Multimodality: ``mm_texts`` clips, ``mm_samples`` motions
each from the same description. Each figure is reported as mean ± Student-t 95 % interval over the runs (n stated).

Reference row: the real windows themselves in place of generated motions (same descriptions), so
R-precision, MM-Dist, diversity and accuracies show the evaluator's ceiling on real data; its FID
compares the test windows with an independent real sample matched to them as the generated motions
are (:func:`matched_reference`): for each test window, the centred window of the same length of
another clip with the same content and style labels (else the same content), from
``reference_fid_split`` (default ``val``) or else from ``train``. That is the FID two independent
samples of real motion with the same labels and lengths reach; the info block counts the windows
matched by content and style, by content only, shorter, or of another content.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from moscale_common.config import from_dict, load_config
from moscale_common.errors import CheckpointError, ConfigError, DataError
from moscale_common.paths import cache_root, local_or_resource, resource
from moscale_ros.checkpoint import load_checkpoint
from moscale_ros.data.dataset import MotionTextDataset, load_prepared
from moscale_ros.evaluation import metrics
from moscale_ros.evaluation.model import EVALUATOR_FILE, EmbeddedMotions, Evaluator, load_evaluator
from moscale_ros.evaluation.provenance import command_line, git_commit, machine_info, utc_now
from moscale_ros.generation.bundle import GENERATOR_KIND, NEXT_TOKEN_KIND
from moscale_ros.generation.config import SamplingOverrides
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT, MotionGenerator
from moscale_ros.generation.next_token import NextTokenGenerator
from moscale_ros.runtime import select_device, torch_threads

TextSet = Literal["train", "heldout"]
METRIC_KEYS = ("r1", "r2", "r3", "r1_label", "fid", "mm_dist", "diversity", "multimodality", "content_acc", "style_acc")
TEXT_SET_TITLES = {"train": "training-template descriptions", "heldout": "held-out paraphrases"}


@dataclass
class ProtocolConfig:
    """How generated motions are evaluated (``config/eval/generator.yaml``)."""

    split: str = "test"
    runs: int = 3
    seed: int = 0
    text_sets: list[TextSet] = field(default_factory=lambda: ["train", "heldout"])
    min_frames: int = 24
    max_frames: int = 196
    max_clips: int | None = None
    r_precision_group: int = metrics.R_PRECISION_GROUP
    diversity_pairs: int = metrics.DIVERSITY_PAIRS
    mm_texts: int = 32
    mm_samples: int = 10
    mm_pairs: int = 10
    reference_fid_split: str | None = "val"
    latency_frames: int = 196
    latency_repeats: int = 3

    def __post_init__(self) -> None:
        for name in ("runs", "r_precision_group", "diversity_pairs", "mm_pairs", "latency_frames", "latency_repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"protocol.{name}: must be >= 1, got {getattr(self, name)}")
        if self.mm_texts < 0 or (self.mm_texts and self.mm_samples < 2):
            raise ConfigError(
                f"protocol.mm_texts/mm_samples: need mm_texts >= 0 and mm_samples >= 2, got "
                f"{self.mm_texts}/{self.mm_samples}"
            )
        if not 4 <= self.min_frames <= self.max_frames:
            raise ConfigError(
                f"protocol.min_frames/max_frames: need 4 <= min <= max, got {self.min_frames}/{self.max_frames}"
            )
        if not self.text_sets:
            raise ConfigError("protocol.text_sets: name at least one of train, heldout")
        if self.max_clips is not None and self.max_clips < 2:
            raise ConfigError(f"protocol.max_clips: must be >= 2 or null, got {self.max_clips}")


# ---- the test set -----------------------------------------------------------------------------------


@dataclass
class TestSet:
    """Real windows of one split (un-normalised ``(T_i, 263)`` features) with descriptions and labels."""

    names: list[str]
    features: list[np.ndarray]
    texts: dict[str, list[list[str]]]
    contents: list[str]
    styles: list[str]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def frames(self) -> list[int]:
        return [f.shape[0] for f in self.features]


def load_test_set(prepared, split: str, cfg: ProtocolConfig, max_clips: int | None = None) -> TestSet:
    """The windows of ``split`` (a fixed random subset of ``max_clips`` when given)."""
    dataset = MotionTextDataset(
        prepared, split, max_frames=cfg.max_frames, min_frames=cfg.min_frames, normalize=False, deterministic=True
    )
    clips = [c for c in dataset.clips if c.texts]
    if len(clips) < 2:
        raise DataError(
            f"{prepared.cache_dir}: split {split!r} has {len(clips)} clips of >= {cfg.min_frames} "
            "frames with descriptions; the metrics need at least 2"
        )
    if max_clips is not None and len(clips) > max_clips:
        picks = np.random.default_rng(cfg.seed).permutation(len(clips))[:max_clips]
        clips = [clips[i] for i in sorted(picks)]
    features = []
    for clip in clips:
        start, length = dataset.window(clip)
        features.append(np.asarray(clip.features[start : start + length], dtype=np.float32))
    return TestSet(
        names=[c.name for c in clips],
        features=features,
        texts={"train": [list(c.texts) for c in clips], "heldout": [list(c.heldout_texts) for c in clips]},
        contents=[c.content for c in clips],
        styles=[c.style for c in clips],
    )


def matched_reference(
    prepared, test: TestSet, cfg: ProtocolConfig, splits: Sequence[str]
) -> tuple[list[np.ndarray], dict[str, int]]:
    """For each test window, a real window taken as the test windows are (centred, the same length)
    from another clip with the same content and style labels (``matched``), else the same content
    (``matched_content``), searched in ``splits``; the clip drawn at random, seeded by ``cfg.seed``.
    Where no same-content clip is long enough, the longest one whole (``shorter``); with none at
    all, any clip long enough (``other_content``). Returns the windows and those counts."""
    rng = np.random.default_rng(cfg.seed + 7919)
    pool = [c for split in splits for c in prepared.clips(split) if c.name not in set(test.names)]
    by_content: dict[str, list] = {}
    for clip in pool:
        by_content.setdefault(clip.content, []).append(clip)
    windows, counts = [], {"matched": 0, "matched_content": 0, "shorter": 0, "other_content": 0}
    for content, style, frames in zip(test.contents, test.styles, test.frames):
        same = by_content.get(content, [])
        long_enough = [c for c in same if c.num_frames >= frames]
        same_style = [c for c in long_enough if c.style == style]
        if same_style:
            kind, clip = "matched", same_style[int(rng.integers(len(same_style)))]
        elif long_enough:
            kind, clip = "matched_content", long_enough[int(rng.integers(len(long_enough)))]
        elif same:
            kind, clip = "shorter", max(same, key=lambda c: c.num_frames)
        else:
            others = [c for c in pool if c.num_frames >= frames] or pool
            kind, clip = "other_content", others[int(rng.integers(len(others)))]
        length = min(frames, clip.num_frames)
        start = (clip.num_frames - length) // 2
        windows.append(np.asarray(clip.features[start : start + length], dtype=np.float32))
        counts[kind] += 1
    return windows, counts


# ---- motion sources ----------------------------------------------------------------------------------


class MotionSource(Protocol):
    """What the protocol evaluates: texts and frame counts in, un-normalised ``(T, 263)`` features out."""

    def generate_features(self, texts: Sequence[str], frames: Sequence[int], seed: int) -> list[np.ndarray]: ...

    def latency(self, text: str, frames: int, seed: int = 0) -> dict[str, float]: ...


class NextScaleSource:
    """A :class:`~moscale_ros.generation.generator.MotionGenerator` as a motion source: its batched
    generation, then the final codes decoded to features."""

    def __init__(self, generator) -> None:
        self.generator = generator

    def generate_features(self, texts: Sequence[str], frames: Sequence[int], seed: int) -> list[np.ndarray]:
        gen = self.generator
        outputs = gen.generate_batch(list(texts), seconds=[f / gen.fps for f in frames], seed=seed)
        result: list[np.ndarray | None] = [None] * len(outputs)
        with gen.inference_context():
            for length in dict.fromkeys(frames):
                rows = [i for i, f in enumerate(frames) if f == length]
                idx = [
                    torch.as_tensor(np.stack([outputs[i].codes[k] for i in rows])).to(gen.device)
                    for k in range(gen.num_scales)
                ]
                N = -(-length // gen.frames_per_latent)
                lengths_B = torch.full((len(rows),), length, device=gen.device)
                feats_BTD = gen.tokenizer.decode_indices(idx, N, lengths_B) * gen.std_D + gen.mean_D
                for b, i in enumerate(rows):
                    result[i] = feats_BTD[b, :length].float().cpu().numpy()
        return [r for r in result if r is not None]

    def latency(self, text: str, frames: int, seed: int = 0) -> dict[str, float]:
        """Seconds to the first (coarse, full-length) plan and to the final motion of one request."""
        first = None
        for output in self.generator.stream(text, frames / self.generator.fps, seed=seed):
            first = output.elapsed_s if first is None else first
            final = output.elapsed_s
        return {"first_plan_s": float(first), "final_s": float(final)}


class NextTokenSource:
    """A :class:`~moscale_ros.generation.next_token.NextTokenGenerator` as a motion source."""

    def __init__(self, generator) -> None:
        self.generator = generator

    def generate_features(self, texts: Sequence[str], frames: Sequence[int], seed: int) -> list[np.ndarray]:
        return self.generator.generate_features(texts, frames, seed)

    def latency(self, text: str, frames: int, seed: int = 0) -> dict[str, float]:
        """Next-token order has no plan before its last token: the first plan is the final motion."""
        seconds = self.generator.latency(text, frames, seed)
        return {"first_plan_s": seconds, "final_s": seconds}


def matching_encoder(path: str | Path, encoders: Sequence) -> object | None:
    """The first of ``encoders`` (TextEncoder or None) that the generator file at ``path`` was trained
    with, to share one loaded encoder; None when none matches (the generator then loads its own)."""
    name = load_checkpoint(path).configs.get("text_encoder", {}).get("name")
    return next((e for e in encoders if e is not None and e.name == name), None)


def load_source(
    path: str | Path,
    device: str | torch.device = "cpu",
    text_encoders: Sequence = (),
    overrides: SamplingOverrides | None = None,
    num_threads: int | None = None,
) -> tuple[MotionSource, str]:
    """A motion source for any trained generator file (next-scale ``generator`` or ``next-token-generator``)
    and its order name; ``overrides`` replace its sampling settings, ``num_threads`` its CPU threads.
    Of ``text_encoders`` (already loaded), the one it was trained with is shared, else it loads its own."""
    ckpt = load_checkpoint(path)
    kind = ckpt.kind
    text_encoder = matching_encoder(path, text_encoders)
    if kind == GENERATOR_KIND:
        generator = MotionGenerator.from_checkpoint(
            path, device=device, text_encoder=text_encoder, warm_up=True, overrides=overrides, num_threads=num_threads
        )
        return NextScaleSource(generator), "next-scale"
    if kind == NEXT_TOKEN_KIND:
        return NextTokenSource(
            NextTokenGenerator.from_checkpoint(path, device, text_encoder, overrides, num_threads)
        ), "next-token"
    raise CheckpointError(
        f"{path}: a {kind!r} checkpoint is not a generator (expected {GENERATOR_KIND!r} or {NEXT_TOKEN_KIND!r})"
    )


# ---- scoring ------------------------------------------------------------------------------------------------


@dataclass
class RowResult:
    """One table row: each metric as an interval over the runs (multimodality absent for real motions)."""

    name: str
    text_set: str
    metrics: dict[str, metrics.Interval]
    timing: dict[str, float] = field(default_factory=dict)
    per_content: dict[str, dict[str, float]] = field(default_factory=dict)  # {content: {clips, accuracy}}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "text_set": self.text_set,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "timing": self.timing,
            "per_content": self.per_content,
        }


class ContentTally:
    """Content-classifier hits per content label, pooled over runs."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, motions: EmbeddedMotions, real: RealStatistics, test: TestSet) -> None:
        for name, (correct, total) in metrics.accuracy_by_label(
            motions.content_N, real.content_N, test.contents
        ).items():
            tally = self.counts.setdefault(name, [0, 0])
            tally[0] += correct
            tally[1] += total

    def rows(self, runs: int) -> dict[str, dict[str, float]]:
        """``{content: {"clips": clips per run, "accuracy": hits / trials}}``, sorted by content."""
        return {
            name: {"clips": total // max(runs, 1), "accuracy": correct / total}
            for name, (correct, total) in sorted(self.counts.items())
        }


@dataclass
class RealStatistics:
    """Evaluator outputs of the real test windows (FID's reference) and labels as class indices."""

    embedded: EmbeddedMotions
    content_N: np.ndarray  # noqa: N815 (shape suffix)
    style_N: np.ndarray  # noqa: N815 (shape suffix)


def real_statistics(evaluator: Evaluator, test: TestSet) -> RealStatistics:
    return RealStatistics(
        evaluator.embed_motions(test.features),
        np.array([evaluator.content_index(c) for c in test.contents]),
        np.array([evaluator.style_index(s) for s in test.styles]),
    )


def draw_texts(test: TestSet, text_set: str, rng: np.random.Generator) -> list[str]:
    """One description per clip, drawn at random from its ``text_set`` texts."""
    options = test.texts[text_set]
    missing = [test.names[i] for i, texts in enumerate(options) if not texts]
    if missing:
        raise DataError(
            f"{len(missing)} clips have no {text_set!r} descriptions (e.g. {', '.join(missing[:3])}); "
            "leave that text set out (--set text_sets=[train])"
        )
    return [texts[int(rng.integers(len(texts)))] for texts in options]


def score_run(
    evaluator: Evaluator,
    real: RealStatistics,
    texts: list[str],
    motions: EmbeddedMotions,
    cfg: ProtocolConfig,
    rng: np.random.Generator,
    fid_against: np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of one run: ``motions[i]`` was made from ``texts[i]`` for test clip ``i``; FID against
    ``fid_against`` (embeddings) instead of the real test windows when given."""
    text_NE = evaluator.embed_texts(texts)
    groups_seed = int(rng.integers(2**32))  # the same groups for clip- and label-level R-precision
    group = cfg.r_precision_group
    top_K = metrics.r_precision(text_NE, motions.embedding_NE, 3, group, np.random.default_rng(groups_seed))
    labels_N = real.content_N * 1000 + real.style_N
    label_K = metrics.label_r_precision(
        text_NE, motions.embedding_NE, labels_N, 1, group, np.random.default_rng(groups_seed)
    )
    reference_NE = real.embedded.embedding_NE if fid_against is None else fid_against
    return {
        "r1": float(top_K[0]),
        "r2": float(top_K[1]),
        "r3": float(top_K[2]),
        "r1_label": float(label_K[0]),
        "fid": metrics.fid(motions.embedding_NE, reference_NE),
        "mm_dist": metrics.mm_dist(text_NE, motions.embedding_NE),
        "diversity": metrics.diversity(motions.embedding_NE, cfg.diversity_pairs, rng),
        "content_acc": metrics.accuracy(motions.content_N, real.content_N),
        "style_acc": metrics.accuracy(motions.style_N, real.style_N),
    }


def _summarise(name: str, text_set: str, per_run: list[dict[str, float]], timing: dict[str, float]) -> RowResult:
    keys = [k for k in METRIC_KEYS if k in per_run[0]]
    return RowResult(name, text_set, {k: metrics.confidence_interval([r[k] for r in per_run]) for k in keys}, timing)


def evaluate_reference(
    evaluator: Evaluator,
    test: TestSet,
    real: RealStatistics,
    cfg: ProtocolConfig,
    text_set: str,
    fid_reference: list[np.ndarray] | None = None,
) -> RowResult:
    """The real windows scored like generated motions (see the module docstring)."""
    fid_NE = None if not fid_reference else evaluator.embed_motions(fid_reference).embedding_NE
    per_run = []
    for r in range(cfg.runs):
        rng = np.random.default_rng(cfg.seed + r)
        texts = draw_texts(test, text_set, rng)
        per_run.append(score_run(evaluator, real, texts, real.embedded, cfg, rng, fid_against=fid_NE))
    row = _summarise("real motion (reference)", text_set, per_run, {})
    tally = ContentTally()
    tally.add(real.embedded, real, test)
    row.per_content = tally.rows(1)
    return row


def evaluate_source(
    source: MotionSource,
    name: str,
    evaluator: Evaluator,
    test: TestSet,
    real: RealStatistics,
    cfg: ProtocolConfig,
    text_set: str,
    log: Callable[[str], None] = print,
) -> RowResult:
    """Generate and score ``cfg.runs`` times; timing of the batched generation per motion."""
    per_run = []
    generation_s = 0.0
    generated = 0
    tally = ContentTally()
    mm_rows = np.random.default_rng(cfg.seed).permutation(len(test))[: min(cfg.mm_texts, len(test))]
    for r in range(cfg.runs):
        seed = cfg.seed + r
        rng = np.random.default_rng(seed)
        texts = draw_texts(test, text_set, rng)
        start = time.perf_counter()
        features = source.generate_features(texts, test.frames, seed)
        generation_s += time.perf_counter() - start
        generated += len(features)
        embedded = evaluator.embed_motions(features)
        tally.add(embedded, real, test)
        scores = score_run(evaluator, real, texts, embedded, cfg, rng)
        if len(mm_rows):
            mm_texts = [texts[i] for i in mm_rows for _ in range(cfg.mm_samples)]
            mm_frames = [test.frames[i] for i in mm_rows for _ in range(cfg.mm_samples)]
            mm_features = source.generate_features(mm_texts, mm_frames, seed + 10_000)
            mm_NE = evaluator.embed_motions(mm_features).embedding_NE
            scores["multimodality"] = metrics.multimodality(
                mm_NE.reshape(len(mm_rows), cfg.mm_samples, -1), cfg.mm_pairs, rng
            )
        per_run.append(scores)
        log(f"[{name} | {text_set}] run {r + 1}/{cfg.runs}: " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items()))
    row = _summarise(name, text_set, per_run, {"generation_ms_per_motion": 1000.0 * generation_s / generated})
    row.per_content = tally.rows(cfg.runs)
    return row


def length_robustness(evaluator: Evaluator, test: TestSet, real: RealStatistics, share: float = 0.5) -> dict:
    """Content accuracy of the real test windows whole and cut to their centred ``share`` (at least 24
    frames): an evaluator that classifies by duration loses accuracy on the shorter copies."""
    cropped = []
    for features in test.features:
        length = max(24, int(len(features) * share) // 4 * 4)
        start = (len(features) - min(length, len(features))) // 2
        cropped.append(features[start : start + length])
    short = evaluator.embed_motions(cropped)
    return {
        "share": share,
        "content_acc_whole": metrics.accuracy(real.embedded.content_N, real.content_N),
        "content_acc_cropped": metrics.accuracy(short.content_N, real.content_N),
    }


def measure_latency(source: MotionSource, cfg: ProtocolConfig, text: str = "a person walks forward") -> dict:
    """Median over ``latency_repeats`` single requests of ``latency_frames`` frames (after one warm-up)."""
    return measure_latencies([source], cfg, text)[0]


def measure_latencies(
    sources: Sequence[MotionSource], cfg: ProtocolConfig, text: str = "a person walks forward"
) -> list[dict]:
    """:func:`measure_latency` of several sources side by side: the repeats are interleaved (source 1,
    2, ..., 1, 2, ...) so that a busy spell of a shared machine touches them alike."""
    for source in sources:
        source.latency(text, cfg.latency_frames, seed=0)
    runs: list[list[dict]] = [[] for _ in sources]
    for i in range(cfg.latency_repeats):
        for j, source in enumerate(sources):
            runs[j].append(source.latency(text, cfg.latency_frames, seed=i + 1))
    return [{f"latency_{k}": statistics.median(r[k] for r in rs) for k in rs[0]} for rs in runs]


# ---- tables ---------------------------------------------------------------------------------------------

COLUMNS = (
    ("r1", "R@1 ↑"),
    ("r2", "R@2 ↑"),
    ("r3", "R@3 ↑"),
    ("r1_label", "R@1 label ↑"),
    ("fid", "FID ↓"),
    ("mm_dist", "MM-Dist ↓"),
    ("diversity", "Diversity →"),
    ("multimodality", "MModality ↑"),
    ("content_acc", "Content acc ↑"),
    ("style_acc", "Style acc ↑"),
)


def markdown_table(rows: list[RowResult], extra_columns: Sequence[tuple[str, Callable[[RowResult], str]]] = ()) -> str:
    """A Markdown table of rows (one text set), each metric as ``mean ± ci95``."""
    header = ["Method", *(title for _, title in COLUMNS), *(title for title, _ in extra_columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.name]
        for key, _ in COLUMNS:
            cells.append(row.metrics[key].format(3) if key in row.metrics else "–")
        cells += [fn(row) for _, fn in extra_columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_content_table(rows: list[RowResult], untestable: Sequence[str]) -> str:
    """Content accuracy per content label (rows as columns), and the contents with no test clip."""
    contents = sorted({c for r in rows for c in r.per_content})
    header = ["Content", "clips", *(f"{r.name} [{r.text_set}]" for r in rows)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for content in contents:
        clips = next(r.per_content[content]["clips"] for r in rows if content in r.per_content)
        cells = [f"{r.per_content[content]['accuracy']:.2f}" if content in r.per_content else "–" for r in rows]
        lines.append(f"| {content} | {clips} | " + " | ".join(cells) + " |")
    for content in untestable:
        lines.append(f"| {content} | 0: untestable, no clip in this split | " + " | ".join("–" for _ in rows) + " |")
    return "\n".join(lines)


# ---- ``moscale eval generator`` ---------------------------------------------------------------------------


def load_protocol(args: argparse.Namespace) -> ProtocolConfig:
    overrides = list(getattr(args, "set", []) or [])
    if getattr(args, "runs", None) is not None:
        overrides.append(f"runs={args.runs}")
    if getattr(args, "max_clips", None) is not None:
        overrides.append(f"max_clips={args.max_clips}")
    return load_config(ProtocolConfig, local_or_resource(args.config), overrides)


def default_generator_path() -> Path:
    shipped = resource(DEFAULT_CHECKPOINT)
    return shipped if shipped.is_file() else cache_root() / "runs" / "transformer" / "model.safetensors"


def default_evaluator_path() -> Path:
    return cache_root() / "runs" / "evaluator" / EVALUATOR_FILE


@dataclass
class SweepConfig:
    """Generation settings tried side by side (``config/eval/sweep_refine.yaml``): every combination
    of the ``grid`` values, each with ``fixed`` on top; keys are :class:`SamplingOverrides` fields."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = {f.name for f in dataclasses.fields(SamplingOverrides)}
        unknown = sorted((set(self.grid) | set(self.fixed)) - known)
        if unknown:
            raise ConfigError(f"sweep: unknown generation setting(s) {unknown}; known: {sorted(known)}")
        empty = [k for k, values in self.grid.items() if not isinstance(values, list) or not values]
        if empty:
            raise ConfigError(f"sweep.grid: {empty} need a non-empty list of values each")

    def variants(self) -> list[tuple[str, SamplingOverrides]]:
        """``(label, overrides)`` for every combination, in grid order (ConfigError names a bad value)."""
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            label = ", ".join(f"{_SHORT.get(k, k)} {_value_text(v)}" for k, v in zip(keys, values))
            settings = {**dict(zip(keys, values)), **self.fixed}
            out.append((label, from_dict(SamplingOverrides, settings, where=f"sweep variant ({label})")))
        return out


_SHORT = {"refine_iterations": "passes", "refine_schedule": "schedule"}


def _value_text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


@dataclass
class Candidate:
    """One evaluated generator: a file with sampling overrides, loaded as a motion source."""

    name: str
    checkpoint: Path
    order: str
    overrides: SamplingOverrides
    source: MotionSource


def load_candidates(
    checkpoints: Sequence[Path], sweep: SweepConfig | None, base: SamplingOverrides, device, text_encoder, threads
) -> list[Candidate]:
    """Every checkpoint under every sweep variant (none: the flags' overrides only). Generators trained
    with the same text encoder share one loaded copy."""
    variants = sweep.variants() if sweep is not None else [("", SamplingOverrides())]
    encoders = [text_encoder]
    out = []
    for checkpoint in checkpoints:
        for label, settings in variants:  # (the sweep's settings over the flags')
            overrides = SamplingOverrides(**{**base.changes(), **settings.changes()})
            source, order = load_source(checkpoint, device, encoders, overrides, num_threads=threads)
            generator = getattr(source, "generator", None)
            if getattr(generator, "text_encoder", None) is not None:
                encoders.append(generator.text_encoder)
            name = short_name(checkpoint, order) + (f", {label}" if label else "")
            out.append(Candidate(name, checkpoint, order, overrides, source))
    return out


def short_name(checkpoint: Path, order: str) -> str:
    """``moscale-bandai`` for models/moscale-bandai.safetensors, ``transformer_v2`` for
    cache/runs/transformer_v2/model.safetensors; the order added when it is not next-scale."""
    stem = checkpoint.parent.name if checkpoint.stem in ("model", "last") else checkpoint.stem
    return stem if order == "next-scale" else f"{stem} ({order})"


def side_by_side(rows: list[RowResult], text_set: str, keys: Sequence[str] = ("r1", "r1_label", "fid")) -> str:
    """Each generated row against the first generated row of ``text_set``: the differences of the
    means, whether the 95 % intervals overlap, and the final-plan latency ratio."""
    generated = [r for r in rows if r.text_set == text_set and r.timing]
    if len(generated) < 2:
        return ""
    base = generated[0]
    header = ["Against " + base.name, *(f"{dict(COLUMNS)[k]} Δ (intervals overlap?)" for k in keys), "final latency ×"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in generated[1:]:
        cells = [row.name]
        for key in keys:
            a, b = row.metrics[key], base.metrics[key]
            cells.append(f"{a.mean - b.mean:+.3f} ({'yes' if a.overlaps(b) else 'no'})")
        ratio = row.timing["latency_final_s"] / base.timing["latency_final_s"]
        cells.append(f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with torch_threads(args.threads):
        return _evaluate(args, select_device(args.device))


def _evaluate(args: argparse.Namespace, device: torch.device) -> int:
    cfg = load_protocol(args)
    checkpoints = [Path(c) for c in args.checkpoint] if args.checkpoint else [default_generator_path()]
    sweep = load_config(SweepConfig, local_or_resource(args.sweep)) if args.sweep else None
    evaluator_path = Path(args.evaluator) if args.evaluator else default_evaluator_path()
    evaluator = load_evaluator(evaluator_path, device)
    base = SamplingOverrides.from_args(args)
    candidates = load_candidates(checkpoints, sweep, base, device, evaluator.text_encoder, args.threads)
    prepared = load_prepared(args.data, load_joints=False)
    test = load_test_set(prepared, cfg.split, cfg, cfg.max_clips)
    real = real_statistics(evaluator, test)
    fid_reference, reference_counts = None, {}
    if cfg.reference_fid_split and not args.no_reference:
        fid_reference, reference_counts = matched_reference(prepared, test, cfg, [cfg.reference_fid_split, "train"])
    untestable = sorted(set(prepared.contents) - set(test.contents))  # contents with no clip in the split
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    rows: list[RowResult] = []
    generated: list[list[RowResult]] = [[] for _ in candidates]  # each candidate's rows (names may repeat)
    for text_set in cfg.text_sets:
        if not args.no_reference:
            rows.append(evaluate_reference(evaluator, test, real, cfg, text_set, fid_reference))
        for candidate, own_rows in zip(candidates, generated):  # the same texts, lengths and seeds for each
            row = evaluate_source(candidate.source, candidate.name, evaluator, test, real, cfg, text_set, log)
            rows.append(row)
            own_rows.append(row)
    latencies = measure_latencies([c.source for c in candidates], cfg)
    for own_rows, latency in zip(generated, latencies):
        for row in own_rows:
            row.timing.update(latency)
    info = {
        "checkpoints": [str(c) for c in checkpoints],
        "candidates": [
            {"name": c.name, "checkpoint": str(c.checkpoint), "order": c.order, "overrides": c.overrides.changes()}
            for c in candidates
        ],
        "evaluator": str(evaluator_path),
        "split": cfg.split,
        "fid_reference_windows": reference_counts,
        "clips": len(test),
        "untestable_contents": untestable,
        "length_robustness": length_robustness(evaluator, test, real),
        "runs": cfg.runs,
        "num_threads": args.threads,
        "command": command_line(args, "eval generator"),
        "commit": git_commit(),
        "date": utc_now(),
        "machine": machine_info(device),
    }
    if args.json:
        print(json.dumps({"info": info, "rows": [r.to_dict() for r in rows]}, indent=2))
    else:
        print(report_text(info, rows, cfg))
    if args.report:
        report = Path(args.report)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(report_markdown(info, rows, cfg), encoding="utf-8")
        print(f"eval generator: wrote {report}", file=sys.stderr)
    sys.stdout.flush()
    return 0


def report_text(info: dict, rows: list[RowResult], cfg: ProtocolConfig) -> str:
    """The tables ``moscale eval generator`` prints: one per text set (with the latency columns), the
    comparison against the first candidate when there are several, per-content accuracy, the length check."""
    names = ", ".join(c["name"] for c in info["candidates"])
    lines = [
        f"generator(s) {names}; evaluator {info['evaluator']}; {info['split']} split, {info['clips']} clips, "
        f"n = {info['runs']} runs (mean ± Student-t 95 % interval)"
    ]
    frames = cfg.latency_frames

    def timing(key: str, digits: int) -> Callable[[RowResult], str]:
        return lambda r: f"{r.timing[key]:.{digits}f}" if r.timing else "–"

    timing_columns = [
        ("gen ms/motion", timing("generation_ms_per_motion", 1)),
        (f"first plan s ({frames} frames)", timing("latency_first_plan_s", 3)),
        (f"final s ({frames} frames)", timing("latency_final_s", 3)),
    ]
    for text_set in cfg.text_sets:
        lines += [
            "",
            f"{TEXT_SET_TITLES[text_set]}:",
            markdown_table([r for r in rows if r.text_set == text_set], timing_columns),
        ]
        comparison = side_by_side(rows, text_set)
        if comparison:
            lines += ["", f"against the first generator ({TEXT_SET_TITLES[text_set]}):", comparison]
    lines += ["", per_content_table(rows, info["untestable_contents"])]
    robust = info["length_robustness"]
    lines.append(
        f"\nevaluator length check: content accuracy of the real {info['split']} windows "
        f"{robust['content_acc_whole']:.3f} whole, {robust['content_acc_cropped']:.3f} "
        f"cut to their centred {robust['share']:.0%}"
    )
    return "\n".join(lines)


def report_markdown(info: dict, rows: list[RowResult], cfg: ProtocolConfig) -> str:
    """``--report FILE``: the printed tables with where they come from (command, commit, date, machine)."""
    header = [
        "# Generator evaluation",
        "",
        f"Written by `{info['command']}` (`moscale_ros/evaluation/evaluate.py`); rerun it to regenerate this file.",
        "",
        f"- Date: {info['date']}, commit {info['commit']}; machine: {info['machine']}, {info['num_threads']} thread(s)",
        f"- Evaluator: `{info['evaluator']}`; protocol: `config/eval/generator.yaml` with the command's overrides",
        "- Latency: one request at a time, median of the interleaved repeats; a shared machine's load moves",
        "  the absolute figures, the ratios between rows are measured side by side.",
        "",
    ]
    return "\n".join(header) + report_text(info, rows, cfg) + "\n"
