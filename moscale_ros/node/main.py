"""``moscale_node`` entry point (also what ``moscale node`` and the launch file run).

Usage: ``moscale_node --ros-args --params-file config/moscale.yaml [-p name:=value ...]``.
"""

from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> int:
    import rclpy

    from moscale_ros.node.node import MoScaleNode, spin

    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = MoScaleNode()
        spin(node)
        node.destroy_node()
    except KeyboardInterrupt:
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
