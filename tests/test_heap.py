"""Freed heap memory goes back to the OS (glibc malloc_trim), at most once per period."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from moscale_ros.node.health import resident_memory_mb
from moscale_ros.node.heap import HeapTrimmer


def test_trimming_returns_freed_fragmented_memory_and_is_rate_limited():
    trimmer = HeapTrimmer(period_s=0.5)
    assert trimmer.available  # glibc here (Linux); elsewhere the trimmer does nothing
    trimmer()  # start from a trimmed heap
    chunks = [np.ones(1000) for _ in range(100_000)]  # 8 KB blocks: below mmap's threshold, on the heap
    kept = chunks[::2]  # every other block stays: the freed ones are holes no top-of-heap release reaches
    del chunks
    before = resident_memory_mb()
    time.sleep(0.6)
    assert trimmer() and trimmer.trims == 2
    after = resident_memory_mb()
    assert before - after > 100, (before, after)  # ~400 MB freed in holes; most of it handed back
    assert not trimmer()  # within the period: skipped
    assert trimmer.trims == 2 and len(kept) == 50_000


ARENA_PROBE = """
import threading
import numpy as np
from moscale_ros.node.heap import arena_count, limit_arenas
print(limit_arenas(2) if {limit} else None)
start = threading.Barrier(8)
def allocate():
    start.wait()  # all eight allocate at once: without a limit, glibc gives them arenas of their own
    blocks = [np.ones(1000) for _ in range(2000)]
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(arena_count())
"""


def _arenas(limit: bool, **env: str) -> tuple[str, int]:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    result = subprocess.run(
        [sys.executable, "-c", ARENA_PROBE.format(limit=limit)], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stderr
    was_set, count = result.stdout.split()
    return was_set, int(count)


def test_the_arena_limit_bounds_the_arenas_of_many_allocating_threads():
    assert _arenas(limit=False)[1] > 2  # glibc's default: more arenas as threads contend
    assert _arenas(limit=True) == ("True", 2)
    assert _arenas(limit=True, MALLOC_ARENA_MAX="3") == ("False", 3)  # the environment wins
