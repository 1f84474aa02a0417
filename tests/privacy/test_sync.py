"""Sync of a person's encrypted templates between gates of one site (consent scope compound)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlite_utils

from gateway.cli import privacy as commands
from gateway.command_args import SyncPersonArgs, TemplateBundle
from gateway.mqtt import sign
from gateway.mqtt.commands import CommandProcessor
from gateway.privacy import audit, consent, people, person_ref
from gateway.privacy.enroll import enroll_images
from gateway.privacy.notice import Notice
from gateway.privacy.sync import (
    SyncError,
    export_sync_args,
    handle_sync_person,
    import_bundle,
)
from gateway.privacy.vault import Vault
from gateway.services.withdrawal import withdraw
from gateway.store import database as store

from .conftest import NOTICE_EN, FakeGallery, random_embedding, unit, write_key
from .test_enroll import FakePipeline, _img

CODES = (10, 20, 30)  # FakePipeline: image code -> random_embedding(code)
THRESHOLD = 0.5


@dataclass
class Gate:
    db: sqlite_utils.Database
    vault: Vault
    gallery: FakeGallery
    site_key: bytes


def _gate(tmp_path: Path, name: str, site_key: bytes) -> Gate:
    db = store.connect(tmp_path / name / "state.db")
    vault = Vault.from_root_keys(secrets.token_bytes(32), site_key)
    return Gate(db, vault, FakeGallery({}), site_key)


@pytest.fixture
def site() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def gates(tmp_path: Path, site: bytes) -> Iterator[tuple[Gate, Gate]]:
    a, b = _gate(tmp_path, "a", site), _gate(tmp_path, "b", site)
    yield a, b
    a.db.conn.close()
    b.db.conn.close()


def _enrol(gate: Gate, tmp_path: Path, *, scope: str = "compound", name: str = "Li Wei") -> str:
    notice = Notice("2025-06", NOTICE_EN)
    pid = people.add_person(gate.db, name, unit="3-402")
    consent.grant(gate.db, pid, notice, method="paper", recorded_by="office-1", scope=scope)
    imgs = tmp_path / f"imgs-{pid}"
    imgs.mkdir()
    paths = [_img(imgs / f"{c}.png", c) for c in CODES]
    enroll_images(gate.db, gate.vault, FakePipeline(), gate.gallery, pid, paths, None)
    return pid


def _probe(seed: int = CODES[0]) -> np.ndarray:
    noise = np.random.default_rng(99).standard_normal(128) * 0.02
    return unit(random_embedding(seed) + noise)


def _args(sync_args: dict[str, Any]) -> SyncPersonArgs:
    return SyncPersonArgs.model_validate(json.loads(json.dumps(sync_args)))


def _count(db: sqlite_utils.Database, table: str) -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - test


def _actions(db: sqlite_utils.Database) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (r[0], r[1], json.loads(r[2]))
        for r in db.execute("SELECT action, subject, details FROM audit ORDER BY seq")
    ]


def _tampered(sync_args: dict[str, Any], **bundle: Any) -> SyncPersonArgs:
    data = json.loads(json.dumps(sync_args))
    data["bundle"].update(bundle)
    return SyncPersonArgs.model_validate(data)


def _flip(b64: str, index: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_export_import_b_matches_same_probe(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    other = _enrol(a, tmp_path, name="Wang Fang")  # a decoy on both gates
    probe = _probe()
    assert a.gallery.identify(a.vault.transform(probe), THRESHOLD) == pid

    sync_args = export_sync_args(
        a.db, a.vault, pid, a.site_key, seal_key=a.site_key, actor="office-1"
    )
    # the envelope the management side signs is valid
    args = _args(sync_args)
    TemplateBundle.model_validate(sync_args["bundle"])
    assert args.consent.scope == "compound"
    assert args.bundle.count == len(CODES)

    b.vault.store_templates(b.db, _add_bare(b.db, other), random_embedding(55), model="x")
    res = import_bundle(
        b.db, b.vault, b.gallery, args, b.site_key, seal_key=b.site_key, actor="mqtt:mgmt"
    )
    assert res == {
        "templates": len(CODES),
        "person_added": True,
        "consent_recorded": True,
        "active": True,
    }
    assert b.gallery.identify(b.vault.transform(probe), THRESHOLD) == pid
    # another person's probe is not taken for the synced one
    assert b.gallery.identify(b.vault.transform(random_embedding(77)), THRESHOLD) is None
    # the same site-space templates, re-wrapped under B's own device key
    np.testing.assert_allclose(b.vault.load_person(b.db, pid), a.vault.load_person(a.db, pid))
    wrapped_a = a.db.execute("SELECT key_id FROM face_keys WHERE person_id = ?", [pid]).fetchone()
    wrapped_b = b.db.execute("SELECT key_id FROM face_keys WHERE person_id = ?", [pid]).fetchone()
    assert wrapped_a[0] != wrapped_b[0]

    person = people.get_person(b.db, pid)
    assert (person.display_name, person.unit) == ("synced", "")
    rec = consent.latest(b.db, pid)
    assert rec is not None
    assert (rec.status, rec.scope, rec.method, rec.recorded_by) == (
        "granted",
        "compound",
        "sync",
        "mqtt:mgmt",
    )
    rec_a = consent.latest(a.db, pid)
    assert rec_a is not None
    assert (rec.notice_version, rec.notice_sha256) == (rec_a.notice_version, rec_a.notice_sha256)


def _add_bare(db: sqlite_utils.Database, pid: str) -> str:
    db.execute(
        "INSERT INTO people (id, display_name, unit, role, access_group, is_minor,"
        " needs_renotice, created_at) VALUES (?, 'x', '', 'resident', 'residents', 0, 0, 0)",
        [pid],
    )
    return pid


def test_audit_rows_on_both_sides(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    args = _args(
        export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key, actor="office-1")
    )
    import_bundle(
        b.db, b.vault, b.gallery, args, b.site_key, seal_key=b.site_key, actor="mqtt:mgmt"
    )
    model = a.db.execute("SELECT DISTINCT model FROM templates").fetchone()[0]
    exports = [d for act, s, d in _actions(a.db) if act == "template.export" and s == pid]
    assert exports == [
        {
            "count": len(CODES),
            "model": model,
            "key_id": args.bundle.key_id,
            "format": "ag-template-bundle-v1",
        }
    ]
    creates = [d for act, s, d in _actions(b.db) if act == "template.create" and s == pid]
    assert len(creates) == 1
    assert creates[0]["source"] == "sync"
    assert creates[0]["count"] == len(CODES)
    assert {act for act, s, _ in _actions(b.db) if s == pid} >= {
        "person.add",
        "consent.granted",
        "template.create",
    }
    assert audit.verify(a.db).ok
    assert audit.verify(b.db).ok


def test_other_site_cannot_import(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, _ = gates
    c = _gate(tmp_path, "c", secrets.token_bytes(32))
    pid = _enrol(a, tmp_path)
    sync_args = export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key)
    with pytest.raises(SyncError, match="another site"):
        import_bundle(
            c.db,
            c.vault,
            c.gallery,
            _args(sync_args),
            c.site_key,
            seal_key=c.site_key,
            actor="mqtt:m",
        )
    # even with the key id forged to C's, the wrapped key does not open
    from gateway.privacy.sync import bundle_key_id, bundle_wrap_key

    forged = _tampered(sync_args, key_id=bundle_key_id(bundle_wrap_key(c.site_key)))
    with pytest.raises(SyncError, match="does not unwrap"):
        # (the office's site key opens the person ref; the gates key is another site's)
        import_bundle(
            c.db, c.vault, c.gallery, forged, c.site_key, seal_key=a.site_key, actor="mqtt:m"
        )
    assert (_count(c.db, "people"), _count(c.db, "consents"), _count(c.db, "templates")) == (
        0,
        0,
        0,
    )
    assert c.gallery.data == {}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: {"ciphertext_b64": _flip(s["bundle"]["ciphertext_b64"], 5)}, "decrypt"),
        (lambda s: {"ciphertext_b64": _flip(s["bundle"]["ciphertext_b64"], -1)}, "decrypt"),
        (lambda s: {"nonce_b64": _flip(s["bundle"]["nonce_b64"], 0)}, "decrypt"),
        (lambda s: {"wrapped_key_b64": _flip(s["bundle"]["wrapped_key_b64"], 20)}, "unwrap"),
        (lambda s: {"count": s["bundle"]["count"] - 1}, "decrypt"),
        (lambda s: {"model": "other-model"}, "decrypt"),
        (lambda s: {"ciphertext_b64": "!!!!" + s["bundle"]["ciphertext_b64"][4:]}, "base64"),
    ],
)
def test_tampered_bundle_refused_nothing_stored(
    gates: tuple[Gate, Gate],
    tmp_path: Path,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    match: str,
) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    sync_args = export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key)
    with pytest.raises(SyncError, match=match):
        import_bundle(
            b.db,
            b.vault,
            b.gallery,
            _tampered(sync_args, **change(sync_args)),
            b.site_key,
            seal_key=b.site_key,
            actor="mqtt:m",
        )
    assert (_count(b.db, "people"), _count(b.db, "consents"), _count(b.db, "templates")) == (
        0,
        0,
        0,
    )
    assert _count(b.db, "audit") == 0
    assert b.gallery.data == {}


def test_bundle_for_another_person_refused(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    data = export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key)
    data["person_ref"] = person_ref.seal(a.site_key, "someone-else")
    with pytest.raises(SyncError, match="does not unwrap"):
        import_bundle(
            b.db, b.vault, b.gallery, _args(data), b.site_key, seal_key=b.site_key, actor="mqtt:m"
        )
    assert _count(b.db, "templates") == 0


def test_device_scope_refused_at_export(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, _ = gates
    pid = _enrol(a, tmp_path, scope="device")
    n_audit = _count(a.db, "audit")
    with pytest.raises(SyncError, match="scope is 'device'"):
        export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key)
    assert _count(a.db, "audit") == n_audit  # nothing exported, nothing audited as exported


def test_withdrawn_or_unenrolled_refused_at_export(
    gates: tuple[Gate, Gate], tmp_path: Path
) -> None:
    a, _ = gates
    pid = _enrol(a, tmp_path)
    withdraw(a.db, a.vault, a.gallery, pid, "app")
    with pytest.raises(SyncError, match="withdrawn"):
        export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key)
    bare = people.add_person(a.db, "No Face")
    consent.grant(
        a.db, bare, Notice("2025-06", NOTICE_EN), method="paper", recorded_by="o", scope="compound"
    )
    with pytest.raises(SyncError, match="no face templates"):
        export_sync_args(a.db, a.vault, bare, a.site_key, seal_key=a.site_key)


def test_device_scope_refused_at_import(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    data = export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key)
    data["consent"]["scope"] = "device"
    with pytest.raises(SyncError, match="scope 'device'"):
        import_bundle(
            b.db, b.vault, b.gallery, _args(data), b.site_key, seal_key=b.site_key, actor="mqtt:m"
        )
    assert _count(b.db, "templates") == 0


def test_bundle_holds_no_embedding_in_clear(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, _ = gates
    pid = _enrol(a, tmp_path)
    text = json.dumps(export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key))
    bundle = json.loads(text)["bundle"]
    blobs = [text.encode()] + [
        base64.b64decode(bundle[k]) for k in ("ciphertext_b64", "wrapped_key_b64", "nonce_b64")
    ]
    raw = np.stack([random_embedding(c) for c in CODES]).astype(np.float32)
    site_space = a.vault.load_person(a.db, pid)
    assert site_space.shape == raw.shape
    for vectors in (raw, site_space):
        for vec in vectors:
            data = vec.tobytes()
            needles = [data[:16], data[-16:], base64.b64encode(data)[:24]]
            for blob in blobs:
                for needle in needles:
                    assert needle not in blob
    assert "embedding" not in text
    assert len(base64.b64decode(bundle["ciphertext_b64"])) == len(CODES) * 128 * 4 + 16


def test_import_twice_is_idempotent(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    args = _args(export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key))
    import_bundle(b.db, b.vault, b.gallery, args, b.site_key, seal_key=b.site_key, actor="mqtt:m")
    first = b.vault.load_person(b.db, pid)
    res = import_bundle(
        b.db, b.vault, b.gallery, args, b.site_key, seal_key=b.site_key, actor="mqtt:m"
    )
    assert res["templates"] == len(CODES)
    assert (res["person_added"], res["consent_recorded"]) == (False, False)
    assert _count(b.db, "templates") == len(CODES)
    assert _count(b.db, "face_keys") == 1
    assert _count(b.db, "people") == 1
    assert _count(b.db, "consents") == 1
    np.testing.assert_array_equal(b.vault.load_person(b.db, pid), first)
    assert len(b.gallery.data[pid]) == len(CODES)


def test_stale_sync_after_withdrawal_refused(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    args = _args(export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key))
    import_bundle(b.db, b.vault, b.gallery, args, b.site_key, seal_key=b.site_key, actor="mqtt:m")
    withdraw(b.db, b.vault, b.gallery, pid, "mqtt")
    assert _count(b.db, "templates") == 0
    with pytest.raises(SyncError, match="withdrawn at this gate after"):
        import_bundle(
            b.db, b.vault, b.gallery, args, b.site_key, seal_key=b.site_key, actor="mqtt:m"
        )
    assert _count(b.db, "templates") == 0
    assert pid not in b.gallery.data


def test_minor_needs_guardian_on_receiving_gate(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    data = export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key)
    data["consent"]["guardian_ref"] = person_ref.seal(a.site_key, "guardian-1", role="guardian")
    with pytest.raises(SyncError, match="guardian"):
        import_bundle(
            b.db, b.vault, b.gallery, _args(data), b.site_key, seal_key=b.site_key, actor="mqtt:m"
        )
    assert _count(b.db, "people") == 0


def test_handler_through_signed_command(gates: tuple[Gate, Gate], tmp_path: Path) -> None:
    a, b = gates
    pid = _enrol(a, tmp_path)
    sync_args = export_sync_args(a.db, a.vault, pid, a.site_key, seal_key=a.site_key)
    key = sign.generate()
    kid = sign.key_id_of(key.public_key())
    proc = CommandProcessor(
        b.db,
        {kid: sign.public_b64(key.public_key())},
        site="s",
        gate="b",
        audit=audit.appender(b.db),
    )

    async def run_db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    proc.register(
        "sync_person",
        functools.partial(
            handle_sync_person,
            db=b.db,
            vault=b.vault,
            gallery=b.gallery,
            site_key=b.site_key,
            seal_key=b.site_key,
            run_db=run_db,
        ),
    )
    env = sign.sign_envelope("sync_person", sync_args, key, site="s", gate="b")
    payload = json.dumps(env).encode()
    assert len(payload) < proc.max_bytes
    res = asyncio.run(proc.process("sync_person", payload))
    assert res.ok, res
    assert pid not in json.dumps(res.result)  # the result never names the person
    assert pid not in payload.decode()
    assert "Li Wei" not in payload.decode()
    assert res.result["templates"] == len(CODES)
    assert b.gallery.identify(b.vault.transform(_probe()), THRESHOLD) == pid

    bad = json.loads(json.dumps(sync_args))
    bad["bundle"]["ciphertext_b64"] = _flip(bad["bundle"]["ciphertext_b64"], 3)
    res = asyncio.run(
        proc.process(
            "sync_person",
            json.dumps(sign.sign_envelope("sync_person", bad, key, site="s", gate="b")).encode(),
        )
    )
    assert not res.ok
    assert res.error == "refused"
    assert "decrypt" in (res.detail or "")


def test_cli_export_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = secrets.token_bytes(32)
    dev = secrets.token_bytes(32)
    dk = write_key(tmp_path / "keys" / "device-key", dev)
    sk = write_key(tmp_path / "keys" / "site-key", site)
    a = Gate(
        store.connect(tmp_path / "cli" / "state.db"),
        Vault.from_root_keys(dev, site),
        FakeGallery({}),
        site,
    )
    pid = _enrol(a, tmp_path)
    out = tmp_path / "bundle.json"
    parser = argparse.ArgumentParser(prog="gateway")
    parser.add_argument("--config", type=Path, default=None)
    commands.register(parser.add_subparsers(dest="command", required=True))
    opts = ["--db", str(tmp_path / "cli" / "state.db"), "--device-key", str(dk)]
    opts += ["--site-key", str(sk)]
    ns = parser.parse_args(["people", "export-bundle", pid, "--out", str(out), *opts])
    assert ns.func(ns) == 0, capsys.readouterr().err
    assert out.stat().st_mode & 0o077 == 0
    args = SyncPersonArgs.model_validate_json(out.read_text())
    b = _gate(tmp_path, "b", site)
    import_bundle(b.db, b.vault, b.gallery, args, site, seal_key=site, actor="mqtt:m")
    assert b.gallery.identify(b.vault.transform(_probe()), THRESHOLD) == pid
    # scope device: the CLI refuses with an error naming the scope
    dev_pid = _enrol(a, tmp_path, scope="device", name="Zhao")
    ns = parser.parse_args(["people", "export-bundle", dev_pid, "--out", str(out), *opts])
    assert ns.func(ns) == 1
    assert "scope" in capsys.readouterr().err
