"""The text encoder with the real offline all-MiniLM-L6-v2: features, pooling, cache, errors."""

from __future__ import annotations

import pytest
import torch

from moscale_common.config import load_config
from moscale_common.errors import ConfigError, InputError
from moscale_ros.models.text_encoder import TextEncoder, TextEncoderConfig, resolve_model_path
from moscale_ros.training.evaluator import EvaluatorTrainConfig


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    torch.set_num_threads(2)
    return TextEncoder(TextEncoderConfig(cache_size=3))


def test_default_model_is_the_offline_minilm(encoder):
    assert encoder.dim == 384
    assert encoder.model_type == "bert"
    assert resolve_model_path("all-MiniLM-L6-v2").endswith("model")


def test_token_features_mask_and_pooled_mean(encoder):
    texts = ["wave", "a person walks forward slowly and then turns left"]
    feats = encoder.encode(texts)
    B, N, D = feats.tokens_BND.shape
    assert (B, D) == (2, 384) and feats.pooled_BD.shape == (2, 384)
    lengths = feats.mask_BN.sum(1).tolist()
    assert lengths[0] < lengths[1] == N  # [CLS] wave [SEP] is shorter than the long sentence
    assert not feats.tokens_BND[0, lengths[0] :].any()  # padding is zero
    for b in range(2):
        mean = feats.tokens_BND[b, : lengths[b]].mean(0)
        torch.testing.assert_close(feats.pooled_BD[b], mean, atol=1e-5, rtol=1e-5)
    # The same text alone gives the same features (no dependence on the batch's padding).
    alone = encoder.encode("wave")
    torch.testing.assert_close(alone.tokens_BND[0], feats.tokens_BND[0, : lengths[0]], atol=1e-4, rtol=1e-4)
    # Different texts give clearly different pooled vectors.
    assert torch.nn.functional.cosine_similarity(feats.pooled_BD[0], feats.pooled_BD[1], dim=0) < 0.9


def test_lru_cache_hits_and_evicts(encoder):
    encoder.clear_cache()
    first = encoder.encode("kick with the left leg")
    assert (encoder.hits, encoder.misses) == (0, 1)
    again = encoder.encode("  kick with   the left leg ")  # whitespace-normalised key
    assert (encoder.hits, encoder.misses) == (1, 1)
    assert torch.equal(first.tokens_BND, again.tokens_BND)
    encoder.encode(["a", "b", "c"])  # cache_size 3: the kick is evicted
    encoder.encode("kick with the left leg")
    assert encoder.misses == 5


def test_bad_input_and_bad_model_name(encoder):
    with pytest.raises(InputError, match="empty text"):
        encoder.encode(["walk", "   "])
    with pytest.raises(InputError, match="no texts"):
        encoder.encode([])
    with pytest.raises(ConfigError, match="no-such-model-here"):
        TextEncoder(TextEncoderConfig(name="/nonexistent/no-such-model-here"))
    with pytest.raises(ConfigError, match="max_tokens"):
        TextEncoderConfig(max_tokens=1)


@pytest.mark.parametrize("kind", ["t5", "clip"])
def test_t5_and_clip_text_models_load_from_a_local_folder(tmp_path, kind):
    """T5 (encoder only) and CLIP (text tower, EOS pooling) load by path like any hub model; small
    randomly initialised configurations stand in for the big downloads, the MiniLM tokenizer for theirs."""
    import shutil

    import transformers

    from moscale_ros.models.text_encoder import resolve_model_path

    source = resolve_model_path("all-MiniLM-L6-v2")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(f"{source}/{name}", tmp_path / name)
    torch.manual_seed(0)
    if kind == "t5":
        config = transformers.T5Config(vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
        transformers.T5EncoderModel(config).save_pretrained(tmp_path)
    else:
        config = transformers.CLIPTextConfig(
            vocab_size=30522,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            eos_token_id=102,
        )
        transformers.CLIPTextModel(config).save_pretrained(tmp_path)
    encoder = TextEncoder(TextEncoderConfig(name=str(tmp_path)))
    feats = encoder.encode(["a person waves", "walk"])
    assert encoder.dim == 32 and feats.tokens_BND.shape[-1] == 32 and feats.pooled_BD.shape == (2, 32)
    lengths = feats.mask_BN.sum(1)
    if kind == "t5":  # mean pooling
        torch.testing.assert_close(feats.pooled_BD[1], feats.tokens_BND[1, : lengths[1]].mean(0), atol=1e-5, rtol=1e-5)
    else:  # CLIP pools its final-layer-normed EOS ([SEP], id 102) token
        assert encoder.model_type == "clip_text_model"
        for b in range(2):
            torch.testing.assert_close(feats.pooled_BD[b], feats.tokens_BND[b, lengths[b] - 1])


def test_the_evaluators_mpnet_loads_offline_and_reads_meaning():
    """The evaluator reads text with all-mpnet-base-v2 (scripts/get_text_encoders.sh, run by the test
    command), not with the generators' MiniLM."""
    config = load_config(EvaluatorTrainConfig, "config/train/evaluator.yaml", []).text_encoder
    assert config.name == "all-mpnet-base-v2"
    assert resolve_model_path(config.name).endswith("text_encoders/all-mpnet-base-v2")
    encoder = TextEncoder(config)
    assert encoder.dim == 768
    pooled = encoder.encode(["a person waves the right hand", "someone waves with the right hand",
                             "a person walks backward"]).pooled_BD  # fmt: skip
    unit = torch.nn.functional.normalize(pooled, dim=-1)
    same, other = float(unit[0] @ unit[1]), float(unit[0] @ unit[2])
    assert same > other + 0.2, (same, other)
