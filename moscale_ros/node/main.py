"""``moscale_node`` entry point (also what ``moscale node`` and the launch file run).

Usage: ``moscale_node --ros-args --params-file config/moscale.yaml [-p name:=value ...]``.
SIGINT and SIGTERM shut the node down cleanly (exit code 0).
"""

from __future__ import annotations

import signal
import sys


def _leave_to_rclpy(signum: int, frame: object) -> None:
    """Python-level part of SIGINT/SIGTERM: nothing. rclpy's handler (installed by ``rclpy.init``,
    chaining to this one) shuts the context down and the executor returns; a KeyboardInterrupt
    raised at a random point of the shutdown would only make the exit unclean."""


def main(args: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, _leave_to_rclpy)
    signal.signal(signal.SIGTERM, _leave_to_rclpy)
    import rclpy

    from moscale_ros.node.node import MoScaleNode, spin

    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = MoScaleNode()
        spin(node)
        node.destroy_node()
    except Exception:
        if rclpy.ok():
            raise
        # Interrupted while starting (e.g. during the model load) or stopping: a clean exit.
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
