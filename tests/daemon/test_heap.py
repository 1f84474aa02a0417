"""The start-up heap frozen out of the collector's full passes (gateway.daemon.heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.daemon.heap import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.peer: _Node | None = None


def test_live_objects_are_frozen_and_garbage_is_collected_first(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    kept = [_Node() for _ in range(5000)]
    for node in kept:
        node.peer = node  # a cycle: only the collector frees it
    garbage = _Node()
    garbage.peer = garbage
    gone = weakref.ref(garbage)
    del garbage
    frozen = freeze_startup_heap("test")
    assert gone() is None  # collected before the freeze, never kept for good
    assert frozen == gc.get_freeze_count() >= 5000 + 1
    gc.collect()  # a later full pass leaves them where they are
    assert gc.get_freeze_count() == frozen
    assert len(kept) == 5000
