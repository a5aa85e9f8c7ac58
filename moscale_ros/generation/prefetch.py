"""Generation ahead of its consumer: scale k+1 is generated while scale k is retargeted.

:class:`LatestScales` runs a scale stream (``MotionGenerator.stream``) in a worker thread, so the
model (torch releases the GIL) works on the next scale while the caller retargets the current one
on the other core. When the caller comes back and more than one scale is waiting, it gets only the
newest (latest wins): a stale intermediate scale would be replaced before it reached the robot. The
final scale is always the stream's last item, so it is never dropped. Errors of the stream are
raised to the caller at the item where they occurred; ``close()`` stops the worker after the scale
it is generating and waits for it (the model is not shared by two threads after ``close``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

_DONE = object()


class LatestScales:
    """Iterate ``stream`` ahead in a thread; yield the newest waiting item, dropping older ones.

    ``dropped`` counts the items skipped (intermediate scales that a newer one replaced).
    """

    def __init__(self, stream: Iterator[Any]) -> None:
        self._stream = stream
        self._items: list[Any] = []
        self._error: BaseException | None = None
        self._finished = False
        self._stopping = False
        self._ready = threading.Condition()
        self.dropped = 0
        self._thread = threading.Thread(target=self._produce, name="moscale-generation", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._stream:
                with self._ready:
                    self._items.append(item)
                    self._ready.notify()
                    if self._stopping:
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
                latest = self._items[-1]
                self.dropped += len(self._items) - 1
                self._items.clear()
                return latest
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            raise StopIteration

    def close(self) -> None:
        """Stop after the scale being generated and wait for the worker (idempotent)."""
        with self._ready:
            self._stopping = True
        self._thread.join()
