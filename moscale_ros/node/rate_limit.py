"""Admission control of incoming commands: a token bucket shared by ``~/command`` and ``~/generate``.

The bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second::

    tokens(t) = min(burst, tokens(t_last) + rate (t - t_last))

A command takes one token; with fewer than one left it is refused with :class:`RateLimitError`
before any other work is done. ``rate == 0`` turns the limit off. ROS-free and thread-safe; the
clock (monotonic seconds) is a parameter so the behaviour is exact under test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from moscale_common.errors import ConfigError, InputError


class RateLimitError(InputError):
    """A command arrived faster than ``max_command_rate`` allows (after the ``command_burst``)."""


class CommandRateLimiter:
    """Token bucket: ``rate`` commands per second on average, ``burst`` back to back."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate >= 0:
            raise ConfigError(f"max_command_rate: must be >= 0 commands/s (0: no limit), got {rate}")
        if burst < 1:
            raise ConfigError(f"command_burst: must be >= 1, got {burst}")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def admit(self, what: str = "command") -> None:
        """Take one token for ``what`` or raise RateLimitError (which names the limit)."""
        if not self.enabled:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + self.rate * max(0.0, now - self._last))
            self._last = now
            if self._tokens < 1.0:
                raise RateLimitError(
                    f"{what} over the rate limit: more than max_command_rate={self.rate:g} commands/s "
                    f"(command_burst={self.burst}); try again in {(1.0 - self._tokens) / self.rate:.2f} s"
                )
            self._tokens -= 1.0
