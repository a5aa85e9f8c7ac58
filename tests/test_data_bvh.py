"""BVH reader/writer and forward kinematics: small hand-checkable files, real clips, bad input."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import real_bvh

from moscale_common.errors import DataError
from moscale_ros.data.bvh import forward_kinematics, parse_bvh, read_bvh, write_bvh

# Root translates and rotates (XYZ order); "arm" rotates in ZYX order; "hand" shows the arm's rotation.
TINY = """HIERARCHY
ROOT root
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
  JOINT arm
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    JOINT hand
    {
      OFFSET 0 2 0
      End Site
      {
        OFFSET 0 0.5 0
      }
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.5
0 0 0 0 0 0 0 0 0
1 2 3 0 0 90 90 0 0
0 0 0 0 0 0 30 40 50
"""


def _rx(a):
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def test_tiny_hierarchy_parses_and_fk_matches_hand_computation():
    motion = parse_bvh(TINY, "tiny.bvh")
    assert motion.names == ["root", "arm", "hand"]
    assert motion.parents.tolist() == [-1, 0, 1]
    assert motion.channels[1] == ["Zrotation", "Yrotation", "Xrotation"]
    assert motion.num_frames == 3 and motion.fps == pytest.approx(2.0)
    np.testing.assert_allclose(motion.end_sites[2], [0, 0.5, 0])
    pos = forward_kinematics(motion)
    assert pos.shape == (3, 3, 3)
    # Frame 0: rest pose.
    np.testing.assert_allclose(pos[0], [[0, 0, 0], [1, 0, 0], [1, 2, 0]], atol=1e-12)
    # Frame 1: root at (1,2,3) turned 90 deg about z (x -> y); the arm adds another 90 deg about z.
    np.testing.assert_allclose(pos[1, 1], [1, 3, 3], atol=1e-9)
    np.testing.assert_allclose(pos[1, 2], [1, 1, 3], atol=1e-9)
    # Frame 2: the arm's ZYX channels compose as Rz @ Ry @ Rx in the listed order.
    expected_hand = np.array([1, 0, 0]) + _rz(30) @ _ry(40) @ _rx(50) @ np.array([0, 2, 0])
    np.testing.assert_allclose(pos[2, 2], expected_hand, atol=1e-9)


def test_write_then_read_round_trip(tmp_path: Path):
    motion = parse_bvh(TINY, "tiny.bvh")
    path = write_bvh(tmp_path / "out.bvh", motion)
    again = read_bvh(path)
    assert again.names == motion.names and again.parents.tolist() == motion.parents.tolist()
    assert again.channels == motion.channels
    np.testing.assert_allclose(again.offsets, motion.offsets)
    np.testing.assert_allclose(again.values, motion.values, atol=1e-6)
    np.testing.assert_allclose(again.end_sites[2], motion.end_sites[2])
    np.testing.assert_allclose(forward_kinematics(again), forward_kinematics(motion), atol=1e-5)


def test_real_clip_reads_and_round_trips(real_bvh_dir: Path, tmp_path: Path):
    path = real_bvh(real_bvh_dir, "dataset-1", "walk")
    motion = read_bvh(path)
    assert motion.num_joints == 22 and "Hips" in motion.names and motion.names[0] == "joint_Root"
    assert motion.fps == pytest.approx(30.0, rel=1e-3)
    assert motion.values.shape == (motion.num_frames, 22 * 6)
    header_frames = int(path.read_text().split("Frames:")[1].split()[0])
    assert motion.num_frames == header_frames
    pos = forward_kinematics(motion)
    assert pos.shape == (motion.num_frames, 22, 3)
    # Head above hips above toes, in centimetres.
    hips, head, toes = (motion.index(n) for n in ("Hips", "Head", "Toes_L"))
    assert np.all(pos[:, head, 1] > pos[:, hips, 1]) and np.all(pos[:, hips, 1] > pos[:, toes, 1])
    assert 60 < pos[:, hips, 1].mean() < 120
    again = read_bvh(write_bvh(tmp_path / "copy.bvh", motion))
    np.testing.assert_allclose(forward_kinematics(again), pos, atol=1e-3)


def test_fk_of_10000_frames_is_fast(real_bvh_dir: Path):
    motion = read_bvh(real_bvh(real_bvh_dir, "dataset-2", "run"))
    motion.values = np.tile(motion.values, (10000 // motion.num_frames + 1, 1))[:10000]
    forward_kinematics(motion)
    start = time.perf_counter()
    pos = forward_kinematics(motion)
    elapsed = time.perf_counter() - start
    assert pos.shape == (10000, 22, 3)
    assert elapsed < 1.0, f"FK of 10,000 frames took {elapsed:.2f} s"


def _corrupt(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text
    return text.replace(old, new, count)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t[: int(len(t) * 0.95)], "truncated motion data"),
        (lambda t: t[: t.index("MOTION") - 40], "truncated"),
        (lambda t: _corrupt(t, "0 0 0 0 0 0 30 40 50", "0 0 0 0 0 0 30 abc 50"), "corrupt motion data"),
        (lambda t: _corrupt(t, "0 0 0 0 0 0 30 40 50", "0 0 0 0 0 0 30 nan 50"), "non-finite"),
        (lambda t: t.split("Frames:")[0] + "Frames: 0\nFrame Time: 0.5\n", "zero-length"),
        (lambda t: _corrupt(t, "Xrotation Yrotation Zrotation", "Xrotation Yrotation Qrotation"), "unknown channel"),
        (lambda t: _corrupt(t, "OFFSET 1 0 0", "OFFSET 1 zero 0"), "expected a number"),
        (lambda t: _corrupt(t, "  }\n}\nMOTION", "}\nMOTION"), "not closed"),
        (lambda t: "just some text\n", "not a BVH file"),
        (lambda t: _corrupt(t, "0 0 0 0 0 0 30 40 50", "0 0 0 0 0 0 30 40 50 7"), "corrupt motion data"),
    ],
    ids=[
        "truncated-motion",
        "truncated-hierarchy",
        "garbage-value",
        "nan",
        "zero-frames",
        "bad-channel",
        "bad-offset",
        "unbalanced",
        "not-bvh",
        "extra-values",
    ],
)
def test_bad_bvh_raises_data_error_naming_the_file(tmp_path: Path, mutate, message):
    path = tmp_path / "broken_clip.bvh"
    path.write_text(mutate(TINY))
    with pytest.raises(DataError) as info:
        read_bvh(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_truncated_real_clip_and_binary_file(real_bvh_dir: Path, tmp_path: Path):
    raw = real_bvh(real_bvh_dir, "dataset-2", "walk").read_bytes()
    cut = tmp_path / "cut.bvh"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.bvh: truncated motion data"):
        read_bvh(cut)
    binary = tmp_path / "binary.bvh"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match="binary.bvh: not a text BVH"):
        read_bvh(binary)
    with pytest.raises(DataError, match="missing.bvh: cannot read"):
        read_bvh(tmp_path / "missing.bvh")
