"""Pure parts of the OSDP driver: backoff, event mapping, URL parsing."""

from __future__ import annotations

import argparse
import threading
import time

import osdp
import pytest

from gateway.cli.hardware import register
from gateway.errors import HardwareError
from gateway.hardware.backoff import Backoff
from gateway.hardware.events import CardRead, CardReadError, InputChanged, KeyPress, Tamper
from gateway.hardware.osdp import OsdpBus
from gateway.hardware.osdp_reader import PdState, map_event
from gateway.hardware.osdp_transport import (
    PtyTransport,
    SerialTransport,
    SocketTransport,
    transport_from_url,
)
from gateway.hardware.wiegand import bits_to_bytes, encode_h10301
from tests.support.osdp_peers import SCBK, PdFixture


def test_backoff_grows_is_capped_and_resets() -> None:
    b = Backoff(initial_s=0.5, cap_s=4.0, rng=lambda: 1.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5
    low = Backoff(initial_s=0.5, cap_s=4.0, rng=lambda: 0.0)
    assert [low.next_delay() for _ in range(4)] == [0.25, 0.5, 1.0, 2.0]  # jitter floor


def test_map_card_formats() -> None:
    bits = encode_h10301(3, 4)
    raw = {
        "event": osdp.Event.CardRead,
        "format": osdp.CardFormat.Wiegand,
        "length": 26,
        "data": bits_to_bytes(bits),
    }
    (ev,) = map_event("r", raw)
    assert isinstance(ev, CardRead)
    assert (ev.facility, ev.card_number) == (3, 4)
    raw_unspec = dict(raw, format=osdp.CardFormat.Unspecified)
    assert isinstance(map_event("r", raw_unspec)[0], CardRead)
    (bad,) = map_event("r", dict(raw, length=27))
    assert isinstance(bad, CardReadError)
    (short,) = map_event("r", dict(raw, length=90))
    assert isinstance(short, CardReadError)
    (asc,) = map_event(
        "r", {"event": osdp.Event.CardRead, "format": osdp.CardFormat.ASCII, "data": b"0012345"}
    )
    assert isinstance(asc, CardRead)
    assert (asc.fmt, asc.card_number, asc.facility) == ("ascii", 12345, None)
    (junk,) = map_event(
        "r", {"event": osdp.Event.CardRead, "format": osdp.CardFormat.ASCII, "data": b"\xff\x00"}
    )
    assert isinstance(junk, CardReadError)


def test_map_keypad_codes() -> None:
    evs = map_event("r", {"event": osdp.Event.KeyPress, "data": b"12\x7f9\x0d#*\x05\xaa"})
    assert [e.key for e in evs if isinstance(e, KeyPress)] == [
        "1",
        "2",
        "*",
        "9",
        "#",
        "#",
        "*",
        "5",
    ]


def test_map_status_changes_only() -> None:
    st = PdState()
    inp = {"event": osdp.Event.Status, "type": osdp.StatusReportType.Input}
    first = map_event("r", dict(inp, report=b"\x01\x00"), st)
    assert first == [InputChanged("r", 0, True), InputChanged("r", 1, False)]
    assert map_event("r", dict(inp, report=b"\x01\x00"), st) == []
    assert map_event("r", dict(inp, report=b"\x01\x01"), st) == [InputChanged("r", 1, True)]
    loc = {"event": osdp.Event.Status, "type": osdp.StatusReportType.Local}
    assert map_event("r", dict(loc, report=b"\x00\x00"), st) == [Tamper("r", False)]
    assert map_event("r", dict(loc, report=b"\x00\x01"), st) == []
    assert map_event("r", dict(loc, report=b"\x01\x00"), st) == [Tamper("r", True)]
    assert map_event("r", {"event": osdp.Event.Notification, "type": 1}) == []
    assert map_event("r", {}) == []


def test_transport_urls() -> None:
    t = transport_from_url("osdp+socket://127.0.0.1:7000?address=101")
    assert isinstance(t, SocketTransport)
    assert (t.host, t.port) == ("127.0.0.1", 7000)
    assert isinstance(transport_from_url("socket://10.0.0.2:4001"), SocketTransport)
    assert isinstance(transport_from_url("osdp+pty:///dev/pts/4"), PtyTransport)
    s = transport_from_url("osdp:///dev/ttyUSB0?baud=115200&address=5")
    assert isinstance(s, SerialTransport)
    assert (s.path, s.baud) == ("/dev/ttyUSB0", 115200)
    with pytest.raises(HardwareError, match="unsupported baud"):
        transport_from_url("osdp:///dev/ttyUSB0?baud=1234")
    with pytest.raises(HardwareError, match="host:port"):
        transport_from_url("osdp+socket://127.0.0.1")


def test_bus_rejects_bad_reader_config() -> None:
    bus = OsdpBus(SocketTransport("127.0.0.1", 1))
    bus.add_reader("a", 101, scbk=bytes(16))
    with pytest.raises(HardwareError, match="16 bytes"):
        bus.add_reader("b", 102, scbk=bytes(8))
    with pytest.raises(HardwareError, match="already on this bus"):
        bus.add_reader("c", 101)
    with pytest.raises(HardwareError, match=r"not in 0\.\.126"):
        bus.add_reader("d", 127)


def test_install_mode_and_plaintext_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    bus = OsdpBus(SocketTransport("127.0.0.1", 1))
    bus.add_reader("inst", 1, install_mode=True)
    bus.add_reader("plain", 2)
    msgs = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert any(lvl == "WARNING" and "install mode" in m and "inst" in m for lvl, m in msgs)
    assert any(lvl == "WARNING" and "NOT encrypted" in m for lvl, m in msgs)


def test_reader_probe_cli_masks_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    pd = PdFixture(101, SCBK)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["reader-probe", pd.url, "--scbk", SCBK.hex(), "--seconds", "1.5"])

    def later() -> None:
        time.sleep(0.8)
        pd.present_card(encode_h10301(12, 34567))
        pd.key("9")

    th = threading.Thread(target=later)
    th.start()
    try:
        assert args.func(args) == 0
    finally:
        th.join()
        pd.close()
    out = capsys.readouterr().out
    assert "ReaderOnline" in out
    assert "card read (H10301, 26 bits)" in out
    assert "key *" in out
    assert "34567" not in out
    assert "9" not in out.replace("26 bits", "")
