"""Freed heap memory goes back to the OS (glibc malloc_trim), at most once per period."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

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


MKL_PROBE = """
import threading
from moscale_ros.node.heap import disable_mkl_buffer_pools
if {disable}:
    disable_mkl_buffer_pools()
import torch  # after the call, as in the node's main
torch.set_num_threads(1)
def anon_mb():
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("RssAnon")).split()[1]) / 1024
w = torch.randn(1536, 384)
torch.nn.functional.linear(torch.randn(8, 384), w)
before = anon_mb()
turn, ready, finish = threading.Lock(), threading.Barrier(9), threading.Event()
def encode():  # one executor thread: matrix products of every text length, then it waits (stays alive)
    with turn:
        for n in range(1, 33):
            torch.nn.functional.linear(torch.randn(n, 384), w)
    ready.wait()
    finish.wait()
threads = [threading.Thread(target=encode) for _ in range(8)]
for thread in threads:
    thread.start()
ready.wait()
print(anon_mb() - before)
finish.set()
"""


def _mkl_growth_mb(disable: bool) -> float:
    environment = {k: v for k, v in os.environ.items() if k != "MKL_DISABLE_FAST_MM"}
    result = subprocess.run(
        [sys.executable, "-c", MKL_PROBE.format(disable=disable)], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stderr
    return float(result.stdout.split()[-1])


def test_without_mkl_buffer_pools_live_threads_keep_much_less():
    torch = pytest.importorskip("torch")
    if not torch.backends.mkl.is_available():
        pytest.skip("torch without MKL: no MKL buffer pools")
    kept, pooled = _mkl_growth_mb(disable=True), _mkl_growth_mb(disable=False)
    assert pooled - kept > 30, (kept, pooled)  # ~38 against ~103 MB for eight threads here
