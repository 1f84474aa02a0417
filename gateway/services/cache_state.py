"""What the running daemon knows about people and credential changes when the database
cannot answer, and the fail-closed rule for deciding from that memory.

- ``people``: the facts a card/PIN decision needs (role, access group, validity), loaded
  with the credential cache, so that a valid card or PIN still opens while the state
  database is unreadable, locked or slow.
- ``changed``: per person, when a card, PIN or validity of theirs last changed (from the
  ``created_at``/``revoked_at`` columns, from changes seen between two loads, and from
  changes made in this process).
- ``proven_at``: when the cache was last shown to be current (the data version checked by
  :class:`gateway.services.cache_follower.CacheFollower`, or a reload).

While the store cannot be read, :meth:`CacheState.refuse_reason` refuses a person whose
credentials changed within ``recent_s`` before ``proven_at`` (a change made just before the
fault may be half seen), and everyone only while a *credential* change is known to have
happened and could not be loaded (the follower tells credential changes from the daemon's
own event, log and audit writes by the credential generation). While the cache is proven
current (within ``fresh_s``) a change already loaded is no reason to refuse: only changes
made in this process after the last load are. Revoked cards and PINs are absent from the
credential cache, so they never match at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.store.tx import snapshot

log = logging.getLogger(__name__)

#: A credential or validity change this recent (before the cache was last proven current)
#: makes the person's card and PIN refused while the store cannot be read.
RECENT_CHANGE_S = 120.0
#: The cache counts as current this long after the follower last proved it so (it checks
#: every 0.25 s, each check bounded by 1 s).
FRESH_S = 1.5

_PEOPLE_SQL = "SELECT id, role, access_group, valid_from, valid_until FROM people"
_CHANGES_SQL = (
    "SELECT person_id, max(max(created_at, coalesce(revoked_at, 0))) FROM ("
    "SELECT person_id, created_at, revoked_at FROM cards UNION ALL "
    "SELECT person_id, created_at, revoked_at FROM pins) GROUP BY person_id"
)


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """The facts of one person a card/PIN decision needs (no name, no biometrics)."""

    person_id: str
    role: str
    access_group: str
    valid_from: float | None
    valid_until: float | None


def _record(row: Any) -> PersonRecord:
    return PersonRecord(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        None if row[3] is None else float(row[3]),
        None if row[4] is None else float(row[4]),
    )


class CacheState:
    """People facts and change times held in memory; thread-safe."""

    def __init__(
        self,
        *,
        recent_s: float = RECENT_CHANGE_S,
        fresh_s: float = FRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.recent_s = recent_s
        self.fresh_s = fresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._people: dict[str, PersonRecord] = {}
        self._changed: dict[str, float] = {}
        self.proven_at: float | None = None
        self.loaded_at: float | None = None
        self.unknown_change: str | None = None
        self.loaded = False

    # -- loading ---------------------------------------------------------------------
    def load(self, db: Any) -> None:
        """Reload people and change times in one read snapshot (sqlite3.Error propagates).
        A person whose facts differ from the previous load counts as changed now."""
        with snapshot(db) as conn:
            people, changes = self.read(conn)
        self.install(people, changes)

    @staticmethod
    def read(conn: Any) -> tuple[list[Any], list[Any]]:
        """The rows :meth:`install` takes (run inside the caller's read transaction)."""
        return conn.execute(_PEOPLE_SQL).fetchall(), conn.execute(_CHANGES_SQL).fetchall()

    def install(self, people_rows: list[Any], changes: list[Any]) -> None:
        """Take the rows of :meth:`read` (one snapshot) as the current state."""
        people = [_record(r) for r in people_rows]
        now = self._clock()
        with self._lock:
            fresh = {p.person_id: p for p in people}
            if self.loaded:
                for pid in fresh.keys() | self._people.keys():
                    if fresh.get(pid) != self._people.get(pid):
                        self._changed[pid] = max(self._changed.get(pid, 0.0), now)
            for pid, ts in changes:
                if ts is not None:
                    self._changed[str(pid)] = max(self._changed.get(str(pid), 0.0), float(ts))
            self._people = fresh
            self.loaded = True
            self.proven_at = self.loaded_at = now
            self.unknown_change = None

    def note_proven(self) -> None:
        """The store was read and nothing changed since the last load."""
        with self._lock:
            if self.unknown_change is None:
                self.proven_at = self._clock()

    def note_unknown_change(self, reason: str) -> None:
        """A change was seen in the store but could not be loaded: fail closed."""
        with self._lock:
            first = self.unknown_change is None
            self.unknown_change = reason
        if first:
            log.error(
                "credential cache: the database changed but cannot be read (%s); card and PIN "
                "are refused until it can",
                reason,
            )

    def note_change(self, person_id: str, *, record: PersonRecord | None = None) -> None:
        """A change made in this process (the service layer calls this)."""
        with self._lock:
            self._changed[person_id] = self._clock()
            if record is not None:
                self._people[person_id] = record

    # -- answering -------------------------------------------------------------------
    def person(self, person_id: str) -> PersonRecord | None:
        """The cached facts of a person (None when unknown to the cache)."""
        with self._lock:
            return self._people.get(person_id)

    def refuse_reason(self, person_id: str) -> str | None:
        """Why a card/PIN of ``person_id`` must be refused while the store cannot be
        read, or None when the cache may answer for them."""
        now = self._clock()
        with self._lock:
            if self.unknown_change is not None:
                return "the credentials changed and could not be reloaded"
            if not self.loaded or self.proven_at is None or self.loaded_at is None:
                return "the credential cache was never loaded"
            if person_id not in self._people:
                return "the person is unknown to the cache"
            changed = self._changed.get(person_id)
            if changed is None or changed < self.proven_at - self.recent_s:
                return None
            if now - self.proven_at < self.fresh_s and changed <= self.loaded_at:
                return None  # proven current just now, and the change is in what was loaded
        return "the person's credentials changed recently"
