"""pip/setuptools build of the Python packages (moscale_ros, retarget, moscale_common) and their entry points.

A colcon build on a full ROS 2 install uses CMakeLists.txt (ament_cmake + ament_cmake_python),
which also generates the interfaces; scripts/setup.sh uses both: CMake for the interfaces, this
file (editable) for the Python code.
"""

from setuptools import find_packages, setup

setup(
    # Not "moscale_ros": that distribution name belongs to the generated interfaces (CMake install).
    name="moscale",
    version="0.1.0",
    description="Text to humanoid motion with next-scale autoregressive generation, for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(
        include=["moscale_ros", "moscale_ros.*", "retarget", "retarget.*", "moscale_common", "moscale_common.*"]
    ),
    include_package_data=False,
    install_requires=[
        "numpy",
        "scipy",
        "pyyaml",
        "safetensors",
        "transformers",
        "torch",
        "pin",
        "pin-pink",
        "example-robot-data",
    ],
    entry_points={
        "console_scripts": [
            "moscale = moscale_ros.cli:main",
            "moscale_node = moscale_ros.node.main:main",
            "moscale_lifecycle_node = moscale_ros.node.main:main_managed",
            "moscale_sim_node = moscale_ros.node.sim_node:main",
        ],
    },
)
