"""Video of a simulated run: MuJoCo renders the robot's meshes offscreen (EGL), one frame per
recorded ``qpos``; written as a GIF (Pillow) or an MP4 (``ffmpeg``, when installed).

``MUJOCO_GL`` must name the GL backend before ``mujoco`` is imported; :mod:`moscale_ros.sim`
sets ``egl`` unless the user chose one. Without a usable GL context :func:`gl_unavailable_reason`
says why, so callers fall back to the Pinocchio line drawing (:mod:`moscale_ros.visualize`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np

from moscale_common.errors import InputError
from moscale_ros.sim.model import SimModel


def gl_unavailable_reason(sim: SimModel | None = None) -> str | None:
    """``None`` if MuJoCo can open an offscreen GL context here (for ``sim``'s model, else an empty
    one), else the reason in one line."""
    # The package records a GL backend that failed to import (mujoco was then imported without GL)
    from moscale_ros.sim import GL_IMPORT_ERROR

    if GL_IMPORT_ERROR is not None:
        return f"no offscreen OpenGL for MuJoCo: {GL_IMPORT_ERROR}"
    try:
        model = sim.model if sim is not None else mujoco.MjModel.from_xml_string("<mujoco/>")
        renderer = mujoco.Renderer(model, 64, 64)
        renderer.close()
    except Exception as exc:  # noqa: BLE001  (EGL/OSMesa/GLFW errors have no common type)
        return f"no offscreen OpenGL for MuJoCo (MUJOCO_GL={_backend()}): {str(exc).splitlines()[0][:160]}"
    return None


def _backend() -> str:
    # Imported on use: rendering is optional
    import os

    return os.environ.get("MUJOCO_GL", "")


def render_frames(sim: SimModel, frames_qpos: np.ndarray, height: int = 360, width: int = 320) -> list[np.ndarray]:
    """RGB images ``(H, W, 3)`` of the robot in each ``qpos``, a camera following the pelvis from the front-left."""
    data = mujoco.MjData(sim.model)
    renderer = mujoco.Renderer(sim.model, height, width)
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.distance, camera.azimuth, camera.elevation = 2.8, 150.0, -12.0
    images = []
    try:
        for qpos in frames_qpos:
            data.qpos[:] = qpos
            mujoco.mj_kinematics(sim.model, data)
            camera.lookat[:] = [data.xpos[sim.root_body][0], data.xpos[sim.root_body][1], 0.6]
            renderer.update_scene(data, camera)
            images.append(renderer.render().copy())
    finally:
        renderer.close()
    return images


def write_video(path: str | Path, images: Sequence[np.ndarray], fps: float) -> str:
    """Write ``images`` to ``.gif`` (Pillow) or ``.mp4`` (``ffmpeg`` on PATH)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        # Pillow is imported only when a GIF is written
        from PIL import Image

        frames = [Image.fromarray(img) for img in images]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(round(1000 / fps)), loop=0)
        return str(path)
    if path.suffix.lower() == ".mp4":
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise InputError(f"{path}: writing .mp4 needs ffmpeg on PATH (not found); use a .gif")
        h, w = images[0].shape[:2]
        raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-"]
        out = ["-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", str(path)]
        argv = [ffmpeg, "-y", "-loglevel", "error", *raw, *out]
        subprocess.run(argv, input=b"".join(np.ascontiguousarray(i).tobytes() for i in images), check=True)
        return str(path)
    raise InputError(f"{path}: videos end in .gif or .mp4")


def render_video(path: str | Path, sim: SimModel, frames_qpos: np.ndarray, fps: float, title: str = "") -> str:
    """Render ``frames_qpos`` and write them to ``path`` (``title`` is unused for now: reserved)."""
    return write_video(path, render_frames(sim, frames_qpos), fps)
