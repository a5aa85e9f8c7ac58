"""``moscale node``: run the ROS 2 node (the same process as ``moscale_node`` and the launch file).

    moscale node                                   # config/moscale.yaml
    moscale node --params-file my.yaml -p device:=cpu -r /joint_trajectory_controller/joint_trajectory:=/arm/cmd

``-p``/``-r`` set parameters and remaps; anything after ``--ros-args`` is passed on verbatim.
"""

from __future__ import annotations

import argparse
import os
import sys

from moscale_common.errors import ConfigError
from moscale_common.paths import resource


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "node",
        help="run moscale_node (text commands in, motion plans and joint trajectories out)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--params-file",
        default=None,
        help="ROS 2 parameter file (default: the shipped config/moscale.yaml)",
    )
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE", help="set a parameter")
    parser.add_argument("-r", "--remap", action="append", default=[], metavar="FROM:=TO", help="remap a topic")
    parser.add_argument(
        "--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[], help="any further ROS arguments, verbatim"
    )
    parser.set_defaults(func=_run)


def node_command(
    params_file: str | None, params: list[str] = (), remaps: list[str] = (), ros_args: list[str] = ()
) -> list[str]:
    """The argv that runs the node: this Python, ``-m moscale_ros.node.main --ros-args ...``."""
    path = str(resource("config/moscale.yaml")) if params_file is None else params_file
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: parameter file not found")
    for item in [*params, *remaps]:
        if ":=" not in item:
            raise ConfigError(f"{item!r}: expected NAME:=VALUE")
    argv = [sys.executable, "-m", "moscale_ros.node.main", "--ros-args", "--params-file", path]
    argv += [x for item in params for x in ("-p", item)] + [x for item in remaps for x in ("-r", item)]
    return argv + list(ros_args)


def _run(args: argparse.Namespace) -> int:
    argv = node_command(args.params_file, args.param, args.remap, args.ros_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return 0  # not reached
