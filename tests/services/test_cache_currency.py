"""Issue #18 items 3 and 5: the cache follower tells the daemon's own writes (outbox,
access log, audit) from credential changes by the credential generation (store migration
4), follows credential changes on its own read connection while the decision store is
"down" (a write lock, a full disk), and refuses everyone only when a credential change is
known to have happened and cannot be loaded."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.credentials.hashing import PinHashParams
from gateway.credentials.store import Credentials
from gateway.hardware.events import CardRead
from gateway.privacy.people import add_person, touch_last_seen
from gateway.services import credentials as svc
from gateway.services.cache_follower import GENERATION_SQL, CacheFollower
from gateway.services.cache_state import CacheState
from gateway.store import database as store

KEY = bytes(range(32))
FAST = PinHashParams(time_cost=1, memory_kib=1024, parallelism=1)
LONG_AGO = time.time() - 86_400.0


def _card(number: int) -> CardRead:
    return CardRead("r", number, 1, "H10301", 26)


def _gate(tmp_path: Path) -> tuple[Any, Credentials, CacheState, CacheFollower, str, str]:
    db = store.connect(tmp_path / "state.db", busy_timeout_ms=50)
    creds = Credentials(db, KEY, hash_params=FAST)
    a = add_person(db, "A", unit="1")
    b = add_person(db, "B", unit="2")
    creds.add_card(a, 1, 100, LONG_AGO)
    creds.add_card(b, 1, 200, LONG_AGO)
    state = CacheState()
    follower = CacheFollower(tmp_path / "state.db", creds, state)
    follower.load()
    return db, creds, state, follower, a, b


def _other(tmp_path: Path) -> Any:
    """Another connection: the daemon's outbox/log connection, or the CLI."""
    return store.connect(tmp_path / "state.db", busy_timeout_ms=50)


def _generation(db: Any) -> int:
    return int(db.execute(GENERATION_SQL).fetchone()[0])


def test_the_generation_moves_with_credentials_only(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "state.db")
    creds = Credentials(db, KEY, hash_params=FAST)
    deps = svc.CredentialDeps(creds)
    seen = [_generation(db)]

    def moved() -> bool:
        seen.append(_generation(db))
        return seen[-1] != seen[-2]

    a = add_person(db, "A", unit="1")
    assert moved()
    creds.add_card(a, 1, 100, 1.0)
    assert moved()
    svc.set_pin(deps, a, "135790", actor="t", channel="cli")
    assert moved()
    svc.set_validity(deps, a, actor="t", channel="cli", valid_until=time.time() + 60)
    assert moved()
    touch_last_seen(db, a, time.time())  # bookkeeping of a grant
    db.execute("UPDATE pins SET uses_left = 3, pin_index = pin_index WHERE person_id = ?", [a])
    db.execute(
        "INSERT INTO access_log (ts, door, method, granted, reason) VALUES (1,'d','card',1,'ok')"
    )
    db.execute("INSERT INTO lockouts (scope, subject, failures, locked_until) VALUES ('p','x',1,0)")
    db.execute("INSERT INTO kv (key, value) VALUES ('k', 'v')")
    assert not moved()
    svc.revoke_card(deps, a, actor="t", channel="mqtt")
    assert moved()
    svc.revoke_pin(deps, a, actor="t", channel="mqtt")
    assert moved()


def test_own_writes_while_the_store_is_down_do_not_refuse_everyone(tmp_path: Path) -> None:
    """The decision store is marked down (a wrong PIN's count could not be written under a
    write lock) and the daemon's other connections commit events and log rows: the
    follower proves the cache current; valid cards are still vouched for."""
    _db, creds, state, follower, a, b = _gate(tmp_path)
    other = _other(tmp_path)
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)

    async def main() -> None:
        assert not await follower.check()  # first look: proven, nothing to load
        creds.mark_store_down("wrong PIN count not written")
        for i in range(3):
            other.execute(
                "INSERT INTO access_log (ts, door, method, granted, reason) "
                "VALUES (?, 'd', 'card', 1, 'ok')",
                [float(i)],
            )
            other.execute("INSERT INTO outbox (id, topic, payload, retain, created_at) "
                          "VALUES (?, 't', x'00', 0, 1)", [f"e{i}"])  # fmt: skip
            holder.execute("BEGIN IMMEDIATE")  # then the write lock is taken
            try:
                await follower.check()
            finally:
                holder.rollback()
        assert state.unknown_change is None
        assert state.refuse_reason(a) is None
        assert state.refuse_reason(b) is None

    asyncio.run(main())
    assert follower.reloads == 0  # no credential changed: nothing reloaded


