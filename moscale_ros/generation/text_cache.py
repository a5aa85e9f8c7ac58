"""A bounded, size-aware LRU cache of encoded texts (per-token features and the pooled vector).

Entries are kept in least-recently-used order; an entry costs the bytes of its tensors plus its
key and a fixed bookkeeping overhead (:data:`ENTRY_OVERHEAD_BYTES`). After each insertion the
least recently used entries are evicted until

    sum(cost) <= max_bytes   and   len(entries) <= max_entries

so memory stays bounded however many distinct texts arrive. ``max_bytes`` may change at any time
(:meth:`resize`); 0 turns the cache off, None bounds it by ``max_entries`` only (training). Hits and
misses are counted for the hit rate. Thread-safe.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict

import torch

ENTRY_OVERHEAD_BYTES = 512  # dict slot, tuple, two tensor objects (measured order of magnitude)
Features = tuple[torch.Tensor, torch.Tensor]  # (tokens_ND, pooled_D)


def entry_bytes(key: str, value: Features) -> int:
    """What one entry costs: its tensors' storage, its key and :data:`ENTRY_OVERHEAD_BYTES`."""
    tensors = sum(t.numel() * t.element_size() for t in value)
    return tensors + sys.getsizeof(key) + ENTRY_OVERHEAD_BYTES


class TextFeatureCache:
    """LRU cache ``text -> (tokens_ND, pooled_D)`` bounded by ``max_bytes`` and ``max_entries``."""

    def __init__(self, max_bytes: int | None, max_entries: int | None = None) -> None:
        self._entries: OrderedDict[str, tuple[Features, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_bytes = None if max_bytes is None else max(0, int(max_bytes))
        self.max_entries = max_entries
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups so far (0 before the first lookup)."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def get(self, key: str) -> Features | None:
        """The cached features of ``key`` (now the most recently used), or None; counts a hit or miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: str, value: Features) -> None:
        """Keep ``value`` under ``key`` unless it alone exceeds the budget; evict to fit."""
        cost = entry_bytes(key, value)
        with self._lock:
            if (self.max_bytes is not None and cost > self.max_bytes) or self.max_entries == 0:
                return
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (value, cost)
            self.bytes += cost
            self._evict()

    def resize(self, max_bytes: int | None) -> None:
        """A new budget in bytes (0: off, None: entries only); evicts at once to fit it."""
        with self._lock:
            self.max_bytes = None if max_bytes is None else max(0, int(max_bytes))
            self._evict()

    def map_values(self, fn) -> None:
        """Replace every value by ``fn(value)`` (e.g. moved to another device)."""
        with self._lock:
            for key, (value, cost) in list(self._entries.items()):
                self._entries[key] = (fn(value), cost)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = self.hits = self.misses = 0

    def _over_budget(self) -> bool:
        too_many = self.max_entries is not None and len(self._entries) > self.max_entries
        return too_many or (self.max_bytes is not None and self.bytes > self.max_bytes)

    def _evict(self) -> None:
        while self._entries and self._over_budget():
            _, (_, cost) = self._entries.popitem(last=False)
            self.bytes -= cost
