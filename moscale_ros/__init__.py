"""MoScale-ROS: text to humanoid motion, coarse plan first, refinements after.

The Python package has two halves: this source tree (core, CLI, node) and the ROS interface
modules ``moscale_ros.msg`` / ``moscale_ros.action`` that the CMake build generates and installs
next to it. ``extend_path`` joins every ``moscale_ros`` directory on ``sys.path`` into this one
package, so an editable or source checkout never hides the generated half. The generated half
ships no ``__init__.py`` of its own in the venv install (see scripts/setup.sh).
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