def test_revocation_elsewhere_reaches_the_cache_while_writes_fail(tmp_path: Path) -> None:
    """A revocation committed by another process just before a write lock: the follower
    loads it on its own connection although the decision store is "down"."""
    _db, creds, state, follower, a, b = _gate(tmp_path)
    other = _other(tmp_path)
    other_creds = Credentials(other, KEY, hash_params=FAST)
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)

    async def main() -> None:
        await follower.check()
        creds.mark_store_down("write-locked")
        svc.revoke_card(svc.CredentialDeps(other_creds), b, actor="t", channel="cli")
        holder.execute("BEGIN IMMEDIATE")
        try:
            assert await follower.check()  # reloaded: reads work while writes fail
        finally:
            holder.rollback()

    asyncio.run(main())
    assert state.unknown_change is None
    with creds.memory_only():
        assert creds.identify_card(_card(200)) is None
        assert creds.identify_card(_card(100)) == a
    assert state.refuse_reason(a) is None


def test_a_credential_change_that_cannot_be_loaded_refuses_everyone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _db, creds, state, follower, a, b = _gate(tmp_path)
    other_creds = Credentials(_other(tmp_path), KEY, hash_params=FAST)

    def unreadable(conn: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    async def main() -> None:
        await follower.check()
        svc.revoke_card(svc.CredentialDeps(other_creds), b, actor="t", channel="cli")
        with monkeypatch.context() as m:
            m.setattr(CacheState, "read", staticmethod(unreadable))
            assert not await follower.check()
            assert state.refuse_reason(a) == "the credentials changed and could not be reloaded"
            assert not await follower.check()  # still not loadable: still refused
            assert state.refuse_reason(a) is not None
        assert await follower.check()  # loadable again

    asyncio.run(main())
    assert state.unknown_change is None
    assert state.refuse_reason(a) is None
    with creds.memory_only():
        assert creds.identify_card(_card(200)) is None


def test_an_unreadable_database_refuses_only_recent_changes(tmp_path: Path) -> None:
    """Nothing can be read (no proof either way): the long-enrolled card is vouched for,
    a person whose card changed within ``recent_s`` is not."""
    db, creds, state, follower, a, _b = _gate(tmp_path)
    c = add_person(db, "C", unit="3")
    creds.add_card(c, 1, 300, time.time())
    follower.load()
    state.fresh_s = 0.05
    time.sleep(0.1)  # the last proof ages
    assert state.refuse_reason(a) is None
    assert state.refuse_reason(c) == "the person's credentials changed recently"
    assert state.refuse_reason("stranger") == "the person is unknown to the cache"


def test_a_proven_cache_vouches_for_loaded_changes_not_for_later_ones(tmp_path: Path) -> None:
    db, creds, state, follower, a, _b = _gate(tmp_path)
    c = add_person(db, "C", unit="3")
    creds.add_card(c, 1, 300, time.time())
    follower.load()  # the new card is in the snapshot, proven just now
    assert state.refuse_reason(c) is None
    state.note_change(a)  # a change made in this process after the load
    assert state.refuse_reason(a) == "the person's credentials changed recently"


def test_a_snapshot_read_before_an_in_process_revocation_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, creds, _state, follower, a, b = _gate(tmp_path)
    real_read = CacheState.read

    def racing_read(conn: Any) -> Any:
        rows = real_read(conn)
        creds.forget_cards(b)  # the MQTT revocation reaches this process meanwhile
        return rows

    monkeypatch.setattr(CacheState, "read", staticmethod(racing_read))

    async def main() -> None:
        db.execute("UPDATE people SET valid_until = NULL WHERE id = ?", [a])  # a change
        assert not await follower.check()  # superseded: not installed

    asyncio.run(main())
    with creds.memory_only():
        assert creds.identify_card(_card(200)) is None
