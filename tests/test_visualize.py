"""The shared GIF renderer: human only, human and robot side by side, several plans; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from moscale_common.errors import InputError
from moscale_common.paths import shared_data_archive
from moscale_ros.bench.retarget import real_clips
from moscale_ros.visualize import configuration_segments, render_beside_gif, render_gif, render_plans_gif
from retarget import Retargeter, load_robot


@pytest.fixture(scope="module")
def wave() -> tuple[np.ndarray, float]:
    if not shared_data_archive().is_file():
        pytest.skip(f"Bandai-Namco archive absent: {shared_data_archive()}")
    return real_clips(("wave",))["wave"]


def _frames(path) -> list[np.ndarray]:
    image = Image.open(path)
    out = []
    for i in range(image.n_frames):
        image.seek(i)
        out.append(np.asarray(image.convert("RGB")))
    return out


def test_human_only_gif_animates(wave, tmp_path) -> None:
    joints, fps = wave
    path = render_gif(tmp_path / "human.gif", human_joints_T223=joints[:40], fps=fps, title="wave", max_frames=20)
    frames = _frames(path)
    assert len(frames) == 20
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])  # the skeleton moves
    blue = (frames[0][..., 2] > 150) & (frames[0][..., 0] < 100)
    assert blue.sum() > 50  # the skeleton is drawn


def test_human_and_robot_side_by_side_and_plans(wave, tmp_path) -> None:
    joints, fps = wave
    joints = joints[:40]
    robot = Retargeter(load_robot("g1"))
    traj = robot.retarget(joints, fps)
    single = _frames(render_gif(tmp_path / "pair.gif", human_joints_T223=joints, robot=traj, fps=fps, max_frames=10))
    width = single[0].shape[1]
    orange = (single[0][..., 0] > 200) & (single[0][..., 2] < 100)
    columns = np.flatnonzero(orange.any(axis=0))
    assert columns.size and columns.min() > width // 2  # the robot is drawn in the right-hand panel
    coarse = robot.retarget(joints, fps, ik_fps=4.0)
    plans = [("scale 1/4", joints, coarse), ("final", joints, traj)]
    both = _frames(render_plans_gif(tmp_path / "plans.gif", plans, fps=fps, max_frames=8))
    assert len(both) == 8 and both[0].shape[0] > 1.8 * single[0].shape[0]


def test_human_beside_robot_images_or_robot_lines(tmp_path) -> None:
    # The demo's video: per frame a human pose and either a rendered image of the robot or its links.
    human = np.zeros((6, 22, 3))
    human[:, :, 1] = np.linspace(0.0, 1.7, 22)  # a vertical stick, y-up
    red = np.zeros((6, 40, 30, 3), dtype=np.uint8)
    for n in range(6):  # a red bar growing frame by frame (Pillow merges identical GIF frames)
        red[n, : 5 * (n + 1), :, 0] = 255
    frames = _frames(render_beside_gif(tmp_path / "img.gif", human, 10.0, robot_images=red, human_labels=["h"] * 6))
    assert len(frames) == 6 and frames[0].shape[1] > frames[0].shape[0]
    width = frames[0].shape[1]
    reddish = (frames[-1][..., 0] > 200) & (frames[-1][..., 1] < 60) & (frames[-1][..., 2] < 60)
    assert reddish.any() and np.flatnonzero(reddish.any(axis=0)).min() > width // 2  # the image is on the right
    g1 = load_robot("g1")
    segments = configuration_segments(g1, [g1.q_initial] * 2)
    lines = _frames(render_beside_gif(tmp_path / "lines.gif", human[:2], 10.0, robot_segments_N=segments[:2]))
    orange = (lines[0][..., 0] > 200) & (lines[0][..., 2] < 100)
    assert orange.any() and np.flatnonzero(orange.any(axis=0)).min() > width // 2
    with pytest.raises(InputError, match="one of them"):
        render_beside_gif(tmp_path / "x.gif", human, 10.0)
    with pytest.raises(InputError, match="as many"):
        render_beside_gif(tmp_path / "x.gif", human, 10.0, robot_images=red[:3])


def test_bad_input_is_refused(tmp_path) -> None:
    with pytest.raises(InputError, match="nothing to draw"):
        render_plans_gif(tmp_path / "x.gif", [])
    with pytest.raises(InputError, match="neither human joints nor a robot"):
        render_gif(tmp_path / "x.gif")
    with pytest.raises(InputError, match=r"finite \(T, 22, 3\)"):
        render_gif(tmp_path / "x.gif", human_joints_T223=np.full((5, 22, 3), np.nan))
