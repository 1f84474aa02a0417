"""The in-memory credential cache: what answers at the reader while the database fails.

Cards (keyed hashes) and active PIN rows are held here, bucketed by PIN index; visitor-PIN
uses and failure counters taken while the store failed wait here until they are written
back. Every change that takes a credential out bumps :attr:`CredentialCache.epoch`, so a
snapshot read before a revocation is never installed over it. Thread-safe; no I/O (the
SQL store, :mod:`gateway.credentials.store`, owns one of these).
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any

from gateway.credentials.hashing import PinKind, PinMatch

LockoutKey = tuple[str, str]
LockoutRecord = tuple[int, float]


@dataclass(slots=True)
class CachedPin:
    """One active PIN row as held in memory."""

    id: int
    person_id: str
    pin_index: int
    pin_hash: str
    kind: PinKind
    expires_at: float | None
    uses_left: int | None

    def usable(self, now: float) -> bool:
        return (self.expires_at is None or self.expires_at > now) and (
            self.uses_left is None or self.uses_left > 0
        )

    def match(self) -> PinMatch:
        return PinMatch(self.person_id, self.kind, self.id, self.expires_at, self.uses_left)


def pin_of(row: Any) -> CachedPin:
    """A PIN row ``(id, person_id, pin_index, pin_hash, kind, expires_at, uses_left)``."""
    return CachedPin(
        int(row[0]),
        sys.intern(str(row[1])),
        int(row[2]),
        str(row[3]),
        row[4],
        None if row[5] is None else float(row[5]),
        None if row[6] is None else int(row[6]),
    )


class CredentialCache:
    """Cards, PIN rows and the updates not yet written to the store."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.cards: dict[bytes, str] = {}
        self.pins: dict[int, CachedPin] = {}
        self.buckets: dict[int, list[int]] = {}
        self.pending_uses: dict[int, int] = {}
        self.lockouts: dict[LockoutKey, LockoutRecord] = {}
        self.loaded_fingerprint: tuple[Any, ...] = ()
        # bumped whenever a credential leaves the cache or a pending use is written back
        self._epoch = 0  # (see install)

    @property
    def epoch(self) -> int:
        """Changes with every credential taken out of the cache."""
        with self.lock:
            return self._epoch

    def bump(self) -> None:
        """Mark that a credential left the cache (or the store changed under a snapshot)."""
        with self.lock:
            self._epoch += 1

    def waiting(self) -> int:
        """How many updates wait to be written to the store."""
        with self.lock:
            return len(self.pending_uses) + len(self.lockouts)

    # -- snapshots ----------------------------------------------------------------------

    def install(
        self, cards: list[Any], pins: list[Any], mark: tuple[Any, ...], epoch: int | None = None
    ) -> bool:
        """Replace the cache with rows read in one snapshot; False, and nothing replaced,
        when ``epoch`` is given and a credential left the cache since it was taken."""
        new_cards = {bytes(r[0]): sys.intern(str(r[1])) for r in cards}
        new_pins = {p.id: p for p in map(pin_of, pins)}
        buckets: dict[int, list[int]] = {}
        with self.lock:
            if epoch is not None and epoch != self._epoch:
                return False
            for pin in new_pins.values():
                self._apply_pending(pin)
                buckets.setdefault(pin.pin_index, []).append(pin.id)
            self.cards, self.pins, self.buckets = new_cards, new_pins, buckets
            self.loaded_fingerprint = mark
        return True

    def _apply_pending(self, pin: CachedPin) -> None:
        n = self.pending_uses.get(pin.id)
        if n and pin.uses_left is not None:
            pin.uses_left = max(0, pin.uses_left - n)

    # -- cards --------------------------------------------------------------------------

    def card(self, digest: bytes) -> str | None:
        """The holder of a card, as cached."""
        with self.lock:
            return self.cards.get(digest)

    def put_card(self, digest: bytes, person_id: str) -> None:
        with self.lock:
            self.cards[digest] = person_id

    def drop_card(self, digest: bytes) -> None:
        """A card was revoked."""
        with self.lock:
            self._epoch += 1
            self.cards.pop(digest, None)

    def card_read(self, digest: bytes, person_id: str | None, epoch: int) -> None:
        """The store answered a card lookup: cache its answer unless a revocation came in
        since ``epoch``."""
        with self.lock:
            if person_id is None:
                if self.cards.pop(digest, None) is not None:
                    self._epoch += 1
            elif epoch == self._epoch:
                self.cards[digest] = person_id

    def forget_cards(self, person_id: str, card_hmac: bytes | None = None) -> None:
        """Drop a person's card (or all their cards)."""
        with self.lock:
            self._epoch += 1
            for digest, owner in list(self.cards.items()):
                if owner == person_id and card_hmac in (None, digest):
                    del self.cards[digest]

    # -- PINs ---------------------------------------------------------------------------

    def put(self, pin: CachedPin, *, from_store: bool = True) -> None:
        """Insert/replace a row; rows read from the store get the uses still pending."""
        with self.lock:
            self.drop(pin.id)
            if from_store:
                self._apply_pending(pin)
            self.pins[pin.id] = pin
            self.buckets.setdefault(pin.pin_index, []).append(pin.id)

    def drop(self, pin_id: int) -> None:
        with self.lock:
            self._epoch += 1
            old = self.pins.pop(pin_id, None)
            if old is not None:
                bucket = self.buckets.get(old.pin_index, [])
                if pin_id in bucket:
                    bucket.remove(pin_id)
                if not bucket:
                    self.buckets.pop(old.pin_index, None)

    def drop_person(self, person_id: str, kind: str | None = None) -> None:
        """Drop a person's PINs (of one kind, or all)."""
        with self.lock:
            for pin in list(self.pins.values()):
                if pin.person_id == person_id and (kind is None or pin.kind == kind):
                    self.drop(pin.id)

    def in_buckets(self, idxs: list[int]) -> list[CachedPin]:
        """The cached rows under these PIN indexes, oldest first."""
        with self.lock:
            found = [self.pins[i] for idx in idxs for i in self.buckets.get(idx, ())]
        found.sort(key=lambda p: p.id)
        return found

    def replace_buckets(self, idxs: list[int], found: list[CachedPin]) -> None:
        """Read-through: these buckets are now exactly the store's rows ``found``."""
        with self.lock:
            for idx in idxs:
                for pin_id in list(self.buckets.get(idx, ())):
                    self.drop(pin_id)
            for pin_row in found:
                self.put(pin_row)

    def take_use(self, pin_id: int) -> bool:
        """Take one use off a counted PIN while the store fails (written back later)."""
        with self.lock:
            pin = self.pins.get(pin_id)
            if pin is None or pin.uses_left is None or pin.uses_left <= 0:
                return False
            pin.uses_left -= 1
            self.pending_uses[pin_id] = self.pending_uses.get(pin_id, 0) + 1
        return True

    def used(self, pin_id: int) -> None:
        """The store took one use off ``pin_id``: follow it."""
        with self.lock:
            pin = self.pins.get(pin_id)
            if pin is not None and pin.uses_left is not None:
                pin.uses_left = max(0, pin.uses_left - 1)

    def uses_written(self, pin_id: int, n: int) -> None:
        """``n`` pending uses of ``pin_id`` reached the store."""
        with self.lock:
            self._epoch += 1  # a snapshot read before this write is not installed
            left = self.pending_uses.pop(pin_id, 0) - n
            if left > 0:
                self.pending_uses[pin_id] = left

    # -- failure counters ---------------------------------------------------------------

    def lockout(self, key: LockoutKey) -> LockoutRecord | None:
        with self.lock:
            return self.lockouts.get(key)

    def set_lockout(self, key: LockoutKey, record: LockoutRecord | None) -> None:
        """Hold a failure count in memory (None: the store has it)."""
        with self.lock:
            if record is None:
                self.lockouts.pop(key, None)
            else:
                self.lockouts[key] = record

    def lockout_written(self, key: LockoutKey, record: LockoutRecord) -> None:
        """``record`` reached the store: forget it unless a newer one came in meanwhile."""
        with self.lock:
            if self.lockouts.get(key) == record:
                del self.lockouts[key]

    def pending(self) -> tuple[dict[int, int], dict[LockoutKey, LockoutRecord]]:
        """A copy of the uses and failure counters waiting for the store."""
        with self.lock:
            return dict(self.pending_uses), dict(self.lockouts)
