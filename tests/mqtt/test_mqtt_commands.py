"""Signed commands: accepted when valid; forged/replayed/stale/oversized/malformed rejected."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import sqlite_utils

from gateway.cli import mqtt as commands_cli
from gateway.command_args import UnlockArgs, WithdrawConsentArgs
from gateway.mqtt import sign
from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.commands import CommandProcessor
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.topics import Topics
from gateway.privacy import audit, person_ref
from gateway.store import database as store
from tests.mosquitto import Mosquitto
from tests.mqtt.mqtt_support import Collector

TOPICS = Topics("access", "site1", "gate1")
SITE, GATE = "site1", "gate1"
TARGET_ARGS = ["--site", SITE, "--gate", GATE]
NOW = 1_800_000_000.0
SITE_KEY = bytes(range(32))
REF = person_ref.seal(SITE_KEY, "p1")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def unlock(self, args: UnlockArgs) -> dict[str, Any]:
        self.calls.append(args)
        return {"door": args.door, "seconds": args.seconds}


def make(db: sqlite_utils.Database, now: float = NOW) -> tuple[CommandProcessor, Any, Recorder]:
    key = sign.generate()
    kid = sign.key_id_of(key.public_key())
    proc = CommandProcessor(
        db,
        {kid: sign.public_b64(key.public_key())},
        window_s=60,
        clock=lambda: now,
        site=SITE,
        gate=GATE,
        audit=audit.appender(db),
    )
    rec = Recorder()
    proc.register("unlock", rec.unlock)
    return proc, key, rec


def env_bytes(env: dict[str, Any]) -> bytes:
    return json.dumps(env).encode()


def audit_rows(db: sqlite_utils.Database) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (r[0], r[1], r[2], json.loads(r[3]))
        for r in db.execute("SELECT actor, action, subject, details FROM audit ORDER BY seq")
    ]


def run(proc: CommandProcessor, name: str | None, payload: bytes) -> Any:
    return asyncio.run(proc.process(name, payload))


def test_valid_command_runs_once_and_is_audited() -> None:
    db = store.connect(":memory:")
    proc, key, rec = make(db)
    env = sign.sign_envelope(
        "unlock", {"door": "main"}, key, ts=sign.now_rfc3339(NOW), site=SITE, gate=GATE
    )
    res = run(proc, "unlock", env_bytes(env))
    assert res.ok, res
    assert res.result == {"door": "main", "seconds": 5.0}
    assert res.nonce == env["nonce"]
    assert len(rec.calls) == 1
    actor, action, subject, _ = audit_rows(db)[-1]
    assert (action, subject) == ("command.executed", "main")
    assert actor.startswith("mqtt:")
    assert audit.verify(db).ok


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "bad_signature"),
        ("tampered", "bad_signature"),
        ("tampered_site", "bad_signature"),
        ("tampered_gate", "bad_signature"),
        ("missing_target", "malformed"),
        ("unknown_key", "unknown_key"),
        ("stale", "stale"),
        ("future", "stale"),
        ("oversized", "too_large"),
        ("not_json", "malformed"),
        ("not_object", "malformed"),
        ("missing_sig", "malformed"),
        ("extra_field", "malformed"),
        ("bad_args", "invalid_args"),
        ("topic_mismatch", "topic_mismatch"),
        ("unknown_command", "unknown_command"),
        ("not_registered", "not_supported"),
    ],
)
def test_bad_commands_rejected_never_executed(case: str, reason: str) -> None:
    db = store.connect(":memory:")
    proc, key, rec = make(db)
    ts = sign.now_rfc3339(NOW)
    args: dict[str, Any] = {"door": "main"}
    name = "unlock"
    payload: bytes
    if case == "forged":
        other = sign.generate()
        env = sign.sign_envelope(
            name, args, other, key_id=sign.key_id_of(key.public_key()), ts=ts, site=SITE, gate=GATE
        )
        payload = env_bytes(env)
    elif case == "tampered":
        env = sign.sign_envelope(name, args, key, ts=ts, site=SITE, gate=GATE)
        env["args"] = {"door": "back", "seconds": 30}
        payload = env_bytes(env)
    elif case in ("tampered_site", "tampered_gate"):
        # an envelope signed for another gate, re-addressed to this one
        field = case.removeprefix("tampered_")
        elsewhere = (
            {"site": SITE, "gate": "gate2"} if field == "gate" else {"site": "site2", "gate": GATE}
        )
        env = sign.sign_envelope(name, args, key, ts=ts, **elsewhere)
        env[field] = SITE if field == "site" else GATE
        payload = env_bytes(env)
    elif case == "missing_target":  # old-style envelope, validly signed without site/gate
        env = sign.sign_envelope(name, args, key, ts=ts, site=SITE, gate=GATE)
        for k in ("site", "gate", "sig"):
            del env[k]
        env["sig"] = base64.b64encode(key.sign(sign.canonical(env))).decode()
        payload = env_bytes(env)
    elif case == "unknown_key":
        payload = env_bytes(
            sign.sign_envelope(name, args, sign.generate(), ts=ts, site=SITE, gate=GATE)
        )
    elif case == "stale":
        payload = env_bytes(
            sign.sign_envelope(
                name, args, key, ts=sign.now_rfc3339(NOW - 3600), site=SITE, gate=GATE
            )
        )
    elif case == "future":
        payload = env_bytes(
            sign.sign_envelope(
                name, args, key, ts=sign.now_rfc3339(NOW + 3600), site=SITE, gate=GATE
            )
        )
    elif case == "oversized":
        payload = env_bytes(
            sign.sign_envelope(
                name, {"door": "main", "pad": "x" * 70_000}, key, ts=ts, site=SITE, gate=GATE
            )
        )
    elif case == "not_json":
        payload = b"\xff{not json"
    elif case == "not_object":
        payload = b"[1, 2, 3]"
    elif case == "missing_sig":
        env = sign.sign_envelope(name, args, key, ts=ts, site=SITE, gate=GATE)
        del env["sig"]
        payload = env_bytes(env)
    elif case == "extra_field":
        env = sign.sign_envelope(name, args, key, ts=ts, site=SITE, gate=GATE)
        env["admin"] = True
        payload = env_bytes(env)
    elif case == "bad_args":
        payload = env_bytes(
            sign.sign_envelope(
                name, {"door": "main", "seconds": 999}, key, ts=ts, site=SITE, gate=GATE
            )
        )
    elif case == "topic_mismatch":
        payload = env_bytes(sign.sign_envelope(name, args, key, ts=ts, site=SITE, gate=GATE))
        name = "purge"
    elif case == "unknown_command":
        payload = env_bytes(
            sign.sign_envelope("self_destruct", {}, key, ts=ts, site=SITE, gate=GATE)
        )
        name = "self_destruct"
    elif case == "not_registered":
        payload = env_bytes(
            sign.sign_envelope(
                "purge", {"target": "person", "person_ref": REF}, key, ts=ts, site=SITE, gate=GATE
            )
        )
        name = "purge"
    res = run(proc, name, payload)
    assert not res.ok
    assert res.error == reason, res
    assert res.detail
    assert rec.calls == []
    rows = audit_rows(db)
    assert rows[-1][1] == "command.rejected"
    assert rows[-1][3]["reason"] == reason


@pytest.mark.parametrize(("site", "gate"), [(SITE, "gate2"), ("site2", GATE), ("site2", "gate2")])
def test_command_for_another_gate_is_refused(site: str, gate: str) -> None:
    """A command captured on its way to one gate cannot be replayed to another."""
    db_a, db_b = store.connect(":memory:"), store.connect(":memory:")
    key = sign.generate()
    keys = {sign.key_id_of(key.public_key()): sign.public_b64(key.public_key())}
    rec_a, rec_b = Recorder(), Recorder()
    proc_a = CommandProcessor(
        db_a, keys, window_s=60, clock=lambda: NOW, site=SITE, gate=GATE, audit=audit.appender(db_a)
    )
    proc_b = CommandProcessor(
        db_b, keys, window_s=60, clock=lambda: NOW, site=site, gate=gate, audit=audit.appender(db_b)
    )
    proc_a.register("unlock", rec_a.unlock)
    proc_b.register("unlock", rec_b.unlock)
    env = sign.sign_envelope(
        "unlock", {"door": "main"}, key, ts=sign.now_rfc3339(NOW), site=SITE, gate=GATE
    )
    res = run(proc_b, "unlock", env_bytes(env))
    assert (res.ok, res.error) == (False, "wrong_target")
    assert f"{SITE}/{GATE}" in (res.detail or "")
    assert rec_b.calls == []
    _, action, subject, details = audit_rows(db_b)[-1]
    assert (action, subject, details["reason"]) == ("command.rejected", "unlock", "wrong_target")
    assert audit.verify(db_b).ok
    # the gate it was signed for accepts it
    assert run(proc_a, "unlock", env_bytes(env)).ok
    assert len(rec_a.calls) == 1


def test_processor_and_signer_need_site_and_gate() -> None:
    db = store.connect(":memory:")
    with pytest.raises(ValueError, match="site and gate"):
        CommandProcessor(db, {}, site="", gate=GATE, audit=audit.appender(db))
    with pytest.raises(ValueError, match="site and gate"):
        sign.sign_envelope("unlock", {}, sign.generate(), site=SITE, gate="")


def test_replayed_nonce_rejected_and_remembered_in_db(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = store.connect(path)
    proc, key, rec = make(db)
    payload = env_bytes(
        sign.sign_envelope(
            "unlock", {"door": "main"}, key, ts=sign.now_rfc3339(NOW), site=SITE, gate=GATE
        )
    )
    assert run(proc, "unlock", payload).ok
    again = run(proc, "unlock", payload)
    assert (again.ok, again.error) == (False, "replayed")
    # a restarted gateway (new processor, same DB) still refuses the replay
    proc2 = CommandProcessor(
        db,
        dict(proc._keys),
        window_s=60,
        clock=lambda: NOW + 5,
        site=SITE,
        gate=GATE,
        audit=audit.appender(db),
    )
    proc2.register("unlock", rec.unlock)
    assert run(proc2, "unlock", payload).error == "replayed"
    assert len(rec.calls) == 1


def test_sync_person_requires_compound_consent_scope() -> None:
    db = store.connect(":memory:")
    proc, key, _ = make(db)
    got: list[Any] = []

    async def sync(args: Any) -> dict[str, Any]:
        got.append(args)
        return {"stored": args.bundle.count}

    proc.register("sync_person", sync)
    bundle = {
        "key_id": "k1",
        "wrapped_key_b64": "A" * 60,
        "nonce_b64": "B" * 16,
        "ciphertext_b64": "C" * 700,
        "model": "sface-2021dec",
        "count": 3,
    }
    consent = {
        "scope": "device",
        "notice_version": "v2",
        "notice_sha256": "0" * 64,
        "granted_at": "2026-01-01T00:00:00Z",
        "guardian_ref": person_ref.seal(SITE_KEY, None, role="guardian"),
    }
    args = {"person_ref": REF, "consent": consent, "bundle": bundle}
    ts = sign.now_rfc3339(NOW)
    res = run(
        proc,
        "sync_person",
        env_bytes(sign.sign_envelope("sync_person", args, key, ts=ts, site=SITE, gate=GATE)),
    )
    assert res.error == "consent_scope"
    assert got == []
    args["consent"] = {**consent, "scope": "compound"}
    res = run(
        proc,
        "sync_person",
        env_bytes(sign.sign_envelope("sync_person", args, key, ts=ts, site=SITE, gate=GATE)),
    )
    assert res.ok, res
    assert res.result == {"stored": 3}


def test_handler_failure_is_a_result_not_a_crash() -> None:
    db = store.connect(":memory:")
    proc, key, _ = make(db)

    async def boom(args: WithdrawConsentArgs) -> dict[str, Any]:
        raise RuntimeError("disk on fire")

    proc.register("withdraw_consent", boom)
    env = sign.sign_envelope(
        "withdraw_consent", {"person_ref": REF}, key, ts=sign.now_rfc3339(NOW), site=SITE, gate=GATE
    )
    res = run(proc, "withdraw_consent", env_bytes(env))
    assert (res.ok, res.error) == (False, "handler_failed")
    assert audit_rows(db)[-1][1] == "command.failed"


def test_cli_keygen_and_sign_roundtrip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    commands_cli.register(parser.add_subparsers(dest="cmd"))
    keyfile = tmp_path / "op.key"
    a = parser.parse_args(["mqtt", "keygen", "--out", str(keyfile)])
    assert a.func(a) == 0
    pub = json.loads(capsys.readouterr().out.splitlines()[0])
    assert keyfile.stat().st_mode & 0o077 == 0
    assert a.func(a) == 1  # never overwrites a key
    capsys.readouterr()
    door = '{"door": "main"}'
    a = parser.parse_args(
        ["mqtt", "sign", "unlock", "--args", door, "--key", str(keyfile), *TARGET_ARGS]
    )
    assert a.func(a) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["key_id"] == pub["key_id"]
    assert (env["site"], env["gate"]) == (SITE, GATE)
    db = store.connect(":memory:")
    import time

    proc = CommandProcessor(
        db,
        {pub["key_id"]: pub["public_key"]},
        clock=time.time,
        site=SITE,
        gate=GATE,
        audit=audit.appender(db),
    )
    rec = Recorder()
    proc.register("unlock", rec.unlock)
    assert run(proc, "unlock", json.dumps(env).encode()).ok
    a = parser.parse_args(
        ["mqtt", "sign", "unlock", "--args", "[1]", "--key", str(keyfile), *TARGET_ARGS]
    )
    assert a.func(a) == 2
    with pytest.raises(SystemExit):  # the target gate is required
        parser.parse_args(["mqtt", "sign", "unlock", "--key", str(keyfile), "--site", SITE])
    capsys.readouterr()


def test_cli_pin_args_seals_the_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import secrets

    from gateway.command_args import SetPinArgs
    from gateway.credentials.hashing import open_pin_hash

    site = secrets.token_bytes(32)
    key_file = tmp_path / "site-key"
    key_file.write_bytes(site)
    key_file.chmod(0o600)
    parser = argparse.ArgumentParser()
    commands_cli.register(parser.add_subparsers(dest="cmd"))
    a = parser.parse_args(["mqtt", "pin-args", "p-1", "--site-key", str(key_file)])
    monkeypatch.setattr("sys.stdin", io.StringIO("834201\n"))
    assert a.func(a) == 0
    out = capsys.readouterr().out
    assert "834201" not in out
    assert "argon2" not in out
    args = SetPinArgs.model_validate_json(out)
    assert open_pin_hash(args.pin_hash_sealed, "p-1", site).startswith("$argon2id$")
    assert '"p-1"' not in out  # the person travels sealed
    assert person_ref.open_ref(site, args.person_ref) == "p-1"
    monkeypatch.setattr("sys.stdin", io.StringIO("12\n"))
    assert a.func(a) == 2
    assert "digits" in capsys.readouterr().err


@pytest.mark.mosquitto
def test_commands_over_mqtt_end_to_end(broker: Mosquitto, tmp_path: Path) -> None:
    """Valid, forged, replayed, stale, oversized and malformed commands through the broker."""
    db = store.connect(tmp_path / "s.db")
    key = sign.generate()
    kid = sign.key_id_of(key.public_key())
    proc = CommandProcessor(
        db,
        {kid: sign.public_b64(key.public_key())},
        window_s=60,
        site=SITE,
        gate=GATE,
        audit=audit.appender(db),
    )
    rec = Recorder()
    proc.register("unlock", rec.unlock)
    service = MqttService(
        MqttSettings(port=broker.port, client_id="gate1", backoff_max_s=0.3),
        TOPICS,
        Outbox(db, TOPICS),
        proc,
    )
    good = sign.sign_envelope("unlock", {"door": "main"}, key, site=SITE, gate=GATE)
    cases: list[tuple[bytes, str | None]] = [
        (env_bytes(good), None),
        (env_bytes(good), "replayed"),
        (
            env_bytes(
                sign.sign_envelope(
                    "unlock", {"door": "main"}, sign.generate(), key_id=kid, site=SITE, gate=GATE
                )
            ),
            "bad_signature",
        ),
        (
            env_bytes(
                sign.sign_envelope(
                    "unlock", {"door": "main"}, key, ts="2020-01-01T00:00:00Z", site=SITE, gate=GATE
                )
            ),
            "stale",
        ),
        (b"{" + b" " * 70_000 + b"}", "too_large"),
        (b"definitely not json", "malformed"),
    ]

    async def go() -> list[dict[str, Any]]:
        task = asyncio.create_task(service.run())
        try:
            async with Collector(broker, TOPICS.command_result, client_id="mgmt") as col:
                for _ in range(500):
                    if service.ready:  # subscribed to cmd/+
                        break
                    await asyncio.sleep(0.02)
                async with aiomqtt.Client(broker.host, broker.port) as mgmt:
                    for payload, _ in cases:
                        await mgmt.publish(TOPICS.command("unlock"), payload, qos=1)
                await col.wait_for(lambda c: len(c.messages) >= len(cases))
                return [d for _, d, _ in col.messages]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    results = asyncio.run(go())
    assert [r["error"] for r in results] == [reason for _, reason in cases]
    assert results[0]["ok"] is True
    assert len(rec.calls) == 1  # only the valid one ran
    actions = [r[1] for r in audit_rows(db)]
    assert actions.count("command.rejected") == len(cases) - 1
    assert actions.count("command.executed") == 1


@pytest.mark.parametrize(
    "args",
    [
        {"person_id": "p1"},
        {"person_id": "p1", "receipt_id": "r1"},
        {"person_ref": REF, "consent": {"guardian_id": "g1"}},
    ],
)
def test_a_person_id_in_clear_is_refused_with_a_clear_reason(args: dict[str, Any]) -> None:
    """The format before issue #15 is refused (no upgrade window), naming the field and the
    fix, and the refusal itself names nobody."""
    db = store.connect(":memory:")
    proc, key, _ = make(db)
    called: list[Any] = []

    async def withdraw(a: Any) -> dict[str, Any]:
        called.append(a)
        return {}

    proc.register("withdraw_consent", withdraw)
    env = sign.sign_envelope(
        "withdraw_consent", args, key, ts=sign.now_rfc3339(NOW), site=SITE, gate=GATE
    )
    res = run(proc, "withdraw_consent", env_bytes(env))
    assert (res.ok, res.error) == (False, "clear_identity")
    assert "_id: a person id in clear is refused" in (res.detail or "")
    assert "person_ref" in (res.detail or "") or "guardian_ref" in (res.detail or "")
    assert "p1" not in res.to_json().decode()
    assert "g1" not in res.to_json().decode()
    assert called == []
    assert audit_rows(db)[-1][3]["reason"] == "clear_identity"


def test_cli_seal_person_prints_unlinkable_refs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = bytes(range(1, 33))
    key_file = tmp_path / "site-key"
    key_file.write_bytes(site)
    key_file.chmod(0o600)
    parser = argparse.ArgumentParser()
    commands_cli.register(parser.add_subparsers(dest="cmd"))
    a = parser.parse_args(["mqtt", "seal-person", "p-42", "--site-key", str(key_file)])
    assert a.func(a) == 0
    assert a.func(a) == 0
    first, second = capsys.readouterr().out.split()
    assert first != second  # a fresh nonce each time
    assert len(first) == len(second)
    assert "p-42" not in first
    assert person_ref.open_ref(site, first) == person_ref.open_ref(site, second) == "p-42"
    with pytest.raises(person_ref.PersonRefError, match="does not open"):
        person_ref.open_ref(SITE_KEY, first)  # another site's key
    with pytest.raises(person_ref.PersonRefError, match="does not open"):
        person_ref.open_ref(site, first, role="guardian")  # not a guardian's ref
    g = parser.parse_args(["mqtt", "seal-person", "", "--site-key", str(key_file)])
    assert g.func(g) == 0  # the empty id: "no guardian", as long as any other ref
    none_ref = capsys.readouterr().out.strip()
    assert len(none_ref) == len(first)
    assert person_ref.open_ref(site, none_ref) is None
