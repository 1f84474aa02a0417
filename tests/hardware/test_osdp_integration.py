"""OSDP CP driver against a real libosdp PD over TCP loopback with Secure Channel."""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import socket
import threading
import time
from typing import Any

import osdp
import pytest

from gateway.hardware import open_reader
from gateway.hardware.events import (
    CardRead,
    InputChanged,
    KeyPress,
    ReaderEvent,
    ReaderOffline,
    ReaderOnline,
    Tamper,
)
from gateway.hardware.osdp import OsdpBus
from gateway.hardware.osdp_reader import OsdpReader
from gateway.hardware.osdp_transport import SocketTransport
from gateway.hardware.wiegand import encode_h10301
from tests.support.osdp_peers import SCBK, PdFixture, wait_for


def wait_command(pd: PdFixture, command: int, timeout: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cmd = pd.commands.get(timeout=0.05)
        except queue.Empty:
            continue
        if cmd["command"] == command:
            return cmd
    raise AssertionError(f"PD never received command {command}")


def test_card_pin_io_and_commands_over_secure_channel() -> None:
    pd = PdFixture(101, SCBK)

    async def main() -> None:
        reader = open_reader(pd.url, "gate-1", scbk=SCBK, install_mode=False)
        assert isinstance(reader, OsdpReader)
        await reader.start()
        events = reader.events()
        try:
            await wait_for(events, ReaderOnline, 5)
            assert reader.bus._ctx.sc_status() & 1, "Secure Channel must be active"

            assert pd.present_card(encode_h10301(42, 12345))
            card = await wait_for(events, CardRead)
            assert (card.reader, card.facility, card.card_number) == ("gate-1", 42, 12345)
            assert (card.fmt, card.bits) == ("H10301", 26)
            assert "12345" not in repr(card)

            assert pd.key("1234#")
            keys = [(await wait_for(events, KeyPress)).key for _ in range(5)]
            assert keys == ["1", "2", "3", "4", "#"]

            # quirk: the report must have as many entries as the PD's declared inputs (4)
            assert pd.inputs([1, 0, 0, 0])
            first = {(await wait_for(events, InputChanged)).input_no for _ in range(4)}
            assert first == {0, 1, 2, 3}
            assert pd.inputs([0, 0, 0, 0])
            changed = await wait_for(events, InputChanged)
            assert (changed.input_no, changed.active) == (0, False)

            assert pd.tamper(True)
            tamper = await wait_for(events, Tamper)
            assert tamper.active is True

            await reader.output(0, True, seconds=5)
            out = await asyncio.to_thread(wait_command, pd, osdp.Command.Output)
            assert (out["output_no"], out["control_code"], out["timer_count"]) == (0, 5, 50)

            # longer than the binding's 8-bit timer (25.5 s): still a timed output, capped
            # (never a permanent ON a dead controller could leave behind); callers renew it
            await reader.output(1, True, seconds=60)
            out = await asyncio.to_thread(wait_command, pd, osdp.Command.Output)
            assert (out["output_no"], out["control_code"], out["timer_count"]) == (1, 5, 255)
            await reader.output(1, False)
            out = await asyncio.to_thread(wait_command, pd, osdp.Command.Output)
            assert (out["output_no"], out["control_code"], out["timer_count"]) == (1, 1, 0)

            await reader.led("green", "steady", seconds=3)
            led = await asyncio.to_thread(wait_command, pd, osdp.Command.LED)
            assert led["on_color"] == osdp.CommandLEDColor.Green
            assert led["temporary"] is True
            assert led["timer_count"] == 30

            await reader.buzzer("double")
            buz = await asyncio.to_thread(wait_command, pd, osdp.Command.Buzzer)
            assert buz["rep_count"] == 2

            await reader.text("Welcome")
            txt = await asyncio.to_thread(wait_command, pd, osdp.Command.Text)
            assert txt["data"] == "Welcome"
        finally:
            await reader.close()

    try:
        asyncio.run(main())
    finally:
        pd.close()


def test_wrong_key_never_comes_online() -> None:
    pd = PdFixture(101, SCBK)

    async def main() -> None:
        reader = open_reader(pd.url, "gate-1", scbk=bytes(16))
        await reader.start()
        try:
            with pytest.raises(TimeoutError):
                await wait_for(reader.events(), ReaderOnline, 2.5)
        finally:
            await reader.close()

    try:
        asyncio.run(main())
    finally:
        pd.close()


def test_pull_reader_goes_offline_and_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    pd = PdFixture(101, SCBK)
    caplog.set_level(logging.DEBUG, logger="gateway.hardware.osdp")

    async def main() -> None:
        reader = open_reader(pd.url, "gate-1", scbk=SCBK)
        assert isinstance(reader, OsdpReader)
        await reader.start()
        events = reader.events()
        try:
            await wait_for(events, ReaderOnline, 5)
            t0 = time.monotonic()
            pd.pull()
            off = await wait_for(events, ReaderOffline, 3)
            # libosdp may notice the silence a few ms before the socket reports EOF
            assert off.reason.startswith(("transport closed", "no answer"))
            assert time.monotonic() - t0 < 2.0, "transport loss must be seen at once"
            await asyncio.sleep(1.5)  # several refused connects with backoff
            pd.plug()
            await wait_for(events, ReaderOnline, 6)
            assert pd.connections == 2
            # still works after the reconnect
            assert pd.key("7")
            assert (await wait_for(events, KeyPress)).key == "7"
        finally:
            await reader.close()

    try:
        asyncio.run(main())
    finally:
        pd.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("transport lost" in r.getMessage() for r in warnings)
    retries = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert retries, "refused connects should be logged"
    assert retries[0].levelno == logging.WARNING
    assert all(r.levelno == logging.DEBUG for r in retries[1:])


def test_two_pds_on_one_bus() -> None:
    """Multi-drop: one CP, two PDs; a tiny relay hub shares one TCP line between them."""
    pd_a, pd_b = PdFixture(101, SCBK), PdFixture(102, SCBK[::-1])
    hub = socket.socket()
    hub.bind(("127.0.0.1", 0))
    hub.listen(1)
    stop = threading.Event()

    def relay() -> None:
        cp_side, _ = hub.accept()
        legs = [socket.create_connection(("127.0.0.1", p.port)) for p in (pd_a, pd_b)]
        for s in (cp_side, *legs):
            s.settimeout(0.01)
        while not stop.is_set():
            try:
                data = cp_side.recv(4096)
                for leg in legs:
                    leg.sendall(data)
            except TimeoutError:
                pass
            except OSError:
                return
            for leg in legs:
                try:
                    cp_side.sendall(leg.recv(4096))
                except TimeoutError:
                    pass
                except OSError:
                    return
        for s in (cp_side, *legs):
            s.close()

    th = threading.Thread(target=relay, daemon=True)
    th.start()

    async def main() -> None:
        bus = OsdpBus(SocketTransport("127.0.0.1", hub.getsockname()[1]))
        ra = bus.add_reader("in", 101, scbk=SCBK)
        rb = bus.add_reader("out", 102, scbk=SCBK[::-1])
        await ra.start()
        await rb.start()
        try:
            await wait_for(ra.events(), ReaderOnline, 6)
            await wait_for(rb.events(), ReaderOnline, 6)
            assert pd_b.present_card(encode_h10301(7, 777))
            card = await wait_for(rb.events(), CardRead)
            assert (card.reader, card.card_number) == ("out", 777)
            await ra.output(0, True)
            cmd = await asyncio.to_thread(wait_command, pd_a, osdp.Command.Output)
            assert cmd["control_code"] == 2
        finally:
            await ra.close()
            await rb.close()

    try:
        asyncio.run(main())
    finally:
        stop.set()
        th.join(2)
        hub.close()
        pd_a.close()
        pd_b.close()


def test_random_and_malformed_bytes_never_crash() -> None:
    """Fuzz: a 'PD' that answers with noise and broken OSDP frames for ~3 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    stop = threading.Event()
    rng = random.Random(1234)

    def noise() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.settimeout(0.005)
            while not stop.is_set():
                choice = rng.random()
                if choice < 0.4:
                    blob = rng.randbytes(rng.randint(1, 64))
                elif choice < 0.8:  # plausible header, garbage body
                    n = rng.randint(6, 40)
                    blob = bytes([0x53, 0x80 | 101, n & 0xFF, 0, rng.randint(0, 15)])
                    blob += rng.randbytes(n)
                else:  # a closed and re-opened line
                    conn.close()
                    break
                try:
                    conn.sendall(blob)
                    conn.recv(1024)
                except TimeoutError:
                    pass
                except OSError:
                    break

    th = threading.Thread(target=noise, daemon=True)
    th.start()

    async def main() -> None:
        reader = open_reader(
            f"osdp+socket://127.0.0.1:{server.getsockname()[1]}?address=101", "fuzz", SCBK
        )
        assert isinstance(reader, OsdpReader)
        await reader.start()
        seen: list[ReaderEvent] = []

        async def drain() -> None:
            async for ev in reader.events():
                seen.append(ev)

        task = asyncio.create_task(drain())
        await asyncio.sleep(3.0)
        assert reader.bus.thread_alive
        assert not any(isinstance(e, ReaderOnline | CardRead | KeyPress) for e in seen)
        task.cancel()
        await reader.close()

    try:
        asyncio.run(main())
    finally:
        stop.set()
        th.join(2)
        server.close()


def test_install_mode_provisions_the_scbk(caplog: pytest.LogCaptureFixture) -> None:
    """A factory-fresh PD (no key) in install mode: the CP sets our SCBK with KEYSET."""
    pd = PdFixture(101, None)

    async def main() -> None:
        reader = open_reader(pd.url, "new-reader", scbk=SCBK, install_mode=True)
        await reader.start()
        try:
            await wait_for(reader.events(), ReaderOnline, 6)
            keyset = await asyncio.to_thread(wait_command, pd, osdp.Command.Keyset)
            assert keyset["data"] == SCBK
        finally:
            await reader.close()

    try:
        asyncio.run(main())
    finally:
        pd.close()
    assert any(
        r.levelno == logging.WARNING and "install mode" in r.getMessage() for r in caplog.records
    )
