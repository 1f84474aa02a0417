"""Issue #14 item 5: the signed MQTT ``revoke_card``, ``revoke_pin`` and ``purge`` run the
same service functions as the CLI: the change is audited by the service (with its channel),
the running daemon's credential cache is told, and a handler with its own SQL would fail."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import sqlite_utils

from gateway.credentials.hashing import PinHashParams
from gateway.credentials.store import Credentials
from gateway.gate.remote_commands import CommandDeps, RemoteCommands
from gateway.gate.withdrawal_announce import GateWithdrawals, WithdrawalDeps
from gateway.keys import Keys
from gateway.mqtt import sign
from gateway.mqtt.commands import CommandProcessor
from gateway.privacy import audit, consent, people, person_ref
from gateway.privacy.notice import Notice
from gateway.privacy.vault import NullGallery, StaticKeyProvider, Vault
from gateway.services import credentials as svc
from gateway.services.cache_state import CacheState
from gateway.store import database as store
from tests.privacy.conftest import NOTICE_EN, write_key
from tests.privacy.test_commands import _run

SITE, GATE = "site-1", "gate-1"
FAST = PinHashParams(time_cost=1, memory_kib=1024, parallelism=1)
RECENT = "the person's credentials changed recently"


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class FakeGate:
    """What the handlers read of a running gate; database calls run inline."""

    def __init__(self, db_path: Path, device: bytes, site: bytes, clock: Clock) -> None:
        self.db = store.connect(db_path)
        audit.bind_key(self.db, audit.ChainKey.from_device(device))
        self.keys = Keys(device, site)
        self.credentials = Credentials(
            self.db, device, index_key=self.keys.pin_index_site, hash_params=FAST
        )
        self.controller = SimpleNamespace(credentials=self.credentials)
        self.clock = clock
        self.cache_state = CacheState(recent_s=60.0, fresh_s=0.0, clock=clock)
        self.vault = Vault(StaticKeyProvider(device), site)
        self.gallery: Any = NullGallery()
        self.face_paths: dict[str, Any] = {}
        self.cfg = SimpleNamespace(
            doors={},
            site=SimpleNamespace(id=SITE, gate=GATE),
            privacy=SimpleNamespace(renotice_grace_days=30.0),
            storage=SimpleNamespace(database_path=db_path),
        )
        self.daemon = None
        self.outbox = None
        self.topics = None
        self.events: list[Any] = []

    def pseudonym(self, person_id: str | None) -> str | None:
        return None if person_id is None else "pz"

    def emit(self, event: Any) -> None:
        self.events.append(event)

    async def run_db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    run_decide = run_db

    async def reload(self) -> bool:
        return False


@pytest.fixture
def keys(tmp_path: Path) -> tuple[bytes, bytes]:
    return secrets.token_bytes(32), secrets.token_bytes(32)


@pytest.fixture
def gate(tmp_path: Path, keys: tuple[bytes, bytes]) -> Iterator[FakeGate]:
    g = FakeGate(tmp_path / "state.db", *keys, Clock())
    yield g
    g.db.conn.close()


def _processor(gate: FakeGate) -> tuple[CommandProcessor, Any]:
    key = sign.generate()
    proc = CommandProcessor(
        gate.db,
        {sign.key_id_of(key.public_key()): sign.public_b64(key.public_key())},
        site=SITE,
        gate=GATE,
        audit=audit.appender(gate.db),
    )
    withdrawals = GateWithdrawals(
        WithdrawalDeps(
            gate.cfg,  # type: ignore[arg-type]
            gate.keys,
            gate.db,
            gate.run_db,
            gate.vault,
            gate.gallery,
            gate.pseudonym,
            gate.emit,
        )
    )
    deps = CommandDeps(
        gate.cfg,  # type: ignore[arg-type]
        gate.keys,
        gate.db,
        gate.run_db,
        gate.vault,
        gate.gallery,
        gate.run_decide,
        gate.controller,  # type: ignore[arg-type]
        gate.cache_state,
        gate.face_paths,
        gate.reload,
    )
    RemoteCommands(deps, withdrawals).register(proc)
    return proc, key


def _send(proc: CommandProcessor, key: Any, name: str, args: dict[str, Any]) -> Any:
    env = sign.sign_envelope(name, args, key, ts=sign.now_rfc3339(), site=SITE, gate=GATE)
    res = asyncio.run(proc.process(name, json.dumps(env).encode()))
    assert res.ok, res
    return res.result


def _audited(db: sqlite_utils.Database, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = db.execute(
        "SELECT actor, subject, details FROM audit WHERE action = ? ORDER BY seq", [action]
    ).fetchall()
    return [(r[0], r[1], json.loads(r[2])) for r in rows]


def _person_with_credentials(gate: FakeGate, clock_t: float) -> str:
    pid = people.add_person(gate.db, "Wang Fang", unit="2-101")
    gate.credentials.add_card(pid, 10, 4242, clock_t - 3600)
    gate.credentials.set_pin(pid, "482916", clock_t - 3600)
    gate.cache_state.load(gate.db)
    gate.cache_state.note_proven()
    return pid


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every call of the credential services, as (function, channel)."""
    calls: list[tuple[str, str]] = []
    for name in ("revoke_card", "revoke_pin"):
        real = getattr(svc, name)

        def spy(*a: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            calls.append((_name, kw["channel"]))
            return _real(*a, **kw)

        monkeypatch.setattr(svc, name, spy)
    return calls


def test_mqtt_revoke_card_and_pin_run_the_credential_services(
    gate: FakeGate, spied: list[tuple[str, str]]
) -> None:
    pid = _person_with_credentials(gate, 1_800_000_000.0)
    gate.clock.t += 3600  # the credentials were loaded long ago
    gate.cache_state.note_proven()
    assert gate.cache_state.refuse_reason(pid) is None
    proc, key = _processor(gate)

    ref = person_ref.seal(gate.keys.site, pid)
    assert _send(proc, key, "revoke_card", {"person_ref": ref}) == {"revoked": 1}
    assert _audited(gate.db, "card.revoked") == [
        ("mqtt", pid, {"count": 1, "one_card": False, "channel": "mqtt"})
    ]
    assert gate.cache_state.refuse_reason(pid) == RECENT  # the daemon's cache was told
    ref = person_ref.seal(gate.keys.site, pid)  # a fresh ref: not linkable to the first
    assert _send(proc, key, "revoke_pin", {"person_ref": ref, "kind": "normal"}) == {"revoked": 1}
    assert _audited(gate.db, "pin.revoked") == [
        ("mqtt", pid, {"count": 1, "kind": "normal", "channel": "mqtt"})
    ]
    assert spied == [("revoke_card", "mqtt"), ("revoke_pin", "mqtt")]
    assert gate.credentials.identify_card(SimpleNamespace(facility=10, card_number=4242)) is None


def test_the_cli_revokes_through_the_same_services(
    tmp_path: Path,
    gate: FakeGate,
    keys: tuple[bytes, bytes],
    spied: list[tuple[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pid = _person_with_credentials(gate, 1_800_000_000.0)
    dk = write_key(tmp_path / "k" / "device-key", keys[0])
    sk = write_key(tmp_path / "k" / "site-key", keys[1])
    common = ["--db", str(tmp_path / "state.db"), "--device-key", str(dk), "--site-key", str(sk)]
    monkeypatch.setattr("sys.stdin", io.StringIO("4242\n"))
    assert _run(["people", "revoke-card", pid, "--facility", "10", *common]) == 0
    assert _run(["people", "revoke-pin", pid, *common]) == 0
    assert spied == [("revoke_card", "cli"), ("revoke_pin", "cli")]
    assert [r[2]["channel"] for r in _audited(gate.db, "card.revoked")] == ["cli"]


def test_mqtt_purge_of_a_person_deletes_the_person_with_a_receipt(gate: FakeGate) -> None:
    pid = _person_with_credentials(gate, 1_800_000_000.0)
    consent.grant(
        gate.db, pid, Notice("1", NOTICE_EN), method="paper", recorded_by="office", scope="device"
    )
    assert gate.vault is not None
    gate.vault.store_templates(gate.db, pid, np.ones((2, 128), np.float32) / 11.3, model="sface")
    proc, key = _processor(gate)

    ref = person_ref.seal(gate.keys.site, pid)
    got = _send(proc, key, "purge", {"target": "person", "person_ref": ref})
    assert set(got) == {"templates_erased", "cards", "pins", "consents", "receipt_id"}
    # consents: the grant and the withdrawal the deletion records
    assert (got["templates_erased"], got["cards"], got["pins"], got["consents"]) == (2, 1, 1, 2)
    assert pid not in json.dumps(got)  # the result never names the person
    receipt = gate.db.execute("SELECT id, channel, templates_erased FROM withdrawal_receipts")
    assert receipt.fetchall() == [(got["receipt_id"], "mqtt", 2)]  # announced to the site
    assert people.find_person(gate.db, pid) is None  # the record, cards and PINs are gone
    for table in ("cards", "pins", "consents", "face_keys", "templates"):
        n = gate.db.execute(f"SELECT count(*) FROM {table} WHERE person_id = ?", [pid])  # noqa: S608
        assert n.fetchone()[0] == 0, table
    ((actor, subject, details),) = _audited(gate.db, "person.delete")
    assert (actor, subject, details["channel"]) == ("mqtt", pid, "mqtt")  # local audit only
    assert gate.cache_state.refuse_reason(pid) is not None  # the daemon's cache was told


def test_a_refusal_does_not_name_the_person(gate: FakeGate) -> None:
    proc, key = _processor(gate)
    ref = person_ref.seal(gate.keys.site, "p-unknown-42")
    env = sign.sign_envelope(
        "withdraw_consent", {"person_ref": ref}, key, ts=sign.now_rfc3339(), site=SITE, gate=GATE
    )
    res = asyncio.run(proc.process("withdraw_consent", json.dumps(env).encode()))
    assert (res.ok, res.error) == (False, "refused")
    assert "p-unknown-42" not in res.to_json().decode()
    assert "<person>" in (res.detail or "")
    other = person_ref.seal(secrets.token_bytes(32), "p1")  # another site's ref
    env = sign.sign_envelope(
        "revoke_pin", {"person_ref": other}, key, ts=sign.now_rfc3339(), site=SITE, gate=GATE
    )
    res = asyncio.run(proc.process("revoke_pin", json.dumps(env).encode()))
    assert (res.ok, res.error) == (False, "refused")
    assert "does not open with this site's key" in (res.detail or "")


def test_mqtt_purge_of_the_access_log_is_audited(gate: FakeGate) -> None:
    gate.db.execute(
        "INSERT INTO access_log (ts, door, method, granted, reason) VALUES"
        " (100, 'main', 'card', 1, 'ok'), (5000, 'main', 'card', 1, 'ok')"
    )
    proc, key = _processor(gate)
    before = "1970-01-01T00:30:00+00:00"
    assert _send(proc, key, "purge", {"target": "access_log", "before": before}) == {"deleted": 1}
    ((actor, subject, details),) = _audited(gate.db, "purge")
    assert (actor, subject, details["deleted"], details["channel"]) == (
        "mqtt",
        "access_log",
        1,
        "mqtt",
    )
    assert gate.db.execute("SELECT count(*) FROM access_log").fetchone()[0] == 1


def test_a_failed_audit_leaves_the_access_log_untouched(gate: FakeGate) -> None:
    people.add_person(gate.db, "Keyed Chain")  # a keyed audit row
    gate.db.execute(
        "INSERT INTO access_log (ts, door, method, granted, reason) VALUES"
        " (100, 'main', 'card', 1, 'ok')"
    )
    audit.bind_key(gate.db, None)  # a keyed chain without its key: the audit row is refused
    from gateway.services.compliance import purge_access_log

    with pytest.raises((audit.AuditError, sqlite3.Error)):
        purge_access_log(gate.db, 5000.0, actor="mqtt", channel="mqtt")
    assert gate.db.execute("SELECT count(*) FROM access_log").fetchone()[0] == 1


def test_a_sync_refusal_names_neither_the_person_nor_the_guardian(gate: FakeGate) -> None:
    gate.face_paths["gate-cam"] = object()  # a gate that runs a face path
    proc, key = _processor(gate)
    args = {
        "person_ref": person_ref.seal(gate.keys.site, "p-minor-7"),
        "consent": {
            "scope": "compound",
            "notice_version": "1",
            "notice_sha256": "0" * 64,
            "granted_at": "2026-01-01T00:00:00Z",
            "guardian_ref": person_ref.seal(gate.keys.site, "g-unknown-9", role="guardian"),
        },
        "bundle": {
            "key_id": "k1",
            "wrapped_key_b64": "A" * 60,
            "nonce_b64": "B" * 16,
            "ciphertext_b64": "C" * 700,
            "model": "sface-2021dec",
            "count": 3,
        },
    }
    env = sign.sign_envelope("sync_person", args, key, ts=sign.now_rfc3339(), site=SITE, gate=GATE)
    res = asyncio.run(proc.process("sync_person", json.dumps(env).encode()))
    assert (res.ok, res.error) == (False, "refused")
    assert "guardian '<person>' is not an adult" in (res.detail or "")
    text = res.to_json().decode()
    assert "p-minor-7" not in text
    assert "g-unknown-9" not in text
    assert gate.db.execute("SELECT count(*) FROM people").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("channel", "named"),
    [("gate", True), ("cli", True), ("kiosk", True), ("mqtt", False), ("compound", False)],
)
def test_a_withdrawal_after_a_broker_message_emits_no_pseudonym(
    gate: FakeGate, channel: str, named: bool
) -> None:
    """A command or a fan-out on the broker, then the event: nothing links the two."""
    from gateway.mqtt.pseudonym import Pseudonymizer

    pz = Pseudonymizer(secrets.token_bytes(32))
    emitted: list[Any] = []
    withdrawals = GateWithdrawals(
        WithdrawalDeps(
            gate.cfg,  # type: ignore[arg-type]
            gate.keys,
            gate.db,
            gate.run_db,
            gate.vault,
            gate.gallery,
            pz,
            emitted.append,
        )
    )
    withdrawals._announce_one("p-1", channel, 2)
    (event,) = emitted
    assert (event.type, event.channel, event.templates_erased) == ("consent.withdrawn", channel, 2)
    assert event.person == (pz("p-1") if named else None)
