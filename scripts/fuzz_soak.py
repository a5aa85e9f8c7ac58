#!/usr/bin/env python3
"""Fuzz and soak ``moscale_node`` over loopback DDS: many hostile commands, fast, on both inputs.

    .venv/bin/python scripts/fuzz_soak.py --commands 5000            # the full soak (report figures)
    .venv/bin/python scripts/fuzz_soak.py --commands 300 --json      # a quick run

Starts the node as users do (``moscale_node``, the shipped config/moscale.yaml; ``--checkpoint`` or
the shipped model, else the default architecture with random weights) on a random ROS domain with
localhost-only discovery, then sends ``--commands`` commands at ``--rate`` per second, each at random
on ``~/command`` (std_msgs/String) or as a ``~/generate`` goal (random duration, including NaN,
infinite, negative and huge; random seed). Texts, in equal shares (``--seed`` fixes the sequence):

* ``empty``; ``whitespace`` (ASCII and Unicode spaces); ``huge`` (100 kB of words);
* ``unicode`` (random code points from Latin, Greek, Cyrillic, Arabic, Devanagari, CJK, emoji,
  combining marks, private use and unassigned blocks; never surrogates, which no UTF-8 message can
  carry); ``control`` (an ordinary command with C0/C1 control characters, NUL and ANSI escapes);
* ``ordinary`` (a real command; durations mostly valid).

The client keeps at most ``--window`` goal requests waiting for the server's accept (rclpy's service
QoS keeps the last 10 requests, so an unbounded burst would lose requests at the DDS layer, not in the
node). Topic commands are fire-and-forget. The node's resident memory is sampled every 0.1 s
(``/proc/<pid>/statm``) and its ``/diagnostics`` (counters, worker queue, kept goal handles) are
recorded. After the last goal has ended, and once kept results have expired, one more ordinary goal
must succeed; then the node is stopped with SIGINT.

Pass (exit code 0) when: the node never died and exits 0 without a traceback; every goal ended
SUCCEEDED, ABORTED or CANCELED with a non-empty message; the worker queue never held more than
``max_queue`` (1 under ``preempt``); kept goal handles drained to 0; resident memory grew by less
than 100 MB (end minus start and peak minus start); the final check goal succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("empty", "whitespace", "huge", "unicode", "control", "ordinary")
MEMORY_LIMIT_MB = 100.0
ORDINARY = (
    "wave the right hand", "walk forward", "bow politely", "raise both hands", "kick with the left leg",
    "turn to the left", "a person runs forward", "dance happily", "punch forward twice", "walk backwards slowly",
)  # fmt: skip
UNICODE_BLOCKS = (
    (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF),
    (0x900, 0x97F), (0x2000, 0x206F), (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xE000, 0xF8FF),
    (0xFFF0, 0xFFFF), (0x1F300, 0x1FAFF), (0x2FFF0, 0x2FFFF), (0xE0000, 0xE007F), (0x10FF00, 0x10FFFF),
)  # fmt: skip
SPACES = " \t\n\r\x0b\x0c\xa0\u1680\u2000\u2003\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
CONTROLS = [chr(c) for c in range(0x00, 0x20)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)] + ["\x1b[31m"]


# ------------------------------------------------------------------------------------------ inputs


def fuzz_text(kind: str, rng: random.Random) -> str:
    """One command text of ``kind`` (see the module docstring)."""
    if kind == "empty":
        return ""
    if kind == "whitespace":
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 64)))
    if kind == "huge":
        words, size = [], 0
        while size < 100_000:
            words.append(rng.choice(ORDINARY))
            size += len(words[-1]) + 1
        return " ".join(words)[:100_000]
    if kind == "unicode":
        chars = []
        for _ in range(rng.randint(1, 300)):
            low, high = rng.choice(UNICODE_BLOCKS)
            chars.append(chr(rng.randint(low, high)))
        return "".join(chars)
    if kind == "control":
        text = list(rng.choice(ORDINARY))
        for _ in range(rng.randint(1, 6)):
            text.insert(rng.randint(0, len(text)), rng.choice(CONTROLS))
        return "".join(text)
    return rng.choice(ORDINARY)


def fuzz_duration(kind: str, rng: random.Random) -> float:
    """Goal duration: for ordinary texts mostly valid (0 = the default, or 1-9 s), otherwise anything."""
    if kind == "ordinary" and rng.random() < 0.8:
        return rng.choice((0.0, round(rng.uniform(1.0, 9.0), 2)))
    return rng.choice((0.0, -1.0, -1e300, 0.01, 3.0, 60.0, 1e300, float("nan"), float("inf"), float("-inf")))


# --------------------------------------------------------------------------------------- the client


class SoakClient:
    """An rclpy node that sends commands and goals and records results and the node's diagnostics.

    It does not subscribe to the controller topic: the node runs with no controller listening."""

    def __init__(self, node_name: str, window: int, cancel_fraction: float = 0.0, seed: int = 0) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
        from moscale_ros.action import GenerateMotion
        from rclpy.action import ActionClient
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from std_msgs.msg import String

        self.GenerateMotion, self.String = GenerateMotion, String
        self.node = Node(f"moscale_soak_{os.getpid()}")
        self.node_name = node_name
        self.command_pub = self.node.create_publisher(String, f"{node_name}/command", 10)
        self.action = ActionClient(self.node, GenerateMotion, f"{node_name}/generate")
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        # a rejected goal's reason comes on ~/rejections (the action answer carries none)
        self.node.create_subscription(DiagnosticStatus, f"{node_name}/rejections", self._on_rejection, 100)
        self.rejections: list[tuple[str, str]] = []  # (text, reason) not yet matched to a rejected goal
        self.window = threading.BoundedSemaphore(window)
        self.cancel_fraction = cancel_fraction
        self.cancel_rng = random.Random(seed + 1)
        self.lock = threading.Lock()
        self.goals: dict[int, dict] = {}  # index -> {"kind", "status", "message"}
        self.handles: dict[int, tuple] = {}  # index -> (accepted goal handle, when accepted or last asked)
        self.diagnostics: list[dict[str, str]] = []
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(self.node_name + ":"):
                values = {kv.key: kv.value for kv in status.values}
                values["_message"] = status.message
                with self.lock:
                    self.diagnostics.append(values)

    def _on_rejection(self, msg) -> None:
        text = next((kv.value for kv in msg.values if kv.key == "text"), "")
        with self.lock:
            self.rejections.append((text, msg.message))
            self._match_rejections()

    def _match_rejections(self) -> None:
        """Give each rejected goal without a reason the first unmatched reason for its text (holding the lock)."""
        for goal in sorted((g for g in self.goals.values() if g["status"] == "rejected" and not g["message"]),
                           key=lambda g: g.get("sent_at", 0.0)):  # fmt: skip
            for i, (text, reason) in enumerate(self.rejections):
                if text == goal.get("text", "")[:200]:
                    goal["message"] = reason
                    del self.rejections[i]
                    break

    def latest_diagnostics(self) -> dict[str, str]:
        with self.lock:
            return dict(self.diagnostics[-1]) if self.diagnostics else {}

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = self.latest_diagnostics().get("_message") == "ready"
            if ready and self.action.server_is_ready() and self.command_pub.get_subscription_count() > 0:
                time.sleep(1.0)  # let the reverse matches settle
                return True
            time.sleep(0.05)
        return False

    def publish(self, text: str) -> None:
        self.command_pub.publish(self.String(data=text))

    def send_goal(self, index: int, kind: str, text: str, duration: float, seed: int) -> bool:
        """Send a goal once fewer than ``window`` requests wait for acceptance; False if none freed up."""
        if not self.window.acquire(timeout=60.0):
            with self.lock:
                self.goals[index] = {"kind": kind, "status": "no accept response", "message": ""}
            return False
        with self.lock:
            self.goals[index] = {"kind": kind, "status": "", "message": "", "sent_at": time.time(), "text": text}
        goal = self.GenerateMotion.Goal(text=text, duration=duration, seed=seed)
        future = self.action.send_goal_async(goal)
        future.add_done_callback(lambda f: self._accepted(index, f))
        return True

    def _accepted(self, index: int, future) -> None:
        self.window.release()
        try:
            handle = future.result()
        except Exception as exc:  # noqa: BLE001 - recorded as the goal's outcome
            self._record(index, "send failed", repr(exc))
            return
        if not handle.accepted:
            self._record(index, "rejected", "")
            with self.lock:
                self._match_rejections()
            return
        with self.lock:
            self.handles[index] = (handle, time.monotonic())
        handle.get_result_async().add_done_callback(lambda f: self._finished(index, f))
        if index >= 0 and self.cancel_rng.random() < self.cancel_fraction:
            with self.lock:
                self.goals[index]["cancel_requested"] = True
            handle.cancel_goal_async()

    def _finished(self, index: int, future) -> None:
        try:
            response = future.result()
        except Exception as exc:  # noqa: BLE001
            self._record(index, "result failed", repr(exc))
            return
        names = {4: "succeeded", 5: "canceled", 6: "aborted"}
        points = len(response.result.final_plan.trajectory.points)
        self._record(index, names.get(response.status, f"status {response.status}"), response.result.message, points)

    def _record(self, index: int, status: str, message: str, final_points: int = 0) -> None:
        with self.lock:
            self.goals[index].update(status=status, message=message, final_points=final_points)

    def unfinished(self) -> int:
        with self.lock:
            # a rejected goal is finished once its reason has come on ~/rejections
            return sum(
                1 for g in self.goals.values() if not g["status"] or (g["status"] == "rejected" and not g["message"])
            )

    def rerequest_results(self, after_s: float = 3.0) -> int:
        """Ask again for the result of every accepted goal still without one ``after_s`` seconds after
        its acceptance (the node keeps results 10 s). A result response can be lost in transport: seen
        with Fast DDS right after another client of the action was killed, while the node had logged
        the goal's success. Returns how many were asked again."""
        now = time.monotonic()
        with self.lock:
            late = [(i, h) for i, (h, at) in self.handles.items() if not self.goals[i]["status"] and now - at > after_s]
            for index, handle in late:
                self.handles[index] = (handle, now)
        for index, handle in late:
            handle.get_result_async().add_done_callback(lambda f, index=index: self._finished(index, f))
        return len(late)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=2.0)
        self.action.destroy()
        self.node.destroy_node()


