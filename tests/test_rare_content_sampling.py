"""Training-side help for rare skills (not trained here): oversampling rare contents and left-right
mirroring in the transformer's batches (moscale_ros/data/dataset.py, training/transformer.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from moscale_common.errors import ConfigError, DataError
from moscale_ros.data.dataset import MotionTextBatches, MotionTextDataset, content_balanced_weights, load_prepared
from moscale_ros.training.transformer import TransformerDataConfig


def test_content_balanced_weights():
    contents = ["walk"] * 300 + ["kick"] + ["punch"] * 2
    uniform = content_balanced_weights(contents, 0.0)
    np.testing.assert_allclose(uniform, 1 / len(contents))
    balanced = content_balanced_weights(contents, 1.0)
    per_content = {c: balanced[[i for i, x in enumerate(contents) if x == c]].sum() for c in ("walk", "kick", "punch")}
    assert per_content == pytest.approx({"walk": 1 / 3, "kick": 1 / 3, "punch": 1 / 3})
    half = content_balanced_weights(contents, 0.5)
    assert half[300] / half[0] == pytest.approx(np.sqrt(300))  # the kick clip, against one walk clip
    with pytest.raises(DataError, match="power"):
        content_balanced_weights(contents, 1.5)


def test_batches_oversample_rare_contents_of_real_clips(prepared_small):
    prepared = load_prepared(prepared_small)
    dataset = MotionTextDataset(prepared, "train", 196, 24, mirror_prob=0.5)
    contents = [c.content for c in dataset.clips]
    batches = MotionTextBatches(dataset, content_power=1.0)
    np.testing.assert_allclose(batches.weights_N.numpy(), content_balanced_weights(contents, 1.0))
    torch.manual_seed(0)
    drawn = Counter()
    for _ in range(40):
        batch = batches.sample(16)
        drawn.update(batch["names"])
    by_content = Counter(next(c.content for c in dataset.clips if c.name == n) for n in drawn.elements())
    expected = 640 / len(set(contents))
    assert all(abs(count - expected) < 0.6 * expected for count in by_content.values()), by_content
    assert MotionTextBatches(dataset).weights_N is None  # default: uniform over clips, as before


def test_the_transformer_data_config_checks_the_new_options():
    assert TransformerDataConfig().mirror_prob == 0.0 and TransformerDataConfig().content_power == 0.0
    with pytest.raises(ConfigError, match="content_power"):
        TransformerDataConfig(content_power=2.0)
