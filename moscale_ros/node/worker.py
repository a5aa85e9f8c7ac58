"""Generation off the executor: one worker thread runs jobs one at a time, preempting or queueing.

Policy ``preempt``: a new job ends every waiting one at once (commands coalesce: only the newest
waits, however fast they arrive) and preempts the running one once that has been protected for

    protection = max(min_run_time, min(1.25 * expected_run_s, MAX_PROTECTION_S))

seconds, ``expected_run_s`` being a running mean (weight 0.3 on the latest) of how long commands
took from their start to their final plan: at its first scale boundary after ``started +
protection`` it stops and publishes nothing more. A running command is therefore never starved by a
stream of newer ones: whatever the stream rate, each command that starts gets the time it usually
needs to publish its final plan (up to MAX_PROTECTION_S), even on a loaded machine, and the newest
command starts as soon as it ends. ``min_run_time = 0`` preempts at once (no protection). Cancels
and ``~/stop`` are never delayed.
Policy ``queue``: a new job waits behind the others, at most ``max_queue``
waiting; one more is refused with :class:`QueueFullError`.
Every job ends with ``done`` set and ``status`` one of succeeded, canceled, preempted, failed.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from moscale_common.errors import ConfigError, InputError, MoScaleError
from moscale_ros.generation.request import echo_text
from moscale_ros.node.heap import HeapTrimmer
from moscale_ros.pipeline import MotionPipeline, MotionRequest, PlanStep

Policy = Literal["preempt", "queue"]
MAX_PROTECTION_S = 5.0  # s: the longest a running command is protected from preemption
Status = Literal["pending", "running", "succeeded", "canceled", "preempted", "failed"]


class QueueFullError(InputError):
    """A command arrived while ``max_queue`` others were already waiting."""


@dataclass
class Job:
    """One command on its way through the worker; ``on_plan`` receives every published plan message."""

    request: MotionRequest
    source: str  # "topic" or "action"
    on_plan: Callable[[Any], None] | None = None
    status: Status = "pending"
    message: str = ""
    final_plan: Any = None  # the published MotionPlan message of the final scale
    plans_published: int = 0
    trajectories_sent: int = 0  # plans the node sent to the controller(s)
    done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stop_status: Status = "canceled"
    started_at: float | None = None  # monotonic s when the worker started it
    _preempt_at: float | None = None  # monotonic s from which it stops at its next scale boundary
    _preempt_reason: str = ""

    def cancel(self, reason: str, status: Status = "canceled") -> None:
        """Ask the job to stop (first reason wins); it ends with ``status`` unless already finished."""
        if not self._stop.is_set() and not self.done.is_set():
            self._stop_status, self.message = status, reason
            self._stop.set()

    def preempt_at(self, when: float, reason: str) -> None:
        """Stop at the first scale boundary from monotonic time ``when`` on (the earliest request wins)."""
        if self._preempt_at is None or when < self._preempt_at:
            self._preempt_at, self._preempt_reason = when, reason

    def should_stop(self) -> bool:
        if not self._stop.is_set() and self._preempt_at is not None and time.monotonic() >= self._preempt_at:
            self.cancel(self._preempt_reason, "preempted")
        return self._stop.is_set()

    def _finish(self, status: Status, message: str) -> None:
        self.status, self.message = status, message
        self.done.set()


class GenerationWorker:
    """Runs :meth:`MotionPipeline.run` for each job on its own thread and hands plans to ``publish``.

    ``publish(job, step)`` is called on the worker thread for each plan (it publishes and, for
    controller plans, commits); ``log(level, text)`` reports job outcomes.
    """

    def __init__(
        self,
        pipeline: MotionPipeline,
        publish: Callable[[Job, PlanStep], None],
        log: Callable[[str, str], None],
        policy: Policy = "preempt",
        max_queue: int = 4,
        min_run_time: float = 0.0,
    ) -> None:
        if policy not in ("preempt", "queue"):
            raise ConfigError(f"concurrency: expected preempt or queue, got {policy!r}")
        self.pipeline = pipeline
        self.publish = publish
        self.log = log
        self.policy = policy
        self.max_queue = max_queue
        self.min_run_time = min_run_time  # s (may change while running)
        self.trim_heap = HeapTrimmer(period_s=1.0)
        self.expected_run_s: float | None = None  # running mean of start -> final plan (s)
        self._pending: deque[Job] = deque()
        self._current: Job | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="moscale-generation", daemon=True)
        self._thread.start()

    @property
    def current(self) -> Job | None:
        return self._current

    @property
    def pending_count(self) -> int:
        """Jobs waiting for the worker (at most 1 under ``preempt``, ``max_queue`` under ``queue``)."""
        with self._cond:
            return len(self._pending)

    def submit(self, job: Job) -> None:
        """Queue ``job``; under ``preempt`` first stop everything else. Raises QueueFullError."""
        with self._cond:
            if self.policy == "preempt":
                reason = f"preempted by request {job.request.request_id} ({echo_text(job.request.text)})"
                for waiting in self._pending:  # never started: ends now, not when the worker reaches it
                    waiting.cancel(reason, "preempted")
                    waiting._finish(waiting._stop_status, waiting.message)
                self._pending.clear()
                running = self._current
                if running is not None:
                    started = running.started_at if running.started_at is not None else time.monotonic()
                    running.preempt_at(started + self.protection_s(), reason)
            elif len(self._pending) >= self.max_queue:
                raise QueueFullError(
                    f"command {echo_text(job.request.text)} refused: {len(self._pending)} commands already wait "
                    f"(max_queue={self.max_queue})"
                )
            self._pending.append(job)
            self._cond.notify()

    def protection_s(self) -> float:
        """Seconds a running command runs before a newer one preempts it (module docstring)."""
        if self.min_run_time <= 0:
            return 0.0
        expected = 0.0 if self.expected_run_s is None else min(1.25 * self.expected_run_s, MAX_PROTECTION_S)
        return max(self.min_run_time, expected)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel everything and end the thread."""
        with self._cond:
            self._stopping = True
            for job in [*self._pending, *([self._current] if self._current else [])]:
                job.cancel("the node is shutting down")
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    for job in self._pending:
                        job._finish(job._stop_status, job.message or "the node is shutting down")
                    return
                job = self._current = self._pending.popleft()
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._current = None
                    idle = not self._pending
                if idle:  # what the finished command freed goes back to the OS (at most 1/s, never before a job)
                    self.trim_heap()

    def _run(self, job: Job) -> None:
        if job.should_stop():
            job._finish(job._stop_status, job.message)
            return
        job.status = "running"
        job.started_at = time.monotonic()
        try:
            for step in self.pipeline.run(job.request, should_stop=job.should_stop):
                self.publish(job, step)
                job.plans_published += 1
        except MoScaleError as exc:
            job._finish("failed", str(exc))
            self.log("error", f"request {job.request.request_id} ({echo_text(job.request.text)}) failed: {exc}")
            return
        except Exception as exc:  # never let one command take the node down
            job._finish("failed", f"internal error: {exc!r}")
            self.log("error", f"request {job.request.request_id} crashed:\n{traceback.format_exc()}")
            return
        if job.final_plan is not None:  # a stop that came after the final plan is too late to matter
            run_s = time.monotonic() - job.started_at
            previous = self.expected_run_s
            self.expected_run_s = run_s if previous is None else 0.7 * previous + 0.3 * run_s
            job._finish("succeeded", f"{job.plans_published} plans published for {echo_text(job.request.text)}")
        elif job.should_stop():
            job._finish(job._stop_status, job.message)
            self.log(
                "info", f"request {job.request.request_id} stopped after {job.plans_published} plan(s): {job.message}"
            )
        else:
            job._finish("failed", f"generation ended after {job.plans_published} plan(s) without a final one")
