"""Give freed heap memory back to the operating system, so a long-running node's resident memory
follows what it holds rather than what it once held.

glibc's malloc keeps freed chunks in its arenas (one per thread that allocated) and returns them to
the OS only from the top of the heap. A node that encodes and generates for thousands of distinct
texts frees tensors of many sizes on several threads, so its RSS climbs although nothing leaks
(``scripts/fuzz_soak.py --phases memory`` shows the curve). ``malloc_trim(0)`` releases the free
pages of every arena. Elsewhere than glibc this does nothing.

MKL (torch's BLAS on x86 CPUs) also keeps a pool of buffers per thread that has run a matrix
product, freed only when the thread ends. The node encodes texts on every executor thread (request
validation), so these pools added about 5 MB per thread, some 60 MB in all, over its first few
hundred distinct texts; :func:`disable_mkl_buffer_pools` switches them off for the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

MKL_POOLS_VARIABLE = "MKL_DISABLE_FAST_MM"  # read by MKL when it first allocates


def disable_mkl_buffer_pools() -> None:
    """Ask MKL to allocate and free its buffers per call instead of keeping a pool per thread; only
    effective before torch first multiplies matrices (call it before importing torch). An explicit
    ``MKL_DISABLE_FAST_MM`` in the environment wins (``0`` keeps the pools)."""
    os.environ.setdefault(MKL_POOLS_VARIABLE, "1")


def _malloc_trim() -> ctypes._CFuncPtr | None:
    name = ctypes.util.find_library("c")
    try:
        function = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim with
        return None
    if function is not None:
        function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    return function


class HeapTrimmer:
    """Calls ``malloc_trim(0)`` at most once per ``period_s`` (it takes a few ms and the arena locks);
    ``trims`` counts the calls that ran. Thread-safe."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.period_s = period_s
        self.trims = 0
        self._trim = _malloc_trim()
        self._last = -float("inf")
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def __call__(self) -> bool:
        """Trim now unless one ran within ``period_s``; True when it ran."""
        if self._trim is None:
            return False
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.period_s:
                return False
            self._last = now
        self._trim(0)
        self.trims += 1
        return True
