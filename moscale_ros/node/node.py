"""The ``moscale_node``: text commands in, coarse-to-fine motion plans and joint trajectories out.

Interfaces (names relative to the node; remap as usual):

* ``~/command`` (std_msgs/String) and the action ``~/generate`` (moscale_ros/GenerateMotion);
* ``~/plan`` (moscale_ros/MotionPlan; reliable, transient local, depth 1: a late subscriber gets the
  latest plan): every scale of every command, coarse first, final last;
* ``controller_topic``, or each topic of ``controllers`` with exactly its joints
  (trajectory_msgs/JointTrajectory; reliable, volatile by default): every scale or the final one only
  (``controller_plans``). A ROS 2 joint_trajectory_controller replaces its trajectory on receipt, so
  each one is stamped with its own switch time, starts from the state being commanded then and
  ends at rest (:mod:`moscale_ros.pipeline`);
* ``cmd_vel_topic`` (geometry_msgs/Twist, with ``locomotion: cmd_vel``): a travelling motion's base
  velocities for the robot's walking controller, at ``control_rate`` on the plans' timeline, ending
  with an explicit zero (also on ``~/stop``, a cancel, or a standing motion taking over); the
  trajectories of that motion carry the upper body only (:mod:`moscale_ros.control.base_velocity`);
* ``joint_state_topic_in`` (sensor_msgs/JointState, optional): the measured joint positions; a command
  with nothing running starts from them;
* ``robot_description_topic`` (std_msgs/String, transient local, optional; e.g. ``/robot_description``):
  the URDF, read when the model and robot are loaded;
* ``~/rejections`` (diagnostic_msgs/DiagnosticStatus): every refused command or rejected goal, with
  its reason in ``message``;
* ``~/stop`` (std_srvs/Trigger), and cancelling a goal: generation stops and the controller gets a
  short trajectory that brings what it commands to rest within the limits;
* ``joint_state_topic`` (sensor_msgs/JointState) and ``~/skeleton`` (visualization_msgs/MarkerArray):
  playback of what the controller was last sent, at ``playback_rate``;
* ``/diagnostics`` (diagnostic_msgs/DiagnosticArray): readiness, command counters, queue lengths and
  resident memory, every ``diagnostics_period`` seconds.

Callbacks only translate messages and delegate: requests go to :class:`MotionPipeline` through
the :class:`GenerationWorker` thread, so the executor never waits on the model. Every command
first passes the readiness check, the rate limit (``max_command_rate``, ``command_burst``), then
request validation; a goal that fails any of them (any :class:`MoScaleError`) is rejected in the goal
callback. A managed variant (:mod:`moscale_ros.node.lifecycle`) loads in ``configure`` and sends only
while active.
A start-up failure (bad parameter, missing or corrupt checkpoint, invalid robot, absent CUDA) is
logged and, with ``on_startup_error: exit`` (default), ends the process with exit code
:data:`STARTUP_FAILURE_EXIT` (see main.py); with ``stay_up`` the node stays up and refuses every
command with that error.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from moscale_common.collector import PauseWatch, freeze_long_lived, thaw
from moscale_common.errors import ConfigError, MoScaleError
from moscale_ros.action import GenerateMotion
from moscale_ros.control.base_velocity import BaseVelocityPlan, BaseVelocitySchedule
from moscale_ros.generation.request import echo_text
from moscale_ros.msg import MotionPlan
from moscale_ros.node import convert
from moscale_ros.node.controllers import ControllerAssignment, assign_joints
from moscale_ros.node.health import CommandStats, NotReadyError, resident_memory_mb
from moscale_ros.node.measured import MeasuredJointState
from moscale_ros.node.parameters import NodeSettings, parameter_defaults, split_parameters
from moscale_ros.node.rate_limit import CommandRateLimiter
from moscale_ros.node.ros_parameters import declare_all, python_value, requested_values
from moscale_ros.node.startup import STARTUP_FAILURE_EXIT, check_model_limits, failure_reason
from moscale_ros.node.worker import GenerationWorker, Job
from moscale_ros.pipeline import MotionPipeline, PipelineConfig, PlanStep, build_pipeline

NODE_NAME = "moscale_node"
RESULT_KEEP_S = 10  # s a finished goal's result stays retrievable (bounds the retained goal handles)
# ~/plan: reliable and transient local, so a late subscriber (RViz, a logger) gets the latest plans. Depth 8
# (one command's scales), not 1: a KEEP_LAST 1 writer replaces a plan that a slow subscriber has not yet
# acknowledged, and a test client on a loaded machine lost a plan that way.
PLAN_QOS = QoSProfile(depth=8, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
# LATCHED_QOS: robot_description, as robot_state_publisher publishes it
NOT_CONFIGURED = "not configured (lifecycle state unconfigured): configure it to load the model and robot"
PipelineFactory = Callable[[PipelineConfig, Callable[[], float]], MotionPipeline]


class MoScaleNode(Node):
    """ROS adapter around :class:`MotionPipeline` (see the module docstring)."""

    managed = False  # the lifecycle variant loads in configure and sends only while active

    def __init__(self, pipeline_factory: PipelineFactory = build_pipeline, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        defaults = parameter_defaults()
        values = requested_values(self, defaults)
        unknown = sorted(set(getattr(self, "_parameter_overrides", {})) - set(defaults) - {"use_sim_time"})
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameter(s) {unknown}; known: {sorted(defaults)}")
        self.startup_error = ""
        self.pipeline: MotionPipeline | None = None
        self.worker: GenerationWorker | None = None
        self.stats = CommandStats()
        self.gc_pauses = PauseWatch().install()  # garbage-collector pauses, in /diagnostics
        self._closing = False  # set at shutdown: late failures of goal handles are expected then
        self._controller_lock = threading.Lock()  # one sender at a time: plans (worker) and stops (services)
        self._controller_request = ""  # request id of the motion the controller was last sent
        self._last_switch = (0.0, 0.0)  # (rad, ratio) of the last trajectory sent, for /diagnostics
        self._max_switch_ratio = 0.0
        self._pipeline_factory = pipeline_factory
        self.worker: GenerationWorker | None = None
        self.output_enabled = not self.managed  # a managed node sends nothing until activated
        self.controllers: ControllerAssignment | None = None
        self.base_velocity = BaseVelocitySchedule()  # locomotion: cmd_vel, published by a timer
        self.cmd_vel_pub: Publisher | None = None
        self._cmd_vel_lock = threading.Lock()  # a command is computed and published as one step (timer, stop)
        self._upper_body_only = False  # the motion last sent leaves the legs to the walking controller
        self.measured = MeasuredJointState()
        self.last_refusal = ""
        # Accepted goals are submitted in the order they were accepted (their execute callbacks may
        # start in another order on the multi-threaded executor): a ticket per accepted goal request.
        self._goal_order = threading.Condition()
        self._tickets: dict[int, int] = {}  # id(goal request) -> ticket
        self._tickets_issued = self._tickets_submitted = 0
        self._robot_description: String | None = None
        self._robot_description_event = threading.Event()
        self.parameter_error = ""
        try:
            self.config, self.settings = split_parameters(values)
        except ConfigError as exc:
            self.startup_error = self.parameter_error = f"bad parameter: {exc}"
            stay_up = values.get("on_startup_error") == "stay_up"  # honoured even when another value is bad
            self.config = PipelineConfig()
            self.settings = NodeSettings(on_startup_error="stay_up" if stay_up else "exit")
        declare_all(self, defaults)
        self._values = self._declared_values(defaults)  # what a live change is checked against
        self.add_on_set_parameters_callback(self._on_set_parameters)
        s = self.settings
        self.rate_limiter = CommandRateLimiter(s.max_command_rate, s.command_burst)
        self._start_step("interfaces", self._make_interfaces)
        if self.managed:
            self.parameter_error = self.parameter_error or self.startup_error  # configure fails with it
            self.startup_error = self.parameter_error or NOT_CONFIGURED
            self._make_inputs()
            self.get_logger().info(
                "managed node up (unconfigured): configure loads the model and robot, activate sends"
            )
            return
        if not self.startup_error:
            self._start_step("model and robot", self.bring_up)
        if self.pipeline is None and self.exit_on_startup_error:
            self.get_logger().fatal(
                f"start-up failed: {self.startup_error} (exiting with code {STARTUP_FAILURE_EXIT}; "
                "on_startup_error:=stay_up keeps the node up instead)"
            )
            return
        self._make_inputs()
        if self.pipeline is None:
            self.get_logger().error(f"start-up failed: {self.startup_error}")
            self.get_logger().error(f"not ready, every command will be refused: {self.startup_error}")
        else:
            self.get_logger().info(
                f"ready: ~/command, ~/generate -> ~/plan and {', '.join(self.trajectory_pubs)} "
                f"({self.config.controller_plans}, {self.settings.concurrency})"
            )

    def _declared_values(self, defaults: dict[str, Any]) -> dict[str, Any]:
        return {name: python_value(self.get_parameter(name).value) for name in defaults}

    def _start_step(self, what: str, step: Callable[[], None]) -> None:
        """Run one start-up step; any failure becomes :attr:`startup_error` (one line; the
        traceback only at DEBUG), so ``on_startup_error`` covers every start-up failure."""
        try:
            step()
        except Exception as exc:
            self.get_logger().debug(f"start-up step '{what}' failed:\n{traceback.format_exc()}")
            self.startup_error = self.startup_error or failure_reason(exc)
            self.pipeline = None

    # ------------------------------------------------------------------------------------- set-up

    @property
    def exit_on_startup_error(self) -> bool:
        return self.settings.on_startup_error == "exit"

    @property
    def ready(self) -> bool:
        return self.pipeline is not None and self.worker is not None

    @property
    def executor_threads(self) -> int:
        """Waiting action goals hold a thread each: enough for a full queue plus the other callbacks."""
        return self.settings.max_queue + 4

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _make_interfaces(self) -> None:
        """Publishers: ``~/plan`` latched (reliable, transient local, depth 1), the controller topics
        with the ``qos_*`` parameters (default reliable, volatile, depth 10), and the rest."""
        s = self.settings
        reliable, latched = s.qos_reliability == "reliable", s.qos_durability == "transient_local"
        qos = QoSProfile(
            depth=s.qos_depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
        self.plan_pub = self.create_publisher(MotionPlan, "~/plan", PLAN_QOS)
        self.marker_pub = self.create_publisher(MarkerArray, "~/skeleton", 10)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.rejection_pub = self.create_publisher(DiagnosticStatus, "~/rejections", 10)
        self.trajectory_pubs: dict[str, Publisher] = {}  # stay empty if a topic name is invalid
        self.joint_state_pub = None
        topics = list(s.controller_joints) or [s.controller_topic]
        for name, topic in [*(("controller_topic" if t == s.controller_topic else "controllers", t) for t in topics),
                            ("joint_state_topic", s.joint_state_topic)]:  # fmt: skip
            try:
                self.resolve_topic_name(topic)
            except Exception as exc:  # rclpy's InvalidTopicNameException and kin
                why = failure_reason(exc).split(", at /")[0]  # (no C source location)
                raise ConfigError(f"{name}: {topic!r} is not a valid topic name ({why})") from None
        self.trajectory_pubs = {t: self.create_publisher(JointTrajectory, t, qos) for t in topics}
        self.joint_state_pub = self.create_publisher(JointState, s.joint_state_topic, 10)
        if self.config.locomotion == "cmd_vel":
            try:
                self.resolve_topic_name(s.cmd_vel_topic)
            except Exception as exc:  # rclpy's InvalidTopicNameException and kin
                why = failure_reason(exc).split(", at /")[0]
                raise ConfigError(f"cmd_vel_topic: {s.cmd_vel_topic!r} is not a valid topic name ({why})") from None
            self.cmd_vel_pub = self.create_publisher(Twist, s.cmd_vel_topic, 10)
        if s.robot_description_topic:  # kept: a later message is used at the next configure
            self.create_subscription(
                String, s.robot_description_topic, self._on_robot_description, LATCHED_QOS,
                callback_group=MutuallyExclusiveCallbackGroup(),
            )  # fmt: skip

    # ------------------------------------------------------------------------ bring-up and lifecycle

    def bring_up(self) -> bool:
        """Load the robot (its URDF from ``robot_description_topic`` if set) and the model, assign the
        joints to the controllers and start the generation worker. False, with ``startup_error`` set,
        when any of it fails."""
        if self.parameter_error:
            self.startup_error = self.parameter_error
            return False
        self.startup_error = ""
        try:
            self._take_robot_description()
        except MoScaleError as exc:
            self.startup_error = str(exc)
            return False
        self._load_pipeline(self._pipeline_factory)
        if self.pipeline is None:
            return False
        s = self.settings
        try:
            self.controllers = assign_joints(s.controller_joints, s.controller_topic, self.pipeline.robot.joint_names)
        except MoScaleError as exc:
            self.startup_error, self.pipeline = str(exc), None
            return False
        for topic, names in self.controllers.joint_names.items():
            self.get_logger().info(f"controller {topic}: {len(names)} joints")
        if self.config.locomotion == "cmd_vel":
            upper = self.controllers.upper_body(self.pipeline.robot.upper_body_columns)
            self.get_logger().info(
                f"locomotion cmd_vel: a travelling motion goes to {s.cmd_vel_topic} (Twist) and its upper body "
                f"to {', '.join(t for t, c in upper.items() if c) or 'no controller (each one owns a leg joint)'}"
            )
        if self.controllers.unlisted:
            unlisted = self.controllers.unlisted
            self.get_logger().warning(f"{len(unlisted)} joint(s) no controller lists, never sent: {unlisted}")
        self.pipeline.measured_pose = self._measured_pose if s.joint_state_topic_in else None
        self.worker = GenerationWorker(
            self.pipeline, self._publish_step, self._log, s.concurrency, s.max_queue, s.min_run_time
        )
        return True

    def tear_down(self) -> None:
        """Stop the worker and release the model and robot (lifecycle cleanup and shutdown)."""
        self.output_enabled = False
        if self.worker is not None:
            self.worker.stop()
        self.worker, self.pipeline, self.controllers = None, None, None
        thaw()  # the dropped pipeline's objects become collectable again (moscale_common/collector.py)
        self.startup_error = self.parameter_error or NOT_CONFIGURED

    def _on_robot_description(self, msg: String) -> None:
        if self._robot_description is not None and msg.data != self._robot_description.data:
            self.get_logger().info(
                f"a new robot_description on {self.settings.robot_description_topic}: used from the next "
                "configure (managed node) or restart"
            )
        self._robot_description = msg
        self._robot_description_event.set()

    def _take_robot_description(self) -> None:
        """With ``robot_description_topic`` set and no ``robot_description`` parameter, wait up to
        ``robot_description_timeout`` for the URDF on that topic and use it (ConfigError if none comes)."""
        topic, timeout = self.settings.robot_description_topic, self.settings.robot_description_timeout
        if not topic:
            return
        if self.config.robot_description:
            self.get_logger().info(f"robot_description parameter set: {topic} is not read")
            return
        deadline = time.monotonic() + timeout
        if self.managed:  # in configure: another thread of the node's executor takes the message
            self._robot_description_event.wait(timeout)
        else:  # still in the constructor: nothing spins the node yet
            executor = SingleThreadedExecutor(context=self.context)
            executor.add_node(self)
            try:
                while not self._robot_description_event.is_set() and time.monotonic() < deadline:
                    executor.spin_once(timeout_sec=0.05)
            finally:
                executor.remove_node(self)
                executor.shutdown(timeout_sec=0)
        msg = self._robot_description
        if msg is None or not msg.data.strip():
            raise ConfigError(
                f"no robot_description on {topic} within robot_description_timeout={timeout:g} s "
                "(robot_state_publisher publishes it there, transient local)"
            )
        self.config = dataclasses.replace(self.config, robot_description=msg.data)
        self.get_logger().info(
            f"robot_description from {topic}: robot {_urdf_robot_name(msg.data)!r}, {len(msg.data)} characters"
        )

    def _load_pipeline(self, factory: PipelineFactory) -> None:
        tick = time.perf_counter()
        self.get_logger().info("loading the model and the robot")
        try:
            self.pipeline = factory(self.config, self.now_s)
            self.pipeline.on_not_sent = self._plan_not_sent
            generator = self.pipeline.generator
            check_model_limits(self.config.control_rate, self.config.max_duration, generator.limits.max_seconds)
            self._resize_text_cache()
            loaded = time.perf_counter() - tick
            tick = time.perf_counter()
            if self.settings.warmup:  # model, solver and message conversions: first-call costs
                self.get_logger().info("warming up (warmup:=false skips it)")
                step = self.pipeline.warm_up()
                plan = convert.motion_plan_msg(step)
                GenerateMotion.Feedback(plan=plan)
                convert.skeleton_markers(step.human_joints_T223[0], self.now_s(), self.settings.marker_frame)
                convert.joint_state_msg(step.trajectory.joint_names, step.trajectory.positions[0], self.now_s())
            warm = time.perf_counter() - tick
            encoder = getattr(self.pipeline.generator, "text_encoder", None)
            if encoder is not None and hasattr(encoder, "cache"):
                encoder.cache.clear()  # /diagnostics counts the texts of commands only
            frozen = freeze_long_lived()  # short GC pauses from now on (moscale_common/collector.py)
            self.gc_pauses.reset()  # /diagnostics: the longest pass since start-up
            device = getattr(self.pipeline.generator, "device", "?")
            how = " (device auto: no CUDA here)" if self.config.device == "auto" and str(device) == "cpu" else ""
            self.get_logger().info(
                f"model and robot loaded in {loaded:.2f} s on {device}{how}, warm-up {warm:.2f} s; "
                f"{frozen} start-up objects frozen out of the garbage collector's passes; "
                f"Fast DDS profile: {os.environ.get('FASTDDS_DEFAULT_PROFILES_FILE') or 'none'}"
            )
        except MoScaleError as exc:
            self.startup_error = str(exc)
            self.pipeline = None

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Live parameter changes (``ros2 param set``, ``set_parameters``): the new set is checked by
        the config schema as a whole (one line naming the value and its range on failure, and the
        change refused), then applied: sampling settings to the next command, the others (durations,
        timeline, rate limit, min_run_time, text cache) from the next use on. Read-only parameters
        never get here (rclpy refuses them by their descriptor). ``use_sim_time`` is refused: the
        node's clock stamps every trajectory, and switching it while running (with no ``/clock``)
        would stamp them in 1970; start the node with ``-p use_sim_time:=true`` instead."""
        changes = {p.name: python_value(p.value) for p in parameters}
        if "use_sim_time" in changes:
            return SetParametersResult(
                successful=False,
                reason="use_sim_time cannot change while the node runs (trajectory stamps would jump); "
                "restart it with -p use_sim_time:=true",
            )
        values = {**self._values, **{k: v for k, v in changes.items() if k in self._values}}
        try:
            config, settings = split_parameters(values)
            if self.pipeline is not None:
                model_max = self.pipeline.generator.limits.max_seconds
                check_model_limits(config.control_rate, config.max_duration, model_max)
                generator = self._sampled_generator(config)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc)[:300])
        self._values = values
        self.config, self.settings = config, settings
        if self.pipeline is not None:
            self.pipeline.config = config
            self.pipeline.generator = generator
            self._resize_text_cache()
        if self.worker is not None:
            self.worker.min_run_time = settings.min_run_time
        if {"max_command_rate", "command_burst"} & set(changes):
            self.rate_limiter = CommandRateLimiter(settings.max_command_rate, settings.command_burst)
        self.get_logger().info(f"parameters changed: {', '.join(f'{k}={v!r}' for k, v in changes.items())[:300]}")
        return SetParametersResult(successful=True)

    def _sampled_generator(self, config: PipelineConfig) -> Any:
        """The generator with ``config.sampling`` over the checkpoint's own settings (ConfigError if
        they do not fit the model); the same generator when the checkpoint's settings are unknown."""
        generator = self.pipeline.generator
        base = getattr(generator, "checkpoint_config", None)
        if base is None or not hasattr(generator, "with_config"):
            return generator
        sampled = config.sampling.apply(base)
        changes = {f.name: getattr(sampled, f.name) for f in dataclasses.fields(sampled)}
        changes["num_threads"] = generator.config.num_threads
        return generator.with_config(**changes)

    def _resize_text_cache(self) -> None:
        """The text-feature cache's budget from ``text_cache_mb``."""
        encoder = getattr(self.pipeline.generator, "text_encoder", None) if self.pipeline is not None else None
        if encoder is not None and hasattr(encoder, "cache"):
            encoder.cache.resize(int(self.settings.text_cache_mb * 2**20))

    def _make_inputs(self) -> None:
        inputs = MutuallyExclusiveCallbackGroup()
        self.create_subscription(String, "~/command", self._on_command, 10, callback_group=inputs)
        if self.settings.joint_state_topic_in:  # best effort: matches reliable and best-effort publishers
            self.create_subscription(
                JointState, self.settings.joint_state_topic_in, self._on_measured, qos_profile_sensor_data,
                callback_group=MutuallyExclusiveCallbackGroup(),
            )  # fmt: skip
        self.action_server = ActionServer(
            self,
            GenerateMotion,
            "~/generate",
            execute_callback=self._execute_goal,
            goal_callback=self._on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
            result_timeout=RESULT_KEEP_S,
        )
        self.create_service(Trigger, "~/stop", self._on_stop, callback_group=MutuallyExclusiveCallbackGroup())
        if self.settings.playback_rate > 0:
            self.create_timer(1.0 / self.settings.playback_rate, self._play_back, callback_group=inputs)
        if self.cmd_vel_pub is not None:  # on the plans' timeline, at the control rate
            group = MutuallyExclusiveCallbackGroup()
            self.create_timer(1.0 / self.config.control_rate, self._publish_base_velocity, callback_group=group)
        if self.settings.diagnostics_period > 0:
            period, group = self.settings.diagnostics_period, MutuallyExclusiveCallbackGroup()
            self.create_timer(period, self._publish_diagnostics, callback_group=group)

    def shutdown(self, goals_timeout: float = 1.0) -> None:
        """Stop generating and let every running goal end with its status and message (up to
        ``goals_timeout`` s) while the action server still exists, so nothing fails at teardown."""
        self._closing = True
        for timer in list(self.timers):  # no playback or diagnostics tick may run into the teardown
            timer.cancel()
        if self.cmd_vel_pub is not None and not self.base_velocity.empty:  # the walking controller stops
            self.base_velocity.stop(self.now_s())
            self.cmd_vel_pub.publish(convert.twist_msg(np.zeros(3)))
        if self.worker is not None:
            self.worker.stop()
        self.gc_pauses.remove()
        deadline = time.monotonic() + goals_timeout
        while self.stats.snapshot().get("goals_active", 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    def destroy_node(self) -> None:
        """Destroy the action server, then the node. rclpy's ``Node.destroy_node`` leaves waitables
        alone, and the server's handle keeps the node's, and with it the DDS participant, alive to the
        end of the process: Fast DDS then leaves the participant's shared-memory segment (17 MB with
        the node's profile, node/transport.py) in /dev/shm at every exit."""
        server = getattr(self, "action_server", None)
        if server is not None:
            server.destroy()
        super().destroy_node()

    def _feed_back(self, goal_handle: ServerGoalHandle, plan: MotionPlan) -> None:
        """A plan as goal feedback; at shutdown the handle may already be gone (not an error)."""
        try:
            goal_handle.publish_feedback(GenerateMotion.Feedback(plan=plan))
        except Exception:
            if not self._closing:
                raise

    # ---------------------------------------------------------------------------------- callbacks

    def _log(self, level: str, text: str) -> None:
        """Log ``text`` at ``level``. rclpy pins a severity to each call site (a later call at another
        level from the same line raises), so every level has its own line here."""
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level in ("warning", "warn"):
            logger.warning(text)
        elif level == "debug":
            logger.debug(text)
        else:
            logger.info(text)

    def _on_command(self, msg: String) -> None:
        """A topic command: rate limit, validate, hand to the worker; a refusal is logged, nothing published."""
        self.stats.count("commands_topic")
        try:
            self._submit(self._make_job(msg.data, 0.0, self.settings.topic_seed, "", "topic"))
        except MoScaleError as exc:
            self._log_refusal(exc, f"command {echo_text(msg.data)} refused", "topic", msg.data)

    def _on_measured(self, msg: JointState) -> None:
        self.measured.update(list(msg.name), list(msg.position), self.now_s())

    def _measured_pose(self) -> np.ndarray | None:
        """Worker thread, a command with nothing running: the measured pose in the robot's joint order,
        or None (with a warning naming what is missing: the motion then starts from an IK pose)."""
        topic = self.settings.joint_state_topic_in
        positions_J, missing = self.measured.pose(self.pipeline.robot.joint_names)
        if positions_J is None:
            what = "no JointState received yet" if not self.measured.stamp else f"no position for {missing}"
            self.get_logger().warning(f"measured state on {topic}: {what}; starting from the IK pose instead")
            return None
        age = self.now_s() - self.measured.stamp
        self.get_logger().info(f"starting from the measured pose on {topic} (received {age:.2f} s ago)")
        return positions_J

    def _on_goal(self, goal: GenerateMotion.Goal) -> GoalResponse:
        """Reject a goal the node will not run: not ready or inactive, over the rate limit, or any
        other failed request validation (any MoScaleError); the reason is logged and published on
        ``~/rejections``. An accepted goal has used its rate-limit token."""
        self.stats.count("goals_received")
        try:
            self._make_job(goal.text, goal.duration, goal.seed, "", "action")
        except MoScaleError as exc:
            self.stats.count("goals_rejected")
            self._log_refusal(exc, f"goal ({echo_text(goal.text)}) rejected", "action", goal.text)
            return GoalResponse.REJECT
        with self._goal_order:  # rclpy hands this same goal object to the execute callback
            self._tickets[id(goal)] = self._tickets_issued
            self._tickets_issued += 1
        return GoalResponse.ACCEPT

    def _submit_in_order(self, goal: GenerateMotion.Goal, job: Job | None) -> None:
        """Submit ``job`` once every goal accepted before ``goal`` was submitted (at most 1 s: a goal
        accepted but never executed must not hold the others); ``None`` only gives the turn on."""
        with self._goal_order:
            ticket = self._tickets.pop(id(goal), None)
            if ticket is not None and job is not None:
                self._goal_order.wait_for(lambda: self._tickets_submitted >= ticket, timeout=1.0)
            try:
                if job is not None:
                    self._submit(job)
            finally:
                if ticket is not None:
                    self._tickets_submitted = max(self._tickets_submitted, ticket + 1)
                self._goal_order.notify_all()

    def _log_refusal(self, error: MoScaleError, what: str, source: str, text: str) -> None:
        """Count a refusal, publish it on ``~/rejections`` and log it; rate-limit refusals at most once
        a second (a flood must not flood the log too: /diagnostics counts every one)."""
        kind = self.stats.refused(error)
        self.last_refusal = f"{what}: {error}"
        self.rejection_pub.publish(
            DiagnosticStatus(
                level=DiagnosticStatus.WARN,
                name=f"{self.get_fully_qualified_name()}: {source} command refused",
                message=str(error)[:1000],
                hardware_id=self.config.robot,
                values=[
                    KeyValue(key="source", value=source),
                    KeyValue(key="kind", value=kind),
                    KeyValue(key="text", value=text[:200]),  # raw (data, not a log line): clients match it
                ],
            )  # fmt: skip
        )
        if kind == "rate_limited":
            self.get_logger().warning(
                f"{what}: {error} (more rate-limit refusals within 1 s are counted on /diagnostics, not logged)",
                throttle_duration_sec=1.0,
            )
        else:
            self.get_logger().error(f"{what}: {error}")

    def _make_job(self, text: str, duration: float, seed: int, request_id: str, source: str, admit: bool = True) -> Job:
        """A validated job, or NotReadyError, RateLimitError, InputError (in that order of checks);
        ``admit=False`` skips the rate limit (a goal passed it in the goal callback)."""
        if not self.ready:
            raise NotReadyError(f"the node is not ready: {self.startup_error}")
        if not self.output_enabled:
            raise NotReadyError("the node is inactive (lifecycle): activate it to accept commands")
        if admit:
            self.rate_limiter.admit(f"{source} command")
        request = self.pipeline.request(text, duration, seed, request_id)  # UnknownCommandError: refused
        for warning in request.warnings if admit else ():  # unknown_command: warn (a goal: once, when accepted)
            self.get_logger().warning(f"{source} command {echo_text(text)} accepted (unknown_command: warn): {warning}")
        return Job(request, source)

    def _submit(self, job: Job) -> None:
        self.worker.submit(job)  # QueueFullError under "queue" with max_queue commands waiting
        self.stats.count("accepted")

    def _execute_goal(self, goal_handle: ServerGoalHandle) -> GenerateMotion.Result:
        """Runs on an executor thread: waits for the worker, forwards cancel requests, reports the end.
        Every accepted goal ends SUCCEEDED, CANCELED or ABORTED with a message, whatever happens."""
        self.stats.count("goals_active")
        request_id = bytes(goal_handle.goal_id.uuid).hex()
        try:
            status, result = self._run_goal(goal_handle, request_id)
        except Exception as exc:  # a bug must not leave a goal without a terminal status
            status, result = "aborted", GenerateMotion.Result(success=False, message=f"internal error: {exc!r}")
            if self._closing:  # the action server is going away with the node: expected, not a bug
                self.get_logger().debug(f"goal {request_id[:8]} ended by the shutdown: {exc!r}")
                result.message = "the node is shutting down"
            else:
                self.get_logger().error(f"goal {request_id[:8]} crashed:\n{traceback.format_exc()}")
            try:
                if goal_handle.is_active:
                    goal_handle.abort()
            except Exception:  # noqa: BLE001 - the handle is gone with the shutting-down server
                pass
        finally:
            self.stats.count("goals_active", -1)
        self.stats.count(f"goals_{status}")
        return result

    def _run_goal(self, goal_handle: ServerGoalHandle, request_id: str) -> tuple[str, GenerateMotion.Result]:
        goal = goal_handle.request
        try:
            try:
                job = self._make_job(goal.text, goal.duration, goal.seed, request_id, "action", admit=False)
            except MoScaleError:
                self._submit_in_order(goal, None)
                raise
            job.on_plan = lambda plan: self._feed_back(goal_handle, plan)
            self._submit_in_order(goal, job)
        except MoScaleError as exc:  # e.g. the queue is full, or the node was deactivated meanwhile
            self._log_refusal(exc, f"goal {request_id[:8]} ({echo_text(goal.text)}) refused", "action", goal.text)
            goal_handle.abort()
            return "aborted", GenerateMotion.Result(success=False, message=str(exc))
        stopped = False
        while not job.done.wait(0.01):
            if goal_handle.is_cancel_requested and not stopped:
                stopped = True
                job.cancel("canceled by the client")
                if self._controller_request == request_id:  # its motion is running: bring it to rest
                    self.stop_motion(f"goal {request_id[:8]} canceled")
        if goal_handle.is_cancel_requested and not stopped and self._controller_request == request_id:
            self.stop_motion(f"goal {request_id[:8]} canceled")
        sent = job.trajectories_sent
        sent_note = f"{sent} trajectories sent to the controller" if sent else "no trajectory sent to the controller"
        result = GenerateMotion.Result(success=job.status == "succeeded", message=f"{job.message}; {sent_note}")
        if job.final_plan is not None:
            result.final_plan = job.final_plan
            result.segments = convert.segment_lines(job.final_plan)
        if job.status == "succeeded":
            status, end = "succeeded", goal_handle.succeed
        elif job.status == "canceled" and goal_handle.is_cancel_requested:
            status, end = "canceled", goal_handle.canceled
        else:
            status, end = "aborted", goal_handle.abort
        end()
        self.get_logger().info(f"goal {request_id[:8]} {status}: {job.message[:200]}")
        return status, result

    def _publish_step(self, job: Job, step: PlanStep) -> None:
        """Worker thread: publish one plan (and its trajectory), log its latency, commit it."""
        tick = time.perf_counter()
        with self._controller_lock:  # a stop between the check and the send would be overridden
            if job.should_stop() or not self.output_enabled:
                return
            step = self.pipeline.on_time(step, self.now_s())  # spliced again if its switch time is (nearly) past
            if step.late:
                self.stats.count("plans_spliced_late")
            plan = convert.motion_plan_msg(step)
            self.plan_pub.publish(plan)
            if step.to_controller:
                self._send(step, plan.trajectory)
                job.trajectories_sent += 1
        if job.on_plan is not None:
            job.on_plan(plan)
        if step.is_final:
            job.final_plan = plan
        publish_ms = (time.perf_counter() - tick) * 1e3
        split = getattr(step.retarget_report, "split", "off")  # the final plan's IK in two halves (retarget_split)
        self.get_logger().info(
            f"[{step.request.request_id[:8]}] scale {step.scale_index}/{step.num_scales}: "
            f"{step.latency_s * 1e3:.0f} ms since the command (generate {step.generate_s * 1e3:.0f} ms, "
            f"retarget {step.retarget_s * 1e3:.0f} ms, shaping {step.shaping_s * 1e3:.1f} ms, "
            f"publish {publish_ms:.1f} ms), "
            f"{len(step.trajectory.times)} points from {step.start_time:.3f} (motion t0={step.motion_start:.3f})"
            + (f" -> controller, switch step {step.switch_step_ratio:.2f} x limit" if step.to_controller else "")
            + ("; spliced again at sending (its switch time was nearly past)" if step.late else "")
            + (f"; IK in two halves: {split}" if split != "off" else "")
        )

    def _plan_not_sent(self, why: str) -> None:
        """A plan no blend from the commanded path can reach within the limits: logged and counted."""
        self.stats.count("plans_not_spliced")
        self.get_logger().warning(why[:400])

    def _send(self, step: PlanStep, trajectory: JointTrajectory) -> None:
        """Publish ``trajectory`` (the whole-body message of ``step``) to the controllers, each with
        exactly its joints, and record it (holding ``_controller_lock``). The controller model sees the
        whole body: every controller gets the same stamp and times, and a joint_trajectory_controller
        follows each joint on its own, so the split changes nothing it predicts.

        A travelling motion under ``locomotion: cmd_vel`` (and a stop while one runs) sends only the
        upper-body joints (controllers with none get nothing) and hands its base velocities to the
        schedule from the plan's switch time; any other plan commands zero from then on."""
        if step.request.request_id != "stop":
            self._upper_body_only = step.locomotion == "cmd_vel"
            if step.base_velocity_N3 is not None:
                plan = BaseVelocityPlan(step.start_time, self.config.control_rate, step.base_velocity_N3)
                self.base_velocity.replace(plan, step.start_time)
            elif not self.base_velocity.empty:
                self.base_velocity.stop(step.start_time)
        if self.controllers.whole_body and not self._upper_body_only:
            (publisher,) = self.trajectory_pubs.values()
            publisher.publish(trajectory)
        else:
            columns_by_topic = (
                self.controllers.upper_body(self.pipeline.robot.upper_body_columns)
                if self._upper_body_only
                else self.controllers.columns
            )
            for topic, columns in columns_by_topic.items():
                if columns:
                    self.trajectory_pubs[topic].publish(
                        convert.joint_trajectory_msg(step.trajectory, step.start_time, columns)
                    )
        reason = self.pipeline.commit(step, self.now_s())
        if reason is not None:  # a bug: every plan is shaped for the controller's rules
            self.get_logger().error(f"[{step.request.request_id[:8]}] the controller rejects this trajectory: {reason}")
        self._controller_request = step.request.request_id
        self._last_switch = (step.switch_step, step.switch_step_ratio)
        self._max_switch_ratio = max(self._max_switch_ratio, step.switch_step_ratio)
        self.stats.count("trajectories_sent")

    def stop_motion(self, why: str) -> str:
        """Stop generating and bring the controller to rest smoothly; returns what was done."""
        if not self.ready:
            return f"not ready: {self.startup_error}"
        with self._controller_lock:
            running = self.worker.current
            if running is not None:
                running.cancel(f"stopped ({why})")
            walking = not self.base_velocity.empty
            if walking:  # the walking controller stops now, with an explicit zero
                self.base_velocity.stop(self.now_s())
                self._publish_base_velocity()
            step = self.pipeline.stop()
            if step is None:
                return "the walking controller was sent zero" if walking else "nothing was moving"
            self._send(step, convert.joint_trajectory_msg(step.trajectory, step.start_time))
        self.stats.count("stops")
        message = f"stopping within {step.trajectory.duration:.2f} s from {step.start_time:.3f} ({why})"
        self.get_logger().info(message)
        return message

    def _publish_base_velocity(self) -> None:
        """Timer (control rate): the scheduled base velocity at the current time, while a travelling
        motion is commanded; once it is over, one explicit zero, then nothing."""
        if self.cmd_vel_pub is None or self.base_velocity.empty or not self.output_enabled:
            return
        with self._cmd_vel_lock:  # a stop's zero is never overtaken by a command computed before it
            command_3, _finished = self.base_velocity.command_at(self.now_s())
            self.cmd_vel_pub.publish(convert.twist_msg(command_3))

    def _on_stop(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.message = self.stop_motion("~/stop")
        response.success = self.ready
        return response

    def diagnostics_values(self) -> dict[str, str]:
        """Counters (:mod:`moscale_ros.node.health`), queue lengths and memory, as strings."""
        values = {name: str(count) for name, count in sorted(self.stats.snapshot().items())}
        values["worker_pending"] = str(self.worker.pending_count if self.worker is not None else 0)
        running = self.worker.current if self.worker is not None else None
        values["worker_running"] = running.request.request_id if running is not None else ""
        values["goal_handles_kept"] = str(len(getattr(self.action_server, "_goal_handles", ())))
        values["resident_memory_mb"] = f"{resident_memory_mb():.1f}"
        cache = getattr(getattr(self.pipeline, "generator", None), "text_encoder", None)
        cache = getattr(cache, "cache", None)
        if cache is not None:
            values["text_cache_hit_rate"] = f"{cache.hit_rate:.3f}"
            values["text_cache_misses"] = str(cache.misses)  # texts encoded
            values["text_cache_entries"] = str(len(cache))
            values["text_cache_mb"] = f"{cache.bytes / 2**20:.2f}"
        values["last_switch_step_rad"] = f"{self._last_switch[0]:.4f}"
        values["last_switch_step_ratio"] = f"{self._last_switch[1]:.3f}"
        values["max_switch_step_ratio"] = f"{self._max_switch_ratio:.3f}"
        values["gc_pause_max_ms"] = f"{self.gc_pauses.longest_ms:.1f}"  # since start-up (moscale_common/collector.py)
        values["gc_passes"] = str(self.gc_pauses.passes)
        values["active"] = str(self.output_enabled).lower()
        values["last_refusal"] = self.last_refusal[:500]
        return values

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if self.ready else DiagnosticStatus.ERROR,
            name=f"{self.get_fully_qualified_name()}: commands",
            message="ready" if self.ready else f"not ready: {self.startup_error}"[:500],
            hardware_id=self.config.robot,
            values=[KeyValue(key=k, value=v) for k, v in self.diagnostics_values().items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def _play_back(self) -> None:
        """Joint states and the human skeleton of the committed motion, at the current time."""
        motion = self.pipeline.last_commanded if self.pipeline is not None else None
        if motion is None or not self.output_enabled:
            return
        now = self.now_s()
        self.joint_state_pub.publish(convert.joint_state_msg(motion.trajectory.joint_names, motion.pose_at(now), now))
        frames = motion.human_joints_T223
        frame = min(max(int((now - motion.start_time) * motion.human_fps), 0), len(frames) - 1)
        self.marker_pub.publish(convert.skeleton_markers(frames[frame], now, self.settings.marker_frame))


def _urdf_robot_name(urdf: str) -> str:
    """The ``<robot name=...>`` of a URDF text ("?" if it does not parse)."""
    try:
        return ElementTree.fromstring(urdf).get("name", "?")
    except ElementTree.ParseError:
        return "?"


def spin(node: MoScaleNode, stop: threading.Event | None = None, poll_s: float = 0.1) -> None:
    """Spin ``node`` on a multi-threaded executor until rclpy shuts down or ``stop`` is set (checked
    every ``poll_s`` seconds, so a stop request never waits on an idle executor)."""
    stop = stop or threading.Event()
    if not rclpy.ok() or stop.is_set():  # shut down (SIGINT/SIGTERM) while starting
        node.shutdown()
        return
    executor = MultiThreadedExecutor(num_threads=node.executor_threads)
    executor.add_node(node)
    try:
        while rclpy.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=poll_s)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        # Callbacks the executor already handed to its threads must run while its guard condition
        # still exists: this rclpy's Executor.shutdown destroys it without waiting for them, and a
        # late one then fails ("exception was never retrieved ... destruction was requested").
        time.sleep(2 * poll_s)
        executor.shutdown(timeout_sec=2.0)
