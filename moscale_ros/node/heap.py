"""Give freed heap memory back to the operating system, so a long-running node's resident memory
follows what it holds rather than what it once held.

glibc's malloc keeps freed chunks in its arenas (one per thread that allocated) and returns them to
the OS only from the top of the heap. A node that encodes and generates for thousands of distinct
texts frees tensors of many sizes on several threads, so its RSS climbs although nothing leaks
(``scripts/fuzz_soak.py --phases memory`` shows the curve). Three remedies (the first two glibc-only,
doing nothing elsewhere):

* :class:`HeapTrimmer`: ``malloc_trim(0)`` releases the free pages of every arena;
* :func:`limit_arenas`: fewer arenas (glibc allows 8 per core), so the threads share their free
  chunks instead of each keeping its own high-water mark. Called first thing by the node's ``main``,
  before any thread exists; ``MALLOC_ARENA_MAX`` in the environment, if set, wins.
* :func:`disable_mkl_buffer_pools`: MKL (torch's BLAS on x86 CPUs) keeps a pool of buffers per
  thread that has run a matrix product, freed only when the thread ends. The node encodes texts on
  every executor thread (request validation), so these pools added about 5 MB a thread, some 60 MB
  in all, over its first few hundred distinct texts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
NODE_ARENAS = 2  # the node's arena limit: the executor, worker and prefetch threads share two
MKL_POOLS_VARIABLE = "MKL_DISABLE_FAST_MM"  # read by MKL when it first allocates


def disable_mkl_buffer_pools() -> None:
    """Ask MKL to allocate and free its buffers per call instead of keeping a pool per thread; only
    effective before torch first multiplies matrices (call it before importing torch). An explicit
    ``MKL_DISABLE_FAST_MM`` in the environment wins (``0`` keeps the pools)."""
    os.environ.setdefault(MKL_POOLS_VARIABLE, "1")


def _libc_function(name: str, argtypes: list, restype) -> ctypes._CFuncPtr | None:
    library = ctypes.util.find_library("c")
    try:
        function = getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    if function is not None:
        function.argtypes, function.restype = argtypes, restype
    return function


def _malloc_trim() -> ctypes._CFuncPtr | None:
    return _libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)


def limit_arenas(count: int = NODE_ARENAS) -> bool:
    """At most ``count`` malloc arenas for this process from now on, unless ``MALLOC_ARENA_MAX`` is
    set (then glibc already applied it). True when the limit was set here."""
    if count < 1:
        raise ValueError(f"limit_arenas: need at least 1 arena, got {count}")
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, count) == 1)


def arena_count() -> int | None:
    """How many malloc arenas this process has now (glibc's ``malloc_info``), None elsewhere."""
    malloc_info = _libc_function("malloc_info", [ctypes.c_int, ctypes.c_void_p], ctypes.c_int)
    open_memstream = _libc_function(
        "open_memstream", [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t)], ctypes.c_void_p
    )
    fclose = _libc_function("fclose", [ctypes.c_void_p], ctypes.c_int)
    free = _libc_function("free", [ctypes.c_void_p], None)
    if None in (malloc_info, open_memstream, fclose, free):
        return None
    buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = open_memstream(ctypes.byref(buffer), ctypes.byref(size))
    if not stream:
        return None
    try:
        malloc_info(0, stream)
    finally:
        fclose(stream)  # flushes into ``buffer``
    text = ctypes.string_at(buffer, size.value).decode()
    free(buffer)
    return text.count("<heap nr=")


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
