"""Streaming coarse-to-fine text-to-motion generation.

For a text and a length of ``N`` latents, scale by scale (``L_1 < ... < L_K = N``):

    input_k   = down(f_hat, L_k)                                   running latent at scale length
    tokens_k  = all masked; then n_k passes of: predict (CFG: cond and null text in one batch),
                sample (top-p, temperature), re-mask the least confident (cosine schedule)
    f_hat    += up(codebook[tokens_k], N)
    yield       decode(f_hat) -> features -> 22 joints (full length, detail of scales 1..k)

The transformer's self-attention keys/values of finished scales stay cached, so each pass only
runs the current scale's tokens. With a seed everything is deterministic (one torch.Generator).
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from moscale_common.errors import CheckpointError, ConfigError, InputError
from moscale_common.paths import resource
from moscale_ros.data.features import features_to_joints_torch
from moscale_ros.generation import editing, sampling
from moscale_ros.generation.bundle import load_generator_parts
from moscale_ros.generation.config import GenerationConfig, SamplingOverrides
from moscale_ros.generation.request import RequestLimits, validate_seconds, validate_seed, validate_text
from moscale_ros.generation.vocabulary import SkillMatch, Vocabulary
from moscale_ros.models.length import LengthEstimator
from moscale_ros.models.text_encoder import TextEncoder, TextFeatures
from moscale_ros.models.tokenizer import MotionTokenizer
from moscale_ros.models.transformer import NextScaleTransformer
from moscale_ros.runtime import torch_threads

FPS = 20.0
DEFAULT_CHECKPOINT = "models/moscale-bandai.safetensors"
T = TypeVar("T")


@dataclass
class ScaleOutput:
    """One streamed result: the full-length motion at the detail of scales ``1..scale_index``.

    ``joints`` ``(T, 22, 3)`` float32, canonical (y-up, metres, ``fps`` frames per second);
    ``elapsed_s`` counts from the ``stream`` call; ``prefix_frames`` first frames are the given
    prefix (continuation), the rest is new; ``seed`` reproduces the motion; ``codes`` are the
    code indices ``(L_j,)`` of scales ``1..scale_index``.
    """

    scale_index: int
    num_scales: int
    is_final: bool
    joints: np.ndarray
    fps: float
    elapsed_s: float
    seed: int
    text: str
    prefix_frames: int = 0
    codes: list[np.ndarray] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.joints.shape[0] / self.fps


def _last(iterator: Iterator[T]) -> T:
    """The last item of a non-empty iterator (consuming it)."""
    return deque(iterator, maxlen=1)[0]


def random_seed() -> int:
    return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF


class MotionGenerator:
    """Text -> motion with the tokenizer, the next-scale transformer and a text encoder.

    ``mean``/``std`` de-normalise the tokenizer's features; ``length_estimator`` (optional) gives a
    duration when none is requested; ``config`` the sampling settings.
    """

    def __init__(
        self,
        tokenizer: MotionTokenizer,
        transformer: NextScaleTransformer,
        text_encoder: TextEncoder,
        mean: torch.Tensor | np.ndarray,
        std: torch.Tensor | np.ndarray,
        length_estimator: LengthEstimator | None = None,
        config: GenerationConfig | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else tokenizer.device
        self.tokenizer = tokenizer.to(self.device).eval()
        self.transformer = transformer.to(self.device).eval()
        self.length_estimator = None if length_estimator is None else length_estimator.to(self.device).eval()
        self.text_encoder = text_encoder
        if text_encoder.device != self.device:
            text_encoder.to(self.device)
        # torch.as_tensor, not np.asarray: a checkpoint loaded on a GPU hands over CUDA tensors
        self.mean_D = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self.std_D = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.config = config or GenerationConfig()
        self.fps = FPS
        self.vocabulary: Vocabulary | None = None  # skill prototypes of the model file, if it has them
        tcfg = transformer.cfg
        mismatches = [
            f"{name}: transformer {a} vs {what} {b}"
            for name, a, b, what in (
                ("codebook_size", tcfg.codebook_size, tokenizer.codebook_size, "tokenizer"),
                ("code_dim", tcfg.code_dim, tokenizer.code_dim, "tokenizer"),
                ("text_dim", tcfg.text_dim, text_encoder.dim, f"text encoder {text_encoder.name!r}"),
            )
            if a != b
        ]
        if tokenizer.num_scales > tcfg.max_scales:
            mismatches.append(f"scales: tokenizer {tokenizer.num_scales} > transformer max_scales {tcfg.max_scales}")
        if mismatches:
            raise ConfigError("generator parts do not fit together: " + "; ".join(mismatches))

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "cpu",
        text_encoder: TextEncoder | None = None,
        warm_up: bool = True,
        overrides: SamplingOverrides | None = None,
        num_threads: int | None = None,
    ) -> MotionGenerator:
        """Load a generator checkpoint (default: the shipped model); ``overrides`` replace its
        sampling settings (e.g. ``SamplingOverrides(refine_iterations=[1, 1, 1, 1])``), ``num_threads``
        its torch CPU threads."""
        if path is None:
            path = resource(DEFAULT_CHECKPOINT)
            if not path.is_file():
                raise CheckpointError(
                    f"{path}: the default model is not there; train one (`moscale train transformer`, it writes "
                    "cache/runs/transformer/model.safetensors) and pass it with --checkpoint / checkpoint:="
                )
        parts = load_generator_parts(Path(path), device)
        config = (overrides or SamplingOverrides()).apply(parts.generation)
        if num_threads is not None:
            config = replace(config, num_threads=num_threads)
        if text_encoder is None:
            text_encoder = TextEncoder(parts.text_encoder, device=device)
        generator = cls(
            parts.tokenizer,
            parts.transformer,
            text_encoder,
            parts.mean_D,
            parts.std_D,
            parts.length_estimator,
            config,
            device,
        )
        generator.checkpoint_config = parts.generation  # the model's own settings, under any overrides
        if parts.vocabulary is not None and parts.vocabulary.text_encoder != text_encoder.name:
            raise CheckpointError(
                f"{path}: its vocabulary was built with text encoder {parts.vocabulary.text_encoder!r}, the "
                f"generator uses {text_encoder.name!r}; rebuild it with `moscale vocab build`"
            )
        generator.vocabulary = parts.vocabulary
        if warm_up:
            generator.warm_up()
        return generator

    def match_skills(self, texts: list[str], rare_clips: int | None = None) -> list[SkillMatch]:
        """The vocabulary's verdict on each text (:meth:`Vocabulary.match`), from the same pooled
        text features generation uses (cached by the encoder, so generating these texts next does
        not encode them again). CheckpointError when the model file has no vocabulary."""
        if self.vocabulary is None:
            raise CheckpointError(
                "this model file has no vocabulary (skill prototypes); add one with `moscale vocab build`"
            )
        with self.inference_context():  # one text at a time: the features generation will reuse
            pooled_BD = torch.cat([self.text_encoder.encode([text]).pooled_BD for text in texts])
        return self.vocabulary.match(list(texts), pooled_BD.float().cpu(), rare_clips)  # numpy on the host

    def with_config(self, **changes) -> MotionGenerator:
        """A generator sharing these models with some sampling settings changed."""
        clone = object.__new__(MotionGenerator)
        clone.__dict__.update(self.__dict__)
        clone.config = replace(self.config, **changes)
        return clone

    def warm_up(self) -> None:
        """Run one short generation so first-call costs (allocations, kernels) are paid now."""
        _last(self._run(["warm up"], self.min_frames, torch.Generator(self.device), None))
        self.text_encoder.clear_cache()

    @contextmanager
    def inference_context(self) -> Iterator[None]:
        """Inference mode and ``config.num_threads`` torch threads, both restored on exit (so
        nothing leaks into the caller's code between two yields of a stream)."""
        with torch_threads(self.config.num_threads), torch.inference_mode():
            yield

    # ---- limits and validation ----------------------------------------------------------------
    @property
    def num_scales(self) -> int:
        return self.tokenizer.num_scales

    @property
    def frames_per_latent(self) -> int:
        return self.tokenizer.downsample_factor

    @property
    def max_frames(self) -> int:
        frames = self.transformer.cfg.max_latents * self.frames_per_latent
        if self.config.max_seconds is not None:
            frames = min(frames, int(math.floor(self.config.max_seconds * self.fps + 1e-6)))
        return frames

    @property
    def max_seconds(self) -> float:
        return self.max_frames / self.fps

    @property
    def min_frames(self) -> int:
        return max(self.frames_per_latent, int(math.ceil(self.config.min_seconds * self.fps - 1e-6)))

    @property
    def limits(self) -> RequestLimits:
        """What a request may ask of this model: ``max_text_chars``, ``[min_frames, max_frames] / fps``."""
        return RequestLimits(self.config.max_text_chars, self.min_frames / self.fps, self.max_seconds)

    def _frames(self, seconds: float) -> int:
        """Frames of a checked duration."""
        return int(round(validate_seconds(seconds, self.limits) * self.fps))

    @staticmethod
    def _seed(seed: int | None) -> int:
        """A checked seed, or a random one for None."""
        checked = validate_seed(seed)
        return random_seed() if checked is None else checked

    # ---- public API -----------------------------------------------------------------------------
    def stream(
        self, text: str, seconds: float | None = None, seed: int | None = None, prefix_joints: np.ndarray | None = None
    ) -> Iterator[ScaleOutput]:
        """Yield after every scale the decoded full-length motion; the last yield is full detail.

        ``seconds``: duration of the new motion (None: the length estimator, else the default).
        ``prefix_joints`` ``(P, 22, 3)``: continue from these frames (the end of a previous
        motion); the result starts with them (``prefix_frames = P``, kept to at most what fits
        in the model's maximum length) followed by ``seconds`` of new motion, with no jump.
        Arguments are checked now (InputError); the work happens as the iterator is consumed.
        """
        start = time.perf_counter()
        text = validate_text(text, self.limits)
        frames = None if seconds is None else self._frames(seconds)
        seed = self._seed(seed)
        prefix = None if prefix_joints is None else editing.validate_joints(prefix_joints, "prefix_joints")
        return self._stream(start, text, frames, seed, prefix)

    def generate(
        self, text: str, seconds: float | None = None, seed: int | None = None, prefix_joints: np.ndarray | None = None
    ) -> ScaleOutput:
        """The final (full-detail) result of :meth:`stream`."""
        return _last(self.stream(text, seconds, seed, prefix_joints))

    def stream_edit(
        self, joints: np.ndarray, start_s: float, end_s: float, text: str, seed: int | None = None
    ) -> Iterator[ScaleOutput]:
        """Regenerate ``[start_s, end_s)`` of ``joints`` ``(T, 22, 3)`` under ``text``, keeping the rest."""
        start = time.perf_counter()
        text = validate_text(text, self.limits)
        seed = self._seed(seed)
        joints = editing.validate_joints(joints, "joints", min_frames=self.min_frames)
        T = joints.shape[0]
        if T > self.max_frames:
            raise InputError(f"joints: {T} frames is more than this model's maximum {self.max_frames}")
        for name, value in (("start_s", start_s), ("end_s", end_s)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.integer, np.floating))
                or not math.isfinite(value)
            ):
                raise InputError(f"{name} must be a finite number of seconds, got {value!r}")
        first, last = int(round(start_s * self.fps)), int(round(end_s * self.fps))
        if not 0 <= first < last <= T:
            raise InputError(
                f"edit range [{start_s:g}, {end_s:g}) s is not inside the motion's [0, {T / self.fps:g}] s or is empty"
            )
        known = editing.range_edit(joints, first, last)
        return self._stream_known(start, text, known, seed, prefix_frames=0)

    def edit(self, joints: np.ndarray, start_s: float, end_s: float, text: str, seed: int | None = None) -> ScaleOutput:
        """The final result of :meth:`stream_edit`."""
        return _last(self.stream_edit(joints, start_s, end_s, text, seed))

    def generate_batch(
        self, texts: Sequence[str], seconds: float | Sequence[float] | None = None, seed: int | None = None
    ) -> list[ScaleOutput]:
        """Final motions of many texts (evaluation); samples of equal length run as one batch."""
        start = time.perf_counter()
        texts = [validate_text(t, self.limits) for t in texts]
        if not texts:
            raise InputError("generate_batch: no texts")
        if seconds is None or isinstance(seconds, (int, float, np.integer, np.floating)):
            seconds_list = [seconds] * len(texts)
        else:
            seconds_list = list(seconds)
            if len(seconds_list) != len(texts):
                raise InputError(f"generate_batch: {len(texts)} texts but {len(seconds_list)} durations")
        seed = self._seed(seed)
        frames_list = [None if s is None else self._frames(s) for s in seconds_list]
        generator = torch.Generator(self.device).manual_seed(seed)
        missing = [i for i, f in enumerate(frames_list) if f is None]
        if missing:
            with self.inference_context():
                estimated = self._estimate_frames(self.text_encoder.encode([texts[i] for i in missing]))
            for i, frames in zip(missing, estimated):
                frames_list[i] = frames
        results: list[ScaleOutput | None] = [None] * len(texts)
        for frames in dict.fromkeys(frames_list):
            rows = [i for i, f in enumerate(frames_list) if f == frames]
            joints_BTJ3, codes = _last(self._run([texts[i] for i in rows], frames, generator, None))
            for b, i in enumerate(rows):
                results[i] = ScaleOutput(
                    self.num_scales,
                    self.num_scales,
                    True,
                    joints_BTJ3[b],
                    self.fps,
                    time.perf_counter() - start,
                    seed,
                    texts[i],
                    codes=[c[b] for c in codes],
                )
        return [r for r in results if r is not None]

    # ---- internals ------------------------------------------------------------------------------
    def _estimate_frames(self, text: TextFeatures) -> list[int]:
        """Durations from the length estimator (or the default), clamped to the model's range."""
        if self.length_estimator is None:
            frames = int(round(self.config.default_seconds * self.fps))
            return [min(max(frames, self.min_frames), self.max_frames)] * text.batch_size
        min_latents = -(-self.min_frames // self.frames_per_latent)
        latents_B = self.length_estimator.predict_latents(text.pooled_BD, min_latents=min_latents)
        return [min(int(n) * self.frames_per_latent, self.max_frames) for n in latents_B.tolist()]

    def _stream(
        self, start: float, text: str, frames: int | None, seed: int, prefix: np.ndarray | None
    ) -> Iterator[ScaleOutput]:
        if frames is None:
            with self.inference_context():
                frames = self._estimate_frames(self.text_encoder.encode([text]))[0]
        if prefix is None:
            return self._stream_plain(start, text, frames, seed)
        keep = min(prefix.shape[0], max(1, self.max_frames - frames))
        frames = min(frames, self.max_frames - keep)
        known = editing.continuation(prefix[prefix.shape[0] - keep :], keep + frames)
        return self._stream_known(start, text, known, seed, prefix_frames=keep)

    def _stream_plain(self, start: float, text: str, frames: int, seed: int) -> Iterator[ScaleOutput]:
        generator = torch.Generator(self.device).manual_seed(seed)
        for k, (joints_BTJ3, codes) in enumerate(self._run([text], frames, generator, None), start=1):
            yield ScaleOutput(
                k,
                self.num_scales,
                k == self.num_scales,
                joints_BTJ3[0],
                self.fps,
                time.perf_counter() - start,
                seed,
                text,
                codes=[c[0] for c in codes],
            )

    def _stream_known(
        self, start: float, text: str, known: editing.KnownMotion, seed: int, prefix_frames: int
    ) -> Iterator[ScaleOutput]:
        generator = torch.Generator(self.device).manual_seed(seed)
        for k, (joints_BTJ3, codes) in enumerate(self._run([text], known.num_frames, generator, known), start=1):
            joints_TJ3 = editing.splice(joints_BTJ3[0], known, self.config.blend_frames)
            yield ScaleOutput(
                k,
                self.num_scales,
                k == self.num_scales,
                joints_TJ3,
                self.fps,
                time.perf_counter() - start,
                seed,
                text,
                prefix_frames,
                codes=[c[0] for c in codes],
            )

    def _run(
        self, texts: list[str], frames: int, generator: torch.Generator, known: editing.KnownMotion | None
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """Joints ``(B, frames, 22, 3)`` and the codes ``[(B, L_j)]`` so far after each scale, for
        texts of one length."""
        cfg = self.config
        B = len(texts)
        device = self.device
        N = -(-frames // self.frames_per_latent)
        scale_lengths = self.tokenizer.scale_lengths(N)
        K = len(scale_lengths)
        guidance = sampling.guidance_schedule(cfg.guidance, cfg.guidance_end, K)
        use_cfg = any(g != 1.0 for g in guidance)
        with self.inference_context():
            text = self.text_encoder.encode(texts)
            N_B = torch.full((B,), N, dtype=torch.long, device=device)
            if use_cfg:
                text2 = TextFeatures(*(torch.cat([t, t]) for t in (text.tokens_BND, text.mask_BN, text.pooled_BD)))
                drop = torch.arange(2 * B, device=device) >= B
                cond = self.transformer.condition(text2, torch.cat([N_B, N_B]), drop_B=drop)
            else:
                cond = self.transformer.condition(text, N_B, drop_B=None)
            state = self.transformer.start(cond)
            f_known = known_N = None
            if known is not None:
                f_known, known_N = editing.known_latents(self.tokenizer, known, N, self.mean_D, self.std_D)
            f_hat_BNC = torch.zeros(B, N, self.tokenizer.code_dim, device=device)
            frames_B = torch.full((B,), frames, dtype=torch.long, device=device)
        codes: list[np.ndarray] = []
        for k, (L, iterations) in enumerate(zip(scale_lengths, cfg.iterations_for(K))):
            with self.inference_context():
                L_B = torch.full((B,), L, dtype=torch.long, device=device)
                latent_in_BLC = self.tokenizer.quantizer.next_scale_input(f_hat_BNC, L_B)
                fixed_BL = idx_fixed_BL = None
                if f_known is not None:
                    fixed_BL, idx_fixed_BL = editing.fixed_tokens(self.tokenizer, f_known, known_N, f_hat_BNC, L)
                idx_BL = self._sample_scale(
                    state, latent_in_BLC, L, iterations, guidance[k], use_cfg, generator, fixed_BL, idx_fixed_BL
                )
                f_hat_BNC = self.tokenizer.quantizer.add_scale(f_hat_BNC, idx_BL, N_B)
                decode_BNC = f_hat_BNC
                if known_N is not None:
                    decode_BNC = torch.where(known_N[None, :, None], f_known, f_hat_BNC)
                joints_BTJ3 = self._decode(decode_BNC, N_B, frames_B)
                codes.append(idx_BL.cpu().numpy())
            yield joints_BTJ3, list(codes)

    def _sample_scale(
        self,
        state,
        latent_in_BLC: torch.Tensor,
        L: int,
        iterations: int,
        guidance: float,
        use_cfg: bool,
        generator: torch.Generator,
        fixed_BL: torch.Tensor | None,
        idx_fixed_BL: torch.Tensor | None,
    ) -> torch.Tensor:
        """Tokens ``(B, L)`` of one scale after ``iterations`` predict/re-mask passes; the last pass
        is committed to the KV cache."""
        cfg = self.config
        B = latent_in_BLC.shape[0]
        mask_id = self.transformer.mask_id
        if fixed_BL is None:
            fixed_BL = torch.zeros(B, L, dtype=torch.bool, device=latent_in_BLC.device)
            idx_fixed_BL = torch.zeros(B, L, dtype=torch.long, device=latent_in_BLC.device)
        tokens_BL = torch.where(fixed_BL, idx_fixed_BL, torch.full_like(idx_fixed_BL, mask_id))
        free = int((~fixed_BL).sum(1).max())
        latent_in = torch.cat([latent_in_BLC, latent_in_BLC]) if use_cfg else latent_in_BLC
        for it in range(iterations):
            last = it == iterations - 1
            tokens_in = torch.cat([tokens_BL, tokens_BL]) if use_cfg else tokens_BL
            logits_BLV = self.transformer.step(state, latent_in, tokens_in, commit=last)
            if use_cfg:
                logits_BLV = sampling.guide(logits_BLV, guidance)
            sampled_BL, confidence_BL = sampling.sample_tokens(logits_BLV, cfg.temperature, cfg.top_p, generator)
            masked_BL = tokens_BL == mask_id
            tokens_BL = torch.where(masked_BL, sampled_BL, tokens_BL)
            if not last:
                remask_BL = sampling.remask_least_confident(
                    confidence_BL, masked_BL, sampling.num_masked_after(it, iterations, free, cfg.refine_schedule)
                )
                tokens_BL = tokens_BL.masked_fill(remask_BL, mask_id)
        return tokens_BL

    def _decode(self, f_hat_BNC: torch.Tensor, N_B: torch.Tensor, frames_B: torch.Tensor) -> np.ndarray:
        feats_BTD = self.tokenizer.decode_latents(f_hat_BNC, N_B, frames_B)
        joints_BTJ3 = features_to_joints_torch(feats_BTD.float() * self.std_D + self.mean_D)
        return joints_BTJ3.float().cpu().numpy()
