"""A small client of ``moscale_node``: sends commands (topic or action), timestamps every plan and
trajectory on receipt, and saves the final trajectory. Used by the tests, the bench and the demo.

Command line::

    python -m moscale_ros.node.client "wave the right hand" ["bow" ...] [--duration 6] [--via action|topic]
        [--repeat N] [--out final.npz] [--json]

prints, per command, the receipt latency of each plan and of the final controller trajectory
(measured in this process: monotonic time from just before sending to the middleware's reception of
the sample, its ``received_timestamp``; the callback's own delay is not counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.action import ActionClient
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from moscale_common.collector import freeze_long_lived
from moscale_ros.action import GenerateMotion
from moscale_ros.control.jtc_rules import ControllerSettings, Replay, replay
from moscale_ros.generation.request import echo_text
from moscale_ros.msg import MotionPlan
from moscale_ros.node import convert
from moscale_ros.node.parameters import DEFAULT_CONTROLLER_TOPIC
from retarget.robot import load_robot


@dataclass
class Received:
    """A message and when it arrived: ``time.monotonic()`` and the client node's ROS clock (s);
    ``sent``: when the publisher wrote it (its ``source_timestamp``) on that clock, 0 if unknown."""

    msg: Any
    at: float
    clock: float = 0.0
    sent: float = 0.0
    callback_delay: float = 0.0  # s from the middleware's receipt to this process's callback


def _part_of(msg: JointTrajectory, whole: JointTrajectory) -> bool:
    """``msg`` is ``whole``, or its columns for a controller with some of its joints (``controllers``):
    the same stamp and point times, joints of ``whole`` with their positions."""
    if msg == whole:
        return True
    names = list(whole.joint_names)
    if msg.header.stamp != whole.header.stamp or len(msg.points) != len(whole.points):
        return False
    if not msg.points or not set(msg.joint_names) <= set(names):
        return False
    columns = [names.index(n) for n in msg.joint_names]
    part_end, whole_end = msg.points[-1], whole.points[-1]
    return part_end.time_from_start == whole_end.time_from_start and list(part_end.positions) == [
        whole_end.positions[i] for i in columns
    ]


@dataclass
class CommandOutcome:
    """What one command produced, as seen by the client."""

    text: str
    sent_at: float
    plans: list[Received] = field(default_factory=list)  # MotionPlans of this command, in arrival order
    trajectories: list[Received] = field(default_factory=list)  # controller trajectories with its start time
    status: str = ""  # succeeded | aborted | canceled | rejected | timeout (action), or succeeded | timeout (topic)
    message: str = ""
    result: Any = None  # GenerateMotion.Result (action)

    @property
    def final_plan(self) -> MotionPlan | None:
        finals = [r.msg for r in self.plans if r.msg.is_final]
        return finals[-1] if finals else None

    @property
    def final_trajectory_received(self) -> Received | None:
        """The controller trajectory that is the final plan's (identified by content, not order)."""
        final = self.final_plan
        if final is None:
            return None
        return next((r for r in self.trajectories if _part_of(r.msg, final.trajectory)), None)

    @property
    def final_trajectory(self) -> JointTrajectory | None:
        received = self.final_trajectory_received
        return received.msg if received is not None else None

    def complete(self) -> bool:
        """The final plan and the controller's copy of it have both arrived."""
        return self.final_trajectory_received is not None

    def latencies_ms(self) -> dict[str, float]:
        """Receipt latencies from sending: first plan, final plan, final controller trajectory."""
        out: dict[str, float] = {}
        if self.plans:
            out["first_plan_ms"] = (self.plans[0].at - self.sent_at) * 1e3
        finals = [r for r in self.plans if r.msg.is_final]
        if finals:
            out["final_plan_ms"] = (finals[-1].at - self.sent_at) * 1e3
        final_trajectory = self.final_trajectory_received
        if final_trajectory is not None:
            out["final_trajectory_ms"] = (final_trajectory.at - self.sent_at) * 1e3
        return out


