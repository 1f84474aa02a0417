"""Credentials: keyed card hashes, argon2id PINs with a pepper index, lockout, duress."""

from __future__ import annotations

from typing import Any

import pytest
import sqlite_utils

from gateway.credentials.hashing import (
    CredentialError,
    LockedOutError,
    LockoutEvent,
    LockoutPolicy,
    PinHashParams,
    PinTerms,
    lockout_seconds,
    seal_pin_hash,
)
from gateway.credentials.store import Credentials
from gateway.hardware.events import CardRead
from gateway.privacy import person_ref
from gateway.store import database as store

KEY = bytes(range(32))
FAST = PinHashParams(time_cost=1, memory_kib=1024, parallelism=1)


def make_db() -> sqlite_utils.Database:
    db = store.connect(":memory:")
    for pid, role in (("p1", "resident"), ("p2", "resident"), ("v1", "visitor")):
        db.execute(
            "INSERT INTO people (id, display_name, role, created_at) VALUES (?, ?, ?, 0)",
            [pid, pid, role],
        )
    return db


def make(events: list[LockoutEvent] | None = None, **kw: object) -> Credentials:
    return Credentials(
        make_db(),
        KEY,
        hash_params=FAST,
        on_lockout=events.append if events is not None else None,
        **kw,  # type: ignore[arg-type]
    )


def test_card_identify_revoke_and_1to1() -> None:
    c = make()
    c.add_card("p1", 42, 12345, now=1.0)
    read = CardRead("r", 12345, 42, "H10301", 26)
    assert c.identify_card(read) == "p1"
    assert c.verify_card_for("p1", read)
    assert not c.verify_card_for("p2", read)
    assert c.identify_card(CardRead("r", 12345, 43, "H10301", 26)) is None
    with pytest.raises(CredentialError, match="already enrolled"):
        c.add_card("p2", 42, 12345, now=2.0)
    assert c.revoke_card(42, 12345, now=3.0)
    assert c.identify_card(read) is None
    c.add_card("p2", 42, 12345, now=4.0)  # a revoked card can be re-issued
    assert c.identify_card(read) == "p2"


def test_card_hash_depends_on_device_key() -> None:
    a = Credentials(make_db(), KEY, hash_params=FAST)
    b = Credentials(make_db(), bytes(32), hash_params=FAST)
    assert a.card_hmac(1, 2) != b.card_hmac(1, 2)
    assert a.card_hmac(1, 2) != a.card_hmac(2, 1)


def test_pin_identify_and_verify() -> None:
    c = make()
    c.set_pin("p1", "135790", now=0.0)
    c.set_pin("p2", "246801", now=0.0)
    m = c.identify_pin("135790", reader="gate", now=1.0)
    assert m is not None
    assert (m.person_id, m.kind, m.duress) == ("p1", "normal", False)
    assert c.verify_pin_for("p2", "246801", reader="gate", now=1.0) is not None
    assert c.verify_pin_for("p2", "135790", reader="gate", now=1.0) is None
    assert c.identify_pin("000000", reader="gate", now=1.0) is None
    assert c.identify_pin("12ab", reader="gate", now=1.0) is None


def test_pin_rules() -> None:
    c = make()
    with pytest.raises(CredentialError, match="4 to 8 digits"):
        c.set_pin("p1", "12", now=0.0)
    with pytest.raises(CredentialError, match="4 to 8 digits"):
        c.set_pin("p1", "12a4", now=0.0)
    c.set_pin("p1", "4711", now=0.0)
    with pytest.raises(CredentialError, match="already in use"):
        c.set_pin("p2", "4711", now=0.0)
    with pytest.raises(CredentialError, match="expiry or a use count"):
        c.set_pin("v1", "9999", now=0.0, terms=PinTerms("visitor"))
    # a new PIN replaces the old one of the same kind
    c.set_pin("p1", "8888", now=1.0)
    assert c.identify_pin("4711", reader="g", now=2.0) is None
    assert c.identify_pin("8888", reader="g", now=2.0) is not None
    assert c.revoke_pins("p1", now=3.0) == 1
    assert c.identify_pin("8888", reader="g", now=4.0) is None


