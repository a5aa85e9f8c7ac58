"""Physics simulation of the robot (MuJoCo), ROS-free: the model built from the robot YAML's URDF
(:mod:`.model`), the world (:mod:`.simulator`), the trajectory controller driving it
(:mod:`.loop`), what a run measures (:mod:`.monitor`) and running a saved trajectory (:mod:`.run`).

Importing this package imports ``mujoco`` (what every submodule but :mod:`.config` needs) after
choosing its GL backend: ``MUJOCO_GL`` must be set before ``mujoco`` is imported, ``egl`` (headless,
Mesa) unless the user chose one. When that backend's library is missing (no ``libEGL``, no
``libOSMesa``), ``import mujoco`` itself fails inside PyOpenGL; then ``mujoco`` is imported again
with GL disabled, the physics works, and :data:`GL_IMPORT_ERROR` says why nothing can be rendered
(:func:`moscale_ros.sim.render.gl_unavailable_reason` reports it). ``moscale --help`` does not
import this package.
"""

import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

GL_IMPORT_ERROR: str | None = None  # why MuJoCo's GL backend could not be imported (None: it was)

try:
    import mujoco  # noqa: F401
except Exception as _exc:  # noqa: BLE001  (PyOpenGL fails with AttributeError/ImportError/OSError)
    GL_IMPORT_ERROR = (
        f"importing MuJoCo's GL backend failed (MUJOCO_GL={os.environ['MUJOCO_GL']}): "
        f"{type(_exc).__name__}: {(str(_exc).splitlines() or [''])[0][:120]}"
    )
    for _name in [m for m in sys.modules if m == "mujoco" or m.startswith(("mujoco.", "OpenGL"))]:
        del sys.modules[_name]
    os.environ["MUJOCO_GL"] = "disable"
    import mujoco  # noqa: F401
