"""Canonical skeleton, skeleton maps (shipped and user-written), canonical BVH export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_data import real_bvh

from moscale_common.errors import ConfigError, DataError
from moscale_common.skeleton import CANONICAL_JOINTS, CANONICAL_PARENTS, JOINT_INDEX
from moscale_ros.data.bvh import BvhMotion, local_transforms, matrix_to_euler, write_bvh
from moscale_ros.data.canonical_bvh import joints_to_bvh, write_canonical_bvh
from moscale_ros.data.skeleton import bvh_to_canonical, facing_directions, load_skeleton_map

ARCHITECTURE_ORDER = (
    "pelvis left_hip right_hip spine1 left_knee right_knee spine2 left_ankle right_ankle spine3 left_foot "
    "right_foot neck left_collar right_collar head left_shoulder right_shoulder left_elbow right_elbow "
    "left_wrist right_wrist"
).split()


def test_canonical_contract():
    assert list(CANONICAL_JOINTS) == ARCHITECTURE_ORDER
    assert len(CANONICAL_PARENTS) == 22 and CANONICAL_PARENTS[0] == -1
    assert all(0 <= p < j for j, p in enumerate(CANONICAL_PARENTS) if j > 0)
    assert CANONICAL_PARENTS[JOINT_INDEX["left_wrist"]] == JOINT_INDEX["left_elbow"]


def test_real_clip_is_canonical(real_bvh_dir: Path):
    path = real_bvh(real_bvh_dir, "dataset-1", "walk")
    joints, fps = bvh_to_canonical(path)
    source_frames = int(path.read_text().split("Frames:")[1].split()[0])
    assert fps == 20.0 and joints.dtype == np.float32 and joints.shape[1:] == (22, 3)
    assert joints.shape[0] == int((source_frames - 1) * 20 / 30) + 1
    assert joints[..., 1].min() == pytest.approx(0.0, abs=1e-6)  # floor
    np.testing.assert_allclose(joints[0, 0, [0, 2]], 0.0, atol=1e-6)  # root at the origin
    np.testing.assert_allclose(facing_directions(joints[:1])[0], [0, 0, 1], atol=1e-6)  # facing +z
    assert joints[0, JOINT_INDEX["left_hip"], 0] > joints[0, JOINT_INDEX["right_hip"], 0]  # left is +x
    height = joints[0, JOINT_INDEX["head"], 1]
    assert 1.3 < height < 1.9, f"head height {height:.2f} m: units wrong"
    bone = np.linalg.norm(joints[:, JOINT_INDEX["left_knee"]] - joints[:, JOINT_INDEX["left_ankle"]], axis=-1)
    assert bone.std() < 1e-4  # rotation-space resampling keeps bone lengths exact


@pytest.mark.parametrize(
    "dataset, content, check",
    [
        ("dataset-1", "walk", lambda d: d[2] > 2.0 and abs(d[0]) < 0.5 * d[2]),
        ("dataset-1", "walk-back", lambda d: d[2] < -0.5),
        ("dataset-2", "walk-turn-left", lambda d: d[0] > 1.0),
        ("dataset-2", "walk-turn-right", lambda d: d[0] < -1.0),
        ("dataset-2", "run", lambda d: d[2] > 3.0),
    ],
)
def test_locomotion_direction_matches_label(real_bvh_dir: Path, dataset, content, check):
    joints, _ = bvh_to_canonical(real_bvh(real_bvh_dir, dataset, content))
    displacement = joints[-1, 0] - joints[0, 0]
    assert check(displacement), f"{content}: root displacement {displacement}"


@pytest.mark.parametrize("side, other", [("left", "right"), ("right", "left")])
def test_wave_hand_side_matches_label(real_bvh_dir: Path, side, other):
    joints, _ = bvh_to_canonical(real_bvh(real_bvh_dir, "dataset-2", f"wave-{side}-hand"))
    head_y = joints[:, JOINT_INDEX["head"], 1]
    assert (joints[:, JOINT_INDEX[f"{side}_wrist"], 1] > head_y).any()
    assert not (joints[:, JOINT_INDEX[f"{other}_wrist"], 1] > head_y).any()


UNKNOWN_RIG = """HIERARCHY
ROOT Torso
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT LeftThigh
  {
    OFFSET 10 -5 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
0 90 0 0 0 0 0 0 0
0 90 1 0 0 0 0 0 0
"""


def test_unknown_rig_lists_its_joints(tmp_path: Path):
    path = tmp_path / "custom_rig.bvh"
    path.write_text(UNKNOWN_RIG)
    with pytest.raises(DataError) as info:
        bvh_to_canonical(path)
    message = str(info.value)
    assert str(path) in message and "unknown rig" in message
    assert "Torso" in message and "LeftThigh" in message and "bandai_namco" in message


def _user_rig_file(joints: np.ndarray, tmp_path: Path) -> tuple[Path, Path]:
    """The canonical motion re-expressed as another user's rig: renamed joints, metres, z-up,
    XYZ rotation order; plus the skeleton map YAML for it."""
    motion = joints_to_bvh(joints, scale=1.0)  # metres, y-up
    local_R, local_t = local_transforms(motion)
    C = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # y-up -> z-up (+90 deg about x)
    local_R[:, 0] = C @ local_R[:, 0]
    root = local_t[:, 0] @ C.T
    euler = matrix_to_euler(local_R.reshape(-1, 3, 3), "XYZ").reshape(len(joints), 22, 3)
    names = [f"rig:{n.title().replace('_', '')}" for n in CANONICAL_JOINTS]
    rotation = ["Xrotation", "Yrotation", "Zrotation"]
    user = BvhMotion(
        names=names,
        parents=motion.parents,
        offsets=motion.offsets,
        channels=[["Xposition", "Yposition", "Zposition", *rotation]] + [rotation] * 21,
        frame_time=motion.frame_time,
        values=np.concatenate([root, euler.reshape(len(joints), -1)], axis=1),
        end_sites=motion.end_sites,
    )
    bvh_path = write_bvh(tmp_path / "user_clip.bvh", user, precision=8)
    spec = {"name": "user_rig", "unit_to_metres": 1.0, "up_axis": "z", "joints": dict(zip(CANONICAL_JOINTS, names))}
    map_path = tmp_path / "user_rig.yaml"
    map_path.write_text(yaml.safe_dump(spec))
    return bvh_path, map_path


def test_user_rig_with_a_map_imports(real_bvh_dir: Path, tmp_path: Path):
    joints, _ = bvh_to_canonical(real_bvh(real_bvh_dir, "dataset-2", "walk-turn-left"))
    bvh_path, map_path = _user_rig_file(joints, tmp_path)
    with pytest.raises(DataError, match="unknown rig"):
        bvh_to_canonical(bvh_path)
    imported, fps = bvh_to_canonical(bvh_path, map_path)
    assert fps == 20.0 and imported.shape == joints.shape
    error_mm = np.linalg.norm(imported - joints, axis=-1).max() * 1000
    assert error_mm < 0.1, f"user rig import differs by {error_mm:.3f} mm"


def test_skeleton_map_errors_name_the_file(tmp_path: Path):
    bandai = yaml.safe_load(Path(load_skeleton_map("bandai_namco").path).read_text())
    broken = dict(bandai, joints={k: v for k, v in bandai["joints"].items() if k != "spine2"})
    path = tmp_path / "broken_map.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(ConfigError, match=r"broken_map.yaml: joints must name .* missing spine2"):
        load_skeleton_map(path)
    path.write_text(yaml.safe_dump(dict(bandai, unit_to_metres=-1)))
    with pytest.raises(ConfigError, match="unit_to_metres must be a positive number"):
        load_skeleton_map(path)
    path.write_text(yaml.safe_dump(dict(bandai, joints=dict(bandai["joints"], spine2={"lerp": ["Spine"], "t": 1}))))
    with pytest.raises(ConfigError, match="joints.spine2"):
        load_skeleton_map(path)
    with pytest.raises(ConfigError, match="unknown skeleton map 'nope'"):
        load_skeleton_map("nope")


def test_map_needing_joints_the_rig_lacks(tmp_path: Path):
    path = tmp_path / "custom_rig.bvh"
    path.write_text(UNKNOWN_RIG)
    with pytest.raises(DataError, match=r"custom_rig.bvh: skeleton map 'bandai_namco' needs joint\(s\) .*Hips"):
        bvh_to_canonical(path, "bandai_namco")


def test_canonical_bvh_export_reads_back(real_bvh_dir: Path, tmp_path: Path):
    joints, _ = bvh_to_canonical(real_bvh(real_bvh_dir, "dataset-1", "bow"))
    path = write_canonical_bvh(tmp_path / "bow_canonical.bvh", joints)
    text = path.read_text()
    assert "ROOT pelvis" in text and "JOINT left_wrist" in text
    again, fps = bvh_to_canonical(path)  # the shipped "canonical" map is picked
    assert fps == 20.0
    assert np.abs(again - joints).max() * 1000 < 0.05


def test_single_frame_clip_is_too_short(real_bvh_dir: Path, tmp_path: Path):
    text = real_bvh(real_bvh_dir, "dataset-2", "walk").read_text()
    header, rows = text.split("Frame Time:")
    first_row = rows.splitlines()[1]
    path = tmp_path / "one_frame.bvh"
    path.write_text(header.replace(header.split("Frames:")[1], " 1\n") + "Frame Time: 0.0333333\n" + first_row + "\n")
    with pytest.raises(DataError, match=r"one_frame.bvh: clip too short \(1 frame"):
        bvh_to_canonical(path)


def test_up_axis_mismatch_is_implausible_and_detected_when_left_out(real_bvh_dir: Path, tmp_path: Path):
    clip = real_bvh(real_bvh_dir, "dataset-2", "walk-turn-left")
    joints, _ = bvh_to_canonical(clip)
    bvh_path, map_path = _user_rig_file(joints, tmp_path)  # a z-up rig
    spec = yaml.safe_load(map_path.read_text())
    wrong = tmp_path / "says_y.yaml"
    wrong.write_text(yaml.safe_dump(dict(spec, up_axis="y")))
    with pytest.raises(DataError, match=r"user_rig.*lying down.*the up axis looks like z, not y"):
        bvh_to_canonical(bvh_path, wrong)
    detected = tmp_path / "no_up_axis.yaml"
    detected.write_text(yaml.safe_dump({k: v for k, v in spec.items() if k != "up_axis"}))
    imported, _ = bvh_to_canonical(bvh_path, detected)
    assert np.linalg.norm(imported - joints, axis=-1).max() < 1e-4  # the z-up rig detected as z-up
    # a y-up world (offsets and root rotation already y-up) declared z-up, as some exports are
    bandai = yaml.safe_load(Path(load_skeleton_map("bandai_namco").path).read_text())
    says_z = tmp_path / "says_z.yaml"
    says_z.write_text(yaml.safe_dump(dict(bandai, up_axis="z")))
    with pytest.raises(DataError, match="the up axis looks like y, not z"):
        bvh_to_canonical(clip, says_z)


def test_implausible_units_and_legs_name_the_cause(real_bvh_dir: Path, tmp_path: Path):
    clip = real_bvh(real_bvh_dir, "dataset-2", "walk")
    bandai = yaml.safe_load(Path(load_skeleton_map("bandai_namco").path).read_text())
    metres = tmp_path / "metres.yaml"
    metres.write_text(yaml.safe_dump(dict(bandai, unit_to_metres=1.0)))  # the file is in cm
    with pytest.raises(DataError, match="implausible bone lengths.*unit_to_metres looks wrong"):
        bvh_to_canonical(clip, metres)
    swapped = dict(bandai["joints"], left_knee="Foot_L", left_ankle="LowerLeg_L")
    legs = tmp_path / "legs.yaml"
    legs.write_text(yaml.safe_dump(dict(bandai, joints=swapped)))
    with pytest.raises(DataError, match="left foot is above its knee"):
        bvh_to_canonical(clip, legs)
