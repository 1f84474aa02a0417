"""Review of the credential cache (issue #18 follow-up): a follower that reopened its
connection still sees a revocation; a revocation whose database read fails is still taken
out of the cache; a validity change never extends access before it is stored; a card
lookup or a follower snapshot that raced a revocation / a write-back is not put back."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from gateway.credentials.hashing import PinHashParams
from gateway.credentials.store import Credentials
from gateway.hardware.events import CardRead
from gateway.privacy import audit
from gateway.privacy.people import add_person
from gateway.services import credentials as svc
from gateway.services.cache_follower import CacheFollower
from gateway.services.cache_state import CacheState
from gateway.store import database as store

KEY = bytes(range(32))
FAST = PinHashParams(time_cost=1, memory_kib=1024, parallelism=1)
LONG_AGO = time.time() - 86_400.0
PIN = "246810"


def _card(number: int) -> CardRead:
    return CardRead("r", number, 1, "H10301", 26)


def _gate(tmp_path: Path) -> tuple[Any, Credentials, CacheState, CacheFollower, str, str]:
    db = store.connect(tmp_path / "state.db", busy_timeout_ms=50)
    creds = Credentials(db, KEY, hash_params=FAST)
    a = add_person(db, "A", unit="1")
    b = add_person(db, "B", unit="2")
    creds.add_card(a, 1, 100, LONG_AGO)
    creds.add_card(b, 1, 200, LONG_AGO)
    creds.set_pin(b, PIN, LONG_AGO)
    state = CacheState()
    follower = CacheFollower(tmp_path / "state.db", creds, state)
    follower.load()
    return db, creds, state, follower, a, b


def _unreadable(*_a: Any, **_k: Any) -> Any:
    raise sqlite3.OperationalError("disk I/O error")


# -- item 1: a reopened follower connection ------------------------------------------------


def test_a_revocation_after_the_follower_reopened_its_connection_is_loaded(
    tmp_path: Path,
) -> None:
    """A fresh connection's data_version starts again at its initial value: the probe
    after a reopen must not take "same version" for "nothing changed"."""
    _db, creds, state, follower, a, b = _gate(tmp_path)
    other_creds = Credentials(store.connect(tmp_path / "state.db"), KEY, hash_params=FAST)
    real_probe = follower._probe
    calls = {"n": 0}

    def probe_once_broken() -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real_probe()

    follower._probe = probe_once_broken  # type: ignore[method-assign]

    async def main() -> None:
        assert not await follower.check()  # proven current, version remembered
        assert not await follower.check()  # the probe fails: the connection is dropped
        svc.revoke_card(svc.CredentialDeps(other_creds), b, actor="t", channel="cli")
        assert await follower.check()  # reopened: the revocation is loaded

    asyncio.run(main())
    creds.mark_store_down("disk gone")
    with creds.memory_only():
        assert creds.identify_card(_card(200)) is None
        assert creds.identify_card(_card(100)) == a
    assert state.refuse_reason(a) is None  # loaded and proven: the valid card still opens


# -- item 2: the cache is told before the database is read ---------------------------------


def _pin_hash() -> str:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PIN)


@pytest.mark.parametrize("change", ["revoke_card", "revoke_pin", "set_pin", "set_pin_hash"])
def test_a_change_whose_database_read_fails_is_still_taken_out_of_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    _db, creds, state, _follower, _a, b = _gate(tmp_path)
    deps = svc.CredentialDeps(creds, state)
    monkeypatch.setattr(svc, "get_person", _unreadable)  # reads fail
    kw: dict[str, Any] = {"actor": "t", "channel": "mqtt"}
    changes: dict[str, Callable[[], object]] = {
        "revoke_card": lambda: svc.revoke_card(deps, b, **kw),
        "revoke_pin": lambda: svc.revoke_pin(deps, b, **kw),
        "set_pin": lambda: svc.set_pin(deps, b, "135790", **kw),
        "set_pin_hash": lambda: svc.set_pin_hash(
            deps, b, _pin_hash(), creds.pin_index("135790"), **kw
        ),
    }
    with pytest.raises(sqlite3.Error):
        changes[change]()
    creds.mark_store_down("reads fail")
    with creds.memory_only():
        if change == "revoke_card":
            assert creds.identify_card(_card(200)) is None
        else:
            assert creds.identify_pin(PIN, reader="r", now=time.time()) is None
    assert state.refuse_reason(b) == "the person's credentials changed recently"


def test_a_validity_change_whose_database_read_fails_marks_the_person_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _db, creds, state, _follower, a, _b = _gate(tmp_path)
    monkeypatch.setattr(svc, "get_person", _unreadable)
    deps = svc.CredentialDeps(creds, state)
    with pytest.raises(sqlite3.Error):
        svc.set_validity(deps, a, actor="t", channel="mqtt", valid_until=time.time() - 1)
    assert state.refuse_reason(a) == "the person's credentials changed recently"


# -- item 3: a validity change is cached only as far as it restricts until it is stored ----


def _fail_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "append", _unreadable)  # the write fails inside the tx


def test_a_validity_extension_that_was_not_stored_is_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, creds, state, follower, a, _b = _gate(tmp_path)
    expired = time.time() - 60.0
    db.execute("UPDATE people SET valid_until = ? WHERE id = ?", [expired, a])
    follower.load()
    _fail_audit(monkeypatch)
    deps = svc.CredentialDeps(creds, state)
    with pytest.raises(sqlite3.Error):
        svc.set_validity(deps, a, actor="t", channel="mqtt", valid_until=None)
    record = state.person(a)
    assert record is not None
    assert record.valid_until == expired  # never extended
    stored = db.execute("SELECT valid_until FROM people WHERE id = ?", [a]).fetchone()[0]
    assert stored == expired


def test_a_validity_restriction_is_cached_at_once_and_the_stored_one_after_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _db, creds, state, _follower, a, _b = _gate(tmp_path)
    deps = svc.CredentialDeps(creds, state)
    now = time.time()
    # moved later: the part already valid ends now-ish, the new start is not yet cached
    svc.set_validity(deps, a, actor="t", channel="cli", valid_from=now - 10, valid_until=now + 10)
    with monkeypatch.context() as m:
        _fail_audit(m)
        later = {"valid_from": now + 5, "valid_until": now + 3600}
        with pytest.raises(sqlite3.Error):
            svc.set_validity(deps, a, actor="t", channel="mqtt", **later)
    record = state.person(a)
    assert record is not None
    assert (record.valid_from, record.valid_until) == (now + 5, now + 10)  # the intersection
    svc.set_validity(deps, a, actor="t", channel="mqtt", valid_until=now + 3600)
    record = state.person(a)
    assert record is not None
    assert (record.valid_from, record.valid_until) == (now - 10, now + 3600)


# -- item 4: a card lookup that raced a revocation -----------------------------------------


def test_a_card_lookup_that_read_before_a_revocation_does_not_put_the_card_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, creds, _state, _follower, _a, b = _gate(tmp_path)
    real_execute = db.execute

    def racing_execute(sql: str, *args: Any) -> Any:
        cur = real_execute(sql, *args)
        if sql.startswith("SELECT person_id") and "FROM cards" in sql:
            creds.forget_cards(b)  # the MQTT revocation reaches this process meanwhile
        return cur

    monkeypatch.setattr(db, "execute", racing_execute)
    assert creds.identify_card(_card(200)) == b  # the row read before the revocation
    monkeypatch.undo()
    with creds.memory_only():
        assert creds.identify_card(_card(200)) is None


# -- item 5: a follower snapshot that raced the write-back of visitor-PIN uses -------------


def test_a_snapshot_read_before_pin_uses_were_written_back_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, creds, _state, follower, _a, b = _gate(tmp_path)
    db.execute("UPDATE pins SET uses_left = 3 WHERE person_id = ? AND revoked_at IS NULL", [b])
    follower.load()
    creds.mark_store_down("write-locked")
    with creds.memory_only():
        match = creds.identify_pin(PIN, reader="r", now=time.time(), consume=True)
    assert match is not None
    pin_id = match.pin_id
    real_read = CacheState.read

    def racing_read(conn: Any) -> Any:
        rows = real_read(conn)  # uses_left = 3 in this snapshot
        assert creds._flush()  # the store works again: the use is written back
        return rows

    monkeypatch.setattr(CacheState, "read", staticmethod(racing_read))

    async def main() -> None:
        db.execute("UPDATE people SET valid_until = NULL WHERE id = ?", [b])  # a change
        assert not await follower.check()  # superseded: not installed

    asyncio.run(main())
    assert db.execute("SELECT uses_left FROM pins WHERE id = ?", [pin_id]).fetchone()[0] == 2
    with creds.memory_only():
        again = creds.identify_pin(PIN, reader="r", now=time.time())
    assert again is not None
    assert again.uses_left == 2  # not reset upward to 3
