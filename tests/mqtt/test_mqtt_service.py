"""MqttService + Outbox against a real mosquitto: schema, order, outages, kill -9, will, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.events import (
    AccessDenied,
    AccessGranted,
    DenyReason,
    DoorOpened,
    Duress,
    parse_event,
)
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.topics import Topics
from gateway.store import database as store
from tests.mosquitto import Mosquitto, MosquittoTLS
from tests.mqtt.mqtt_support import Collector, first_occurrences

pytestmark = pytest.mark.mosquitto

TOPICS = Topics("access", "site1", "gate1")
PROC = Path(__file__).with_name("publisher_proc.py")


@contextlib.asynccontextmanager
async def running(service: MqttService) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(service.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make_service(broker: Mosquitto, db_path: Path) -> MqttService:
    db = store.connect(db_path)
    outbox = Outbox(db, TOPICS)
    settings = MqttSettings(
        host=broker.host, port=broker.port, client_id="gate1", backoff_max_s=0.5
    )
    return MqttService(settings, TOPICS, outbox, health=lambda: {"camera": "ok"})


def pending(db_path: Path) -> int:
    db = store.connect(db_path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.conn.close()


def test_events_arrive_with_documented_schema_and_status(broker: Mosquitto, db_path: Path) -> None:
    async def go() -> None:
        service = make_service(broker, db_path)
        async with Collector(broker, f"{TOPICS.base}/#") as col, running(service):
            evs = [
                AccessGranted(
                    site="site1",
                    gate="gate1",
                    door="main",
                    method="face",
                    person="a" * 26,
                    confidence="high",
                ),
                AccessDenied(
                    site="site1",
                    gate="gate1",
                    door="main",
                    method="card",
                    reason=DenyReason.OUTSIDE_SCHEDULE,
                ),
                Duress(site="site1", gate="gate1", door="main", method="pin"),
            ]
            for ev in evs:
                service.publish_event(ev)
            await col.wait_for(lambda c: len(c.ids()) >= 3)
            await col.wait_for(lambda c: any(t == TOPICS.status for t, _, _ in c.messages))
        by_id = {d["id"]: (t, d) for t, d, _ in col.messages if "id" in d}
        for ev in evs:
            topic, doc = by_id[str(ev.id)]
            assert topic == TOPICS.event(ev.type)
            assert parse_event(json.dumps(doc)) == ev
            assert doc["ts"].endswith("Z")
        assert by_id[str(evs[2].id)][0] == "access/site1/gate1/alarm/duress"
        status = [d for t, d, _ in col.messages if t == TOPICS.status]
        assert status[0]["state"] == "online"
        assert status[0]["health"] == {"camera": "ok"}
        assert status[-1]["state"] == "offline"  # graceful shutdown says offline itself
        assert pending(db_path) == 0

    asyncio.run(go())


def _outage(broker: Mosquitto, db_path: Path, n: int, outage_s: float) -> None:
    async def go() -> None:
        service = make_service(broker, db_path)
        async with Collector(broker, TOPICS.events_wildcard) as col, running(service):
            await col.wait_for(lambda c: service.connected)
            broker.stop()
            put_ids = []
            t0 = time.monotonic()
            for i in range(n):
                ev = DoorOpened(site="site1", gate="gate1", door=f"d{i % 3}")
                service.publish_event(ev)
                put_ids.append(str(ev.id))
                await asyncio.sleep(max(0.0, t0 + (i + 1) * outage_s / n - time.monotonic()))
            assert not service.connected
            assert pending(db_path) == n  # all durable while the broker is away
            broker.start()
            await col.wait_for(lambda c: set(put_ids) <= set(c.ids()), within=30)
        assert first_occurrences(col.ids()) == put_ids

    asyncio.run(go())


def test_broker_outage_short_all_events_arrive_in_order(broker: Mosquitto, db_path: Path) -> None:
    _outage(broker, db_path, n=20, outage_s=2.0)


@pytest.mark.slow
def test_broker_outage_30s_100_events_arrive_in_order(broker: Mosquitto, db_path: Path) -> None:
    _outage(broker, db_path, n=100, outage_s=30.0)


def _spawn(db_path: Path, port: int, count: int, interval: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PROC), str(db_path), str(port), str(count), str(interval)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_kill_9_mid_stream_loses_nothing(broker: Mosquitto, db_path: Path) -> None:
    async def go() -> None:
        async with Collector(broker, TOPICS.events_wildcard) as col:
            # Far more events than the pipe holds (~1,500 PUT lines): the publisher can
            # never run ahead and finish (and drain) before the kill; it is still putting.
            proc = _spawn(db_path, broker.port, 50_000, 0.0)
            assert proc.stdout is not None
            put_ids: list[str] = []
            loop = asyncio.get_running_loop()
            while len(put_ids) < 1000:
                line = await loop.run_in_executor(None, proc.stdout.readline)
                assert line, "publisher exited early"
                if line.startswith("PUT "):
                    put_ids.append(line.split()[1])
            proc.send_signal(signal.SIGKILL)  # mid-stream: puts and publishes in progress
            proc.wait(5)
            rest = proc.stdout.read()
            put_ids += [ln.split()[1] for ln in rest.splitlines() if ln.startswith("PUT ")]
            proc.stdout.close()
            left = pending(db_path)
            received_before = len(set(col.ids()))
            # restart: drains what the killed process had stored but not delivered
            proc2 = _spawn(db_path, broker.port, 0, 0)
            try:
                await col.wait_for(lambda c: set(put_ids) <= set(c.ids()), within=20)
            finally:
                proc2.kill()
                proc2.wait(5)
                assert proc2.stdout is not None
                proc2.stdout.close()
        got = first_occurrences(col.ids())
        # every event acknowledged by put() arrived, in put order (duplicates only repeat ids)
        assert [i for i in got if i in set(put_ids)] == put_ids
        print(f"pending after kill: {left}, received before restart: {received_before}")
        assert left > 0  # the restart really had undelivered events to send

    asyncio.run(go())


def test_last_will_marks_gate_offline(broker: Mosquitto, db_path: Path) -> None:
    async def go() -> None:
        async with Collector(broker, TOPICS.status, client_id="status-watch") as col:
            proc = _spawn(db_path, broker.port, 0, 0)
            try:
                await col.wait_for(
                    lambda c: any(d.get("state") == "online" for _, d, _ in c.messages)
                )
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
                await col.wait_for(lambda c: c.messages[-1][1].get("state") == "offline")
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
                if proc.stdout is not None:
                    proc.stdout.close()
        # retained: a newcomer sees the gate offline
        async with aiomqtt.Client(broker.host, broker.port) as c:
            await c.subscribe(TOPICS.status, qos=1)
            msg = await asyncio.wait_for(anext(aiter(c.messages)), 5)
            assert msg.retain
            assert isinstance(msg.payload, bytes)
            assert json.loads(msg.payload)["state"] == "offline"

    asyncio.run(go())


# --------------------------------------------------------------------------- TLS


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    iss_name, iss_key = issuer if issuer else (subject, key)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, iss_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        b = b.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(iss_key.public_key()),
            critical=False,
        )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(iss_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".key").chmod(0o600)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_tls_with_ca_and_client_certificate(tmp_path: Path, db_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, None, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    cli_key = ec.generate_private_key(ec.SECP256R1())
    ca_pem = _write(tmp_path / "ca.pem", ca, ca_key)
    srv_pem = _write(
        tmp_path / "server.pem",
        _cert("127.0.0.1", srv_key, ("test-ca", ca_key), server=True),
        srv_key,
    )
    cli_pem = _write(tmp_path / "client.pem", _cert("gate1", cli_key, ("test-ca", ca_key)), cli_key)
    tls = MosquittoTLS(ca=ca_pem, cert=srv_pem, key=srv_pem.with_suffix(".key"))

    async def go(broker: Mosquitto) -> None:
        db = store.connect(db_path)
        outbox = Outbox(db, TOPICS)
        ok = MqttService(
            MqttSettings.from_url(
                f"mqtts://127.0.0.1:{broker.port}",
                client_id="gate1",
                ca_file=ca_pem,
                cert_file=cli_pem,
                key_file=cli_pem.with_suffix(".key"),
                backoff_max_s=0.5,
            ),
            TOPICS,
            outbox,
        )
        ev = DoorOpened(site="site1", gate="gate1", door="main")
        ok.publish_event(ev)
        async with running(ok):
            for _ in range(200):
                if ok.connected and outbox.stats().pending == 0:
                    break
                await asyncio.sleep(0.05)
        assert ok.protocol == "5"
        assert outbox.stats().published_total >= 1
        assert outbox.stats().pending == 0
        # without a client certificate the broker refuses the TLS handshake
        no_cert = MqttService(
            MqttSettings(
                host="127.0.0.1",
                port=broker.port,
                tls=True,
                ca_file=ca_pem,
                client_id="gate1-nocert",
                backoff_max_s=0.2,
                connect_timeout_s=0.5,
            ),
            TOPICS,
            Outbox(store.connect(":memory:"), TOPICS),
        )
        async with running(no_cert):
            await asyncio.sleep(2.0)
            assert not no_cert.connected
            assert no_cert._state.failures >= 1

    with Mosquitto(tls=tls) as broker:
        asyncio.run(go(broker))


# ------------------------------------------------------------------ 3.1.1 fallback


async def _v311_only_proxy(target_port: int) -> tuple[asyncio.Server, int]:
    """A proxy that answers MQTT 5 CONNECTs with 'unacceptable protocol version'."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(65536)
        # CONNECT: fixed header, remaining length, 00 04 'MQTT', protocol level
        idx = first.find(b"MQTT")
        level = first[idx + 4] if idx >= 0 else 0
        if level == 5:
            writer.write(b"\x20\x02\x00\x01")
            await writer.drain()
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port)
        up_w.write(first)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_falls_back_to_mqtt_311_when_v5_refused(broker: Mosquitto, db_path: Path) -> None:
    async def go() -> None:
        server, port = await _v311_only_proxy(broker.port)
        async with server:
            db = store.connect(db_path)
            outbox = Outbox(db, TOPICS)
            service = MqttService(
                MqttSettings(port=port, client_id="gate1", backoff_max_s=0.3), TOPICS, outbox
            )
            ev = DoorOpened(site="site1", gate="gate1", door="main")
            async with Collector(broker, TOPICS.events_wildcard) as col, running(service):
                service.publish_event(ev)
                await col.wait_for(lambda c: str(ev.id) in c.ids())
            assert service.protocol == "3.1.1"

    asyncio.run(go())


