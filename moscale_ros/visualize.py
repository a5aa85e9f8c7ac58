"""Animated GIFs of motions: the human skeleton and, beside it, the robot from Pinocchio.

Shared renderer of ``moscale retarget --gif``, ``moscale generate --gif`` and the demo::

    from moscale_ros.visualize import render_gif, render_plans_gif
    render_gif("wave.gif", human_joints_T223=joints, fps=20, title="wave")            # human only
    render_gif("wave.gif", human_joints_T223=joints, robot=trajectory, fps=20)        # side by side
    render_plans_gif("plans.gif", [("scale 1/4", coarse_joints, coarse_traj),
                                   ("final", final_joints, final_traj)], fps=20)      # one row per plan
    render_beside_gif("sim.gif", human_N223, fps, robot_images=mujoco_frames)          # the demo's video

``human_joints_T223`` is the canonical skeleton (y-up, metres); ``robot`` is a
:class:`retarget.RobotTrajectory` (it carries its robot model). Each panel is a fixed oblique
orthographic view (z-up) that follows the root horizontally, with a ground grid fixed to the
world so travel shows. Frames are subsampled to at most ``max_frames`` (the GIF keeps real time)
and drawn with matplotlib's Agg backend as 2-D line collections: ~10-20 ms per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pinocchio as pin

from moscale_common.errors import InputError
from moscale_common.skeleton import CANONICAL_PARENTS

if TYPE_CHECKING:
    from retarget.trajectory import RobotTrajectory

_AZIMUTH = np.radians(-60.0)
_ELEVATION = np.radians(15.0)
_HALF_WIDTH = 1.1  # metres shown on each side of the followed root


def _projector() -> np.ndarray:
    """2x3 orthographic projection of z-up world points onto the screen."""
    right = np.array([-np.sin(_AZIMUTH), np.cos(_AZIMUTH), 0.0])
    view = np.array([np.cos(_AZIMUTH) * np.cos(_ELEVATION), np.sin(_AZIMUTH) * np.cos(_ELEVATION), np.sin(_ELEVATION)])
    up = np.cross(view, right)
    return np.stack([right, up])


def human_segments(joints_T223: np.ndarray) -> np.ndarray:
    """Bones of the canonical skeleton as z-up segments ``(T, 21, 2, 3)``."""
    world = np.asarray(joints_T223, dtype=float)[..., [2, 0, 1]]
    pairs = [(p, c) for c, p in enumerate(CANONICAL_PARENTS) if p >= 0]
    return np.stack([world[:, [p for p, _ in pairs]], world[:, [c for _, c in pairs]]], axis=2)


def robot_segments(trajectory: RobotTrajectory, times: np.ndarray) -> np.ndarray:
    """Links of the robot (parent joint to child joint, plus soles) at ``times``: ``(N, S, 2, 3)``."""
    robot = trajectory.robot
    if robot is None:
        raise InputError("render_gif: the robot trajectory carries no robot model (use the one Retargeter returns)")
    return configuration_segments(robot, [trajectory.configuration_at(float(t)) for t in times])


def configuration_segments(robot, configurations: Sequence[np.ndarray]) -> np.ndarray:
    """Links of ``robot`` (a :class:`retarget.Robot`) in each Pinocchio configuration ``q``: ``(N, S, 2, 3)``."""
    model = robot.model
    data = model.createData()
    out = []
    for q in configurations:
        pin.framesForwardKinematics(model, data, np.asarray(q, dtype=np.float64))
        segs = [(data.oMi[model.parents[j]].translation, data.oMi[j].translation) for j in range(2, model.njoints)]
        for side, corners in robot.sole_corners.items():
            M = data.oMf[robot.foot_frame_ids[side]]
            pts = corners @ M.rotation.T + M.translation
            segs += [(pts[i], pts[(i + 1) % len(pts)]) for i in range(len(pts))]
        out.append(np.asarray(segs))
    return np.stack(out)


def _frame_times(duration: float, fps: float, max_frames: int) -> tuple[np.ndarray, float]:
    count = max(2, min(max_frames, int(round(duration * fps)) + 1))
    times = np.linspace(0.0, duration, count)
    return times, (times[1] - times[0]) if count > 1 else 1.0 / fps


def render_plans_gif(
    path: str | Path,
    plans: Sequence[tuple[str, np.ndarray | None, RobotTrajectory | None]],
    fps: float = 20.0,
    title: str = "",
    max_frames: int = 60,
    panel_size: float = 2.6,
) -> Path:
    """One row per plan ``(label, human_joints_T223 or None, robot trajectory or None)``.

    Human joints are sampled at ``fps``; every row shares the time axis of the longest plan.
    """
    # Imported here: the "Agg" backend must be chosen before pyplot is first imported, and matplotlib
    # costs its importers (the node's demo, `moscale generate` without --gif) half a second.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    if not plans:
        raise InputError("render_gif: nothing to draw (no human joints and no robot trajectory)")
    if not fps > 0:
        raise InputError(f"render_gif: fps must be > 0, got {fps}")
    durations = []
    for label, joints, traj in plans:
        if joints is None and traj is None:
            raise InputError(f"render_gif: plan {label!r} has neither human joints nor a robot trajectory")
        if joints is not None:
            joints = np.asarray(joints)
            if joints.ndim != 3 or joints.shape[1:] != (22, 3) or not np.isfinite(joints).all():
                raise InputError(
                    f"render_gif: plan {label!r}: human joints must be finite (T, 22, 3), got {joints.shape}"
                )
            durations.append((len(joints) - 1) / fps)
        if traj is not None:
            durations.append(traj.duration)
    times, step = _frame_times(max(durations), fps, max_frames)
    P = _projector()
    columns = max((joints is not None) + (traj is not None) for _, joints, traj in plans)
    figsize = (panel_size * columns, panel_size * len(plans))
    fig, axes = plt.subplots(len(plans), columns, figsize=figsize, squeeze=False)
    if title:
        fig.suptitle(title, fontsize=10)
    panels = []  # (axis, segments (N, S, 2, 3), root (N, 3), colour)
    for row, (label, joints, traj) in enumerate(plans):
        col = 0
        if joints is not None:
            idx = np.clip(np.round(times * fps).astype(int), 0, len(joints) - 1)
            segs = human_segments(np.asarray(joints)[idx])
            panels.append((axes[row, col], segs, segs[:, 0, 0], "tab:blue", f"{label} human".strip()))
            col += 1
        if traj is not None:
            segs = robot_segments(traj, np.minimum(times, traj.duration))
            panels.append((axes[row, col], segs, segs[:, 0, 0], "tab:orange", f"{label} {traj.robot_name}".strip()))
            col += 1
        for c in range(col, columns):
            axes[row, c].axis("off")
    artists = []
    grid = np.arange(-20.0, 20.01, 0.5)
    for ax, segs, _root, colour, label in panels:
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(label, fontsize=8)
        ground = [np.array([[g, grid[0], 0], [g, grid[-1], 0]]) for g in grid]
        ground += [np.array([[grid[0], g, 0], [grid[-1], g, 0]]) for g in grid]
        ground_lc = LineCollection([seg @ P.T for seg in ground], colors="0.85", linewidths=0.5)
        body_lc = LineCollection([], colors=colour, linewidths=2.0)
        ax.add_collection(ground_lc)
        ax.add_collection(body_lc)
        artists.append((ax, segs, body_lc))
    frames = []
    for n in range(len(times)):
        for ax, segs, body_lc in artists:
            _show_bodies(ax, body_lc, segs[n], P)
        frames.append(_grab_frame(fig))
    plt.close(fig)
    return _save_gif(frames, path, step)


def render_gif(
    path: str | Path,
    human_joints_T223: np.ndarray | None = None,
    robot: RobotTrajectory | None = None,
    fps: float = 20.0,
    title: str = "",
    max_frames: int = 60,
) -> Path:
    """GIF of a human motion (canonical joints at ``fps``), the robot trajectory beside it, or both."""
    return render_plans_gif(path, [("", human_joints_T223, robot)], fps=fps, title=title, max_frames=max_frames)


def render_beside_gif(
    path: str | Path,
    human_N223: np.ndarray,
    fps: float,
    robot_images: Sequence[np.ndarray] | None = None,
    robot_segments_N: np.ndarray | None = None,
    human_labels: Sequence[str] | None = None,
    robot_labels: Sequence[str] | None = None,
    title: str = "",
    panel_size: float = 3.2,
) -> Path:
    """One frame per row of ``human_N223`` (canonical joints, y-up, at ``fps``): the human stick figure
    on the left; on the right either ``robot_images`` (RGB frames, e.g. MuJoCo renders) or
    ``robot_segments_N`` (``(N, S, 2, 3)`` z-up links, drawn like :func:`render_plans_gif`).
    ``human_labels`` and ``robot_labels`` title the panels per frame."""
    # Imported here: the "Agg" backend must be chosen before pyplot is first imported (see render_plans_gif)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    human_N223 = np.asarray(human_N223, dtype=float)
    count = len(human_N223)
    if (robot_images is None) == (robot_segments_N is None):
        raise InputError("render_beside_gif: give robot images or robot segments (one of them)")
    if count == 0 or len(robot_images if robot_images is not None else robot_segments_N) != count:
        raise InputError("render_beside_gif: the human and robot frames must be as many (and not none)")
    if not fps > 0:
        raise InputError(f"render_beside_gif: fps must be > 0, got {fps}")
    P = _projector()
    fig, (ax_h, ax_r) = plt.subplots(1, 2, figsize=(2 * panel_size, panel_size))
    if title:
        fig.suptitle(title, fontsize=10)
    grid = np.arange(-20.0, 20.01, 0.5)
    ground = [np.array([[g, grid[0], 0], [g, grid[-1], 0]]) for g in grid]
    ground += [np.array([[grid[0], g, 0], [grid[-1], g, 0]]) for g in grid]
    lines = []  # (axis, segments (N, S, 2, 3), collection)
    panels = [(ax_h, human_segments(human_N223), "tab:blue")]
    if robot_segments_N is not None:
        panels.append((ax_r, np.asarray(robot_segments_N), "tab:orange"))
    for ax, segs, colour in panels:
        ax.set_aspect("equal")
        ax.add_collection(LineCollection([seg @ P.T for seg in ground], colors="0.85", linewidths=0.5))
        body = LineCollection([], colors=colour, linewidths=2.0)
        ax.add_collection(body)
        lines.append((ax, segs, body))
    image = None
    if robot_images is not None:
        image = ax_r.imshow(robot_images[0])
    for ax in (ax_h, ax_r):
        ax.set_xticks([])
        ax.set_yticks([])
    frames = []
    for n in range(count):
        for ax, segs, body in lines:
            _show_bodies(ax, body, segs[n], P)
        if image is not None:
            image.set_data(robot_images[n])
        ax_h.set_title(human_labels[n] if human_labels is not None else "human", fontsize=8)
        ax_r.set_title(robot_labels[n] if robot_labels is not None else "robot", fontsize=8)
        frames.append(_grab_frame(fig))
    plt.close(fig)
    return _save_gif(frames, path, 1.0 / fps)


def _show_bodies(ax: Any, body: Any, segments_S23: np.ndarray, P: np.ndarray) -> None:
    """Draw one frame's bone segments, projected by ``P``, with the view centred on the first body's root."""
    body.set_segments(segments_S23 @ P.T)
    centre = P @ np.array([segments_S23[0, 0, 0], segments_S23[0, 0, 1], 0.8])
    ax.set_xlim(centre[0] - _HALF_WIDTH, centre[0] + _HALF_WIDTH)
    ax.set_ylim(centre[1] - _HALF_WIDTH, centre[1] + _HALF_WIDTH)


def _grab_frame(fig: Any) -> Any:
    """The figure as a palette image (PIL, imported with matplotlib by the renderers)."""
    from PIL import Image  # Pillow comes with matplotlib: loaded only when a GIF is drawn

    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    return Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE)


def _save_gif(frames: list, path: str | Path, step_s: float) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(round(1000 * step_s)), loop=0)
    return path
