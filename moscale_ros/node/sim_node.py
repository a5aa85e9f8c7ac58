"""``moscale_sim_node``: the robot simulated in MuJoCo behind a joint_trajectory_controller, for
people without Gazebo or Isaac.

    moscale_sim_node --ros-args -p robot:=g1 [-p fixed_base:=true] [-p real_time_factor:=1.0]
    ros2 launch moscale_ros moscale.launch.py sim:=true       # with moscale_node on sim time

Interfaces:

* subscribes ``controller_topic`` (trajectory_msgs/JointTrajectory, default
  ``/joint_trajectory_controller/joint_trajectory``): each message goes through the controller
  rules (:mod:`moscale_ros.control.jtc_rules`) at the current simulation time; a rejected one is
  not executed and its reason is logged (warning);
* publishes ``/clock`` (rosgraph_msgs/Clock): the simulation time, so ``use_sim_time`` nodes
  (moscale_node) stamp their trajectories on it; ``/joint_states`` (sensor_msgs/JointState:
  position, velocity, effort); ``/odom`` (nav_msgs/Odometry: the pelvis pose and twist in the
  ``odom`` frame); ``/diagnostics``, one status ``moscale_sim_node: physics`` (upright or fallen,
  tracking RMS, pelvis height, real-time factor, accepted and rejected trajectories) once a second.

The physics runs in its own thread (:class:`~moscale_ros.sim.loop.ControlLoop`), paced so that
simulation time advances ``real_time_factor`` times as fast as the wall clock (0: as fast as it
can); the ROS callbacks only translate messages and hand them to the loop under a lock.
"""

from __future__ import annotations

import array
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

DIAGNOSTIC_NAME = "moscale_sim_node: physics"


@dataclass
class SimNodeSettings:
    """ROS parameters of the node (declared with these defaults)."""

    robot: str = "g1"
    fixed_base: bool = False
    controller_topic: str = "/joint_trajectory_controller/joint_trajectory"
    real_time_factor: float = 1.0  # target; 0 runs as fast as the CPU allows
    publish_rate: float = 100.0  # Hz (simulation time) of /clock, /joint_states, /odom
    allow_nonzero_velocity_at_trajectory_end: bool = False


def trajectory_message_from_ros(msg) -> object:
    """A ``trajectory_msgs/JointTrajectory`` as a :class:`~moscale_ros.control.jtc_rules.TrajectoryMessage`."""
    # Imported on use: the ROS-free core of the controller model is only needed here
    from moscale_ros.control.jtc_rules import TrajectoryMessage

    points = msg.points
    n, j = len(points), len(msg.joint_names)

    def field(name: str) -> np.ndarray | None:
        rows = [getattr(p, name) for p in points]
        if not rows or any(len(r) == 0 for r in rows):
            return None if name != "positions" else np.zeros((n, 0))
        if any(len(r) != j for r in rows):
            return np.full((n, 0), np.nan)  # wrong length: the rules report the shape (R6)
        return np.asarray(rows, dtype=np.float64)

    times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in points])
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    return TrajectoryMessage(
        list(msg.joint_names), stamp, times, field("positions"), field("velocities"), field("accelerations")
    )


