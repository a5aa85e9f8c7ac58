"""The HumanML3D folder loader, on a small folder in the standard layout written from real clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moscale_common.errors import DataError
from moscale_ros.data.dataset import MotionTextDataset, collate_motion_text, load_prepared
from moscale_ros.data.features import features_to_joints, joints_to_features
from moscale_ros.data.humanml3d import load_humanml3d
from moscale_ros.data.skeleton import bvh_to_canonical


def _write_humanml3d(root: Path, bvh_files: list[Path]) -> dict[str, np.ndarray]:
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "new_joints").mkdir()
    (root / "texts").mkdir()
    feats_by_id = {}
    for k, path in enumerate(bvh_files):
        clip_id = f"{k:06d}"
        feats = joints_to_features(bvh_to_canonical(path)[0])
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", feats)
        np.save(root / "new_joints" / f"{clip_id}.npy", features_to_joints(feats))
        lines = [
            f"a person does motion number {k}.#a/DET person/NOUN do/VERB motion/NOUN number/NOUN#0.0#0.0",
            f"someone performs clip {k}#someone/PRON perform/VERB clip/NOUN#0.0#0.0",
        ]
        if k == 0:
            lines.append("the first second of it#the/DET first/ADJ second/NOUN#0.5#1.5")
        (root / "texts" / f"{clip_id}.txt").write_text("\n".join(lines) + "\n")
        feats_by_id[clip_id] = feats
    stacked = np.concatenate(list(feats_by_id.values()))
    np.save(root / "Mean.npy", stacked.mean(axis=0))
    np.save(root / "Std.npy", stacked.std(axis=0) + 1e-3)
    ids = list(feats_by_id)
    (root / "train.txt").write_text("\n".join(ids[:4] + ["999999"]) + "\n")  # 999999: listed, files missing
    (root / "val.txt").write_text(ids[4] + "\n")
    (root / "test.txt").write_text(ids[5] + "\n")
    return feats_by_id


@pytest.fixture()
def humanml3d_dir(real_bvh_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    files = sorted(real_bvh_dir.glob("dataset-2_*.bvh"))[::5][:6]
    root = tmp_path / "HumanML3D"
    return root, _write_humanml3d(root, files)


def test_loads_standard_layout(humanml3d_dir):
    root, feats_by_id = humanml3d_dir
    prepared = load_prepared(root)  # detected by its layout
    assert [len(prepared.splits[s]) for s in ("train", "val", "test")] == [5, 1, 1]  # 4 clips + 1 segment
    clip = next(c for c in prepared.train if c.name == "000000")
    np.testing.assert_array_equal(clip.features, feats_by_id["000000"])
    assert clip.texts == ["a person does motion number 0.", "someone performs clip 0"]
    np.testing.assert_allclose(features_to_joints(clip.features), clip.joints, atol=1e-5)
    segment = next(c for c in prepared.train if c.name.startswith("000000#"))
    assert segment.texts == ["the first second of it"] and segment.num_frames == 20
    np.testing.assert_array_equal(segment.features, feats_by_id["000000"][10:30])
    assert prepared.summary["skipped"] == 1 and prepared.summary["skipped_clips"][0]["name"] == "999999"
    assert prepared.contents == ["unknown"] and prepared.mean.shape == (263,)


def test_same_training_dataset_on_humanml3d(humanml3d_dir):
    root, _ = humanml3d_dir
    prepared = load_humanml3d(root)
    ds = MotionTextDataset(prepared, "train", min_frames=16)
    batch = collate_motion_text([ds[i] for i in range(len(ds))])
    assert batch["feats_BTD"].shape[0] == len(ds) and batch["feats_BTD"].shape[2] == 263
    assert all(t for t in batch["texts"]) and (batch["lengths_B"] % 4 == 0).all()


def test_bad_humanml3d_folders(humanml3d_dir, tmp_path: Path):
    root, _ = humanml3d_dir
    np.save(root / "Std.npy", np.ones(100))
    with pytest.raises(DataError, match=r"Mean.npy/Std.npy must have shape \(263,\)"):
        load_humanml3d(root)
    np.save(root / "Std.npy", np.ones(263))
    (root / "texts" / "000001.txt").write_text("a caption#tokens#start#1.0\n")
    with pytest.raises(DataError, match=r"000001.txt, line 1: bad time range"):
        load_humanml3d(root)
    (root / "texts" / "000001.txt").write_text("a caption#tokens#0.0#0.0\n")
    np.save(root / "new_joint_vecs" / "000002.npy", np.zeros((10, 251)))
    with pytest.raises(DataError, match=r"000002.npy: expected features of shape \(T, 263\)"):
        load_humanml3d(root)
    (root / "val.txt").unlink()
    with pytest.raises(DataError, match="val.txt: HumanML3D split file missing"):
        load_humanml3d(root)
    with pytest.raises(DataError, match="not a HumanML3D folder"):
        load_humanml3d(tmp_path / "nothing")