class MoScaleClient:
    """Talks to one ``moscale_node`` (``node_name``) from its own node, spun on a background thread."""

    def __init__(
        self,
        node_name: str = "/moscale_node",
        controller_topic: str = DEFAULT_CONTROLLER_TOPIC,
        use_sim_time: bool = False,
    ) -> None:
        # use_sim_time: receipt clocks (Received.clock) on /clock, as a node on a simulator's time sees them
        overrides = [Parameter("use_sim_time", Parameter.Type.BOOL, True)] if use_sim_time else []
        self.node = Node(f"moscale_client_{uuid.uuid4().hex[:8]}", parameter_overrides=overrides)
        self._lock = threading.Condition()  # guards plans/trajectories; notified on every arrival
        self._plan_topic = f"{node_name}/plan"
        self.plans: list[Received] = []
        self.trajectories: list[Received] = []
        self._plan_sub = self.node.create_subscription(MotionPlan, self._plan_topic, self._on_plan, 50)
        self._trajectory_sub = self.node.create_subscription(JointTrajectory, controller_topic, self._on_trajectory, 50)
        self.rejections: list[Received] = []  # DiagnosticStatus of every refused command (~/rejections)
        self.node.create_subscription(DiagnosticStatus, f"{node_name}/rejections", self._on_rejection, 50)
        self.command_pub = self.node.create_publisher(String, f"{node_name}/command", 10)
        self.action = ActionClient(self.node, GenerateMotion, f"{node_name}/generate")
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except ExternalShutdownException:
            pass

    def close(self) -> None:
        """Stop spinning (and wait for the spin thread), then destroy the node."""
        self._executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=2.0)
        self.action.destroy()
        self.node.destroy_node()

    def __enter__(self) -> MoScaleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_rejection(self, msg: DiagnosticStatus) -> None:
        with self._lock:
            self.rejections.append(Received(msg, time.monotonic()))
            self._lock.notify_all()

    def rejection_reason(self, text: str, since: float, timeout: float = 2.0) -> str | None:
        """The reason the node gave on ``~/rejections`` for refusing ``text`` (sent at monotonic
        ``since``), waiting up to ``timeout`` s for it: the rejection and the action's answer travel separately."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for received in reversed(self.rejections):
                    values = {kv.key: kv.value for kv in received.msg.values}
                    # the node shows the text as echo_text does (quoted, escaped); older nodes sent it raw
                    if received.at >= since and values.get("text") in (echo_text(text), text[:200]):
                        return received.msg.message
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)

    def _receipt(self, msg: Any, info: dict | None) -> Received:
        """``msg`` received when the middleware received the sample: its ``received_timestamp`` (system
        clock, set by the DDS layer on arrival), so the time this process then took to deserialize and
        call back (the GIL, a garbage-collector pass, the executor) is not counted (kept apart in
        ``callback_delay``); now, without it. ``sent``: the ROS clock when the publisher wrote it
        (``source_timestamp``; 0 if not given). A timestamp over a minute off is not believed."""
        wall, at, clock = time.time(), time.monotonic(), self.node.get_clock().now().nanoseconds * 1e-9
        received_ns = (info or {}).get("received_timestamp") or 0
        source_ns = (info or {}).get("source_timestamp") or 0
        delay = wall - received_ns * 1e-9 if received_ns else 0.0
        delay = delay if 0.0 <= delay <= 60.0 else 0.0
        sent = clock - (wall - source_ns * 1e-9) if source_ns else 0.0
        return Received(msg, at - delay, clock - delay, sent, delay)

    def _on_plan(self, msg: MotionPlan, info: dict) -> None:
        received = self._receipt(msg, info)
        with self._lock:
            self.plans.append(received)
            self._lock.notify_all()

    def _on_trajectory(self, msg: JointTrajectory, info: dict) -> None:
        received = self._receipt(msg, info)
        with self._lock:
            self.trajectories.append(received)
            self._lock.notify_all()

    def controller_figures(self, robot_name: str, update_rate: float = 50.0) -> dict[str, Any]:
        """:meth:`Replay.figures <moscale_ros.control.jtc_rules.Replay.figures>` of every controller
        trajectory received, the controller starting at the first one's first point, on the speed
        limits of ``robot_name`` (whose joints the trajectories must carry, in order)."""
        with self._lock:
            first = self.trajectories[0].msg if self.trajectories else None
        if first is None:
            return {"controller_trajectories": 0}
        names, _, positions_NJ, _ = convert.trajectory_arrays(first)
        robot = load_robot(robot_name)
        if names != list(robot.joint_names):
            raise ValueError(f"the controller trajectories do not carry robot {robot_name!r}'s joints in order")
        replay = self.controller_replay(positions_NJ[0], update_rate)
        figures = replay.figures(robot.velocity_limits)
        with self._lock:  # the middleware's own delay: written by the node -> received here
            delays = [r.clock - r.sent for r in self.trajectories if r.sent]
        figures["transport_delay_max_s"] = round(max(delays), 4) if delays else None
        if replay.replacements:  # where the largest step came from: the node late, or the transport
            limits_J = robot.velocity_limits / update_rate
            worst = max(replay.replacements, key=lambda r: float(np.max(r.step_J / limits_J)))
            with self._lock:
                index, taken = next((i, r) for i, r in enumerate(self.trajectories) if r.clock == worst.received_at)
            stamp = convert.time_to_seconds(taken.msg.header.stamp)
            figures["worst_replacement"] = {
                "joint": robot.joint_names[int(np.argmax(worst.step_J / limits_J))],
                "sent_after_stamp_s": round(taken.sent - stamp, 4) if taken.sent else None,
                "received_after_stamp_s": round(taken.clock - stamp, 4),
                "taken_after_stamp_s": round(worst.taken_at - stamp, 4),
                "callback_after_receipt_s": round(taken.callback_delay, 4),
                "points": len(taken.msg.points),
                "index": index,
            }
        return figures

    def controller_replay(self, initial_positions_J: np.ndarray, update_rate: float = 50.0) -> Replay:
        """Every controller trajectory received so far, at its ROS receipt time, through the
        joint_trajectory_controller's rules (:mod:`moscale_ros.control.jtc_rules`), for the joints
        of the first one; the controller starts holding ``initial_positions_J``."""
        with self._lock:
            received = [(r.clock, convert.controller_message(r.msg)) for r in self.trajectories]
        settings = ControllerSettings(list(received[0][1].joint_names), update_rate=update_rate)
        return replay(received, settings, initial_positions_J)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """True once the node's action server is available and this client's command publisher and
        plan/controller subscriptions are matched with the node's endpoints (DDS matches, not just the
        graph: a reader that has not matched a writer yet drops its data)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self.action.server_is_ready()
                and self.command_pub.get_subscription_count() > 0
                and self._plan_sub.get_publisher_count() > 0
                and self._trajectory_sub.get_publisher_count() > 0
            ):
                # Let the reverse matches (node -> client) settle too: under heavy load a large first
                # message once lost a fragment, recovered only at the next DDS heartbeat (~3 s later).
                time.sleep(1.0)
                return True
            time.sleep(0.05)
        return False

    def clear(self) -> None:
        with self._lock:
            self.plans.clear()
            self.trajectories.clear()

    def collect(self, outcome: CommandOutcome, request_id: str | None) -> None:
        """Fill ``outcome`` with the plans of its request and the controller trajectories of those plans."""
        with self._lock:
            plans = [r for r in self.plans if r.at >= outcome.sent_at]
            if request_id is not None:
                plans = [r for r in plans if r.msg.request_id == request_id]
            if request_id is None and plans:
                first_id = plans[0].msg.request_id
                plans = [r for r in plans if r.msg.request_id == first_id]
            outcome.plans = plans
            if plans:  # each plan's trajectory carries its own switch time
                stamps = {convert.time_to_seconds(r.msg.trajectory.header.stamp) for r in plans}
                outcome.trajectories = [
                    r
                    for r in self.trajectories
                    if r.at >= outcome.sent_at and convert.time_to_seconds(r.msg.header.stamp) in stamps
                ]

    def wait_complete(self, outcome: CommandOutcome, request_id: str | None, timeout: float) -> bool:
        """Collect until ``outcome`` has its final plan and final controller trajectory (or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = len(self.plans) + len(self.trajectories)
            self.collect(outcome, request_id)
            if outcome.complete() or time.monotonic() >= deadline:
                return outcome.complete()
            with self._lock:  # sleep until something new arrives: no polling that competes for the GIL
                if len(self.plans) + len(self.trajectories) == seen:
                    self._lock.wait(max(0.0, deadline - time.monotonic()))

    def command(self, text: str, timeout: float = 60.0) -> CommandOutcome:
        """Publish ``text`` on ``~/command`` and wait for its final plan and final trajectory."""
        outcome = CommandOutcome(text=text, sent_at=time.monotonic())
        self.command_pub.publish(String(data=text))
        outcome.status = "succeeded" if self.wait_complete(outcome, None, timeout) else "timeout"
        return outcome

    def send_goal(self, text: str, duration: float = 0.0, seed: int = -1) -> GoalHandle:
        """Send a GenerateMotion goal without waiting; see :class:`GoalHandle`."""
        handle = GoalHandle(self, CommandOutcome(text=text, sent_at=time.monotonic()))
        future = self.action.send_goal_async(
            GenerateMotion.Goal(text=text, duration=float(duration), seed=int(seed)), feedback_callback=handle._feedback
        )
        future.add_done_callback(handle._accepted)
        return handle

    def generate(self, text: str, duration: float = 0.0, seed: int = -1, timeout: float = 60.0) -> CommandOutcome:
        """Send a goal and wait for its result; plans and trajectories of the goal are collected."""
        return self.send_goal(text, duration, seed).wait(timeout)


class GoalHandle:
    """A goal in flight: ``feedback`` grows as plans arrive; :meth:`cancel`; :meth:`wait` for the end."""

    def __init__(self, client: MoScaleClient, outcome: CommandOutcome) -> None:
        self.client = client
        self.outcome = outcome
        self.feedback: list[Received] = []
        self.goal_id: str = ""
        self._handle: Any = None
        self._accepted_event = threading.Event()
        self._done = threading.Event()

    def _feedback(self, msg: Any) -> None:
        self.feedback.append(Received(msg.feedback.plan, time.monotonic()))

    def _accepted(self, future: Any) -> None:
        self._handle = future.result()
        self.goal_id = bytes(self._handle.goal_id.uuid).hex()
        self._accepted_event.set()
        if self._handle.accepted:
            self._handle.get_result_async().add_done_callback(self._finished)
        else:
            self.outcome.status, self.outcome.message = "rejected", "goal rejected"
            self._done.set()

    def _finished(self, future: Any) -> None:
        response = future.result()
        names = {4: "succeeded", 5: "canceled", 6: "aborted"}
        self.outcome.status = names.get(response.status, f"status {response.status}")
        self.outcome.result = response.result
        self.outcome.message = response.result.message
        self._done.set()

    def wait_accepted(self, timeout: float = 10.0) -> bool:
        """Wait until the action server has answered the goal request (accepted or rejected)."""
        return self._accepted_event.wait(timeout)

    def wait_for_plans(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until ``count`` feedback plans have arrived (or the goal ended)."""
        deadline = time.monotonic() + timeout
        while len(self.feedback) < count and not self._done.is_set() and time.monotonic() < deadline:
            time.sleep(0.002)
        return len(self.feedback) >= count

    def cancel(self, timeout: float = 10.0) -> None:
        if not self._accepted_event.wait(timeout):
            raise TimeoutError("goal was never accepted")
        self._handle.cancel_goal_async()

    def wait(self, timeout: float = 60.0, settle: float = 0.3) -> CommandOutcome:
        """Wait for the result; then for a succeeded goal until its final plan and trajectory are in
        (topics and the action result travel separately), else ``settle`` s for stray plans."""
        if not self._done.wait(timeout):
            self.outcome.status = "timeout"
            return self.outcome
        if self.outcome.status == "rejected":
            reason = self.client.rejection_reason(self.outcome.text, self.outcome.sent_at)
            self.outcome.message = f"goal rejected: {reason}" if reason else "goal rejected (no reason on ~/rejections)"
            return self.outcome
        if self.outcome.status == "succeeded":
            self.client.wait_complete(self.outcome, self.goal_id, timeout=10.0)
        else:
            time.sleep(settle)
            self.client.collect(self.outcome, self.goal_id)
        return self.outcome


