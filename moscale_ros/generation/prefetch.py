"""Generation ahead of its consumer: scale k+1 is generated while scale k is retargeted (and any
other stage run ahead of its consumer the same way: the pipeline retargets in a second one).

:class:`ScalesAhead` runs a scale stream (``MotionGenerator.stream``) in a worker thread, so the
model (torch releases the GIL inside its operations) works on the next scale while the caller
retargets the current one on the other core. Every scale is handed over, in order: each plan's IK
is warm-started from the previous scale's, and skipping an intermediate scale ("latest wins") would
make the final trajectory depend on timing (measured in tests/test_speed.py). Errors of the stream
are raised to the caller after the scales before them; ``close()`` stops the worker after the scale
it is generating and waits for it (the model is not used by two threads after ``close``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

_DONE = object()


class ScalesAhead:
    """Iterate ``stream`` in a thread, ahead of the caller; yield every item in order.

    ``waiting_max`` is the most items that were ever ready and waiting for the caller (1: generation
    never got more than one scale ahead). With ``hold``, the item at index ``hold_from`` and later ones
    are produced only once ``hold`` is set (or :meth:`close`); ``held_s`` is how long that took, and
    ``held_before[n]`` what it was when item ``n`` was produced (a stream that times its items counts
    the hold in the next one's).
    """

    def __init__(self, stream: Iterator[Any], hold: threading.Event | None = None, hold_from: int = 2) -> None:
        self._stream = stream
        self._hold, self._hold_from = hold, hold_from
        self.held_s = 0.0
        self.held_before: list[float] = []  # held_s when each item was produced
        self._items: list[Any] = []
        self._error: BaseException | None = None
        self._finished = False
        self._stopping = False
        self._ready = threading.Condition()
        self.waiting_max = 0
        self._thread = threading.Thread(target=self._produce, name="moscale-generation", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for index, item in enumerate(self._stream):
                with self._ready:
                    self._items.append(item)
                    self.held_before.append(self.held_s)
                    self.waiting_max = max(self.waiting_max, len(self._items))
                    self._ready.notify()
                    if self._stopping:
                        break
                if self._hold is not None and index + 1 == self._hold_from:  # before asking for the next
                    held_from = time.perf_counter()
                    while not self._hold.wait(0.05) and not self._stopping:
                        pass
                    self.held_s = time.perf_counter() - held_from
                    if self._stopping:  # closed while held: no further item
                        break
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, which raises it)
            with self._ready:
                self._error = exc
        finally:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
            with self._ready:
                self._finished = True
                self._ready.notify()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        with self._ready:
            while not self._items and not self._finished:
                self._ready.wait()
            if self._items:
                return self._items.pop(0)
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            raise StopIteration

    def close(self) -> None:
        """Stop after the scale being generated and wait for the worker (idempotent)."""
        with self._ready:
            self._stopping = True
        self._thread.join()
