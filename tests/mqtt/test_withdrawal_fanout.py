"""Consent withdrawal reaches every gate of the site: keyed-hash subject, site-key MAC,
time window, one use per nonce; through a real Mosquitto between two gateways."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.errors import ProtocolError
from gateway.mqtt import fanout
from tests.conftest import MINIMAL_CONFIG, REPO, built_gateway, free_port, write_secret
from tests.mosquitto import Mosquitto

KEY = bytes(range(32))


def test_message_round_trip_and_every_refusal() -> None:
    rx = fanout.FanoutReceiver(KEY, "gate-2")
    msg = fanout.build(KEY, "gate-1", "p-1", now=1000.0)
    got = rx.accept(msg, now=1001.0)
    assert got == fanout.Withdrawal("gate-1", fanout.subject_of(KEY, "p-1"))
    assert b"p-1" not in msg  # only a keyed hash of the person travels
    assert fanout.find_person(KEY, got.subject, ["p-0", "p-1"]) == "p-1"
    assert fanout.find_person(KEY, got.subject, ["p-0"]) is None
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


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


def _config(tmp_path: Path, gate: str, site_key: Path, port: int) -> Path:
    d = tmp_path / gate
    text = MINIMAL_CONFIG.format(
        reader_port=free_port(),
        scbk=write_secret(d / "scbk", secrets.token_hex(16).encode()),
        state=d / "state",
        site_key=site_key,
        device_key=write_secret(d / "device-key", secrets.token_bytes(32)),
    )
    text = text.replace('gate = "gate-1"', f'gate = "{gate}"')
    text = text.replace("[mqtt]\nenabled = false", f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"')
    text = text.replace(
        "[privacy]\n",
        f'[privacy]\nnotice_file = "{REPO / "config" / "notice.example.txt"}"\n'
        'notice_version = "2025-06"\n',
    )
    cfg = d / "gateway.toml"
    cfg.write_text(text)
    return cfg


@pytest.mark.mosquitto
def test_withdrawal_at_one_gate_erases_the_copy_on_another(
    broker: Mosquitto, tmp_path: Path
) -> None:
    from gateway.privacy import consent, people
    from gateway.privacy.notice import load_notice

    site_key = write_secret(tmp_path / "site-key", secrets.token_bytes(32))
    cfg1 = _config(tmp_path, "gate-1", site_key, broker.port)
    cfg2 = _config(tmp_path, "gate-2", site_key, broker.port)
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
                await gw1.withdraw(pids[0], "gate")
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


def test_a_cli_withdrawal_is_found_and_fanned_out(tmp_path: Path) -> None:
    """The daemon notices a withdrawal made by another process (the CLI) on its database
    and queues the fan-out message in its durable outbox."""
    from gateway.app import _recent_withdrawal
    from gateway.face.gallery import Gallery
    from gateway.privacy import consent, people
    from gateway.privacy.notice import load_notice
    from gateway.privacy.withdraw import withdraw

    site_key = write_secret(tmp_path / "site-key", secrets.token_bytes(32))
    cfg = _config(tmp_path, "gate-1", site_key, free_port())
    notice = load_notice(REPO / "config" / "notice.example.txt", "2025-06")

    async def main() -> None:
        async with built_gateway(cfg) as gw:
            pid = people.add_person(gw.db, "Li Wei")
            consent.grant(gw.db, pid, notice, method="paper", recorded_by="t")
            emb = np.random.default_rng(1).standard_normal((2, 128)).astype(np.float32)
            gw.vault.store_templates(gw.db, pid, emb, model="sface")
            assert _recent_withdrawal(gw.db, pid) is None
            withdraw(gw.db, gw.vault, Gallery(), pid, "cli")  # what `gateway consent withdraw` does
            channel, erased = _recent_withdrawal(gw.db, pid) or ("", 0)
            assert (channel, erased) == ("cli", 2)
            before = gw.outbox.stats().pending
            gw._announce_withdrawal(pid, channel, erased)
            assert gw.outbox.stats().pending == before + 2  # consent.withdrawn + fan-out
            gw._announce_withdrawal(pid, "compound", erased)
            assert gw.outbox.stats().pending == before + 3  # never fanned out again

    asyncio.run(main())