def test_pin_lookup_checks_only_its_bucket() -> None:
    c = make()
    calls: list[str] = []
    real = c._verify

    def counting(pin_hash: str, pin: str) -> bool:
        calls.append(pin_hash)
        return real(pin_hash, pin)

    c._verify = counting  # type: ignore[method-assign]
    for i in range(40):
        c.db.execute(
            "INSERT INTO people (id, display_name, role, created_at) "
            "VALUES (?, 'x', 'resident', 0)",
            [f"x{i}"],
        )
        c.db.execute(
            "INSERT INTO pins (person_id, pin_hash, pin_index, kind, created_at) "
            "VALUES (?, ?, ?, 'normal', 0)",
            [f"x{i}", c._ph.hash(f"{100000 + i}"), c.pin_index(f"{100000 + i}")],
        )
    calls.clear()
    assert c.identify_pin("100017", reader="g", now=1.0) is not None
    assert len(calls) <= 2, "only same-bucket candidates may be argon2-verified"


def test_duress_pin_grants_with_flag() -> None:
    c = make()
    c.set_pin("p1", "1234", now=0.0)
    c.set_pin("p1", "1235", now=0.0, terms=PinTerms("duress"))
    m = c.identify_pin("1235", reader="g", now=1.0)
    assert m is not None
    assert (m.person_id, m.duress) == ("p1", True)
    m2 = c.verify_pin_for("p1", "1235", reader="g", now=1.0)
    assert m2 is not None
    assert m2.duress
    m3 = c.verify_pin_for("p1", "1234", reader="g", now=1.0)
    assert m3 is not None
    assert not m3.duress


def test_visitor_pin_expiry_and_uses() -> None:
    c = make()
    c.set_pin("v1", "5555", now=0.0, terms=PinTerms("visitor", expires_at=100.0, uses_left=2))
    m = c.identify_pin("5555", reader="g", now=1.0)
    assert m is not None
    assert (m.kind, m.expires_at, m.uses_left) == ("visitor", 100.0, 2)
    assert c.consume_use(m.pin_id)  # after a grant
    m = c.identify_pin("5555", reader="g", now=2.0)  # a denied attempt costs nothing
    assert m is not None
    assert m.uses_left == 1
    assert c.identify_pin("5555", reader="g", now=3.0, consume=True) is not None
    assert c.identify_pin("5555", reader="g", now=4.0) is None  # used up
    assert not c.consume_use(m.pin_id)
    c.set_pin("v1", "6666", now=5.0, terms=PinTerms("visitor", expires_at=10.0))
    assert c.identify_pin("6666", reader="h", now=9.0) is not None
    assert c.identify_pin("6666", reader="h", now=10.0) is None  # expired


def test_lockout_policy_is_exponential_and_capped() -> None:
    p = LockoutPolicy(free_attempts=3, base_s=30, factor=2, max_s=200)
    assert [lockout_seconds(n, p) for n in range(1, 8)] == [0, 0, 30, 60, 120, 200, 200]


def test_reader_lockout_timing_and_event() -> None:
    events: list[LockoutEvent] = []
    c = make(events, lockout=LockoutPolicy(free_attempts=3, base_s=30, reset_after_s=900))
    c.set_pin("p1", "1234", now=0.0)
    assert c.identify_pin("0000", reader="gate", now=10.0) is None
    assert c.identify_pin("0001", reader="gate", now=11.0) is None
    assert not events
    assert c.identify_pin("0002", reader="gate", now=12.0) is None
    assert events == [LockoutEvent("reader", "gate", 3, 42.0, 12.0)]
    with pytest.raises(LockedOutError) as info:
        c.identify_pin("1234", reader="gate", now=41.0)  # even the right PIN waits
    assert info.value.retry_after_s == pytest.approx(1.0)
    assert c.identify_pin("1234", reader="other", now=41.0) is not None  # per reader
    assert c.identify_pin("1234", reader="gate", now=42.0) is not None
    assert c.identify_pin("0003", reader="gate", now=43.0) is None  # 4th failure: 60 s
    assert events[-1].locked_until == 103.0
    # long quiet period forgets the history
    assert c.identify_pin("0004", reader="gate", now=103.0 + 901) is None
    assert c.locked_for("reader", "gate", 103.0 + 901) == 0.0


