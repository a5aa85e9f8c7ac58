"""HumanML3D 263-d features: round trip on real clips, torch batch inverse, invariances, mirroring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import real_bvh

from moscale_common.errors import DataError
from moscale_common.skeleton import JOINT_INDEX
from moscale_ros.data.augment import mirror_features, mirror_joints, mirror_label, mirror_text
from moscale_ros.data.features import (
    FEATURE_DIM,
    FOOT_CONTACT,
    RIC,
    ROT6D,
    features_to_joints,
    features_to_joints_torch,
    joints_to_features,
)
from moscale_ros.data.skeleton import bvh_to_canonical, yaw_rotation


@pytest.fixture(scope="module")
def real_joints(real_bvh_dir: Path) -> dict[str, np.ndarray]:
    return {p.stem: bvh_to_canonical(p)[0] for p in sorted(real_bvh_dir.glob("*.bvh"))}


def test_round_trip_error_on_real_clips_is_below_a_millimetre(real_joints):
    errors = []
    for name, joints in real_joints.items():
        feats = joints_to_features(joints)
        assert feats.shape == (len(joints) - 1, FEATURE_DIM) and feats.dtype == np.float32, name
        recovered = features_to_joints(feats)
        errors.append(np.linalg.norm(recovered - joints[:-1], axis=-1).ravel() * 1000.0)
    errors = np.concatenate(errors)
    assert len(real_joints) >= 40
    assert errors.mean() < 0.01 and errors.max() < 1.0, f"mean {errors.mean():.4f} mm, max {errors.max():.4f} mm"


def test_feature_groups_have_their_meaning(real_joints, real_bvh_dir: Path):
    joints = real_joints[real_bvh(real_bvh_dir, "dataset-2", "run").stem]
    feats = joints_to_features(joints)
    np.testing.assert_allclose(feats[:, 3], joints[:-1, 0, 1], atol=1e-6)  # root height
    contacts = feats[:, FOOT_CONTACT]
    assert set(np.unique(contacts)) <= {0.0, 1.0} and 0 < contacts.mean() < 1  # running: some contact
    sixd = feats[:, ROT6D].reshape(len(feats), 21, 2, 3)
    np.testing.assert_allclose(np.linalg.norm(sixd, axis=-1), 1.0, atol=1e-5)  # rotation-matrix columns
    np.testing.assert_allclose(np.sum(sixd[..., 0, :] * sixd[..., 1, :], axis=-1), 0.0, atol=1e-5)
    speed = np.linalg.norm(feats[:, 1:3], axis=-1).mean() * 20.0  # m/s
    assert 1.5 < speed < 8.0, f"run speed {speed:.2f} m/s"


def test_features_ignore_global_yaw_and_shift(real_joints, real_bvh_dir: Path):
    joints = real_joints[real_bvh(real_bvh_dir, "dataset-2", "walk-turn-right").stem].astype(np.float64)
    moved = joints @ yaw_rotation(1.1).T + np.array([2.0, 0.0, -3.0])
    np.testing.assert_allclose(joints_to_features(moved), joints_to_features(joints), atol=1e-4)
    # The inverse returns the canonical placement: frame 0 at the origin, facing +z.
    np.testing.assert_allclose(features_to_joints(joints_to_features(moved)), joints[:-1], atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_batch_inverse_matches_numpy(real_joints, dtype):
    clips = list(real_joints.values())[:3]
    feats = [joints_to_features(j) for j in clips]
    T = max(len(f) for f in feats)
    batch = torch.zeros(len(feats), T, FEATURE_DIM, dtype=dtype)
    for b, f in enumerate(feats):
        batch[b, : len(f)] = torch.from_numpy(f)
    batch.requires_grad_(True)
    joints_BTJ3 = features_to_joints_torch(batch)
    assert joints_BTJ3.shape == (len(feats), T, 22, 3) and joints_BTJ3.dtype == dtype
    joints_BTJ3.sum().backward()  # differentiable (used in losses)
    assert batch.grad is not None and torch.isfinite(batch.grad).all()
    tol = 1e-6 if dtype == torch.float64 else 1e-4
    for b, f in enumerate(feats):
        np.testing.assert_allclose(joints_BTJ3[b, : len(f)].detach().numpy(), features_to_joints(f), atol=tol)


def test_bad_input_raises():
    with pytest.raises(DataError, match=r"expected shape \(T, 22, 3\)"):
        joints_to_features(np.zeros((10, 21, 3)))
    with pytest.raises(DataError, match="at least 2 frames"):
        joints_to_features(np.zeros((1, 22, 3)))
    bad = np.zeros((5, 22, 3))
    bad[2, 3, 1] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        joints_to_features(bad)
    with pytest.raises(DataError, match=r"expected shape \(T, 263\)"):
        features_to_joints(np.zeros((4, 262)))
    with pytest.raises(DataError, match=r"expected shape \(B, T, 263\)"):
        features_to_joints_torch(torch.zeros(4, 263))


def test_mirroring_in_feature_space_is_exact(real_joints, real_bvh_dir: Path):
    joints = real_joints[real_bvh(real_bvh_dir, "dataset-2", "walk-turn-left").stem]
    feats = joints_to_features(joints)
    mirrored = mirror_features(feats)
    np.testing.assert_allclose(mirrored, joints_to_features(mirror_joints(joints)), atol=1e-5)
    np.testing.assert_array_equal(mirror_features(mirrored), feats)
    assert not np.allclose(mirrored[:, RIC], feats[:, RIC])
    end = features_to_joints(mirrored)[-1, 0]
    assert end[0] < -1.0  # a left turn mirrored turns right
    wave = real_joints[real_bvh(real_bvh_dir, "dataset-2", "wave-left-hand").stem]
    mirrored_wave = mirror_joints(wave)
    assert (mirrored_wave[:, JOINT_INDEX["right_wrist"], 1] > mirrored_wave[:, JOINT_INDEX["head"], 1]).any()
    assert mirror_text("Wave your Left hand, then turn right.") == "Wave your Right hand, then turn left."
    assert mirror_text("Bright lights") == "Bright lights"
    assert mirror_label("raise-up-left-hand") == "raise-up-right-hand" and mirror_label("bow") == "bow"
