"""The start-up heap frozen out of the collector's full passes (gateway.daemon.heap)."""

from __future__ import annotations

import gc
import weakref

from gateway.daemon.heap import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.peer: _Node | None = None


def _in_oldest_generation(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects(generation=2))


def test_live_objects_leave_the_full_pass_and_garbage_is_collected_first() -> None:
    kept = [_Node() for _ in range(5000)]
    for node in kept:
        node.peer = node  # a cycle: only the collector could free it
    gc.collect()
    assert _in_oldest_generation(kept[0])  # what a full pass walks, before the freeze
    garbage = _Node()
    garbage.peer = garbage
    gone = weakref.ref(garbage)
    del garbage
    before = gc.get_freeze_count()
    frozen = freeze_startup_heap("test")
    assert gone() is None  # collected before the freeze, never kept for good
    assert frozen == gc.get_freeze_count() >= before + 5000
    assert not _in_oldest_generation(kept[0])  # the full pass skips it now
    assert not _in_oldest_generation(kept[-1])