def test_person_lockout_for_card_plus_pin() -> None:
    events: list[LockoutEvent] = []
    c = make(events, lockout=LockoutPolicy(free_attempts=2, base_s=10))
    c.set_pin("p1", "1234", now=0.0)
    assert c.verify_pin_for("p1", "9999", reader="a", now=1.0) is None
    assert c.verify_pin_for("p1", "9998", reader="b", now=2.0) is None  # other reader
    assert any(e.scope == "person" and e.subject == "p1" for e in events)
    with pytest.raises(LockedOutError):
        c.verify_pin_for("p1", "1234", reader="c", now=3.0)
    assert c.verify_pin_for("p1", "1234", reader="c", now=12.0) is not None
    assert c.locked_for("person", "p1", 12.0) == 0.0  # success clears the person


def test_db_dump_has_no_plaintext_card_or_pin() -> None:
    c = Credentials(make_db(), KEY)  # production argon2 parameters
    card_no, pin, duress, visitor = 8675309, "97531864", "86420975", "31415926"
    c.add_card("p1", 123, card_no, now=0.0)
    c.set_pin("p1", pin, now=0.0)
    c.set_pin("p1", duress, now=0.0, terms=PinTerms("duress"))
    c.set_pin("v1", visitor, now=0.0, terms=PinTerms("visitor", uses_left=3))
    c.identify_pin("11112222", reader="g", now=1.0)
    dump = "\n".join(c.db.conn.iterdump())
    for secret in (str(card_no), hex(card_no)[2:], pin, duress, visitor):
        assert secret not in dump
    assert "argon2id" in dump


# -- pre-hashed PINs from the management side (MQTT set_pin, issue #7) -----------------

SITE = bytes(range(100, 132))


def management_record(pin: str, *, t: int = 2, m: int = 1024, p: int = 1) -> tuple[str, int]:
    """What the management system computes: argon2id hash + index under the site key."""
    from argon2 import PasswordHasher

    from gateway.credentials.hashing import pin_index_for
    from gateway.keys import derive

    index_key = derive(SITE, "access-gateway/pin-index/v1")
    return PasswordHasher(time_cost=t, memory_cost=m, parallelism=p).hash(pin), pin_index_for(
        pin, index_key
    )


def site_creds(db: sqlite_utils.Database | None = None) -> Credentials:
    from gateway.keys import Keys

    return Credentials(
        db or make_db(), KEY, index_key=Keys(KEY, SITE).pin_index_site, hash_params=FAST
    )


def test_set_pin_hash_from_management_side_is_found() -> None:
    c = site_creds()
    h, idx = management_record("482916")
    pin_id = c.set_pin_hash("p1", h, idx, now=0.0)
    m = c.identify_pin("482916", reader="g", now=1.0)
    assert m is not None
    assert (m.person_id, m.pin_id, m.kind) == ("p1", pin_id, "normal")
    assert c.verify_pin_for("p1", "482916", reader="g", now=1.0) is not None
    hv, iv = management_record("7001")
    c.set_pin_hash("v1", hv, iv, now=0.0, terms=PinTerms("visitor", uses_left=1))
    mv = c.identify_pin("7001", reader="g", now=2.0, consume=True)
    assert mv is not None
    assert mv.kind == "visitor"
    assert c.identify_pin("7001", reader="g", now=3.0) is None
    # a new PIN of the same kind replaces the old one
    h2, idx2 = management_record("555123")
    c.set_pin_hash("p1", h2, idx2, now=4.0)
    assert c.identify_pin("482916", reader="h", now=5.0) is None
    assert c.identify_pin("555123", reader="h", now=5.0) is not None


