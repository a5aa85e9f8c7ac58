"""``moscale_node`` entry point (also what ``moscale node`` and the launch file run).

Usage: ``moscale_node --ros-args --params-file config/moscale.yaml [-p name:=value ...]``.
SIGINT and SIGTERM shut the node down cleanly (exit code 0), also while it is starting.
"""

from __future__ import annotations

import signal
import sys
import threading


def main(args: list[str] | None = None) -> int:
    # SIGINT/SIGTERM set ``stop`` (the spin loop checks it every 0.1 s); rclpy's own handler, installed
    # by rclpy.init and chaining to this one, also shuts the context down. No KeyboardInterrupt is
    # raised at a random point of the shutdown.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    import rclpy

    from moscale_ros.node.node import MoScaleNode, spin

    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = MoScaleNode()
        spin(node, stop)
        node.destroy_node()
    except Exception:
        if rclpy.ok() and not stop.is_set():
            raise
        # Interrupted while starting (e.g. during the model load) or stopping: a clean exit.
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
