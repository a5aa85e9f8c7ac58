"""``moscale_node`` entry point (also what ``moscale node`` and the launch file run).

Usage: ``moscale_node --ros-args --params-file config/moscale.yaml [-p name:=value ...]``;
``moscale_lifecycle_node`` (same arguments) starts the managed variant (:mod:`moscale_ros.node.lifecycle`),
which waits unconfigured for its lifecycle transitions and so never exits on a start-up failure.

Exit codes: 0 after SIGINT/SIGTERM (a clean shutdown; during start-up, including the model load and
warm-up, within 2 s: :mod:`moscale_ros.node.startup`); 2 when start-up fails under
``on_startup_error: exit``, the default, after one ``start-up failed: <reason>`` line (the traceback
only at DEBUG); 2 also when ROS itself cannot start (e.g. ``ROS_SECURITY_STRATEGY=Enforce`` without
the node's enclave). Under ``stay_up`` every start-up failure leaves the node up, refusing commands.
"""

from __future__ import annotations

import sys

from moscale_ros.node.heap import disable_mkl_buffer_pools, limit_arenas
from moscale_ros.node.startup import STARTUP_FAILURE_EXIT, SignalGate, StartupInterrupted, exit_now, failure_reason


def main(args: list[str] | None = None, managed: bool = False) -> int:
    limit_arenas()  # before any thread exists (node/heap.py: bounded memory over thousands of texts)
    disable_mkl_buffer_pools()  # before torch is imported (node/heap.py)
    # Installed first: a signal during the seconds of importing the node (torch, Pinocchio) or of
    # loading the model ends the process at once (exit 0).
    gate = SignalGate()
    rclpy = None
    try:
        from moscale_ros.node.transport import use_node_profile

        use_node_profile()  # before ROS starts: Fast DDS reads its profile then (node/transport.py)
        import rclpy  # (lazy: after the signal handlers, see above)
        from rclpy.signals import SignalHandlerOptions

        from moscale_ros.node.node import MoScaleNode, spin
        from moscale_ros.node.ros_parameters import command_line_overrides

        try:
            # Without rclpy's signal handlers: the gate decides, and the context stays valid until
            # the node has logged its last line (no "failed to publish to rosout" at shutdown).
            argv = sys.argv if args is None else args
            rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        except Exception as exc:  # bad --ros-args, or SROS2 under Enforce without a usable enclave
            reason = " ".join(str(exc).split())
            print(f"moscale_node: start-up failed: cannot initialise ROS: {reason}", file=sys.stderr)
            return STARTUP_FAILURE_EXIT
        node_class: type[MoScaleNode] = MoScaleNode
        if managed:  # rclpy.lifecycle only where it is used
            from moscale_ros.node.lifecycle import MoScaleLifecycleNode

            node_class = MoScaleLifecycleNode
        try:
            node = node_class(parameter_overrides=command_line_overrides(argv))
        except Exception as exc:  # the node reports its own failures; this is a last resort
            print(f"moscale_node: start-up failed: {failure_reason(exc)}", file=sys.stderr)
            return STARTUP_FAILURE_EXIT
        with gate.started():
            if not node.managed and not node.ready and node.exit_on_startup_error:  # even if a stop came meanwhile
                node.shutdown()
                node.destroy_node()
                rclpy.try_shutdown(uninstall_handlers=False)
                exit_now(STARTUP_FAILURE_EXIT)  # the node has logged why; no teardown (exit_now)
            spin(node, gate.stop)
            node.destroy_node()
    except StartupInterrupted:
        if rclpy is not None:
            rclpy.try_shutdown(uninstall_handlers=False)  # (none installed: the gate keeps its own)
        exit_now()  # skips the seconds of tearing down torch and Pinocchio half-way through loading
    finally:
        if rclpy is not None:
            rclpy.try_shutdown(uninstall_handlers=False)  # (none installed: the gate keeps its own)
    return 0


def main_managed(args: list[str] | None = None) -> int:
    """``moscale_lifecycle_node``: :func:`main` with the managed (lifecycle) node."""
    return main(args, managed=True)


if __name__ == "__main__":
    sys.exit(main())
