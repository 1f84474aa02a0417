"""Issue 18 item 4: one hostile MQTT message must never end the MQTT session.

A 6 KB deeply nested JSON raised ``RecursionError`` out of command processing and restarted
the session; published retained it crash-looped it. Now payload size and depth are bounded
before parsing and any failure in handling one message is logged, counted and survived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.cli import mqtt as commands_cli
from gateway.command_args import UnlockArgs
from gateway.errors import ProtocolError
from gateway.mqtt import fanout, fleet, sign
from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.commands import CommandProcessor, CommandResult
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.payload import MAX_DEPTH, PayloadError, loads_bounded, nesting_depth
from gateway.mqtt.spill import SpillJournal
from gateway.mqtt.topics import Topics
from gateway.privacy import audit
from gateway.store import database as store
from tests.mosquitto import Mosquitto
from tests.mqtt.mqtt_support import Collector

SITE, GATE = "site1", "gate1"
TOPICS = Topics("access", SITE, GATE)
# 6 KB, an envelope whose args nest 3,000 levels deep: json.loads raises RecursionError
DEEP = b'{"name":"unlock","args":' + b"[" * 3000 + b"]" * 3000 + b"}"


def test_depth_is_scanned_outside_strings_and_refused_before_parsing() -> None:
    assert nesting_depth(b'{"a":[1,{"b":[2]}]}') == 4
    assert nesting_depth(b'{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == 1
    assert nesting_depth(b'{"a":"\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == 1
    assert nesting_depth(b'"unterminated [[[[') == 0
    with pytest.raises(PayloadError) as exc:
        loads_bounded(DEEP, max_bytes=64_000)
    assert exc.value.reason == "too_deep"
    with pytest.raises(PayloadError) as exc:
        loads_bounded(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), max_bytes=1000)
    assert exc.value.reason == "too_deep"
    ok = loads_bounded(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, max_bytes=1000)
    for _ in range(MAX_DEPTH - 1):
        ok = ok[0]
    assert ok == []
    with pytest.raises(PayloadError) as exc:
        loads_bounded(b"[1]" + b" " * 100, max_bytes=100)
    assert exc.value.reason == "too_large"
    with pytest.raises(PayloadError) as exc:
        loads_bounded(b"\xff\xfe{", max_bytes=100)
    assert exc.value.reason == "malformed"


def _processor(db_path: Path | str = ":memory:") -> tuple[CommandProcessor, Any, list[Any]]:
    key = sign.generate()
    kid = sign.key_id_of(key.public_key())
    db = store.connect(db_path)
    proc = CommandProcessor(
        db, {kid: sign.public_b64(key.public_key())}, site=SITE, gate=GATE, audit=audit.appender(db)
    )
    calls: list[Any] = []

    async def unlock(args: UnlockArgs) -> dict[str, Any]:
        calls.append(args)
        return {"door": args.door}

    proc.register("unlock", unlock)
    return proc, key, calls


def test_deep_command_is_a_rejection_not_an_exception() -> None:
    proc, _, calls = _processor()
    res = asyncio.run(proc.process("unlock", DEEP))
    assert (res.ok, res.error) == (False, "too_deep")
    assert calls == []


def test_deep_withdrawal_and_fleet_documents_are_refused_cleanly() -> None:
    rx = fanout.FanoutReceiver(bytes(32), "gate-2")
    with pytest.raises(ProtocolError, match=r"too_deep|too_large"):
        rx.accept(b"[" * 900 + b"]" * 900)
    with pytest.raises(ProtocolError, match="too_deep"):
        rx.accept(b'{"v":' + b"[" * 400 + b"]" * 400 + b"}")
    deep = b'{"enrolled_people":' + b"[" * 3000 + b"]" * 3000 + b"}"
    assert fleet.parse_enrolled("access/site1/gate9/enrolled", deep) is None
    assert fleet.parse_state(deep) == "unknown"


@contextlib.asynccontextmanager
async def serving(service: MqttService) -> AsyncIterator[None]:
    task = asyncio.create_task(service.run())
    try:
        for _ in range(500):
            if service.ready:
                break
            await asyncio.sleep(0.02)
        assert service.ready, "MQTT service did not become ready"
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _service(broker: Mosquitto, proc: CommandProcessor, **kw: Any) -> MqttService:
    return MqttService(
        MqttSettings(port=broker.port, client_id=GATE, backoff_max_s=0.3),
        TOPICS,
        Outbox(store.connect(":memory:"), TOPICS),
        proc,
        **kw,
    )


def _signed(key: Any) -> bytes:
    return json.dumps(
        sign.sign_envelope("unlock", {"door": "main"}, key, site=SITE, gate=GATE)
    ).encode()


async def _results(col: Collector, n: int) -> list[dict[str, Any]]:
    await col.wait_for(lambda c: len(c.messages) >= n, within=15)
    return [d for _, d, _ in col.messages]


@pytest.mark.mosquitto
@pytest.mark.parametrize("retained", [False, True], ids=["live", "retained"])
def test_deep_payload_keeps_session_and_next_signed_command_is_answered(
    broker: Mosquitto, retained: bool
) -> None:
    proc, key, calls = _processor()

    async def go() -> tuple[list[dict[str, Any]], MqttService]:
        withdrawals: list[bytes] = []

        async def on_withdrawal(payload: bytes) -> None:
            withdrawals.append(payload)
            fanout.FanoutReceiver(bytes(32), GATE).accept(payload)  # raises ProtocolError

        service = _service(broker, proc, on_withdrawal=on_withdrawal)
        async with aiomqtt.Client(broker.host, broker.port) as attacker:
            if retained:  # waiting for the gate at every (re)connection
                await attacker.publish(TOPICS.command("unlock"), DEEP, qos=1, retain=True)
                await attacker.publish("access/site1/gate9/withdrawal", DEEP, qos=1, retain=True)
            async with (
                Collector(broker, TOPICS.command_result, client_id="mgmt") as col,
                serving(service),
            ):
                if not retained:
                    await attacker.publish(TOPICS.command("unlock"), DEEP, qos=1)
                    await attacker.publish("access/site1/gate9/withdrawal", DEEP, qos=1)
                await _results(col, 1)
                await asyncio.sleep(0.5)  # a crashed session would be reconnecting now
                await attacker.publish(TOPICS.command("unlock"), _signed(key), qos=1)
                results = await _results(col, 2)
                assert len(withdrawals) == 1
                return results, service

    results, service = asyncio.run(go())
    assert results[0]["error"] == "too_deep"
    assert results[1]["ok"] is True, results[1]
    assert len(calls) == 1
    assert service.connects == 1  # the poison never restarted the session
    assert service.message_failures == 1  # the withdrawal handler's ProtocolError, survived


class _Exploding(CommandProcessor):
    async def process(self, topic_name: str | None, payload: bytes) -> CommandResult:
        if payload == b"boom":
            raise RuntimeError("handler bug")
        return await super().process(topic_name, payload)


@pytest.mark.mosquitto
def test_any_exception_handling_one_message_is_logged_counted_and_survived(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    key = sign.generate()
    kid = sign.key_id_of(key.public_key())
    db = store.connect(":memory:")
    proc = _Exploding(
        db, {kid: sign.public_b64(key.public_key())}, site=SITE, gate=GATE, audit=audit.appender(db)
    )
    calls: list[Any] = []

    async def unlock(args: UnlockArgs) -> dict[str, Any]:
        calls.append(args)
        return {"door": args.door}

    proc.register("unlock", unlock)

    async def bad_withdrawal(payload: bytes) -> None:
        raise KeyError("fan-out bug")

    async def go() -> MqttService:
        service = _service(broker, proc, on_withdrawal=bad_withdrawal)
        async with (
            Collector(broker, TOPICS.command_result, client_id="mgmt") as col,
            serving(service),
            aiomqtt.Client(broker.host, broker.port) as other,
        ):
            await other.publish("access/site1/gate9/withdrawal", b"{}", qos=1)
            for _ in range(25):  # a flood of failing messages: the log stays bounded
                await other.publish(TOPICS.command("unlock"), b"boom", qos=1)
            await other.publish(TOPICS.command("unlock"), _signed(key), qos=1)
            results = await _results(col, 1)
            assert results[0]["ok"] is True
        return service

    with caplog.at_level(logging.ERROR, logger="gateway.mqtt.client"):
        service = asyncio.run(go())
    assert len(calls) == 1
    assert service.connects == 1
    assert service.message_failures == 26
    text = caplog.text
    assert "access/site1/gate1/cmd/unlock failed (RuntimeError)" in text
    assert "access/site1/gate9/withdrawal failed (KeyError)" in text
    assert text.count(" failed (") == 10  # then counted, summarised once per minute


@pytest.mark.mosquitto
def test_broker_drops_huge_messages_before_they_reach_the_gate(broker: Mosquitto) -> None:
    """MQTT 5 Maximum Packet Size: a 1 MB message is never delivered (nor parsed)."""
    proc, key, calls = _processor()

    async def go() -> list[dict[str, Any]]:
        service = _service(broker, proc)
        async with (
            Collector(broker, TOPICS.command_result, client_id="mgmt") as col,
            serving(service),
            aiomqtt.Client(broker.host, broker.port) as other,
        ):
            assert service.protocol == "5"
            await other.publish(TOPICS.command("unlock"), b"[" * 1_000_000, qos=1)
            await other.publish(TOPICS.command("unlock"), _signed(key), qos=1)
            results = await _results(col, 1)
            await asyncio.sleep(0.3)
            return results

    results = asyncio.run(go())
    assert len(results) == 1  # no too_large answer: the 1 MB message never arrived
    assert results[0]["ok"] is True
    assert len(calls) == 1


def test_cli_sign_refuses_deep_args_with_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    commands_cli.register(parser.add_subparsers(dest="cmd"))
    keyfile = tmp_path / "op.key"
    a = parser.parse_args(["mqtt", "keygen", "--out", str(keyfile)])
    assert a.func(a) == 0
    deep = "[" * 5000 + "]" * 5000
    target = ["--site", SITE, "--gate", GATE]
    a = parser.parse_args(
        ["mqtt", "sign", "unlock", "--args", deep, "--key", str(keyfile), *target]
    )
    assert a.func(a) == 2  # was an uncaught RecursionError
    assert "too_deep" in capsys.readouterr().err


def test_corrupt_deep_spill_line_is_skipped(tmp_path: Path) -> None:
    journal = SpillJournal(tmp_path / "j", "gate1")
    (tmp_path / "j").write_bytes(b"\n" + b"[" * 5000 + b"\n")
    assert journal.load() == []


def test_utf16_json_cannot_bypass_the_depth_scan() -> None:
    """json.loads(bytes) accepts UTF-16, which the byte-level depth scan cannot read: only
    UTF-8 is accepted (review finding)."""
    from gateway.mqtt.payload import PayloadError, loads_bounded

    deep = ('["\u2200",' + "[" * 900 + "]" * 900 + "]").encode("utf-16-le")
    with pytest.raises(PayloadError) as info:
        loads_bounded(deep, max_bytes=64 * 1024)
    assert info.value.reason == "malformed"
    assert loads_bounded('{"a": ["\u2200"]}'.encode(), max_bytes=100) == {"a": ["\u2200"]}
