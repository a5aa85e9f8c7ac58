"""``moscale retarget`` end to end: a real clip to .npz/.csv and a GIF; bad robots and files fail clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from moscale_common.paths import shared_data_archive
from moscale_ros.bench.retarget import real_clips
from moscale_ros.cli import main
from moscale_ros.data.skeleton import load_skeleton_map


@pytest.fixture(scope="module")
def wave_npz(tmp_path_factory):
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    joints, fps = real_clips(("wave",))["wave"]
    path = tmp_path_factory.mktemp("motion") / "wave.npz"
    np.savez(path, joints=joints[:60], fps=fps)
    return path


def test_retarget_command_writes_trajectory_gif_and_report(wave_npz, tmp_path, capsys) -> None:
    out, gif = tmp_path / "traj.npz", tmp_path / "robot.gif"
    assert main(["retarget", str(wave_npz), "--robot", "g1", "--out", str(out), "--gif", str(gif), "--report"]) == 0
    text = capsys.readouterr().out
    assert "joint-limit violation max" in text and "foot slide in contact" in text
    with np.load(out) as data:
        # 60 frames at 30 fps = 147 steps at 50 Hz, + 25 for the eases in from and out to rest (0.5 s each, half played)
        assert data["positions"].shape == (148 + 25, 29) and str(data["robot_name"]) == "g1"
        np.testing.assert_array_equal(data["velocities"][[0, -1]], 0.0)
    assert gif.stat().st_size > 10_000
    csv = tmp_path / "traj.csv"
    assert main(["retarget", str(wave_npz), "--robot", "talos", "--out", str(csv)]) == 0
    assert csv.read_text().splitlines()[0].startswith("time,base_x,base_y,base_z")


def test_retarget_command_errors(wave_npz, tmp_path, capsys) -> None:
    assert main(["retarget", str(wave_npz), "--robot", "asimo"]) == 2
    assert "unknown robot 'asimo'; available robots: g1, talos" in capsys.readouterr().err
    assert main(["retarget", str(tmp_path / "missing.bvh")]) == 2
    assert "missing.bvh: file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, poses=np.zeros((3, 22, 3)))
    assert main(["retarget", str(bad)]) == 2
    assert "no 'joints' array" in capsys.readouterr().err


def test_retarget_command_takes_a_skeleton_map(real_bvh_dir, tmp_path, capsys) -> None:
    clip = sorted(real_bvh_dir.glob("dataset-2_wave*.bvh"))[0]
    bandai = yaml.safe_load(Path(load_skeleton_map("bandai_namco").path).read_text())
    renamed = tmp_path / "renamed.bvh"
    renamed.write_text(clip.read_text().replace("Hips", "cc_Hips"))  # a rig no shipped map fits
    assert main(["retarget", str(renamed)]) == 2
    assert "--skeleton-map" in capsys.readouterr().err
    spec = dict(bandai, name="cc", joints=dict(bandai["joints"], pelvis="cc_Hips"))
    spec.pop("up_axis")  # detected
    map_path = tmp_path / "cc.yaml"
    map_path.write_text(yaml.safe_dump(spec))
    assert main(["retarget", str(renamed), "--skeleton-map", str(map_path), "--report"]) == 0
    assert "joint-limit violation max" in capsys.readouterr().out
    assert main(["retarget", str(renamed), "--skeleton-map", "bandai_namco"]) == 2
    assert "needs joint(s) Hips" in capsys.readouterr().err
