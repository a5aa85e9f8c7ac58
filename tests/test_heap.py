"""Freed heap memory goes back to the OS (glibc malloc_trim), at most once per period."""

from __future__ import annotations

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
