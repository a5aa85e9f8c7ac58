"""Keep the cyclic garbage collector's full passes short in a long-running, latency-bound process.

CPython's full (generation 2) collection walks every container object alive. A node that has loaded
torch, rclpy, a model and a robot holds a few million of them, so one full pass took 15-240 ms,
growing with the heap (measured in ``moscale_node`` with a ``gc.callbacks`` timer during ``moscale
bench node``). Such a pass can land anywhere, e.g. between computing a plan's switch time and
publishing it: the first command's final plan then reached the controller 228 ms late, after its
switch time, and the controller's commanded position jumped (1.3-3.6x the per-cycle limit).

:func:`freeze_long_lived` is called once start-up is done: one collection, then ``gc.freeze()``
moves everything alive into the permanent generation, which later passes do not walk. Full passes
then scan only what was allocated since (a command's messages and arrays, mostly freed by
reference counting anyway). :func:`thaw` undoes it before a reload (lifecycle cleanup), so the
frozen objects of the pipeline being dropped can be collected. :class:`PauseWatch` times every
pass (the node reports the longest since start-up in ``/diagnostics``: ``gc_pause_max_ms``).
"""

from __future__ import annotations

import gc
import threading
import time


def freeze_long_lived() -> int:
    """Collect, then freeze every object alive (``gc.freeze``); returns how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def thaw() -> None:
    """Return the frozen objects to the collector (``gc.unfreeze``), before dropping what they hold."""
    gc.unfreeze()


class PauseWatch:
    """Times every garbage-collector pass through ``gc.callbacks`` while installed: ``longest_ms`` and
    its generation, ``passes`` counted. :meth:`reset` starts a new window (e.g. after start-up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = 0.0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.longest_ms, self.longest_generation, self.passes = 0.0, -1, 0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self._started) * 1e3
        with self._lock:
            self.passes += 1
            if pause_ms > self.longest_ms:
                self.longest_ms, self.longest_generation = pause_ms, int(info.get("generation", -1))

    def install(self) -> PauseWatch:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
