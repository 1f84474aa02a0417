"""Issue 18 item 7 (command side): forged commands cannot grow the audit log without bound.

2,000 forged commands made 2,000 audit rows (4.6 MB in 0.8 s). Per window the first few
rejections are audited one by one, the rest as one aggregated row with counts per reason;
a genuine signed command in the middle of the flood still runs and is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import sqlite_utils

from gateway.command_args import UnlockArgs
from gateway.mqtt import sign
from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.commands import CommandProcessor
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.rejections import RejectionLimiter
from gateway.mqtt.topics import Topics
from gateway.privacy import audit
from gateway.store import database as store
from tests.mosquitto import Mosquitto
from tests.mqtt.mqtt_support import Collector

SITE, GATE = "site1", "gate1"
TOPICS = Topics("access", SITE, GATE)
NOW = 1_800_000_000.0


def _actions(db: sqlite_utils.Database) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r[0], json.loads(r[1]))
        for r in db.execute("SELECT action, details FROM audit ORDER BY seq")
    ]


def _forgeries(key: Any, n: int) -> list[bytes]:
    """Forged commands of several kinds (bad signature, unknown key, garbage, nesting)."""
    good = sign.sign_envelope("unlock", {"door": "main"}, key, site=SITE, gate=GATE)
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(json.dumps({**good, "nonce": f"forged-nonce-{i:08d}"}).encode())
        elif kind == 1:
            out.append(json.dumps({**good, "key_id": "intruder"}).encode())
        elif kind == 2:
            out.append(b"garbage %d" % i)
        else:
            out.append(b"[" * 100 + b"]" * 100)
    return out


def test_limiter_counts_past_quota_and_summarises_once_per_window() -> None:
    lim = RejectionLimiter(window_s=60, individual=2)
    assert [lim.admit("bad_signature", 0.0) for _ in range(3)] == [True, True, False]
    assert lim.admit("malformed", 1.0) is False
    assert lim.flush(59.0) is None  # window not over
    summary = lim.flush(61.0)
    assert summary is not None
    assert summary.counts == {"bad_signature": 1, "malformed": 1}
    assert lim.flush(200.0) is None
    assert lim.admit("stale", 300.0) is True  # a new window has its own quota


def test_2000_forged_commands_make_a_bounded_number_of_audit_rows() -> None:
    db = store.connect(":memory:")
    key = sign.generate()
    kid = sign.key_id_of(key.public_key())
    clock = [NOW]
    proc = CommandProcessor(
        db,
        {kid: sign.public_b64(key.public_key())},
        clock=lambda: clock[0],
        site=SITE,
        gate=GATE,
        audit=audit.appender(db),
    )
    ran: list[Any] = []

    async def unlock(args: UnlockArgs) -> dict[str, Any]:
        ran.append(args)
        return {}

    proc.register("unlock", unlock)
    forged = _forgeries(key, 2000)

    async def go() -> None:
        for i, payload in enumerate(forged):
            res = await proc.process("unlock", payload)
            assert not res.ok
            clock[0] += 0.0004  # 2,000 in 0.8 s, as in the fault run
            if i == 1000:
                good = sign.sign_envelope(
                    "unlock",
                    {"door": "main"},
                    key,
                    ts=sign.now_rfc3339(clock[0]),
                    site=SITE,
                    gate=GATE,
                )
                ok = await proc.process("unlock", json.dumps(good).encode())
                assert ok.ok, ok
        clock[0] += 61  # the window ends: its summary is written by the next flush
        assert proc.flush_rejections() == 2000 - 10

    asyncio.run(go())
    rows = _actions(db)
    assert len(ran) == 1
    assert len(rows) <= 12  # 10 individual + 1 aggregated + 1 executed (was 2,001)
    assert [a for a, _ in rows].count("command.executed") == 1
    (agg,) = [d for a, d in rows if a == "command.rejected.aggregated"]
    assert agg["suppressed"] == 1990
    assert sum(agg["by_reason"].values()) == 1990
    assert set(agg["by_reason"]) == {"bad_signature", "unknown_key", "malformed", "too_deep"}
    assert audit.verify(db).ok


@pytest.mark.mosquitto
def test_forged_flood_over_mqtt_is_aggregated_and_a_genuine_command_works(
    broker: Mosquitto, tmp_path: Path
) -> None:
    db = store.connect(tmp_path / "s.db", busy_timeout_ms=200)
    key = sign.generate()
    kid = sign.key_id_of(key.public_key())
    proc = CommandProcessor(
        db, {kid: sign.public_b64(key.public_key())}, site=SITE, gate=GATE, audit=audit.appender(db)
    )
    ran: list[Any] = []

    async def unlock(args: UnlockArgs) -> dict[str, Any]:
        ran.append(args)
        return {"door": args.door}

    proc.register("unlock", unlock)
    service = MqttService(
        MqttSettings(port=broker.port, client_id=GATE, backoff_max_s=0.3),
        TOPICS,
        Outbox(store.connect(":memory:"), TOPICS),
        proc,
    )
    forged = _forgeries(key, 2000)

    async def go() -> list[dict[str, Any]]:
        task = asyncio.create_task(service.run())
        try:
            async with Collector(broker, TOPICS.command_result, client_id="mgmt") as col:
                for _ in range(500):
                    if service.ready:
                        break
                    await asyncio.sleep(0.02)
                async with aiomqtt.Client(broker.host, broker.port) as attacker:
                    for i, payload in enumerate(forged):
                        await attacker.publish(TOPICS.command("unlock"), payload, qos=1)
                        if i == 1000:
                            good = sign.sign_envelope(
                                "unlock", {"door": "main"}, key, site=SITE, gate=GATE
                            )
                            await attacker.publish(
                                TOPICS.command("unlock"), json.dumps(good).encode(), qos=1
                            )
                    await col.wait_for(lambda c: len(c.messages) >= 2001, within=60)
                return [d for _, d, _ in col.messages]
        finally:
            task.cancel()  # shutdown writes the pending aggregated row
            with contextlib.suppress(asyncio.CancelledError):
                await task

    results = asyncio.run(go())
    assert [r["result"] for r in results if r["ok"]] == [{"door": "main"}]
    assert len(ran) == 1
    rows = _actions(db)
    actions = [a for a, _ in rows]
    assert actions.count("command.rejected") <= 10
    assert actions.count("command.executed") == 1
    aggregated = [d for a, d in rows if a == "command.rejected.aggregated"]
    assert 1 <= len(aggregated) <= 2  # at most one per minute-long window
    assert actions.count("command.rejected") + sum(d["suppressed"] for d in aggregated) == 2000
    assert len(rows) <= 2 * 11 + 1
    assert audit.verify(db).ok
