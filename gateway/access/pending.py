"""Pending first factors on combination doors, per (door, reader), with expiry."""

from __future__ import annotations

from dataclasses import dataclass

from .decision import Factor
from .presented import CredentialsPresented


@dataclass(frozen=True, slots=True)
class PendingFactor:
    """A valid first factor waiting for one of ``expects`` until ``expires_at``."""

    door: str
    reader: str
    presented: CredentialsPresented
    person_id: str
    expects: frozenset[Factor]
    started_at: float
    expires_at: float

    def expired(self, now: float) -> bool:
        """True once the second factor can no longer complete this one."""
        return now >= self.expires_at


class PendingFactors:
    """Pending first factors keyed by ``(door, reader)`` (pure state, clock passed in)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], PendingFactor] = {}

    def peek(self, door: str, reader: str) -> PendingFactor | None:
        """The stored pending factor, expired or not."""
        return self._items.get((door, reader))

    def get(self, door: str, reader: str, now: float) -> PendingFactor | None:
        """The pending factor if it has not expired."""
        item = self._items.get((door, reader))
        if item is None or item.expired(now):
            return None
        return item

    def put(self, item: PendingFactor) -> None:
        """Store (replace) the pending factor of its door and reader."""
        self._items[(item.door, item.reader)] = item

    def clear(self, door: str, reader: str) -> PendingFactor | None:
        """Forget the pending factor of a door and reader; return it."""
        return self._items.pop((door, reader), None)

    def expire(self, now: float) -> list[PendingFactor]:
        """Remove and return every expired pending factor (oldest first)."""
        gone = [p for p in self._items.values() if p.expired(now)]
        for p in gone:
            del self._items[(p.door, p.reader)]
        return sorted(gone, key=lambda p: p.expires_at)

    def __len__(self) -> int:
        return len(self._items)