def test_management_pin_record_is_accepted_and_found() -> None:
    from gateway.credentials.hashing import (
        CredentialError,
        PinHashParams,
        management_pin_record,
        open_pin_hash,
    )

    c = site_creds()
    sealed, idx = management_pin_record("604812", SITE, "p1", FAST)
    assert "604812" not in sealed
    assert "argon2" not in sealed  # the hash itself does not travel in the clear
    h = open_pin_hash(sealed, "p1", SITE)
    assert h.startswith("$argon2id$")
    c.set_pin_hash("p1", h, idx, now=0.0)
    m = c.identify_pin("604812", reader="g", now=1.0)
    assert m is not None
    assert m.person_id == "p1"
    assert c.identify_pin("604813", reader="g", now=1.0) is None
    # Another site's key gives another index: the PIN is not found under this site's key.
    sealed3, idx3 = management_pin_record("771203", b"y" * 32, "p2", FAST)
    c.set_pin_hash("p2", open_pin_hash(sealed3, "p2", b"y" * 32), idx3, now=0.0)
    assert c.identify_pin("771203", reader="g", now=2.0) is None or idx3 == pin_index_site("771203")
    with pytest.raises(CredentialError, match="digits"):
        management_pin_record("12a4", SITE, "p1", PinHashParams())
    with pytest.raises(CredentialError, match="does not open"):
        open_pin_hash(sealed, "p2", SITE)


def pin_index_site(pin: str) -> int:
    from gateway.credentials.hashing import pin_index_for
    from gateway.keys import derive

    return pin_index_for(pin, derive(SITE, "access-gateway/pin-index/v1"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.replace("$argon2id$", "$argon2i$"), "argon2id required"),
        (lambda h: h.replace("m=1024", "m=512"), "m=512 KiB < 1024"),
        (lambda h: h.replace("t=2", "t=0"), "t=0 < 1"),
        (lambda h: h.replace("m=1024", "m=4194304"), "> 262144"),
        (lambda h: h.replace("p=1", "p=64"), "p=64"),
        (lambda h: h.replace("v=19", "v=16"), "version"),
        (lambda h: "$argon2id$nonsense", "not a valid"),
        (lambda h: h.rsplit("$", 1)[0] + "$c2hvcnQ", "hash of"),
    ],
)
def test_set_pin_hash_rejects_weak_or_invalid_hashes(mutate: Any, message: str) -> None:
    c = site_creds()
    h, idx = management_record("482916")
    with pytest.raises(CredentialError, match=message):
        c.set_pin_hash("p1", mutate(h), idx, now=0.0)
    assert c.db.execute("SELECT count(*) FROM pins").fetchone()[0] == 0


def test_set_pin_hash_needs_our_minimum_cost_and_a_valid_record() -> None:
    c = Credentials(make_db(), KEY, index_key=bytes(32))  # production parameters
    weak, idx = management_record("482916", t=1, m=1024)
    with pytest.raises(CredentialError, match=r"t=1 < 2.*m=1024 KiB < 19456"):
        c.set_pin_hash("p1", weak, idx, now=0.0)
    c2 = site_creds()
    h, idx = management_record("482916")
    for bad in (-1, 65536):
        with pytest.raises(CredentialError, match="pin_index"):
            c2.set_pin_hash("p1", h, bad, now=0.0)
    with pytest.raises(CredentialError, match="expiry or a use count"):
        c2.set_pin_hash("v1", h, idx, now=0.0, terms=PinTerms("visitor"))
    with pytest.raises(CredentialError, match="unknown person"):
        c2.set_pin_hash("nobody", h, idx, now=0.0)


def test_same_pin_for_two_people_is_refused_at_the_keypad() -> None:
    c = site_creds()
    h1, idx = management_record("482916")
    h2, _ = management_record("482916")
    c.set_pin_hash("p1", h1, idx, now=0.0)
    c.set_pin_hash("p2", h2, idx, now=0.0)
    assert c.identify_pin("482916", reader="g", now=1.0) is None
    assert c.verify_pin_for("p2", "482916", reader="g", now=1.0) is not None  # 1:1 is fine


