"""Simulated OSDP reader: a libosdp PeripheralDevice listening on TCP (or a pty).

The gateway's control panel connects to ``127.0.0.1:PORT`` (``osdp+socket://``). The PD
reports card reads (raw Wiegand bits in the configured format), key presses, inputs
(input 0 = door contact, active = open; input 1 = exit button) and tamper (local status);
it records what the CP commands: LED, buzzer, text and outputs (output 0 = door relay),
honouring OSDP output timers. Secure Channel with the configured SCBK.

Like a reader's firmware (a UART interrupt), the PD handles a command as soon as its bytes
arrive: its refresh thread waits on the channel becoming readable (at most
``_IDLE_REFRESH_S``), not on a fixed 20 ms sleep as the binding's own thread does.

Faults for the gateway's fault suite: :meth:`SimReader.cut_link` (the PD stops answering,
as if the RS-485 pair were cut; what the CP sends is lost) and
:meth:`SimReader.corrupt_frames` (the next N replies leave with a bad CRC).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import osdp

from hw_sim.cards import get_format, to_osdp_bytes
from hw_sim.pd_events import MAX_KEYS, EventTracker, key_chunks

log = logging.getLogger(__name__)

_COLORS = {
    osdp.CommandLEDColor.Black: "off",
    osdp.CommandLEDColor.Red: "red",
    osdp.CommandLEDColor.Green: "green",
    osdp.CommandLEDColor.Amber: "amber",
    osdp.CommandLEDColor.Blue: "blue",
    osdp.CommandLEDColor.Magenta: "magenta",
    osdp.CommandLEDColor.Cyan: "cyan",
    osdp.CommandLEDColor.White: "white",
}
# OSDP keypad data: digits as ASCII, '*' = 0x7F, '#' = 0x0D.
_KEYS = {**{str(d): ord(str(d)) for d in range(10)}, "*": 0x7F, "#": 0x0D}
N_INPUTS = 2
N_OUTPUTS = 2
_IDLE_REFRESH_S = 0.02  # libosdp wants a refresh at least every 50 ms
_MIN_REFRESH_S = 0.0005  # never spin, even if libosdp leaves bytes unread


class ReaderError(RuntimeError):
    """Bad reader configuration or request (names the reader)."""


class _LineFaults:
    """Line faults shared by both channels: a cut pair and corrupted replies."""

    def __init__(self) -> None:
        self.cut = False
        self.corrupt_left = 0
        self._faults_lock = threading.Lock()

    def _incoming(self, data: bytes) -> bytes:
        # a cut pair: what the CP sends never arrives
        return b"" if self.cut else data

    def _outgoing(self, buf: bytes) -> bytes | None:
        """The bytes to put on the wire (None: lost on a cut line)."""
        if self.cut:
            return None
        with self._faults_lock:
            if self.corrupt_left <= 0 or not buf:
                return buf
            self.corrupt_left -= 1
        # one reply = one write; its last byte is part of the CRC: flip it
        return bytes(buf[:-1]) + bytes([buf[-1] ^ 0xFF])


class _TcpListenChannel(osdp.Channel, _LineFaults):  # type: ignore[misc]  # untyped base
    """Non-blocking byte stream to the one CP connected to a listening socket."""

    def __init__(self, name: str, host: str, port: int) -> None:
        osdp.Channel.__init__(self)
        _LineFaults.__init__(self)
        self.name = name
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind((host, port))
        self._listen.listen(1)
        self._listen.settimeout(0.2)
        self.port: int = self._listen.getsockname()[1]
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(
            target=self._accept, name=f"osdp-{name}-accept", daemon=True
        )
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._listen.accept()
            except (TimeoutError, OSError):
                continue
            conn.setblocking(False)
            with self._lock:
                old, self._conn = self._conn, conn
            if old is not None:
                old.close()
            self.connected.set()
            log.info("reader %s: control panel connected from %s:%d", self.name, *peer[:2])

    def _drop(self, why: str) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            self.connected.clear()
            log.info("reader %s: control panel disconnected (%s)", self.name, why)

    def read(self, max_bytes: int) -> bytes:
        conn = self._conn
        if conn is None:
            return b""
        try:
            data = conn.recv(max_bytes)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            self._drop(f"read: {exc}")
            return b""
        if not data:
            self._drop("closed by the control panel")
        return self._incoming(data)

    def write(self, buf: bytes) -> int:
        conn = self._conn
        wire = self._outgoing(bytes(buf))
        if conn is None or wire is None:
            return len(buf)  # nobody listening / line cut: the bytes are lost on the wire
        try:
            return conn.send(wire)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._drop(f"write: {exc}")
            return len(buf)

    def flush(self) -> None:
        return None

    def wait_readable(self, timeout: float) -> None:
        """Return when the CP sent bytes, or after ``timeout``."""
        conn = self._conn
        if conn is None:
            time.sleep(timeout)
            return
        try:
            select.select([conn], [], [], timeout)
        except (OSError, ValueError):  # closed meanwhile
            time.sleep(timeout)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(1)
        self._listen.close()
        self._drop("simulator stopped")


class _PtyChannel(osdp.Channel, _LineFaults):  # type: ignore[misc]  # untyped base
    """The PD end of a pseudo-terminal; the CP opens ``path`` like a serial port."""

    def __init__(self, name: str, link: str | None) -> None:
        osdp.Channel.__init__(self)
        _LineFaults.__init__(self)
        self.name = name
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.link = link
        if link:
            Path(link).unlink(missing_ok=True)
            Path(link).symlink_to(self.path)
        self.port = 0

    def read(self, max_bytes: int) -> bytes:
        try:
            return self._incoming(os.read(self._master, max_bytes))
        except (BlockingIOError, OSError):
            return b""

    def write(self, buf: bytes) -> int:
        wire = self._outgoing(bytes(buf))
        if wire is None:
            return len(buf)
        try:
            return os.write(self._master, wire)
        except BlockingIOError:
            return 0

    def flush(self) -> None:
        return None

    def wait_readable(self, timeout: float) -> None:
        """Return when the CP sent bytes, or after ``timeout``."""
        try:
            select.select([self._master], [], [], timeout)
        except (OSError, ValueError):
            time.sleep(timeout)

    def close(self) -> None:
        os.close(self._master)
        os.close(self._slave)
        if self.link:
            Path(self.link).unlink(missing_ok=True)


class _ResponsivePd(osdp.PeripheralDevice):  # type: ignore[misc]  # untyped base
    """The binding's PD with a refresh thread that wakes on incoming bytes."""

    def __init__(self, channel: _TcpListenChannel | _PtyChannel, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._wait_readable = channel.wait_readable

    def refresh(self, event: threading.Event, lock: threading.Lock, ctx: Any) -> None:
        """Replaces the binding's fixed 20 ms loop (called by ``start`` in its thread)."""
        while not event.is_set():
            with lock:
                ctx.refresh()
            time.sleep(_MIN_REFRESH_S)
            self._wait_readable(_IDLE_REFRESH_S)


@dataclass(frozen=True)
class ReaderSettings:
    """One simulated reader."""

    name: str
    address: int = 101
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port, see SimReader.port
    scbk: bytes | None = None  # 16 bytes; None = no Secure Channel (install mode)
    card_format: str = "H10301"
    facility: int = 0
    pty: bool = False
    pty_link: str | None = None


class SimReader:
    """One OSDP PD with keypad, LED, buzzer, text, 2 inputs, 2 outputs and a tamper switch."""

    def __init__(
        self,
        settings: ReaderSettings,
        *,
        on_output: Callable[[int, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        s = settings
        if s.scbk is not None and len(s.scbk) != 16:
            raise ReaderError(f"reader {s.name}: SCBK must be 16 bytes, got {len(s.scbk)}")
        if not 0 <= s.address <= 126:
            raise ReaderError(f"reader {s.name}: OSDP address {s.address} is not in 0..126")
        get_format(s.card_format)  # validate early
        self.settings = s
        self.name = s.name
        self._clock = clock
        self._on_output = on_output
        self._lock = threading.Lock()
        self.outputs = [False] * N_OUTPUTS
        self._permanent = [False] * N_OUTPUTS
        self._output_until: dict[int, float] = {}
        self.inputs = [False] * N_INPUTS
        self.tamper = False
        self.led: dict[str, Any] = {
            "color": "off",
            "on_count": 0,
            "off_count": 0,
            "temporary": False,
        }
        self.buzzer: dict[str, Any] = {"on": False, "on_count": 0, "off_count": 0, "rep_count": 0}
        self.text = ""
        self.history: list[tuple[float, str, dict[str, Any]]] = []
        self.channel: _TcpListenChannel | _PtyChannel
        if s.pty:
            self.channel = _PtyChannel(s.name, s.pty_link)
        else:
            self.channel = _TcpListenChannel(s.name, s.host, s.port)
        caps = osdp.PDCapabilities(
            [
                (osdp.Capability.ContactStatusMonitoring, 1, N_INPUTS),
                (osdp.Capability.OutputControl, 1, N_OUTPUTS),
                (osdp.Capability.LEDControl, 1, 1),
                (osdp.Capability.AudibleControl, 1, 1),
                (osdp.Capability.TextOutput, 1, 1),
                (osdp.Capability.CardDataFormat, 1, 1),
                (osdp.Capability.CommunicationSecurity, 1 if s.scbk else 0, 1),
            ]
        )
        flags = [osdp.LibFlag.EnforceSecure] if s.scbk else [osdp.LibFlag.InstallMode]
        info = osdp.PDInfo(s.address, self.channel, scbk=s.scbk, name=s.name, flags=flags)
        self._pd = _ResponsivePd(
            self.channel,
            info,
            caps,
            log_level=osdp.LogLevel.Warning,
            command_handler=self._on_command,
        )
        self.events = EventTracker(s.name)  # nothing acknowledged is dropped silently
        self.events.attach(self._pd)
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        return self.channel.port

    @property
    def url(self) -> str:
        """How the gateway reaches this reader (its reader URL)."""
        if isinstance(self.channel, _PtyChannel):
            path = self.channel.link or self.channel.path
            return f"osdp+pty://{path}?address={self.settings.address}"
        return f"osdp+socket://{self.settings.host}:{self.port}?address={self.settings.address}"

    def start(self) -> None:
        self._pd.start()
        self._started = True
        log.info("reader %s: PD address %d on %s", self.name, self.settings.address, self.url)

    def stop(self) -> None:
        if self._started:
            self._pd.stop()
            self._started = False
        self.channel.close()

    def online(self) -> bool:
        """True while the PD answers the CP (and the Secure Channel is up when keyed)."""
        if not self._started or self.channel.cut or not self._pd.is_online():
            return False
        return self.settings.scbk is None or self.sc_active()

    # ------------------------------------------------------------------ line faults
    def cut_link(self) -> None:
        """The RS-485 pair is cut: the PD stops answering (commands never arrive)."""
        self.channel.cut = True
        self._record("link", {"cut": True})
        log.info("reader %s: link cut", self.name)

    def restore_link(self) -> None:
        """The pair is mended: the PD answers again."""
        self.channel.cut = False
        self._record("link", {"cut": False})
        log.info("reader %s: link restored", self.name)

    def corrupt_frames(self, count: int) -> None:
        """The PD's next ``count`` replies are sent with a bad CRC."""
        if not 0 <= count <= 1000:
            raise ReaderError(f"reader {self.name}: corrupt-frames count must be 0..1000")
        with self.channel._faults_lock:
            self.channel.corrupt_left = count
        self._record("corrupt", {"count": count})
        log.info("reader %s: next %d repl(ies) corrupted", self.name, count)

    def sc_active(self) -> bool:
        return bool(self._pd.is_sc_active())

    # ------------------------------------------------------------------ PD -> CP
    def _submit(self, event: dict[str, Any], *, swipe: bool = False) -> None:
        if not self._started:
            raise ReaderError(f"reader {self.name}: not started")
        why = self.events.reserve(1, online=self.online(), need_online=swipe)
        if why is not None:
            raise ReaderError(f"reader {self.name}: {why}")
        if not self._pd.submit_event(event):
            self.events.release()
            raise ReaderError(f"reader {self.name}: libosdp refused the event")

    def present_card(self, card: int, facility: int | None = None, fmt: str | None = None) -> None:
        """A card is presented: raw Wiegand bits in ``fmt`` (default: the reader's)."""
        form = get_format(fmt or self.settings.card_format)
        bits = form.encode(card, self.settings.facility if facility is None else facility)
        self._record("card", {"format": form.name, "bits": form.bits})
        log.info("reader %s: card presented (%s)", self.name, form.name)
        self._submit(
            {
                "event": osdp.Event.CardRead,
                "reader_no": 0,
                "format": osdp.CardFormat.Wiegand,
                "direction": 0,
                "length": form.bits,
                "data": to_osdp_bytes(bits),
            },
            swipe=True,
        )

    def type_keys(self, keys: str) -> None:
        """Key presses (digits, ``*``, ``#``), sent as one keypad event."""
        bad = [k for k in keys if k not in _KEYS]
        if bad:
            raise ReaderError(f"reader {self.name}: not keypad keys: {''.join(bad)[:20]!r}")
        if not keys or len(keys) > MAX_KEYS:
            raise ReaderError(f"reader {self.name}: {len(keys)} keys, 1..{MAX_KEYS} accepted")
        chunks = key_chunks(keys)  # libosdp's keypad report holds 64 bytes
        why = self.events.reserve(len(chunks), online=self.online(), need_online=True)
        if why is not None:
            raise ReaderError(f"reader {self.name}: {why}")
        self.events.release(len(chunks))  # room checked for all: each submit reserves one
        self._record("keys", {"count": len(keys)})
        for chunk in chunks:
            data = bytes(_KEYS[k] for k in chunk)
            self._submit({"event": osdp.Event.KeyPress, "reader_no": 0, "data": data}, swipe=True)

    def set_input(self, no: int, active: bool) -> None:
        """Drive input ``no`` (0 = door contact, active = open; 1 = exit button)."""
        if not 0 <= no < N_INPUTS:
            raise ReaderError(f"reader {self.name}: no input {no}")
        with self._lock:
            self.inputs[no] = active
            report = bytes(int(v) for v in self.inputs)
        self._record("input", {"no": no, "active": active})
        if self._started:
            self._submit(
                {"event": osdp.Event.Status, "type": osdp.StatusReportType.Input, "report": report}
            )

    def set_tamper(self, active: bool) -> None:
        """Open (True) or close the reader's tamper switch (local status)."""
        with self._lock:
            self.tamper = active
        self._record("tamper", {"active": active})
        log.info("reader %s: tamper %s", self.name, "active" if active else "clear")
        self._submit(
            {
                "event": osdp.Event.Status,
                "type": osdp.StatusReportType.Local,
                "report": bytes([int(active), 0]),
            }
        )

    # ------------------------------------------------------------------ CP -> PD
    def _on_command(self, cmd: dict[str, Any]) -> tuple[int, None]:
        kind = cmd.get("command")
        try:
            if kind == osdp.Command.Output:
                self._command_output(cmd)
            elif kind == osdp.Command.LED:
                with self._lock:
                    self.led = {
                        "color": _COLORS.get(cmd.get("on_color", 0), "unknown"),
                        "off_color": _COLORS.get(cmd.get("off_color", 0), "unknown"),
                        "on_count": cmd.get("on_count", 0),
                        "off_count": cmd.get("off_count", 0),
                        "temporary": bool(cmd.get("temporary")),
                    }
                self._record("led", dict(self.led))
            elif kind == osdp.Command.Buzzer:
                with self._lock:
                    self.buzzer = {
                        "on": cmd.get("control_code") == 2,
                        "on_count": cmd.get("on_count", 0),
                        "off_count": cmd.get("off_count", 0),
                        "rep_count": cmd.get("rep_count", 0),
                    }
                self._record("buzzer", dict(self.buzzer))
            elif kind == osdp.Command.Text:
                with self._lock:
                    self.text = str(cmd.get("data", ""))
                self._record("text", {"text": self.text})
            else:
                self._record("command", {"command": kind})
        except Exception:  # a handler crash must not kill the libosdp thread
            log.exception("reader %s: cannot handle command %s", self.name, kind)
            return -1, None
        return 0, None

    def _command_output(self, cmd: dict[str, Any]) -> None:
        no, code, timer = (
            int(cmd["output_no"]),
            int(cmd["control_code"]),
            int(cmd.get("timer_count", 0)),
        )
        if not 0 <= no < N_OUTPUTS:
            log.warning("reader %s: output %d does not exist", self.name, no)
            return
        now = self._clock()
        # OSDP osdp_OUT control codes: 1/2 permanent off/on, abort a timed operation;
        # 3/4 permanent off/on, let a running timed operation finish first;
        # 5/6 temporary on/off for timer_count x 100 ms, then back to the permanent state.
        if code in (1, 2):
            self._permanent[no] = code == 2
            self._output_until.pop(no, None)
            self._set_output(no, on=code == 2)
        elif code in (3, 4):
            self._permanent[no] = code == 4
            if no not in self._output_until:
                self._set_output(no, on=code == 4)
        elif code in (5, 6):
            self._output_until[no] = now + timer / 10.0
            self._set_output(no, on=code == 5)
        else:
            log.warning("reader %s: output control code %d ignored", self.name, code)
        self._record("output", {"no": no, "control_code": code, "timer_count": timer})

    def _set_output(self, no: int, *, on: bool) -> None:
        with self._lock:
            changed = self.outputs[no] != on
            self.outputs[no] = on
        if changed:
            log.info("reader %s: output %d %s", self.name, no, "on" if on else "off")
            if self._on_output is not None:
                self._on_output(no, on)

    def tick(self) -> None:
        """Expire temporary outputs."""
        now = self._clock()
        for no, until in list(self._output_until.items()):
            if now >= until:
                self._output_until.pop(no, None)
                self._set_output(no, on=self._permanent[no])

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self.history.append((self._clock(), kind, data))
            if len(self.history) > 1000:
                del self.history[:500]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "url": self.url,
                "online": self.online(),
                "link_cut": self.channel.cut,
                "secure_channel": self.sc_active() if self._started else False,
                "relay": self.outputs[0],
                "outputs": list(self.outputs),
                "inputs": list(self.inputs),
                "tamper": self.tamper,
                "led": dict(self.led),
                "buzzer": dict(self.buzzer),
                "text": self.text,
            }