def save_outcome(outcome: CommandOutcome, path: str | Path) -> Path:
    """Save the final plan as ``.npz``: joint names, times, positions, velocities, start time, human joints."""
    plan = outcome.final_plan
    if plan is None:
        raise ValueError(f"command {echo_text(outcome.text)} has no final plan ({outcome.status}: {outcome.message})")
    names, times_N, positions_NJ, velocities_NJ = convert.trajectory_arrays(plan.trajectory)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        text=outcome.text,
        joint_names=np.array(names),
        times=times_N,
        positions=positions_NJ,
        velocities=velocities_NJ,
        start_time=convert.time_to_seconds(plan.trajectory.header.stamp),
        human_joints=convert.human_joints(plan),
        human_fps=plan.human_fps,
    )
    return path


def _summary(outcome: CommandOutcome) -> dict[str, Any]:
    return {
        "text": outcome.text,
        "status": outcome.status,
        "message": outcome.message,
        "scales": [r.msg.scale_index for r in outcome.plans],
        "plan_receipt_ms": [round((r.at - outcome.sent_at) * 1e3, 2) for r in outcome.plans],
        "plan_ready_in_node_ms": [round(r.msg.latency * 1e3, 2) for r in outcome.plans],
        **{k: round(v, 2) for k, v in outcome.latencies_ms().items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moscale_ros.node.client", description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="command(s), e.g. 'wave the right hand'")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0: the node's default)")
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--via", choices=("action", "topic"), default="action")
    parser.add_argument("--repeat", type=int, default=0, help="commands to send, cycling through TEXT (0: each once)")
    parser.add_argument("--node", default="/moscale_node", help="the node's fully qualified name")
    parser.add_argument("--controller-topic", default=DEFAULT_CONTROLLER_TOPIC)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node and for each command")
    parser.add_argument("--out", default=None, help="save the last final trajectory (.npz)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--controller-robot", default=None, metavar="ROBOT",
        help="with --json: add what a joint_trajectory_controller makes of the output, judged on ROBOT's speed limits",
    )  # fmt: skip
    parser.add_argument("--update-rate", type=float, default=50.0, help="Hz of that modelled controller")
    args = parser.parse_args(argv)

    rclpy.init()
    try:
        with MoScaleClient(args.node, args.controller_topic) as client:
            if not client.wait_ready(args.timeout):
                print(f"client: {args.node} did not come up within {args.timeout:g} s", file=sys.stderr)
                return 3
            freeze_long_lived()  # short collector passes while messages arrive (moscale_common/collector.py)
            outcomes = []
            for i in range(args.repeat or len(args.texts)):
                text = args.texts[i % len(args.texts)]
                if args.via == "action":
                    outcome = client.generate(text, args.duration, args.seed, args.timeout)
                else:
                    outcome = client.command(text, args.timeout)
                outcomes.append(outcome)
                if not args.json:
                    print(json.dumps(_summary(outcome)))
            if args.out and outcomes[-1].final_plan is not None:
                print(f"client: saved {save_outcome(outcomes[-1], args.out)}", file=sys.stderr)
            elif args.out:
                print(f"client: nothing saved, the last command ended {outcomes[-1].status}", file=sys.stderr)
            if args.json:
                report: dict[str, Any] = {"commands": [_summary(o) for o in outcomes]}
                if args.controller_robot:
                    report["controller"] = client.controller_figures(args.controller_robot, args.update_rate)
                print(json.dumps(report))
            return 0 if all(o.status == "succeeded" for o in outcomes) else 1
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
