"""The text-motion evaluator: its loss, learning on real clips, padding-independent embeddings,
checkpoints and clear errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from moscale_common.errors import CheckpointError, ConfigError, InputError
from moscale_ros.evaluation.model import (
    EvaluatorConfig,
    TextMotionEvaluator,
    contrastive_loss,
    load_evaluator,
    save_evaluator,
)


def test_contrastive_loss_known_values_and_same_label_filter():
    tau = 0.5
    emb = torch.eye(2)
    none = torch.zeros(2, 2, dtype=torch.bool)
    # Orthonormal pairs: each row's softmax is e^{1/tau} / (e^{1/tau} + e^0).
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 1.0))
    assert contrastive_loss(emb, emb, none, tau).item() == pytest.approx(expected, rel=1e-6)
    # The other pair has the same labels: it is no negative, only the positive is left.
    assert contrastive_loss(emb, emb, torch.ones(2, 2, dtype=torch.bool), tau).item() == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def small_data(prepared_small: Path):
    from moscale_ros.data.dataset import load_prepared

    return load_prepared(prepared_small, load_joints=False)


def _model(prepared, **sizes) -> TextMotionEvaluator:
    from moscale_ros.training.evaluator import style_concepts

    cfg = EvaluatorConfig(
        width=32,
        depth=1,
        num_heads=4,
        embed_dim=16,
        text_hidden=32,
        dropout=0.0,
        num_contents=len(prepared.contents),
        num_styles=len(style_concepts(prepared.styles)[0]),
        **sizes,
    )
    return TextMotionEvaluator(cfg)


def test_a_few_steps_align_texts_and_real_motions(small_data):
    from test_generation import shared_text_encoder

    from moscale_ros.evaluation.metrics import r_precision
    from moscale_ros.training.evaluator import (
        EvaluatorDataConfig,
        EvaluatorLossConfig,
        evaluator_batches,
        evaluator_loss,
        style_concepts,
    )

    torch.manual_seed(0)
    _, style_map = style_concepts(small_data.styles)
    data = evaluator_batches(small_data, "train", EvaluatorDataConfig(), style_map, deterministic=True)
    batch = data.batch(list(range(16)))
    pooled = shared_text_encoder().encode(batch["texts"]).pooled_BD
    model = _model(small_data)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    cfg = EvaluatorLossConfig()
    with torch.no_grad():
        before, parts_before, text, motion = evaluator_loss(model, pooled, batch, cfg, torch.device("cpu"))
    for _ in range(25):
        loss, _, _, _ = evaluator_loss(model, pooled, batch, cfg, torch.device("cpu"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after, parts, text, motion = evaluator_loss(model, pooled, batch, cfg, torch.device("cpu"))
    assert after < 0.6 * before, (before.item(), after.item())
    assert parts["content_acc"] > parts_before["content_acc"] and parts["content_acc"] >= 0.75
    assert r_precision(text.numpy(), motion.numpy(), group_size=16)[2] >= 0.5


def test_embeddings_are_unit_norm_and_independent_of_batch_padding(small_data, tmp_path):
    from test_generation import shared_text_encoder

    from moscale_ros.models.text_encoder import TextEncoderConfig
    from moscale_ros.training.evaluator import style_concepts

    torch.manual_seed(0)
    model = _model(small_data).eval()
    mean = torch.as_tensor(small_data.mean)
    std = torch.as_tensor(small_data.std)
    styles = style_concepts(small_data.styles)[0]
    path = save_evaluator(
        tmp_path / "ev.safetensors", model, mean, std, shared_text_encoder().config, small_data.contents, styles
    )
    evaluator = load_evaluator(path, text_encoder=shared_text_encoder())
    clips = [np.asarray(c.features[:n]) for c, n in zip(small_data.train[:3], (40, 120, 64))]
    together = evaluator.embed_motions(clips)
    alone = evaluator.embed_motions([clips[0]])
    np.testing.assert_allclose(together.embedding_NE[0], alone.embedding_NE[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together.embedding_NE, axis=1), 1.0, atol=1e-6)
    assert together.content_N.shape == (3,) and together.style_N.max() < len(styles)
    texts = evaluator.embed_texts(["a person walks forward", "someone bows"])
    assert texts.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)
    # Dataset labels map to their style concept ("exhausted" -> "tired"); unknown ones to -1.
    assert evaluator.style_index("exhausted") == evaluator.style_index("tired") == styles.index("tired")
    assert evaluator.style_index("no-such-style") == -1

    with pytest.raises(InputError, match=r"motion 1 has shape \(300, 263\)"):
        evaluator.embed_motions([clips[0], np.zeros((300, 263), np.float32)])
    with pytest.raises(CheckpointError, match="expected a 'evaluator' checkpoint"):
        from moscale_ros.checkpoint import save_checkpoint

        load_evaluator(save_checkpoint(tmp_path / "other.safetensors", "tokenizer", {"x": {"w": torch.zeros(1)}}))
    mpnet = TextEncoderConfig(name="all-mpnet-base-v2")
    other = save_evaluator(tmp_path / "mpnet.safetensors", model, mean, std, mpnet, small_data.contents, styles)
    with pytest.raises(CheckpointError, match="mpnet.safetensors: evaluator was trained with text encoder"):
        load_evaluator(other, text_encoder=shared_text_encoder())


def test_config_errors_name_the_key():
    from moscale_common.config import from_dict
    from moscale_ros.training.evaluator import EvaluatorTrainConfig

    with pytest.raises(ConfigError, match="model.width 30 is not divisible"):
        from_dict(EvaluatorTrainConfig, {"model": {"width": 30}})
    with pytest.raises(ConfigError, match="loss.temperature"):
        from_dict(EvaluatorTrainConfig, {"loss": {"temperature": 0}})
    with pytest.raises(ConfigError, match="data.mirror_prob"):
        from_dict(EvaluatorTrainConfig, {"data": {"mirror_prob": 2}})