class MemorySampler(threading.Thread):
    """Resident memory (MiB) of process ``pid`` every ``period`` seconds, until stopped."""

    def __init__(self, pid: int, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        from moscale_ros.node.health import resident_memory_mb

        self.read = lambda: resident_memory_mb(pid)
        self.period = period
        self.samples: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.samples.append(self.read())
            except (OSError, ValueError):
                return  # the process is gone
            self.stopped.wait(self.period)


# ------------------------------------------------------------------------------------------- the soak


def _checkpoint(args: argparse.Namespace) -> tuple[str, str]:
    from moscale_common.paths import resource
    from moscale_ros.bench.node import _untrained_default_checkpoint
    from moscale_ros.generation.generator import DEFAULT_CHECKPOINT

    if args.checkpoint:
        return args.checkpoint, args.checkpoint
    shipped = resource(DEFAULT_CHECKPOINT)
    if shipped.is_file():
        return str(shipped), str(shipped)
    path = _untrained_default_checkpoint(args.device)
    return str(path), f"default architecture, random weights ({shipped} not found)"


def _max_waiting(concurrency: str) -> int:
    """How many jobs may wait in the worker: 1 under preempt, the parameter file's max_queue under queue."""
    import yaml

    from moscale_common.paths import resource

    params = yaml.safe_load(resource("config/moscale.yaml").read_text())["/**"]["ros__parameters"]
    return 1 if concurrency == "preempt" else int(params["max_queue"])


def _wait_until(condition, timeout: float, alive) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def run_soak(args: argparse.Namespace) -> dict:
    """Start the node, fuzz it, check it, stop it; the figures as a dict (see the module docstring)."""
    from moscale_common.paths import cache_root
    from moscale_ros.node.launcher import NodeProcess
    from moscale_ros.node.node import RESULT_KEEP_S

    rng = random.Random(args.seed)
    checkpoint, model = _checkpoint(args)
    log_path = Path(args.node_log or cache_root() / "soak" / "moscale_node.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    params = {
        "checkpoint": checkpoint,
        "device": args.device,
        "concurrency": args.concurrency,
        "diagnostics_period": 0.5,
    }
    if args.max_command_rate is not None:
        params["max_command_rate"] = args.max_command_rate
    wall_start = time.perf_counter()
    node = NodeProcess(params, log_path=log_path).start()
    client = SoakClient("/moscale_node", args.window, args.cancel_fraction, args.seed)
    sent: Counter[str] = Counter()
    sampler: MemorySampler | None = None
    check, alive_before_stop, final_diag = None, False, {}
    send_s = drain_s = 0.0
    try:
        if not client.wait_ready(args.start_timeout):
            raise SystemExit(f"fuzz_soak: the node did not come up:\n{node.log()[-3000:]}")
        refill_s = 0.0 if args.max_command_rate == 0 else 1.2  # time to refill the node's rate-limit bucket
        time.sleep(refill_s)  # start with a full bucket
        sampler = MemorySampler(node.process.pid)
        sampler.start()
        _wait_until(lambda: len(sampler.samples) > 0, 5.0, node.alive)
        send_start = tick = time.perf_counter()
        for index in range(args.commands):
            kind = rng.choice(KINDS)
            text = fuzz_text(kind, rng)
            channel = rng.choice(("topic", "action"))
            if channel == "topic":
                client.publish(text)
            else:
                client.send_goal(index, kind, text, fuzz_duration(kind, rng), rng.randint(-(2**31), 2**31 - 1))
            sent[f"{channel}/{kind}"] += 1
            if not node.alive():
                break
            tick += 1.0 / args.rate
            delay = tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                tick = time.perf_counter()  # behind schedule (the goal window was full): go on from now
        send_s = time.perf_counter() - send_start
        _wait_until(lambda: client.unfinished() == 0, args.drain_timeout, node.alive)
        drain_s = time.perf_counter() - send_start - send_s
        # Results are kept RESULT_KEEP_S after their goal ends: the kept goal handles must drain to 0.
        seen = len(client.diagnostics)  # only reports published from now on count

        def drained() -> bool:
            return len(client.diagnostics) > seen and client.latest_diagnostics().get("goal_handles_kept") == "0"

        _wait_until(drained, RESULT_KEEP_S + 10.0, node.alive)
        time.sleep(max(0.0, refill_s - RESULT_KEEP_S))  # a full bucket again: one ordinary goal must still succeed
        final_diag = client.latest_diagnostics()
        if node.alive():
            client.send_goal(-1, "check", "wave the right hand", 3.0, 7)
            _wait_until(lambda: client.unfinished() == 0, 120.0, node.alive)
            check = dict(client.goals[-1])
        alive_before_stop = node.alive()
    finally:
        if sampler is not None:
            sampler.stopped.set()
            sampler.join()
        client.close()
        exit_code = node.stop(timeout=30.0)
    log = node.log()
    rss = sampler.samples
    goals = {i: g for i, g in client.goals.items() if i >= 0}
    statuses = Counter(g["status"] or "no result" for g in goals.values())
    terminal = {"succeeded", "aborted", "canceled", "rejected"}
    without_message = sum(1 for g in goals.values() if g["status"] in terminal and not g["message"].strip())
    peak = {key: max((int(d.get(key, 0)) for d in client.diagnostics), default=0)
            for key in ("worker_pending", "goals_active", "goal_handles_kept")}  # fmt: skip
    tracebacks = log.count("Traceback")
    crashed = not alive_before_stop or exit_code != 0 or tracebacks > 0
    report = {
        "model": model,
        "device": args.device,
        "concurrency": args.concurrency,
        "max_command_rate": "parameter file" if args.max_command_rate is None else args.max_command_rate,
        "commands_sent": sum(sent.values()),
        "sent_by_channel_and_kind": dict(sorted(sent.items())),
        "send_seconds": round(send_s, 2),
        "send_rate_per_s": round(sum(sent.values()) / max(send_s, 1e-9), 1),
        "goals_sent": len(goals),
        "goals_cancel_requested": sum(1 for g in goals.values() if g.get("cancel_requested")),
        "goals_by_status": dict(sorted(statuses.items())),
        "goals_ended_without_message": without_message,
        "drain_after_sending_s": round(drain_s, 2),
        "node_counters": {
            k: int(v)
            for k, v in sorted(final_diag.items())
            if k.startswith(("commands", "goals", "refused", "accepted"))
        },  # fmt: skip
        "peak_worker_pending": peak["worker_pending"],
        "peak_goals_active": peak["goals_active"],
        "peak_goal_handles_kept": peak["goal_handles_kept"],
        "final_goal_handles_kept": int(final_diag.get("goal_handles_kept", -1)),
        "node_rss_mb": {"start": round(rss[0], 1), "peak": round(max(rss), 1), "end": round(rss[-1], 1)},
        "node_rss_growth_mb": {"end": round(rss[-1] - rss[0], 1), "peak": round(max(rss) - rss[0], 1)},
        # RSS at each fifth of the run: a plateau is allocator high-water, a steady climb a leak
        "node_rss_mb_by_fifth": [round(rss[min(len(rss) - 1, len(rss) * k // 5)], 1) for k in range(6)],
        "check_goal_after_soak": check,
        "node_exit_code": exit_code,
        "tracebacks_in_node_log": tracebacks,
        "crashes": int(crashed),
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "node_log": str(log_path),
    }
    failures = []
    if crashed:
        failures.append(f"the node died or did not exit cleanly (exit {exit_code}, {tracebacks} tracebacks)")
    if set(statuses) - terminal:
        failures.append(
            f"goals without a terminal status: { {k: v for k, v in statuses.items() if k not in terminal} }"
        )
    if without_message:
        failures.append(f"{without_message} goals ended without a message")
    if peak["worker_pending"] > _max_waiting(args.concurrency):
        failures.append(f"the worker queue reached {peak['worker_pending']} jobs")
    if report["final_goal_handles_kept"] != 0:
        failures.append(f"kept goal handles did not drain ({report['final_goal_handles_kept']} left)")
    growth = max(report["node_rss_growth_mb"].values())
    if growth >= MEMORY_LIMIT_MB:
        failures.append(f"resident memory grew by {growth} MB (limit {MEMORY_LIMIT_MB:g} MB)")
    if check is None or check["status"] != "succeeded":
        failures.append(f"the ordinary goal after the soak did not succeed: {check}")
    report["failures"] = failures
    report["passed"] = not failures
    return report


# -------------------------------------------------------------------------- round two: more phases

WORDS = (
    "walk", "run", "jump", "wave", "bow", "kick", "turn", "left", "right", "hand", "leg", "slowly", "quickly",
    "forward", "backward", "twice", "then", "and", "sit", "stand", "dance", "happily", "arms", "head", "circle",
)  # fmt: skip


def distinct_text(index: int, rng: random.Random) -> str:
    """A command text no other index produces: 3 to 20 random words and the index."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) + f" number {index}"


def _node_process(args: argparse.Namespace, name: str, params: dict, env: dict | None = None):
    """``moscale_node`` named ``name`` with ``params`` on the shipped parameter file; its log under the soak folder."""
    from moscale_common.paths import cache_root
    from moscale_ros.node.launcher import NodeProcess

    folder = Path(args.node_log).parent if args.node_log else cache_root() / "soak"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, _ = _checkpoint(args)
    settings = {"checkpoint": checkpoint, "device": args.device, "playback_rate": 0.0, **params}
    return NodeProcess(settings, remaps=[("__node", name)], log_path=folder / f"{name}.log", env=env)


def rss_split_mb(pid: int) -> tuple[float, float]:
    """(anonymous, file-backed) resident memory of ``pid`` in MiB (``RssAnon``, ``RssFile``): heap
    growth shows in the first, pages of mapped files (model weights, libraries) in the second."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith(("RssAnon", "RssFile")))
    return int(fields["RssAnon"].split()[0]) / 1024, int(fields["RssFile"].split()[0]) / 1024


def children_rss_mb(pid: int) -> float:
    """Resident memory (MiB) of every process descended from ``pid`` (the node's IK process,
    retarget/process.py): part of what the node costs, counted with it."""
    total, stack = 0.0, [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                stack.append(child)
                try:
                    total += int(Path(f"/proc/{child}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                except (OSError, ValueError, IndexError):
                    pass
    return total / 2**20


def run_memory(args: argparse.Namespace) -> dict:
    """``--memory-texts`` distinct texts on ``~/command`` at ``--memory-rate``/s, with the rate limit off
    and ``min_run_time`` 0 so that each text starts (and is encoded) before the next preempts it.
    The node's RSS after every tenth of the texts is the curve; growth per 1,000 texts is given over
    the whole run and over its second half (levelling off: the second is much smaller). The baseline
    (0 texts) is the node just after its warm-up, the text-encoder weights resident; each point also
    splits RSS into anonymous and file-backed memory."""
    rng = random.Random(args.seed + 11)
    params = {"max_command_rate": 0.0, "min_run_time": 0.0, "diagnostics_period": 0.5}
    if args.text_cache_mb is not None:
        params["text_cache_mb"] = args.text_cache_mb
    node = _node_process(args, "moscale_memory", params).start()
    client = SoakClient("/moscale_memory", window=1)
    sampler = MemorySampler(node.process.pid)
    curve: list[tuple[int, float]] = []
    split: list[tuple[int, float, float]] = []
    children: list[tuple[int, float]] = []  # the IK process's RSS, which the node's own leaves out
    try:
        if not client.wait_ready(args.start_timeout):
            raise SystemExit(f"fuzz_soak: the memory node did not come up:\n{node.log()[-3000:]}")
        sampler.start()
        _wait_until(lambda: len(sampler.samples) > 0, 5.0, node.alive)
        curve.append((0, sampler.samples[-1]))
        split.append((0, *rss_split_mb(node.process.pid)))
        children.append((0, children_rss_mb(node.process.pid)))
        step = max(1, args.memory_texts // 10)
        tick = time.perf_counter()
        for index in range(args.memory_texts):
            client.publish(distinct_text(index, rng))
            tick += 1.0 / args.memory_rate
            time.sleep(max(0.0, tick - time.perf_counter()))
            if (index + 1) % step == 0 or index + 1 == args.memory_texts:
                curve.append((index + 1, sampler.samples[-1]))
                split.append((index + 1, *rss_split_mb(node.process.pid)))
                children.append((index + 1, children_rss_mb(node.process.pid)))
            if not node.alive():
                break
        time.sleep(2.0)
        diag = client.latest_diagnostics()
        alive = node.alive()
    finally:
        sampler.stopped.set()
        if sampler.is_alive():
            sampler.join()
        client.close()
        code = node.stop(timeout=30.0)
    texts = curve[-1][0]
    half = min(range(len(curve)), key=lambda i: abs(curve[i][0] - texts / 2))

    def per_1000(a: int, b: int) -> float:
        return round((curve[b][1] - curve[a][1]) / max(curve[b][0] - curve[a][0], 1) * 1000, 1)

    report = {
        "texts_sent": texts,
        # texts given to the encoder: a multi-part command ("... then ...", "twice") is encoded part by part
        "texts_encoded": int(diag.get("text_cache_misses", -1)),
        "text_cache_entries": int(diag.get("text_cache_entries", -1)),
        "text_cache_mb": float(diag.get("text_cache_mb", -1)),
        "rss_mb_by_texts": [[n, round(mb, 1)] for n, mb in curve],
        "rss_anon_file_mb_by_texts": [[n, round(anon, 1), round(file, 1)] for n, anon, file in split],
        "rss_growth_mb": round(curve[-1][1] - curve[0][1], 1),
        "child_rss_mb_by_texts": [[n, round(mb, 1)] for n, mb in children],
        "node_and_child_rss_growth_mb": round(curve[-1][1] + children[-1][1] - curve[0][1] - children[0][1], 1),
        "rss_growth_mb_per_1000_texts": per_1000(0, len(curve) - 1),
        "rss_growth_mb_per_1000_texts_second_half": per_1000(half, len(curve) - 1),
        "node_exit_code": code,
        "tracebacks_in_node_log": node.log().count("Traceback"),
    }
    failures = []
    if not alive or code != 0 or report["tracebacks_in_node_log"]:
        failures.append(f"memory node died or did not exit cleanly (exit {code})")
    if max(report["rss_growth_mb"], report["node_and_child_rss_growth_mb"]) >= MEMORY_LIMIT_MB:
        failures.append(
            f"memory grew {report['rss_growth_mb']} MB (with the IK process: "
            f"{report['node_and_child_rss_growth_mb']} MB) over {texts} distinct texts"
        )
    report["failures"] = failures
    return report


def run_stream(args: argparse.Namespace) -> dict:
    """Ordinary commands on ``~/command`` at ``--stream-rate``/s for ``--stream-seconds`` s, the node
    with its shipped settings (rate limit, ``min_run_time``): plans published per command and final
    plans per second (at least one per second passes)."""
    from std_msgs.msg import String

    from moscale_ros.node.client import MoScaleClient

    node = _node_process(args, "moscale_stream", {}).start()
    client = MoScaleClient("/moscale_stream")
    try:
        if not client.wait_ready(args.start_timeout):
            raise SystemExit(f"fuzz_soak: the stream node did not come up:\n{node.log()[-3000:]}")
        client.clear()
        count = int(args.stream_seconds * args.stream_rate)
        start = time.monotonic()
        for index in range(count):
            time.sleep(max(0.0, start + index / args.stream_rate - time.monotonic()))
            client.command_pub.publish(String(data=ORDINARY[index % len(ORDINARY)]))
        end = time.monotonic()
        time.sleep(3.0)  # the last command's plans
        plans = [r for r in list(client.plans) if r.at >= start]
        alive = node.alive()
    finally:
        client.close()
        code = node.stop(timeout=30.0)
    finals_in_window = sum(1 for r in plans if r.msg.is_final and r.at <= end)
    report = {
        "commands_sent": count,
        "seconds": round(end - start, 1),
        "plans_published": len(plans),
        "final_plans_published": sum(1 for r in plans if r.msg.is_final),
        "plans_per_command": round(len(plans) / max(count, 1), 3),
        "final_plans_per_second": round(finals_in_window / max(end - start, 1e-9), 2),
        "node_exit_code": code,
    }
    failures = []
    if not alive or code != 0:
        failures.append(f"stream node died or did not exit cleanly (exit {code})")
    if report["final_plans_per_second"] < 1.0:
        failures.append(f"only {report['final_plans_per_second']} final plans/s under a {args.stream_rate}/s stream")
    report["failures"] = failures
    return report


HOSTILE_AT_START = {
    "controller_topic": "bad topic!", "joint_state_topic": "/a//b", "temperature": 1e-300, "guidance": 1e308,
    "control_rate": 1e6, "refine_iterations": [100000], "playback_rate": float("inf"), "diagnostics_period": 1e-9,
    "limit_tolerance": 1e300, "max_queue": 10**9,
}  # fmt: skip
HOSTILE_LIVE = {
    "control_rate": -1.0, "guidance": float("nan"), "robot": 42, "temperature": 1e-300, "top_p": 0.0,
    "refine_iterations": [3000], "use_sim_time": True, "max_duration": 1e9, "diagnostics_period": 1e-9,
}  # fmt: skip


def run_settings(args: argparse.Namespace) -> dict:
    """Each hostile setting at start-up (its own node process, under ``exit`` and ``stay_up``), then
    each live on a running node (``set_parameters``): what happened, in one line each."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    processes = {}
    for name, value in HOSTILE_AT_START.items():
        for policy in ("exit", "stay_up"):
            params = {name: value, "on_startup_error": policy, "warmup": False}
            processes[(name, policy)] = _node_process(args, f"hostile_{name}_{policy}", params).start()
    at_start = {}
    for (name, policy), process in processes.items():
        if policy == "exit":
            code = process.process.wait(timeout=120)
        else:
            up = process.wait_for_log("every command will be refused", 120.0) and time.sleep(1.0) is None
            code = "stayed up" if up and process.alive() else process.process.poll()
            process.stop(timeout=10.0)
        log = process.log()
        lines = [line.split("start-up failed: ", 1)[1] for line in log.splitlines() if "start-up failed: " in line]
        at_start[f"{name}/{policy}"] = {"exit": code, "tracebacks": log.count("Traceback"),
                                        "line": lines[0][:160] if lines else ""}  # fmt: skip
    node = _node_process(args, "hostile_live", {"warmup": False}).start()
    helper = Node(f"moscale_soak_settings_{os.getpid()}")
    live = {}
    try:
        service = helper.create_client(SetParameters, "/hostile_live/set_parameters")
        if not service.wait_for_service(timeout_sec=args.start_timeout):
            raise SystemExit(f"fuzz_soak: the settings node did not come up:\n{node.log()[-3000:]}")
        import rclpy  # (already initialised by main)

        for name, value in HOSTILE_LIVE.items():
            request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
            future = service.call_async(request)
            rclpy.spin_until_future_complete(helper, future, timeout_sec=10.0)
            result = future.result().results[0] if future.done() else None
            live[name] = {"value": repr(value), "accepted": bool(result and result.successful),
                          "reason": result.reason[:160] if result else "no answer"}  # fmt: skip
        alive = node.alive()
    finally:
        helper.destroy_node()
        code = node.stop(timeout=30.0)
    failures = [
        f"{case}: {r}"
        for case, r in at_start.items()
        if r["tracebacks"] or not r["line"] or r["exit"] != (2 if case.endswith("/exit") else "stayed up")
    ]
    failures += [f"live {name} accepted" for name, r in live.items() if r["accepted"]]
    if not alive or code != 0:
        failures.append(f"the live-settings node died or did not exit cleanly (exit {code})")
    return {"at_start_up": at_start, "live": live, "failures": failures}  # fmt: skip


def run_signals(args: argparse.Namespace) -> dict:
    """SIGTERM 1 s into start-up (warm-up on), SIGTERM in the middle of a goal, SIGINT when idle:
    exit code, seconds to exit, ERROR lines and rosout failures in the log."""
    import signal

    from moscale_ros.node.client import MoScaleClient

    cases = {}

    def ended(process, tick: float) -> dict:
        code = process.process.wait(timeout=30)
        log = process.log()
        return {"exit": code, "seconds_to_exit": round(time.monotonic() - tick, 2), "error_lines": log.count("[ERROR]"),
                "rosout_failures": log.count("Failed to publish log message to rosout"),
                "tracebacks": log.count("Traceback")}  # fmt: skip

    starting = _node_process(args, "signal_start", {}).start()
    time.sleep(1.0)
    tick = time.monotonic()
    starting.signal(signal.SIGTERM)
    cases["sigterm_1s_into_start_up"] = ended(starting, tick)
    goal_node = _node_process(args, "signal_goal", {"warmup": False, "min_run_time": 0.0}).start()
    client = MoScaleClient("/signal_goal")
    try:
        if client.wait_ready(args.start_timeout):
            goal = client.send_goal("walk forward slowly", duration=9.0, seed=1)
            deadline = time.monotonic() + 60.0
            while not goal.feedback and time.monotonic() < deadline:
                time.sleep(0.01)
        tick = time.monotonic()
        goal_node.signal(signal.SIGTERM)
        cases["sigterm_during_a_goal"] = ended(goal_node, tick)
    finally:
        client.close()
        goal_node.stop(timeout=5.0)
    idle = _node_process(args, "signal_idle", {"warmup": False}).start()
    idle.wait_for_log("ready:", args.start_timeout)
    tick = time.monotonic()
    idle.signal(signal.SIGINT)
    cases["sigint_idle"] = ended(idle, tick)
    failures = [f"{case}: {r}" for case, r in cases.items()
                if r["exit"] != 0 or r["error_lines"] or r["rosout_failures"] or r["tracebacks"]]  # fmt: skip
    if cases["sigterm_1s_into_start_up"]["seconds_to_exit"] >= 2.0:
        failures.append(f"SIGTERM 1 s into start-up took {cases['sigterm_1s_into_start_up']['seconds_to_exit']} s")
    return {**cases, "failures": failures}


def _print_phase(title: str, report: dict) -> None:
    print(f"\n== {title} ==")
    for key, value in report.items():
        if key != "failures":
            print(f"{key:<44}  {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    print(f"{'passed':<44}  " + ("yes" if not report["failures"] else "NO: " + "; ".join(report["failures"])))


def _print_table(report: dict) -> None:
    rows = [
        ("commands sent", f"{report['commands_sent']} in {report['send_seconds']} s ({report['send_rate_per_s']}/s)"),
        *((f"  {key}", str(value)) for key, value in report["sent_by_channel_and_kind"].items()),
        ("goals sent / cancel requested", f"{report['goals_sent']} / {report['goals_cancel_requested']}"),
        ("goals by terminal status", json.dumps(report["goals_by_status"])),
        ("goals ended without a message", str(report["goals_ended_without_message"])),
        ("node counters", json.dumps(report["node_counters"])),
        ("peak worker queue / active goals / kept goal handles",
         f"{report['peak_worker_pending']} / {report['peak_goals_active']} / {report['peak_goal_handles_kept']}"),
        ("kept goal handles at the end", str(report["final_goal_handles_kept"])),
        ("node RSS start / peak / end (MB)", "{start} / {peak} / {end}".format(**report["node_rss_mb"])),
        ("RSS growth end / peak (MB)", "{end} / {peak}".format(**report["node_rss_growth_mb"])),
        ("RSS at each fifth of the run (MB)", " ".join(str(v) for v in report["node_rss_mb_by_fifth"])),
        ("ordinary goal after the soak", json.dumps(report["check_goal_after_soak"])[:150]),
        ("crashes", str(report["crashes"])),
        ("node exit code", str(report["node_exit_code"])),
        ("wall time (s)", str(report["wall_seconds"])),
        ("model", report["model"]),
        ("node max_command_rate", str(report["max_command_rate"])),
        ("passed", "yes" if report["passed"] else "NO: " + "; ".join(report["failures"])),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


PHASES = {"fuzz": run_soak, "memory": run_memory, "stream": run_stream, "settings": run_settings,
          "signals": run_signals}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=5000, help="commands to send (topic and action together)")
    parser.add_argument("--rate", type=float, default=250.0, help="commands per second to send")
    parser.add_argument("--window", type=int, default=8, help="goal requests allowed to wait for acceptance")
    parser.add_argument("--seed", type=int, default=0, help="seed of the input sequence")
    parser.add_argument("--checkpoint", default="", help="generator checkpoint (default: the shipped model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", choices=("preempt", "queue"), default="preempt")
    parser.add_argument(
        "--max-command-rate",
        type=float,
        default=None,
        help="the node's max_command_rate (default: the parameter file's; 0: no limit, every command is validated)",
    )
    parser.add_argument("--cancel-fraction", type=float, default=0.1, help="share of accepted goals to cancel at once")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="s to wait for the node to be ready")
    parser.add_argument("--drain-timeout", type=float, default=300.0, help="s to wait for the last goals to end")
    parser.add_argument("--node-log", default="", help="node log file (default: cache/soak/moscale_node.log)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, of {', '.join(PHASES)} (default: all)",
    )
    parser.add_argument("--memory-texts", type=int, default=5000, help="distinct texts of the memory phase")
    parser.add_argument("--memory-rate", type=float, default=10.0, help="texts/s of the memory phase")
    parser.add_argument(
        "--text-cache-mb", type=float, default=None, help="the memory node's text_cache_mb (default: the file's)"
    )
    parser.add_argument("--stream-seconds", type=float, default=60.0, help="length of the fast stream")
    parser.add_argument("--stream-rate", type=float, default=14.0, help="commands/s of the fast stream")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not phases or set(phases) - set(PHASES):
        parser.error(f"--phases: choose from {', '.join(PHASES)}")
    if args.commands < 1 or not args.rate > 0 or args.window < 1:
        parser.error("--commands, --rate and --window must be positive")

    # Loopback only, on a domain of its own; set before rclpy (here or in the node) starts.
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(100, 200)))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="moscale-soak-roslog-"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import rclpy  # (lazy: after the ROS environment above is set)

    rclpy.init()
    report: dict = {"phases": phases}
    failures: list[str] = []
    try:
        if "fuzz" in phases:
            report.update(run_soak(args))
            failures += report.pop("failures")
        for phase in phases:
            if phase != "fuzz":
                report[phase] = PHASES[phase](args)
                failures += [f"{phase}: {f}" for f in report[phase]["failures"]]
    finally:
        rclpy.try_shutdown()
    report["failures"], report["passed"] = failures, not failures
    if args.json:
        print(json.dumps(report))
    else:
        if "fuzz" in phases:
            _print_table(report)
        for phase in phases:
            if phase != "fuzz":
                _print_phase(phase, report[phase])
        print("\npassed: " + ("yes" if report["passed"] else "NO: " + "; ".join(failures)))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
