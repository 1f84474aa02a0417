"""Issue #18 item 3: the fail-closed rule for deciding from memory, and the follower that
keeps the cache in step with changes made by other processes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.credentials.hashing import PinHashParams
from gateway.credentials.store import Credentials
from gateway.hardware.events import CardRead
from gateway.privacy.people import add_person
from gateway.services import credentials as svc
from gateway.services.cache_follower import CacheFollower
from gateway.services.cache_state import CacheState
from gateway.store import database as store

KEY = bytes(range(32))
FAST = PinHashParams(time_cost=1, memory_kib=1024, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.t = 10_000.0

    def __call__(self) -> float:
        return self.t


def _db(tmp_path: Path) -> tuple[object, Credentials, str, str]:
    db = store.connect(tmp_path / "state.db")
    creds = Credentials(db, KEY, hash_params=FAST)
    a = add_person(db, "A", unit="1")
    b = add_person(db, "B", unit="2")
    creds.add_card(a, 1, 100, 1000.0)
    creds.add_card(b, 1, 200, 9_990.0)  # changed 10 s before the cache is proven current
    return db, creds, a, b


def test_recently_changed_unknown_and_unloaded_people_are_refused(tmp_path: Path) -> None:
    db, _, a, b = _db(tmp_path)
    clock = Clock()
    state = CacheState(recent_s=60.0, fresh_s=0.0, clock=clock)  # never proven "just now"
    assert state.refuse_reason(a) == "the credential cache was never loaded"
    state.load(db)
    assert state.refuse_reason(a) is None
    assert state.refuse_reason(b) == "the person's credentials changed recently"
    assert state.refuse_reason("stranger") == "the person is unknown to the cache"
    rec = state.person(a)
    assert rec is not None
    assert (rec.role, rec.valid_until) == ("resident", None)
    clock.t += 120.0
    state.note_proven()
    assert state.refuse_reason(b) is None  # long enough ago
    state.note_change(a)  # a change made in this process
    assert state.refuse_reason(a) == "the person's credentials changed recently"
    state.note_unknown_change("OperationalError: locking protocol")
    assert state.refuse_reason(b) == "the credentials changed and could not be reloaded"
    clock.t += 120.0
    state.note_proven()  # proven only by a successful reload once a change was missed
    assert state.unknown_change is not None
    state.load(db)
    assert state.unknown_change is None
    assert state.refuse_reason(b) is None


def test_validity_changed_elsewhere_differs_and_counts_as_a_change(tmp_path: Path) -> None:
    db, creds, a, _ = _db(tmp_path)
    clock = Clock()
    state = CacheState(recent_s=60.0, fresh_s=0.0, clock=clock)
    state.load(db)
    clock.t += 3600.0
    svc.set_validity(svc.CredentialDeps(creds), a, actor="t", channel="cli", valid_until=5.0)
    state.load(db)
    rec = state.person(a)
    assert rec is not None
    assert rec.valid_until == 5.0
    assert state.refuse_reason(a) == "the person's credentials changed recently"


def test_follower_reloads_after_another_process_revokes(tmp_path: Path) -> None:
    db, creds, a, b = _db(tmp_path)
    state = CacheState()
    state.load(db)

    follower = CacheFollower(tmp_path / "state.db", creds, state)

    async def main() -> None:
        assert await follower.check()  # first look: loads
        assert not await follower.check()  # nothing changed
        other = store.connect(tmp_path / "state.db")  # "the CLI"
        other_creds = Credentials(other, KEY, hash_params=FAST)
        svc.revoke_card(svc.CredentialDeps(other_creds), b, actor="t", channel="cli")
        other.close()
        assert await follower.check()

    asyncio.run(main())
    # the store becomes unreadable: the cache answers, without the revoked card
    with creds.memory_only():
        assert creds.identify_card(CardRead("r", 200, 1, "H10301", 26)) is None
        assert creds.identify_card(CardRead("r", 100, 1, "H10301", 26)) == a


def test_in_process_revocation_is_refused_even_when_the_write_fails(tmp_path: Path) -> None:
    db, creds, a, _ = _db(tmp_path)
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    db.execute("PRAGMA busy_timeout = 50")  # type: ignore[attr-defined]
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            svc.revoke_card(
                svc.CredentialDeps(creds), a, actor="mqtt", channel="mqtt", card=(1, 100)
            )
        with creds.memory_only():
            assert creds.identify_card(CardRead("r", 100, 1, "H10301", 26)) is None
    finally:
        holder.rollback()
        holder.close()
