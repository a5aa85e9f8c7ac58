"""Start-up objects frozen out of the garbage collector's full passes (moscale_common/collector.py).

A full pass in the node took up to 240 ms before (``moscale bench node`` with a gc callback timer),
and one landing between a plan's switch time and its publication made the controller's commanded
position jump; after the freeze, passes walk only what was allocated since."""

from __future__ import annotations

import gc

from moscale_common.collector import freeze_long_lived, thaw


class _Held:
    """A container object the collector tracks."""

    def __init__(self, n: int) -> None:
        self.n = n


def test_frozen_objects_leave_the_collected_generations_and_thaw_returns_them() -> None:
    held = [_Held(i) for i in range(2000)]
    try:
        frozen = freeze_long_lived()
        assert frozen >= len(held) and gc.get_freeze_count() == frozen
        tracked = {id(obj) for obj in gc.get_objects()}
        assert not any(id(obj) in tracked for obj in held)  # a full pass no longer walks them
        made_later = _Held(-1)
        assert id(made_later) in {id(obj) for obj in gc.get_objects()}  # new objects are still collected
    finally:
        thaw()
    assert gc.get_freeze_count() == 0
    tracked = {id(obj) for obj in gc.get_objects()}
    assert all(id(obj) in tracked for obj in held)


def test_a_cycle_made_after_the_freeze_is_still_collected() -> None:
    try:
        freeze_long_lived()
        cycle = _Held(0)
        cycle.self = cycle
        marker = id(cycle)
        del cycle
        gc.collect()
        assert marker not in {id(obj) for obj in gc.get_objects()}
    finally:
        thaw()
