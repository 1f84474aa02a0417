"""``services.people.delete_person`` (PIPL Art. 47) and ``gateway people delete``: the face
data, cards, PINs, consent records and the person record are erased; the withdrawal receipt
waits for the daemon to announce it to the site; the audit chain keeps its rows."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sqlite_utils

from gateway.credentials.hashing import PinHashParams
from gateway.credentials.store import Credentials
from gateway.privacy import audit, consent, people
from gateway.privacy.notice import Notice
from gateway.privacy.people import PersonError
from gateway.privacy.vault import NullGallery, StaticKeyProvider, Vault
from gateway.services import people as svc
from gateway.services.cache_state import CacheState
from gateway.services.withdrawal import pending_announcements
from gateway.store import database as store
from tests.privacy.conftest import NOTICE_EN, write_key
from tests.privacy.test_commands import _run

FAST = PinHashParams(time_cost=1, memory_kib=1024, parallelism=1)
PERSON_TABLES = ("cards", "pins", "consents", "face_keys", "templates")


@pytest.fixture
def keys() -> tuple[bytes, bytes]:
    return secrets.token_bytes(32), secrets.token_bytes(32)


@pytest.fixture
def db(tmp_path: Path, keys: tuple[bytes, bytes]) -> Iterator[sqlite_utils.Database]:
    d = store.connect(tmp_path / "state.db")
    audit.bind_key(d, audit.ChainKey.from_device(keys[0]))
    yield d
    audit.bind_key(d, None)
    d.conn.close()


def _enrolled(db: sqlite_utils.Database, creds: Credentials, vault: Vault, name: str) -> str:
    pid = people.add_person(db, name, unit="1-101")
    creds.add_card(pid, 7, sum(map(ord, name)), 1000.0)
    creds.set_pin(pid, f"{480000 + sum(map(ord, name)):06d}", 1000.0)
    consent.grant(db, pid, Notice("1", NOTICE_EN), method="paper", recorded_by="office")
    vault.store_templates(db, pid, np.ones((3, 128), np.float32) / 11.3, model="sface")
    return pid


def _rows(db: sqlite_utils.Database, pid: str) -> dict[str, int]:
    return {
        t: db.execute(f"SELECT count(*) FROM {t} WHERE person_id = ?", [pid]).fetchone()[0]  # noqa: S608
        for t in PERSON_TABLES
    }


def test_delete_person_erases_everything_but_the_audit_chain(
    db: sqlite_utils.Database, keys: tuple[bytes, bytes]
) -> None:
    creds = Credentials(db, keys[0], hash_params=FAST)
    vault = Vault(StaticKeyProvider(keys[0]), keys[1])
    pid = _enrolled(db, creds, vault, "Zhao Lei")
    other = _enrolled(db, creds, vault, "Qian Yu")
    deps = svc.DeletionDeps(creds, vault, NullGallery())

    done = svc.delete_person(deps, pid, actor="office-1", channel="cli")

    assert (done.templates_erased, done.cards, done.pins, done.consents) == (3, 1, 1, 2)
    assert people.find_person(db, pid) is None
    assert _rows(db, pid) == dict.fromkeys(PERSON_TABLES, 0)
    assert _rows(db, other) == {
        "cards": 1,
        "pins": 1,
        "consents": 1,
        "face_keys": 1,
        "templates": 3,
    }
    # the other gates are told through the same receipt a withdrawal writes
    assert [(r.id, r.person_id) for r in pending_announcements(db)] == [(done.receipt_id, pid)]
    actions = [r[0] for r in db.execute("SELECT action FROM audit WHERE subject = ?", [pid])]
    assert actions[0] == "person.add"
    assert actions[-2:] == ["template.delete", "person.delete"]
    assert audit.verify(db).ok
    card = SimpleNamespace(facility=7, card_number=sum(map(ord, "Zhao Lei")))
    assert creds.identify_card(card) is None


def test_a_guardian_and_an_unknown_id_are_refused(
    db: sqlite_utils.Database, keys: tuple[bytes, bytes]
) -> None:
    creds = Credentials(db, keys[0], hash_params=FAST)
    vault = Vault(StaticKeyProvider(keys[0]), keys[1])
    parent = people.add_person(db, "Parent")
    people.add_person(db, "Child", is_minor=True, guardian_id=parent)
    deps = svc.DeletionDeps(creds, vault, NullGallery())
    with pytest.raises(PersonError, match="guardian"):
        svc.delete_person(deps, parent, actor="office-1", channel="cli")
    assert people.find_person(db, parent) is not None
    with pytest.raises(PersonError, match="no person"):
        svc.delete_person(deps, "nobody", actor="office-1", channel="cli")


def test_a_refused_deletion_leaves_the_cache_alone(
    db: sqlite_utils.Database, keys: tuple[bytes, bytes]
) -> None:
    creds = Credentials(db, keys[0], hash_params=FAST)
    vault = Vault(StaticKeyProvider(keys[0]), keys[1])
    parent = _enrolled(db, creds, vault, "Parent Wu")
    people.add_person(db, "Child Wu", is_minor=True, guardian_id=parent)
    cache = CacheState()
    cache.load(db)
    cache.note_proven()
    deps = svc.DeletionDeps(creds, vault, NullGallery(), cache=cache)
    with pytest.raises(PersonError, match="guardian"):
        svc.delete_person(deps, parent, actor="office-1", channel="cli")
    assert cache.refuse_reason(parent) is None  # not marked as changed
    card = SimpleNamespace(facility=7, card_number=sum(map(ord, "Parent Wu")))
    with creds.memory_only():  # what answers while the database is down
        assert creds.identify_card(card) == parent


def test_deletion_is_one_transaction_and_leaves_no_lockout(
    db: sqlite_utils.Database, keys: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = Credentials(db, keys[0], hash_params=FAST)
    vault = Vault(StaticKeyProvider(keys[0]), keys[1])
    pid = _enrolled(db, creds, vault, "Zhou Ping")
    db.execute(
        "INSERT INTO lockouts (scope, subject, failures, locked_until) VALUES ('person', ?, 4, 0)",
        [pid],
    )
    deps = svc.DeletionDeps(creds, vault, NullGallery())
    real_append = audit.append

    def failing_append(*args: object, **kw: object) -> object:
        if args[2] == "person.delete":
            raise OSError("disk full")
        return real_append(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("gateway.services.people.audit.append", failing_append)
    with pytest.raises(OSError, match="disk full"):
        svc.delete_person(deps, pid, actor="office-1", channel="cli")
    # nothing of it happened: the face data and the record are still there together
    assert _rows(db, pid)["templates"] == 3
    assert people.find_person(db, pid) is not None
    assert pending_announcements(db) == []
    monkeypatch.setattr("gateway.services.people.audit.append", real_append)

    svc.delete_person(deps, pid, actor="office-1", channel="cli")
    left = db.execute("SELECT count(*) FROM lockouts WHERE subject = ?", [pid]).fetchone()[0]
    assert left == 0
    files = b"".join(
        f.read_bytes()
        for f in Path(db.conn.execute("PRAGMA database_list").fetchone()[2]).parent.iterdir()
        if f.name.startswith("state.db")
    )
    assert b"Zhou Ping" not in files  # not readable in the database nor its WAL


def test_cli_people_delete_needs_yes(
    tmp_path: Path,
    db: sqlite_utils.Database,
    keys: tuple[bytes, bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    creds = Credentials(db, keys[0], hash_params=FAST)
    pid = _enrolled(db, creds, Vault(StaticKeyProvider(keys[0]), keys[1]), "Sun Mei")
    dk = write_key(tmp_path / "k" / "device-key", keys[0])
    sk = write_key(tmp_path / "k" / "site-key", keys[1])
    common = ["--db", str(tmp_path / "state.db"), "--device-key", str(dk), "--site-key", str(sk)]

    assert _run(["people", "delete", pid, *common]) == 1
    assert "--yes" in capsys.readouterr().err
    assert people.find_person(db, pid) is not None

    assert _run(["people", "delete", pid, "--yes", *common]) == 0
    out = capsys.readouterr().out
    assert "3 templates, 1 card(s), 1 PIN(s), 2 consent record(s)" in out
    assert people.find_person(db, pid) is None


def test_adding_a_card_is_stored_with_its_audit_row_or_not_at_all(
    db: sqlite_utils.Database, keys: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.services import credentials as cred_svc

    creds = Credentials(db, keys[0], hash_params=FAST)
    pid = people.add_person(db, "Wang Fang")
    deps = cred_svc.CredentialDeps(creds)

    def failing_append(*args: object, **kw: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr("gateway.services.credentials.audit.append", failing_append)
    with pytest.raises(OSError, match="disk full"):
        cred_svc.add_card(deps, pid, (7, 4242), actor="office-1", channel="cli")
    card = SimpleNamespace(facility=7, card_number=4242)
    assert db.execute("SELECT count(*) FROM cards").fetchone()[0] == 0
    with creds.memory_only():  # nor answered from memory while the database is down
        assert creds.identify_card(card) is None
    monkeypatch.undo()
    cred_svc.add_card(deps, pid, (7, 4242), actor="office-1", channel="cli")
    assert creds.identify_card(card) == pid
    assert db.execute("SELECT count(*) FROM audit WHERE action = 'card.added'").fetchone()[0] == 1
