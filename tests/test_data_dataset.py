"""Prepared-data loader and the torch motion-text dataset over the real-clip cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from moscale_common.errors import DataError
from moscale_ros.data.augment import mirror_features
from moscale_ros.data.dataset import MotionTextDataset, collate_motion_text, load_prepared


@pytest.fixture(scope="module")
def prepared(prepared_small: Path):
    return load_prepared(prepared_small)


def test_load_prepared_contract(prepared):
    assert set(prepared.splits) == {"train", "val", "test"}
    assert prepared.mean.shape == (263,) and prepared.std.shape == (263,)
    assert "wave-left-hand" in prepared.contents and "normal" in prepared.styles
    assert prepared.summary["clips"] == sum(len(v) for v in prepared.splits.values())
    for clip in prepared.val + prepared.test:
        assert clip.features.dtype == np.float32 and clip.features.shape[1] == 263
        assert clip.texts and clip.heldout_texts and clip.content and clip.style
    without_joints = load_prepared(prepared.cache_dir, load_joints=False, mmap=True)
    assert without_joints.train[0].joints is None
    np.testing.assert_array_equal(without_joints.train[0].features, prepared.train[0].features)


def test_training_items_are_random_normalised_crops(prepared):
    torch.manual_seed(0)
    ds = MotionTextDataset(prepared, "train", max_frames=40, min_frames=24)
    assert len(ds) == sum(c.num_frames >= 24 for c in prepared.train) and len(ds) > 10
    long_index = next(i for i, c in enumerate(ds.clips) if c.num_frames > 80)
    clip = ds.clips[long_index]
    starts, texts = set(), set()
    for _ in range(20):
        item = ds[long_index]
        assert item["length"] == 40 and item["feats"].shape == (40, 263)
        raw = item["feats"].numpy() * prepared.std + prepared.mean
        offset = int(np.argmin(np.abs(clip.features[:, 3] - raw[0, 3]) + np.abs(clip.features[:, 4] - raw[0, 4])))
        np.testing.assert_allclose(raw, clip.features[offset : offset + 40], atol=1e-4)
        starts.add(offset)
        texts.add(item["text"])
        assert item["text"] in clip.texts and item["content"] == prepared.contents.index(clip.content)
    assert len(starts) > 3 and len(texts) > 2
    for i in range(len(ds)):
        length = ds[i]["length"]
        assert length % 4 == 0 and 24 <= length <= 40


def test_crop_prob_serves_windows_of_many_lengths(prepared):
    torch.manual_seed(0)
    cropped = MotionTextDataset(prepared, "train", max_frames=120, min_frames=24, crop_prob=0.5)
    index = next(i for i, c in enumerate(cropped.clips) if c.num_frames > 120)
    lengths = [cropped[index]["length"] for _ in range(200)]
    assert all(length % 4 == 0 and 24 <= length <= 120 for length in lengths)
    full = sum(length == 120 for length in lengths) / len(lengths)
    assert 0.4 < full < 0.65  # half uncut, plus the cut ones that drew the full length
    assert len(set(lengths)) > 15
    assert (
        MotionTextDataset(prepared, "train", max_frames=120, crop_prob=1.0, deterministic=True)[index]["length"] == 120
    )


def test_deterministic_and_heldout_items(prepared):
    ds = MotionTextDataset(prepared, "test", deterministic=True)
    first = [ds[i] for i in range(len(ds))]
    again = [ds[i] for i in range(len(ds))]
    for i, (a, b) in enumerate(zip(first, again)):
        assert a["text"] == b["text"] and torch.equal(a["feats"], b["feats"])
        clip = ds.clips[i]
        assert a["text"] == clip.texts[0]
        start = (clip.num_frames - a["length"]) // 2  # centred window
        expected = (clip.features[start : start + a["length"]] - prepared.mean) / prepared.std
        np.testing.assert_allclose(a["feats"].numpy(), expected, atol=1e-5)
    held = MotionTextDataset(prepared, "test", deterministic=True, heldout_text=True)
    assert all(held[i]["text"] == held.clips[i].heldout_texts[0] for i in range(len(held)))
    assert not {held[i]["text"] for i in range(len(held))} & {t for c in held.clips for t in c.texts}


def test_mirrored_items(prepared):
    ds = MotionTextDataset(prepared, "train", mirror_prob=1.0, normalize=False, deterministic=False)
    index = next(i for i, c in enumerate(ds.clips) if c.content == "wave-left-hand")
    clip = ds.clips[index]
    item = ds[index]
    assert "right" in item["text"].lower() and "left" not in item["text"].lower()
    assert item["content"] == prepared.contents.index("wave-right-hand")
    mirrored = mirror_features(np.asarray(clip.features))
    first = item["feats"][0].numpy()
    start = int(np.argmin(np.abs(mirrored[:, 4:10] - first[4:10]).sum(axis=1)))
    np.testing.assert_allclose(item["feats"].numpy(), mirrored[start : start + item["length"]], atol=1e-6)


def test_collate_pads_to_the_longest(prepared):
    ds = MotionTextDataset(prepared, "train", max_frames=196, deterministic=True)
    items = [ds[i] for i in range(5)]
    batch = collate_motion_text(items)
    T = max(it["length"] for it in items)
    assert batch["feats_BTD"].shape == (5, T, 263) and batch["lengths_B"].dtype == torch.long
    assert batch["lengths_B"].tolist() == [it["length"] for it in items]
    for b, it in enumerate(items):
        assert torch.equal(batch["feats_BTD"][b, : it["length"]], it["feats"])
        assert torch.all(batch["feats_BTD"][b, it["length"] :] == 0)
    assert batch["texts"] == [it["text"] for it in items]
    assert batch["content_B"].shape == (5,) and batch["style_B"].shape == (5,)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_motion_text)
    assert next(iter(loader))["feats_BTD"].shape[0] == 4


def test_bad_caches_and_arguments(prepared, prepared_small: Path, tmp_path: Path):
    with pytest.raises(DataError, match="no prepared motion data here .*moscale data prepare"):
        load_prepared(tmp_path / "missing")
    copy = tmp_path / "old"
    shutil.copytree(prepared_small, copy)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps(dict(meta, version=999)))
    with pytest.raises(DataError, match="version 999.*re-run `moscale data prepare`"):
        load_prepared(copy)
    (copy / "meta.json").write_text(json.dumps(meta))
    (copy / "features.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="features.npy: cannot read"):
        load_prepared(copy)
    with pytest.raises(DataError, match="unknown split 'dev'"):
        MotionTextDataset(prepared, "dev")
    with pytest.raises(DataError, match="length_multiple <= min_frames <= max_frames"):
        MotionTextDataset(prepared, "train", max_frames=20, min_frames=40)