def test_legacy_device_indexed_pins_still_found_and_reindexed() -> None:
    db = make_db()
    old = Credentials(db, KEY, hash_params=FAST)  # before the site-keyed index
    old.set_pin("p1", "482916", now=0.0)
    new = site_creds(db)
    m = new.identify_pin("482916", reader="g", now=1.0)
    assert m is not None
    assert m.person_id == "p1"
    row = db.execute("SELECT pin_index FROM pins WHERE id = ?", [m.pin_id]).fetchone()
    assert row[0] == management_record("482916")[1]  # moved to the site-keyed bucket
    with pytest.raises(CredentialError, match="already in use"):
        new.set_pin("p2", "482916", now=2.0)


def test_set_pin_command_end_to_end() -> None:
    """Signed MQTT set_pin -> SetPinArgs -> RemoteCommands.set_pin -> identify_pin."""
    import asyncio
    import json
    from types import SimpleNamespace

    from gateway.gate.remote_commands import RemoteCommands
    from gateway.mqtt import sign
    from gateway.mqtt.commands import CommandProcessor
    from gateway.privacy import audit

    now = 1_800_000_000.0
    c = site_creds()
    key = sign.generate()
    proc = CommandProcessor(
        c.db,
        {sign.key_id_of(key.public_key()): sign.public_b64(key.public_key())},
        clock=lambda: now,
        site="site1",
        gate="gate1",
        audit=audit.appender(c.db),
    )
    deps = SimpleNamespace(  # only what the handler touches
        controller=SimpleNamespace(credentials=c),
        cache_state=None,
        run_decide=asyncio.to_thread,
        keys=SimpleNamespace(site=SITE),
    )
    handlers = RemoteCommands(deps, None)  # type: ignore[arg-type]
    proc.register("set_pin", handlers.set_pin)
    h, idx = management_record("90210")

    def send(args: dict[str, Any]) -> Any:
        args = dict(args)
        pid = args.pop("person_id")  # a person travels sealed (person_ref), never in clear
        if "pin_hash" in args:  # travels sealed under the site key, bound to the person
            args["pin_hash_sealed"] = seal_pin_hash(args.pop("pin_hash"), pid, SITE)
        args["person_ref"] = person_ref.seal(SITE, pid)
        env = sign.sign_envelope(
            "set_pin", args, key, site="site1", gate="gate1", ts=sign.now_rfc3339(now)
        )
        return asyncio.run(proc.process("set_pin", json.dumps(env).encode()))

    res = send(
        {
            "person_id": "v1",
            "pin_hash": h,
            "pin_index": idx,
            "kind": "visitor",
            "expires_at": "2099-01-01T00:00:00Z",
        }
    )
    assert res.ok, res
    m = c.identify_pin("90210", reader="g", now=now)
    assert m is not None
    assert (m.person_id, m.pin_id) == ("v1", res.result["pin_id"])
    assert m.expires_at == pytest.approx(4070908800.0)
    missing = send({"person_id": "p1", "pin_hash": h})
    assert (missing.ok, missing.error) == (False, "invalid_args")
    naive = send(
        {
            "person_id": "p1",
            "pin_hash": h,
            "pin_index": idx,
            "expires_at": "2099-01-01T00:00:00",
        }
    )
    assert (naive.ok, naive.error) == (False, "invalid_args")
    weak = send({"person_id": "p1", "pin_hash": h.replace("m=1024", "m=512"), "pin_index": idx})
    assert (weak.ok, weak.error) == (False, "refused")
    # A hash sealed for another person, or under another site's key, is refused.
    other = seal_pin_hash(h, "p2", SITE)
    moved = send({"person_id": "p1", "pin_hash_sealed": other, "pin_index": idx})
    assert (moved.ok, moved.error) == (False, "refused")
    foreign = seal_pin_hash(h, "p1", b"z" * 32)
    wrong_site = send({"person_id": "p1", "pin_hash_sealed": foreign, "pin_index": idx})
    assert (wrong_site.ok, wrong_site.error) == (False, "refused")
    bare = send({"person_id": "p1", "pin_hash_sealed": h, "pin_index": idx})
    assert (bare.ok, bare.error) == (False, "invalid_args")  # a bare hash is not accepted
