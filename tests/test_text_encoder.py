"""The text encoder with the real offline all-MiniLM-L6-v2: features, pooling, cache, errors."""

from __future__ import annotations

import pytest
import torch

from moscale_ros.errors import ConfigError, InputError
from moscale_ros.models.text_encoder import TextEncoder, TextEncoderConfig, resolve_model_path


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
    assert not feats.tokens_BND[0, lengths[0]:].any()  # padding is zero
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
