"""Consent withdrawal reaches every gate of the site: keyed-hash subject, site-key MAC,
time window, one use per nonce; through a real Mosquitto between two gateways."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ProtocolError
from gateway.mqtt import fanout
from tests.conftest import REPO, built_gateway, write_secret
from tests.mosquitto import Mosquitto
from tests.support.net import free_port
from tests.support.site_gate import site_gate_config

KEY = bytes(range(32))


def test_message_round_trip_and_every_refusal() -> None:
    rx = fanout.FanoutReceiver(KEY, "gate-2")
    msg = fanout.build(KEY, "gate-1", "p-1", now=1000.0)
    got = rx.accept(msg, now=1001.0)
    assert got == fanout.Withdrawal("gate-1", fanout.subject_of(KEY, "p-1", got.salt), got.salt)
    assert b"p-1" not in msg  # only a keyed hash of the person travels
    assert fanout.find_person(KEY, got.subject, ["p-0", "p-1"], got.salt) == "p-1"
    assert fanout.find_person(KEY, got.subject, ["p-0"], got.salt) is None
    # a fresh salt per message: two withdrawals of the same person share no subject
    again = rx.accept(fanout.build(KEY, "gate-1", "p-1", now=1000.0), now=1000.5)
    assert again is not None
    assert again.subject != got.subject
    with pytest.raises(ProtocolError, match="replayed"):
        rx.accept(msg, now=1002.0)
    with pytest.raises(ProtocolError, match="bad MAC"):
        rx.accept(fanout.build(b"\x01" * 32, "gate-1", "p-1", now=1000.0), now=1001.0)
    forged = msg.replace(b'"gate":"gate-1"', b'"gate":"gate-7"')
    with pytest.raises(ProtocolError, match="bad MAC"):
        rx.accept(forged, now=1001.0)
    with pytest.raises(ProtocolError, match="stale"):
        rx.accept(fanout.build(KEY, "gate-1", "p-1", now=0.0), now=1001.0)
    for junk in (b"\xff", b"[]", b'{"v": 1}'):
        with pytest.raises(ProtocolError):
            rx.accept(junk, now=1001.0)
    assert rx.accept(fanout.build(KEY, "gate-2", "p-1", now=1000.0), now=1000.0) is None


def test_a_version_1_message_from_a_gate_not_upgraded_is_accepted() -> None:
    import hashlib
    import hmac
    import json

    subject = fanout.subject_of(KEY, "p-1")  # no salt: version 1
    text = f"v1|gate-1|{subject}|1000|{'ab' * 8}".encode()
    mac = hmac.new(KEY, text, hashlib.sha256).hexdigest()
    doc = {"v": 1, "gate": "gate-1", "subject": subject, "ts": 1000, "nonce": "ab" * 8, "mac": mac}
    got = fanout.FanoutReceiver(KEY, "gate-2").accept(json.dumps(doc).encode(), now=1001.0)
    assert got == fanout.Withdrawal("gate-1", subject, "")
    assert fanout.find_person(KEY, got.subject, ["p-0", "p-1"], got.salt) == "p-1"
    doc["v"] = 2  # a version 2 message must carry its 16-hex salt
    with pytest.raises(ProtocolError, match="missing or mistyped"):
        fanout.FanoutReceiver(KEY, "gate-2").accept(json.dumps(doc).encode(), now=1001.0)


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


@pytest.mark.mosquitto
def test_withdrawal_at_one_gate_erases_the_copy_on_another(
    broker: Mosquitto, tmp_path: Path
) -> None:
    from gateway.privacy import consent, people
    from gateway.privacy.notice import load_notice

    site_key = write_secret(tmp_path / "site-key", secrets.token_bytes(32))
    cfg1 = site_gate_config(tmp_path, "gate-1", site_key, broker.port)
    cfg2 = site_gate_config(tmp_path, "gate-2", site_key, broker.port)
    notice = load_notice(REPO / "config" / "notice.example.txt", "2025-06")

    def face_keys(gw: object, pid: str) -> int:
        db = gw.db  # type: ignore[attr-defined]
        return int(
            db.execute("SELECT count(*) FROM face_keys WHERE person_id = ?", [pid]).fetchone()[0]
        )

    async def main() -> None:
        async with built_gateway(cfg1) as gw1, built_gateway(cfg2) as gw2:
            pids = []
            for name in ("Li Wei", "Wang Fang"):
                pid = people.add_person(gw1.db, name, unit="3-402")
                gw2.db["people"].insert(gw1.db["people"].get(pid))  # as a sync would
                for gw in (gw1, gw2):
                    consent.grant(
                        gw.db, pid, notice, method="paper", recorded_by="t", scope="compound"
                    )
                    emb = np.random.default_rng(len(pids)).standard_normal((2, 128))
                    gw.vault.store_templates(gw.db, pid, emb.astype(np.float32), model="sface")
                pids.append(pid)
            tasks = [asyncio.create_task(g.mqtt.run()) for g in (gw1, gw2)]
            try:
                for _ in range(100):
                    if gw1.mqtt.ready and gw2.mqtt.ready:
                        break
                    await asyncio.sleep(0.05)
                # A forged fan-out (not made with the site key) erases nothing.
                import aiomqtt

                forged = fanout.build(secrets.token_bytes(32), "gate-9", pids[1])
                async with aiomqtt.Client("127.0.0.1", broker.port) as c:
                    await c.publish("access/test-site/gate-9/withdrawal", forged, qos=1)
                # The real withdrawal at gate 1 (keypad, MQTT or CLI alike).
                await gw1.withdrawals.withdraw(pids[0], "gate")
                assert face_keys(gw1, pids[0]) == 0
                for _ in range(100):
                    if face_keys(gw2, pids[0]) == 0:
                        break
                    await asyncio.sleep(0.05)
                assert face_keys(gw2, pids[0]) == 0, "gate 2 kept the withdrawn face data"
                assert consent.latest(gw2.db, pids[0]).status == "withdrawn"  # type: ignore[union-attr]
                assert face_keys(gw2, pids[1]) == 1, "a forged message erased data"
                assert face_keys(gw1, pids[1]) == 1
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


@pytest.mark.mosquitto
def test_a_cli_withdrawal_on_a_gate_without_face_path_reaches_the_others(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """``gateway consent withdraw`` (another process) on a card/PIN-only gate: the running
    daemon there announces it (once) and gate 2 erases its copy; a withdrawal recorded while
    the daemon was down is announced when it starts."""
    from gateway.privacy import consent, people
    from gateway.privacy.notice import load_notice

    site_key = write_secret(tmp_path / "site-key", secrets.token_bytes(32))
    cfg1 = site_gate_config(tmp_path, "gate-1", site_key, broker.port)  # card/PIN only
    cfg2 = site_gate_config(tmp_path, "gate-2", site_key, broker.port)
    notice = load_notice(REPO / "config" / "notice.example.txt", "2025-06")

    def face_keys(db: object, pid: str) -> int:
        return int(
            db.execute(  # type: ignore[attr-defined]
                "SELECT count(*) FROM face_keys WHERE person_id = ?", [pid]
            ).fetchone()[0]
        )

    def cli_withdraw(pid: str) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(cfg1), "consent", "withdraw", pid],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "withdrawn: 2 templates erased" in out.stdout

    async def wait_for(cond: Callable[[], bool], what: str) -> None:
        for _ in range(200):
            if cond():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(what)

    async def main() -> None:
        pids: list[str] = []
        async with built_gateway(cfg1) as gw1, built_gateway(cfg2) as gw2:
            assert not gw1.face_paths, "gate 1 must be a gate without a face path"
            for i, name in enumerate(("Li Wei", "Wang Fang", "Zhang Min")):
                pid = people.add_person(gw1.db, name, unit="3-402")
                gw2.db["people"].insert(gw1.db["people"].get(pid))  # as a sync would
                for gw in (gw1, gw2):
                    consent.grant(
                        gw.db, pid, notice, method="paper", recorded_by="t", scope="compound"
                    )
                    emb = np.random.default_rng(i).standard_normal((2, 128)).astype(np.float32)
                    gw.vault.store_templates(gw.db, pid, emb, model="sface")
                pids.append(pid)
            # Withdrawn while gate 1's daemon is not yet watching (down).
            await asyncio.to_thread(cli_withdraw, pids[2])
            tasks = [asyncio.create_task(g.mqtt.run()) for g in (gw1, gw2)]
            assert gw1.data_watch is not None
            tasks.append(asyncio.create_task(gw1.data_watch.run()))
            try:
                await wait_for(lambda: gw1.mqtt.ready and gw2.mqtt.ready, "brokers not ready")
                await wait_for(
                    lambda: face_keys(gw2.db, pids[2]) == 0,
                    "a withdrawal made while the daemon was down never reached gate 2",
                )
                await wait_for(lambda: gw1.outbox.stats().pending == 0, "outbox not drained")
                published = gw1.outbox.stats().published_total
                await asyncio.to_thread(cli_withdraw, pids[0])
                await wait_for(
                    lambda: face_keys(gw2.db, pids[0]) == 0,
                    "gate 2 kept the face data withdrawn on gate 1's CLI",
                )
                assert consent.latest(gw2.db, pids[0]).status == "withdrawn"  # type: ignore[union-attr]
                assert face_keys(gw2.db, pids[1]) == 1, "another person's data was erased"
                # Announced once: consent.withdrawn + the fan-out, and nothing left pending.
                await wait_for(
                    lambda: gw1.outbox.stats().published_total >= published + 2, "not published"
                )
                # Another change of the data makes the watcher look again: nothing new to say.
                consent.grant(gw1.db, pids[1], notice, method="paper", recorded_by="t")
                await asyncio.sleep(0.6)
                assert gw1.outbox.stats().published_total == published + 2
                assert gw1.outbox.stats().pending == 0
                left = gw1.db.execute(
                    "SELECT count(*) FROM withdrawal_receipts WHERE announced = 0"
                ).fetchone()[0]
                assert left == 0
                # Gate 2 recorded its own erasure (channel compound) and never fans it out.
                rows = gw2.db.execute(
                    "SELECT channel, announced FROM withdrawal_receipts ORDER BY ts"
                ).fetchall()
                assert [tuple(r) for r in rows] == [("compound", 1), ("compound", 1)]
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def test_announcing_never_blocks_on_one_receipt_and_waits_without_a_broker(
    tmp_path: Path,
) -> None:
    """A receipt that cannot be announced is logged and left waiting; the ones after it go
    out; a gate without MQTT keeps every receipt for when it has a broker; every
    withdrawal channel the CLI accepts is one the event schema knows."""
    from gateway.mqtt.events import WithdrawalChannel
    from gateway.privacy import people
    from gateway.services.withdrawal import CHANNELS

    assert set(CHANNELS) == {c.value for c in WithdrawalChannel}
    site_key = write_secret(tmp_path / "site-key", secrets.token_bytes(32))
    cfg = site_gate_config(tmp_path, "gate-1", site_key, free_port())
    text = cfg.read_text()
    cfg.write_text(
        text[: text.index("[mqtt]")] + "[mqtt]\nenabled = true\n" + text[text.index("[storage]") :]
    )  # an outbox, no broker yet
    offline = site_gate_config(tmp_path, "gate-2", site_key, free_port())
    text = offline.read_text()
    offline.write_text(
        text[: text.index("[mqtt]")] + "[mqtt]\nenabled = false\n" + text[text.index("[storage]") :]
    )

    def receipt(db: object, rid: str, pid: str, channel: str, ts: float) -> None:
        db.execute(  # type: ignore[attr-defined]
            "INSERT INTO withdrawal_receipts (id, person_id, channel, templates_erased, ts)"
            " VALUES (?, ?, ?, 1, ?)",
            [rid, pid, channel, ts],
        )

    async def main() -> None:
        async with built_gateway(cfg) as gw:
            pid = people.add_person(gw.db, "Li Wei")
            receipt(gw.db, "bad", pid, "carrier-pigeon", 1.0)  # written by a newer version
            receipt(gw.db, "good", pid, "paper", 2.0)
            gw.outbox._degraded = "disk full"  # it would hold them in memory only: wait
            assert await gw.withdrawals.announce() is False
            assert gw.outbox.stats().pending == 0
            gw.outbox._degraded = None
            assert await gw.withdrawals.announce() is False
            rows = gw.db.execute(
                "SELECT id, announced FROM withdrawal_receipts ORDER BY ts"
            ).fetchall()
            assert [tuple(r) for r in rows] == [("bad", 0), ("good", 1)]
            assert gw.outbox.stats().pending == 2  # consent.withdrawn + fan-out of "good"
        async with built_gateway(offline) as gw:
            pid = people.add_person(gw.db, "Wang Fang")
            receipt(gw.db, "r", pid, "cli", 1.0)
            assert gw.outbox is None
            assert await gw.withdrawals.announce() is True
            left = gw.db.execute("SELECT announced FROM withdrawal_receipts").fetchone()[0]
            assert left == 0

    asyncio.run(main())
