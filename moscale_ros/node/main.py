"""``moscale_node`` entry point (also what ``moscale node`` and the launch file run).

Usage: ``moscale_node --ros-args --params-file config/moscale.yaml [-p name:=value ...]``;
``moscale_lifecycle_node`` (same arguments) starts the managed variant (:mod:`moscale_ros.node.lifecycle`),
which waits unconfigured for its lifecycle transitions and so never exits on a start-up failure.

Exit codes: 0 after SIGINT/SIGTERM (a clean shutdown, also while starting); 2 when start-up fails
(bad parameter, missing/corrupt/truncated/mismatched checkpoint, invalid robot config, CUDA asked
for but absent) under ``on_startup_error: exit``, the default, after logging the reason; 2 also when
ROS itself cannot start (e.g. ``ROS_SECURITY_STRATEGY=Enforce`` without the node's enclave).
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback


def main(args: list[str] | None = None, managed: bool = False) -> int:
    # SIGINT/SIGTERM set ``stop`` (the spin loop checks it every 0.1 s); rclpy's own handler, installed
    # by rclpy.init and chaining to this one, also shuts the context down. No KeyboardInterrupt is
    # raised at a random point of the shutdown.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # Imported after the handlers are set: a signal during the seconds of importing the node (torch,
    # Pinocchio) then stops it cleanly.
    import rclpy

    from moscale_ros.node.node import STARTUP_FAILURE_EXIT, MoScaleNode, spin

    node_class: type[MoScaleNode] = MoScaleNode
    if managed:  # rclpy.lifecycle only where it is used
        from moscale_ros.node.lifecycle import MoScaleLifecycleNode

        node_class = MoScaleLifecycleNode

    try:
        rclpy.init(args=sys.argv if args is None else args)
    except Exception as exc:  # bad --ros-args, or SROS2 under Enforce without a usable enclave
        print(f"moscale_node: start-up failed: cannot initialise ROS: {exc}", file=sys.stderr)
        return STARTUP_FAILURE_EXIT
    try:
        try:
            node = node_class()
        except Exception as exc:
            if not rclpy.ok() or stop.is_set():
                return 0  # interrupted while starting (e.g. during the model load): a clean exit
            traceback.print_exc()
            print(f"moscale_node: start-up failed: {exc!r}", file=sys.stderr)
            return STARTUP_FAILURE_EXIT
        if not node.managed and not node.ready and node.exit_on_startup_error:  # even if a stop came meanwhile
            node.shutdown()
            node.destroy_node()
            return STARTUP_FAILURE_EXIT  # the node has logged why
        spin(node, stop)
        node.destroy_node()
    except Exception:
        if rclpy.ok() and not stop.is_set():
            raise
        # Interrupted while stopping: a clean exit.
    finally:
        rclpy.try_shutdown()
    return 0


def main_managed(args: list[str] | None = None) -> int:
    """``moscale_lifecycle_node``: :func:`main` with the managed (lifecycle) node."""
    return main(args, managed=True)


if __name__ == "__main__":
    sys.exit(main())
