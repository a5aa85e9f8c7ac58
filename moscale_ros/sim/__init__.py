"""Physics simulation of the robot (MuJoCo), ROS-free: the model built from the robot YAML's URDF
(:mod:`.model`), the world (:mod:`.simulator`), the trajectory controller driving it
(:mod:`.loop`), what a run measures (:mod:`.monitor`) and running a saved trajectory (:mod:`.run`).

Import the submodules; this package imports nothing so that ``moscale --help`` stays fast.
"""

import os

# MuJoCo picks its GL backend when imported: headless EGL (Mesa) unless the user chose one.
os.environ.setdefault("MUJOCO_GL", "egl")