def test_reconnect_logs_warning_once_then_debug(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.net import free_port

    port = free_port()  # nothing listens here

    async def go() -> MqttService:
        service = MqttService(
            MqttSettings(port=port, client_id="gate1", backoff_initial_s=0.05, backoff_max_s=0.1),
            TOPICS,
            Outbox(store.connect(db_path), TOPICS),
        )
        async with running(service):
            await asyncio.sleep(0.8)
        return service

    caplog.set_level("DEBUG", logger="gateway.mqtt.client")
    service = asyncio.run(go())
    recs = [
        r
        for r in caplog.records
        if r.name == "gateway.mqtt.client" and "unavailable" in r.getMessage()
    ]
    assert service._state.failures >= 3
    assert [r.levelname for r in recs].count("WARNING") == 1
    assert recs[0].levelname == "WARNING"
    assert all(r.levelname == "DEBUG" for r in recs[1:])
    assert "gate1" in recs[0].getMessage()


def test_status_reports_degraded_outbox(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "s.db")
    outbox = Outbox(db, TOPICS)
    service = MqttService(MqttSettings(), TOPICS, outbox, health=lambda: {"relay": "ok"})
    doc = json.loads(service.status_payload())
    assert doc["outbox"]["degraded"] is False
    db.conn.execute("PRAGMA query_only = ON")
    service.publish_event(DoorOpened(site="site1", gate="gate1", door="main"))
    doc = json.loads(service.status_payload())
    assert doc["outbox"] == {
        "pending": 1,
        "in_memory": 1,
        "journalled": 1,  # fsync'd beside the database: survives a kill -9
        "dropped_total": 0,
        "degraded": True,
    }
    assert doc["health"] == {"relay": "ok"}

    def broken() -> dict[str, str]:
        raise RuntimeError("sensor gone")

    service2 = MqttService(MqttSettings(), TOPICS, outbox, health=broken)
    assert json.loads(service2.status_payload())["health"] == {"error": "RuntimeError"}


def test_people_count_is_retained_apart_from_the_last_will(tmp_path: Path) -> None:
    outbox = Outbox(store.connect(tmp_path / "s.db"), TOPICS)
    service = MqttService(
        MqttSettings(), TOPICS, outbox, health=lambda: {"enrolled_people": 12, "relay": "ok"}
    )
    enrolled = service.enrolled_payload()
    assert enrolled is not None
    assert json.loads(enrolled)["enrolled_people"] == 12
    assert TOPICS.enrolled.endswith("/enrolled")
    assert "enrolled_people" not in json.loads(service.status_payload("offline"))
    unknown = MqttService(MqttSettings(), TOPICS, outbox, health=lambda: {"relay": "ok"})
    assert unknown.enrolled_payload() is None


def test_homeassistant_discovery_and_state(broker: Mosquitto, db_path: Path) -> None:
    from gateway.mqtt.events import DoorUnlocked
    from gateway.mqtt.homeassistant import HomeAssistant

    async def go() -> Collector:
        service = MqttService(
            MqttSettings(port=broker.port, client_id="gate1", backoff_max_s=0.3),
            TOPICS,
            Outbox(store.connect(db_path), TOPICS),
            homeassistant=HomeAssistant(TOPICS, ["main"]),
        )
        async with running(service):
            for _ in range(200):
                if service.ready:
                    break
                await asyncio.sleep(0.02)
            service.publish_event(
                DoorUnlocked(site="site1", gate="gate1", door="main", cause="remote")
            )
            await asyncio.sleep(0.3)
        # a newcomer sees retained discovery and state
        async with Collector(broker, "#", client_id="ha") as col:
            await col.wait_for(lambda c: any(t.endswith("/ha/main/lock") for t, _, _ in c.messages))
            await asyncio.sleep(0.2)
        return col

    col = asyncio.run(go())
    topics = {t: d for t, d, _ in col.messages}
    assert any(t.startswith("homeassistant/binary_sensor/") for t in topics)
    assert any(t.startswith("homeassistant/sensor/") for t in topics)
    assert topics["access/site1/gate1/ha/main/lock"] == {"_raw": "unlocked"}