def main(args: list[str] | None = None) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # rclpy is imported when the node runs, after the signal handlers are installed
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=sys.argv if args is None else args)
    try:
        node = SimNode()
    except Exception as exc:  # noqa: BLE001
        print(f"moscale_sim_node: start-up failed: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    node.start()
    try:
        while rclpy.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    print(node.summary(), flush=True)
    return 0


def _make_node_class():
    # ROS message types are imported when the node class is built: `moscale --help` must not load rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from nav_msgs.msg import Odometry
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from moscale_common.config import from_dict
    from moscale_ros.node.convert import time_msg
    from moscale_ros.sim.loop import ControlLoop
    from moscale_ros.sim.model import build_model
    from retarget.robot import load_robot

    class _SimNode(Node):
        """The node: parameters, interfaces, and the physics thread (module docstring)."""

        def __init__(self) -> None:
            super().__init__("moscale_sim_node")
            defaults = SimNodeSettings()
            values = {}
            for name, default in vars(defaults).items():
                values[name] = self.declare_parameter(name, default).value
            self.settings = s = from_dict(SimNodeSettings, values, where="parameter")
            robot = load_robot(s.robot)
            self.sim_model = build_model(robot, fixed_base=s.fixed_base)
            self.loop = ControlLoop(
                self.sim_model, robot.q_initial[7:], robot.q_initial[:7], s.allow_nonzero_velocity_at_trajectory_end
            )
            self.joint_names = list(robot.joint_names)
            self.lock = threading.Lock()
            self.running = threading.Event()
            self.thread = threading.Thread(target=self._physics, name="physics", daemon=True)
            self.measured_rtf = 0.0
            self.clock_pub = self.create_publisher(Clock, "/clock", 10)
            self.joint_state_pub = self.create_publisher(JointState, "/joint_states", 10)
            self.odom_pub = self.create_publisher(Odometry, "/odom", 10)
            self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self.create_subscription(JointTrajectory, s.controller_topic, self._on_trajectory, qos)
            self._msgs = (Clock, JointState, Odometry, DiagnosticArray, DiagnosticStatus, KeyValue)
            self.get_logger().info(
                f"simulating {robot.name} ({'fixed' if s.fixed_base else 'floating'} base, "
                f"{len(self.joint_names)} joints) at {s.real_time_factor:g}x real time; "
                f"trajectories on {s.controller_topic}"
            )

        # ------------------------------------------------------------------------ callbacks
        def _on_trajectory(self, msg) -> None:
            message = trajectory_message_from_ros(msg)
            with self.lock:
                now = self.loop.time
                reason = self.loop.receive(message, now)
            if reason is None:
                self.get_logger().info(
                    f"trajectory accepted at t={now:.3f} s: {len(msg.points)} points, stamp {message.stamp:.3f} s"
                )
            else:
                self.get_logger().warning(f"trajectory rejected at t={now:.3f} s, not executed: {reason}")

        # ------------------------------------------------------------------------ physics
        def start(self) -> None:
            self.wall_start, self.wall_s = time.perf_counter(), 0.0
            self.running.set()
            self.thread.start()

        def shutdown(self) -> None:
            self.running.clear()
            if self.thread.is_alive():
                self.thread.join(timeout=2.0)
            self.wall_s = time.perf_counter() - self.wall_start

        def summary(self) -> str:
            """One line, printed at exit: simulated and wall seconds, their ratio (the real-time factor)."""
            rtf = self.loop.time / max(self.wall_s, 1e-9)
            return (
                f"moscale_sim_node: simulated {self.loop.time:.2f} s in {self.wall_s:.2f} s of wall time: "
                f"real-time factor {rtf:.3f} (target {self.settings.real_time_factor:g}, 0: unpaced)"
            )

        def _physics(self) -> None:
            s = self.settings
            publish_every = max(1, int(round(1.0 / (s.publish_rate * self.loop.simulator.cycle_s))))
            diagnose_every = max(1, int(round(1.0 / self.loop.simulator.cycle_s)))
            wall0, sim0, cycle = time.perf_counter(), self.loop.time, 0
            rtf_wall, rtf_sim = wall0, sim0
            while self.running.is_set():
                with self.lock:
                    self.loop.cycle()
                cycle += 1
                try:
                    if cycle % publish_every == 0:
                        self._publish_state()
                    if cycle % diagnose_every == 0:
                        wall = time.perf_counter()
                        self.measured_rtf = (self.loop.time - rtf_sim) / max(wall - rtf_wall, 1e-9)
                        rtf_wall, rtf_sim = wall, self.loop.time
                        self._publish_diagnostics()
                except Exception:  # noqa: BLE001
                    if self.context.ok():
                        raise
                    return  # ROS shut down (SIGINT) before this thread was stopped
                if s.real_time_factor > 0:
                    ahead = (self.loop.time - sim0) / s.real_time_factor - (time.perf_counter() - wall0)
                    if ahead > 0.002:
                        time.sleep(ahead)

        def _publish_state(self) -> None:
            Clock, JointState, Odometry = self._msgs[:3]
            with self.lock:
                t = self.loop.time
                sim = self.loop.simulator
                q_J, v_J, tau_J = sim.joint_positions(), sim.joint_velocities(), sim.joint_efforts()
                pose_7, twist_6 = sim.base_pose(), sim.base_twist()
            stamp = time_msg(t)
            self.clock_pub.publish(Clock(clock=stamp))
            js = JointState()
            js.header.stamp = stamp
            js.name = self.joint_names
            js.position, js.velocity, js.effort = (array.array("d", x.tobytes()) for x in (q_J, v_J, tau_J))
            self.joint_state_pub.publish(js)
            odom = Odometry()
            odom.header.stamp, odom.header.frame_id = stamp, "odom"
            odom.child_frame_id = self.sim_model.model.body(self.sim_model.root_body).name or "base"
            p, o = odom.pose.pose.position, odom.pose.pose.orientation
            p.x, p.y, p.z = (float(x) for x in pose_7[:3])
            o.x, o.y, o.z, o.w = (float(x) for x in pose_7[3:])
            lin, ang = odom.twist.twist.linear, odom.twist.twist.angular
            lin.x, lin.y, lin.z = (float(x) for x in twist_6[:3])
            ang.x, ang.y, ang.z = (float(x) for x in twist_6[3:])
            self.odom_pub.publish(odom)

        def _publish_diagnostics(self) -> None:
            DiagnosticArray, DiagnosticStatus, KeyValue = self._msgs[3:]
            with self.lock:
                monitor, t = self.loop.monitor, self.loop.time
                rms = float(np.sqrt(np.mean(monitor.tracking_rms_J() ** 2)))
                height = float(self.loop.simulator.data.xpos[self.sim_model.root_body][2])
                fell, accepted, rejected = monitor.fell_at, self.loop.accepted, len(self.loop.rejections)
                collisions = monitor.self_collisions
            status = DiagnosticStatus(name=DIAGNOSTIC_NAME, hardware_id=self.settings.robot)
            if fell is not None:
                status.level, status.message = DiagnosticStatus.ERROR, f"fallen at t={fell:.2f} s"
            elif self.settings.real_time_factor > 0 and self.measured_rtf < 0.9 * self.settings.real_time_factor:
                status.level, status.message = (
                    DiagnosticStatus.WARN,
                    f"slower than real time ({self.measured_rtf:.2f}x)",
                )
            else:
                status.level = DiagnosticStatus.OK
                status.message = "fixed base" if self.settings.fixed_base else "upright"
            values = {
                "sim_time_s": f"{t:.3f}", "upright": str(fell is None).lower(),
                "tracking_rms_deg": f"{math.degrees(rms):.3f}", "pelvis_height_m": f"{height:.3f}",
                "real_time_factor": f"{self.measured_rtf:.3f}", "trajectories_accepted": str(accepted),
                "trajectories_rejected": str(rejected), "self_collisions": str(collisions),
            }  # fmt: skip
            status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
            array_msg = DiagnosticArray()
            array_msg.header.stamp = time_msg(t)
            array_msg.status = [status]
            self.diagnostics_pub.publish(array_msg)

    return _SimNode


def SimNode():  # noqa: N802  (a factory: rclpy is imported only when the node is made)
    return _make_node_class()()


if __name__ == "__main__":
    sys.exit(main())
