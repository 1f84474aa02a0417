"""OSDP control panel (CP) driver on libosdp: one bus, one or more readers (PDs).

One :class:`OsdpBus` owns one transport (serial line, pty or TCP socket) and one libosdp
``ControlPanel`` holding every PD on that line. A private thread runs libosdp's refresh
and the bus housekeeping (reconnects, online/offline); events are handed to the asyncio
loop with ``loop.call_soon_threadsafe``.

libosdp quirks handled here (python package ``libosdp`` 3.2.x):

- The CP only reads the channel of ``pd_info[0]``; all PDs share it (multi-drop).
- The event callback receives the PD *index* (order of ``PDInfo``), not its address.
- ``osdp.ControlPanel``'s own handler queues every event forever unless ``get_event`` is
  called; we install our callback on ``ControlPanel.ctx`` instead.
- After a response timeout libosdp parks a PD offline for 300 s; after a reconnect we
  ``disable_pd`` then (one refresh later) ``enable_pd`` to retry at once.
- A channel ``read`` that raises leaves a Python error set inside the C refresh: our
  channel never raises; transport errors are turned into a "lost" flag.
- Status events carry ``report`` bytes (one byte per input); local status is
  ``[tamper, power]``. The output command ``timer_count`` is truncated to 8 bits.
- libosdp logs with printf; at debug level it can dump packets, so the level is capped
  at Warning.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import logging
import os
import random
import socket
import termios
import threading
import time
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import osdp

from gateway.errors import HardwareError
from gateway.hardware import wiegand
from gateway.hardware.events import (
    CardRead,
    CardReadError,
    InputChanged,
    KeyPress,
    ReaderEvent,
    ReaderOffline,
    ReaderOnline,
    Tamper,
)

log = logging.getLogger(__name__)

_REFRESH_S = 0.02
_STATUS_EVERY_S = 0.1
_MAX_TIMER_UNITS = 255  # libosdp python binding truncates timer_count to uint8

_LED_COLORS = {
    "off": osdp.CommandLEDColor.Black,
    "red": osdp.CommandLEDColor.Red,
    "green": osdp.CommandLEDColor.Green,
    "amber": osdp.CommandLEDColor.Amber,
    "blue": osdp.CommandLEDColor.Blue,
    "magenta": osdp.CommandLEDColor.Magenta,
    "cyan": osdp.CommandLEDColor.Cyan,
    "white": osdp.CommandLEDColor.White,
}
# pattern -> (on_count, off_count) in 100 ms units
_LED_PATTERNS = {"off": (0, 1), "steady": (1, 0), "blink": (5, 5), "fast_blink": (2, 2)}
# pattern -> (on_count, off_count, rep_count) in 100 ms units
_BUZZER_PATTERNS = {
    "off": (0, 0, 0),
    "short": (1, 0, 1),
    "double": (1, 1, 2),
    "long": (10, 0, 1),
    "error": (2, 1, 3),
}
# OSDP keypad codes: ASCII digits, '*' as 0x7F or '*', '#' as 0x0D or '#'; raw 0-9 too.
_KEYMAP = {**{0x30 + i: str(i) for i in range(10)}, **{i: str(i) for i in range(10)}}
_KEYMAP.update({0x7F: "*", 0x2A: "*", 0x0D: "#", 0x23: "#"})


# ----------------------------------------------------------------------------- backoff


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter (pure; rng injectable)."""

    initial_s: float = 0.2
    cap_s: float = 10.0
    factor: float = 2.0
    rng: Callable[[], float] = random.random
    attempts: int = 0

    def next_delay(self) -> float:
        """Delay before the next attempt; grows with each call up to ``cap_s``."""
        ceiling = min(self.cap_s, self.initial_s * self.factor**self.attempts)
        self.attempts += 1
        # half fixed, half jitter: never 0, never above the cap
        return ceiling / 2 + self.rng() * ceiling / 2

    def reset(self) -> None:
        """Forget failures after a success."""
        self.attempts = 0


# ----------------------------------------------------------------------------- transports


class Transport(abc.ABC):
    """A byte stream to the RS-485 line. ``read``/``write`` are non-blocking and raise
    ``OSError`` (or ``EOFError``) when the line is gone."""

    description: str

    @abc.abstractmethod
    def open(self) -> None:
        """Connect/open; raise OSError on failure."""

    @abc.abstractmethod
    def read(self, max_bytes: int) -> bytes:
        """Return available bytes (maybe empty); raise on a closed line."""

    @abc.abstractmethod
    def write(self, data: bytes) -> int:
        """Write what fits; return the count."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the line (idempotent)."""


class SocketTransport(Transport):
    """TCP client (the simulator PD listens, the gateway connects)."""

    def __init__(self, host: str, port: int, connect_timeout_s: float = 1.0) -> None:
        self.host, self.port, self.connect_timeout_s = host, port, connect_timeout_s
        self.description = f"tcp {host}:{port}"
        self._sock: socket.socket | None = None

    def open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock

    def read(self, max_bytes: int) -> bytes:
        if self._sock is None:
            raise EOFError("not connected")
        try:
            data = self._sock.recv(max_bytes)
        except BlockingIOError:
            return b""
        if not data:
            raise EOFError("peer closed the connection")
        return data

    def write(self, data: bytes) -> int:
        if self._sock is None:
            raise EOFError("not connected")
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class PtyTransport(Transport):
    """A tty device opened raw and non-blocking (a pty slave, or a serial port without
    pyserial). Closing the other side of a pty shows as EIO here."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"pty {path}"
        self._fd: int | None = None

    def open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            if not os.isatty(fd):  # a regular file or /dev/null would "connect" and spin
                raise OSError(errno.ENOTTY, f"{self.path} is not a terminal (tty/pty)")
            tty.setraw(fd)
        except (OSError, termios.error) as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise
            raise OSError(errno.ENOTTY, f"{self.path}: cannot set raw mode: {exc}") from None
        self._fd = fd

    def read(self, max_bytes: int) -> bytes:
        if self._fd is None:
            raise EOFError("not open")
        try:
            data = os.read(self._fd, max_bytes)
        except BlockingIOError:
            return b""
        if not data:
            raise EOFError("end of file on the pty")
        return data

    def write(self, data: bytes) -> int:
        if self._fd is None:
            raise EOFError("not open")
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class SerialTransport(Transport):
    """RS-485 adapter through pyserial (non-blocking)."""

    def __init__(self, path: str, baud: int) -> None:
        if baud not in (9600, 19200, 38400, 57600, 115200, 230400):
            raise HardwareError(f"OSDP serial {path}: unsupported baud rate {baud}")
        self.path, self.baud = path, baud
        self.description = f"serial {path}@{baud}"
        self._port: Any = None

    def open(self) -> None:
        import serial

        try:
            self._port = serial.Serial(self.path, self.baud, timeout=0, write_timeout=0)
        except serial.SerialException as exc:
            raise OSError(errno.EIO, str(exc)) from exc

    def read(self, max_bytes: int) -> bytes:
        import serial

        if self._port is None:
            raise EOFError("not open")
        try:
            return bytes(self._port.read(max_bytes))
        except serial.SerialException as exc:
            raise OSError(errno.EIO, str(exc)) from exc

    def write(self, data: bytes) -> int:
        import serial

        if self._port is None:
            raise EOFError("not open")
        try:
            return int(self._port.write(data) or 0)
        except serial.SerialTimeoutException:
            return 0
        except serial.SerialException as exc:
            raise OSError(errno.EIO, str(exc)) from exc

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(Exception):
                self._port.close()
            self._port = None


def transport_from_url(url: str) -> Transport:
    """``osdp:///dev/ttyUSB0?baud=9600``, ``osdp+pty:///dev/pts/3``,
    ``osdp+socket://host:port`` (also ``socket://host:port``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    if scheme in ("osdp+socket", "socket"):
        if not parts.hostname or parts.port is None:
            raise HardwareError(f"OSDP URL {url!r}: need host:port")
        return SocketTransport(parts.hostname, parts.port)
    if not parts.path:
        raise HardwareError(f"OSDP URL {url!r}: missing device path")
    if scheme == "osdp+pty":
        return PtyTransport(parts.path)
    if scheme in ("osdp", "osdp+serial"):
        try:
            baud = int(query.get("baud", ["9600"])[-1])
        except ValueError:
            raise HardwareError(f"OSDP URL {url!r}: baud is not a number") from None
        return SerialTransport(parts.path, baud)
    raise HardwareError(f"OSDP URL {url!r}: unknown scheme {parts.scheme!r}")


class _BusChannel(osdp.Channel):  # type: ignore[misc]
    """libosdp channel over a :class:`Transport`; never raises into libosdp."""

    def __init__(self, transport: Transport) -> None:
        super().__init__()
        self.transport = transport
        self.connected = False
        self.lost_reason: str | None = None

    def _lose(self, exc: BaseException) -> None:
        if self.connected:
            self.connected = False
            self.lost_reason = str(exc) or type(exc).__name__
            self.transport.close()

    def read(self, max_bytes: int) -> bytes:
        if not self.connected:
            return b""
        try:
            return self.transport.read(max_bytes)[:max_bytes]
        except (OSError, EOFError) as exc:
            self._lose(exc)
            return b""

    def write(self, buf: bytes) -> int:
        if not self.connected:
            return len(buf)  # as on a dead wire: bytes vanish
        try:
            return self.transport.write(bytes(buf))
        except (OSError, EOFError) as exc:
            self._lose(exc)
            return len(buf)

    def flush(self) -> None:
        return None


# ----------------------------------------------------------------------------- readers


@dataclass
class _PdState:
    online: bool = False
    inputs: bytes | None = None
    tamper: bool | None = None


class OsdpReader:
    """One OSDP PD on an :class:`OsdpBus`; implements the ``Reader`` protocol."""

    def __init__(self, bus: OsdpBus, name: str, address: int, index: int, secure: bool) -> None:
        self.bus = bus
        self.name = name
        self.address = address
        self.index = index
        self.secure = secure
        self._queue: asyncio.Queue[ReaderEvent] = asyncio.Queue()
        self._state = _PdState()

    @property
    def online(self) -> bool:
        """True while the PD answers (with the Secure Channel up when a key is set)."""
        return self._state.online

    async def start(self) -> None:
        """Start the shared bus (idempotent)."""
        await self.bus.start()

    async def close(self) -> None:
        """Release this reader; the bus stops when its last reader closes."""
        await self.bus.release(self)

    async def events(self) -> AsyncIterator[ReaderEvent]:
        """Yield events until the task is cancelled."""
        while True:
            yield await self._queue.get()

    def _put(self, event: ReaderEvent) -> None:
        self._queue.put_nowait(event)

    async def led(self, color: str, pattern: str, seconds: float | None = None) -> None:
        """LED 0: permanent state, or a temporary one for ``seconds``."""
        if color not in _LED_COLORS or pattern not in _LED_PATTERNS:
            raise HardwareError(f"reader {self.name}: unknown LED {color!r}/{pattern!r}")
        on, off = _LED_PATTERNS[pattern]
        on_color = _LED_COLORS[color] if pattern != "off" else _LED_COLORS["off"]
        cmd: dict[str, Any] = {
            "command": osdp.Command.LED,
            "reader": 0,
            "led_number": 0,
            "control_code": 1 if seconds is None else 2,
            "on_count": on,
            "off_count": off,
            "on_color": on_color,
            "off_color": _LED_COLORS["off"],
            "temporary": seconds is not None,
        }
        if seconds is not None:
            cmd["timer_count"] = max(1, min(_MAX_TIMER_UNITS, round(seconds * 10)))
        self.bus.submit(self, cmd)

    async def buzzer(self, pattern: str) -> None:
        """Buzzer with the default tone."""
        if pattern not in _BUZZER_PATTERNS:
            raise HardwareError(f"reader {self.name}: unknown buzzer pattern {pattern!r}")
        on, off, rep = _BUZZER_PATTERNS[pattern]
        self.bus.submit(
            self,
            {
                "command": osdp.Command.Buzzer,
                "reader": 0,
                "control_code": 1 if pattern == "off" else 2,
                "on_count": on,
                "off_count": off,
                "rep_count": rep,
            },
        )

    async def text(self, msg: str) -> None:
        """Permanent text, row 1; OSDP text is ASCII, at most 32 characters."""
        data = msg.encode("ascii", "replace").decode("ascii")[:32]
        self.bus.submit(
            self,
            {
                "command": osdp.Command.Text,
                "reader": 0,
                "control_code": 1,
                "temp_time": 0,
                "offset_row": 1,
                "offset_col": 1,
                "data": data,
            },
        )

    async def output(self, no: int, on: bool, seconds: float | None = None) -> None:
        """Output ``no``: on/off, or on for ``seconds`` (longer than 25.5 s: timed here)."""
        if not 0 <= no < 256:
            raise HardwareError(f"reader {self.name}: output number {no} out of range")
        units = None if seconds is None else max(1, round(seconds * 10))
        if units is not None and on and units <= _MAX_TIMER_UNITS:
            code, timer = 5, units  # OSDP 5: temporary on for the timer, then back to off
        else:
            code, timer = (2 if on else 1), 0
        self.bus.submit(
            self,
            {
                "command": osdp.Command.Output,
                "output_no": no,
                "control_code": code,
                "timer_count": timer,
            },
        )
        if units is not None and on and units > _MAX_TIMER_UNITS:
            asyncio.get_running_loop().call_later(
                units / 10, lambda: asyncio.ensure_future(self._timed_off(no))
            )

    async def _timed_off(self, no: int) -> None:
        try:
            await self.output(no, False)
        except HardwareError as exc:
            log.warning("reader %s: cannot end timed output %d: %s", self.name, no, exc)


# ----------------------------------------------------------------------------- bus


@dataclass
class OsdpBus:
    """One OSDP line with its libosdp CP and readers. Add readers, then ``start()``."""

    transport: Transport
    backoff: Backoff = field(default_factory=Backoff)
    log_level: int = osdp.LogLevel.Error
    readers: list[OsdpReader] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._channel = _BusChannel(self.transport)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._infos: list[Any] = []
        self._started = False
        self._open_readers: set[str] = set()
        self._next_attempt = 0.0
        self._failures = 0
        self._to_enable: set[int] = set()
        self._enable_wait = 0
        self._last_status = 0.0

    # -- setup -------------------------------------------------------------------------

    def add_reader(
        self, name: str, address: int, *, scbk: bytes | None = None, install_mode: bool = False
    ) -> OsdpReader:
        """Register a PD before ``start()``. ``scbk``: 16-byte Secure Channel base key."""
        if self._started:
            raise HardwareError(f"OSDP bus {self.transport.description}: already started")
        if not 0 <= address < 127:
            raise HardwareError(f"reader {name}: OSDP address {address} not in 0..126")
        if any(r.address == address or r.name == name for r in self.readers):
            raise HardwareError(f"reader {name}: address {address} or name already on this bus")
        if scbk is not None and len(scbk) != 16:
            raise HardwareError(f"reader {name}: SCBK must be 16 bytes, got {len(scbk)}")
        flags = [osdp.LibFlag.EnableNotification]
        if install_mode:
            flags.append(osdp.LibFlag.InstallMode)
            log.warning(
                "reader %s: OSDP install mode enabled: the Secure Channel may use the "
                "well-known default key SCBK-D; disable it once the reader is keyed",
                name,
            )
        elif scbk is not None:
            flags.append(osdp.LibFlag.EnforceSecure)
        else:
            log.warning("reader %s: no SCBK configured: OSDP traffic is NOT encrypted", name)
        self._infos.append(osdp.PDInfo(address, self._channel, scbk=scbk, name=name, flags=flags))
        reader = OsdpReader(self, name, address, len(self.readers), scbk is not None)
        self.readers.append(reader)
        self._open_readers.add(name)
        return reader

    async def start(self) -> None:
        """Create the CP and start the refresh thread (idempotent)."""
        if self._started:
            return
        if not self.readers:
            raise HardwareError(f"OSDP bus {self.transport.description}: no reader added")
        self._loop = asyncio.get_running_loop()
        level = min(int(self.log_level), int(osdp.LogLevel.Warning))
        cp = osdp.ControlPanel(self._infos, log_level=level)
        self._ctx = cp.ctx
        self._ctx.set_event_callback(self._on_event)
        self._started = True
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"osdp-{self.transport.description}", daemon=True
        )
        self._thread.start()

    async def release(self, reader: OsdpReader) -> None:
        """Close ``reader``; stop the bus when no reader is left."""
        self._open_readers.discard(reader.name)
        if not self._open_readers:
            await self.stop()

    async def stop(self) -> None:
        """Stop the thread and close the transport."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        self._channel.connected = False
        self.transport.close()
        self._ctx = None
        self._started = False

    @property
    def thread_alive(self) -> bool:
        """True while the refresh thread runs (for health checks and tests)."""
        return self._thread is not None and self._thread.is_alive()

    # -- commands ----------------------------------------------------------------------

    def submit(self, reader: OsdpReader, cmd: dict[str, Any]) -> None:
        """Queue a command for ``reader``; HardwareError when libosdp refuses it."""
        if self._ctx is None:
            raise HardwareError(f"reader {reader.name}: OSDP bus not started")
        with self._lock:
            try:
                ok = self._ctx.submit_command(reader.index, cmd)
            except (ValueError, TypeError, KeyError) as exc:
                raise HardwareError(f"reader {reader.name}: bad OSDP command: {exc}") from exc
        if not ok:
            raise HardwareError(
                f"reader {reader.name}: OSDP command refused (reader offline or queue full)"
            )

    # -- thread ------------------------------------------------------------------------

    def _post(self, reader: OsdpReader, event: ReaderEvent) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing during shutdown
                self._loop.call_soon_threadsafe(reader._put, event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._housekeeping()
                with self._lock:
                    if self._ctx is None:
                        break
                    self._ctx.refresh()
                self._after_refresh()
            except Exception:  # the bus thread must survive anything libosdp throws at it
                log.exception("OSDP bus %s: refresh failed", self.transport.description)
                time.sleep(0.5)
            time.sleep(_REFRESH_S)

    def _disable_all(self) -> None:
        with self._lock:
            for r in self.readers:
                self._ctx.disable_pd(r.index)
        # libosdp refuses enable_pd until the disable went through a refresh: retried
        self._to_enable = {r.index for r in self.readers}
        self._enable_wait = 1

    def _enable_pending(self) -> None:
        if self._enable_wait > 0:
            self._enable_wait -= 1
            return
        with self._lock:
            for index in sorted(self._to_enable):
                if self._ctx.enable_pd(index):
                    self._to_enable.discard(index)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._channel.lost_reason is not None:
            reason = self._channel.lost_reason
            self._channel.lost_reason = None
            log.warning(
                "OSDP bus %s: transport lost (%s); reconnecting",
                self.transport.description,
                reason,
            )
            self._disable_all()
            self._to_enable.clear()
            for r in self.readers:
                self._mark(r, False, f"transport closed: {reason}")
            self._failures = 0
            self.backoff.reset()
            self._next_attempt = now + self.backoff.next_delay()
        if not self._channel.connected and now >= self._next_attempt:
            try:
                self.transport.open()
            except OSError as exc:
                self._failures += 1
                delay = self.backoff.next_delay()
                self._next_attempt = now + delay
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "OSDP bus %s: cannot connect (%s); retry %d in %.1f s",
                    self.transport.description,
                    exc,
                    self._failures,
                    delay,
                )
                return
            if self._failures:
                log.info(
                    "OSDP bus %s: connected after %d failed attempts",
                    self.transport.description,
                    self._failures,
                )
            self._failures = 0
            self.backoff.reset()
            self._channel.connected = True
            # libosdp may have parked the PDs offline for minutes: reset them now
            self._disable_all()

    def _after_refresh(self) -> None:
        if self._to_enable:
            self._enable_pending()
        now = time.monotonic()
        if now - self._last_status < _STATUS_EVERY_S:
            return
        self._last_status = now
        with self._lock:
            online_mask = int(self._ctx.status())
            sc_mask = int(self._ctx.sc_status())
        for r in self.readers:
            bit = 1 << r.index
            up = (
                self._channel.connected
                and r.index not in self._to_enable
                and bool(online_mask & bit)
                and (not r.secure or bool(sc_mask & bit))
            )
            self._mark(r, up, "no answer from the reader")

    def _mark(self, reader: OsdpReader, up: bool, reason: str) -> None:
        if up == reader._state.online:
            return
        reader._state.online = up
        if up:
            log.info("reader %s: online (OSDP address %d)", reader.name, reader.address)
            self._post(reader, ReaderOnline(reader.name))
        else:
            log.warning("reader %s: offline: %s", reader.name, reason)
            reader._state.inputs = None
            reader._state.tamper = None
            self._post(reader, ReaderOffline(reader.name, reason))

    def _on_event(self, pd_index: int, event: dict[str, Any]) -> int:
        """libosdp event callback (refresh thread, CP lock held). Never raises."""
        try:
            reader = self.readers[pd_index]
            for ev in map_event(reader.name, event, reader._state):
                self._post(reader, ev)
        except Exception:  # a bad event must never break the C refresh loop
            log.exception("OSDP bus %s: cannot handle an event", self.transport.description)
        return 0


def map_event(name: str, event: dict[str, Any], state: _PdState | None = None) -> list[ReaderEvent]:
    """Translate one libosdp event dict into reader events (pure apart from ``state``)."""
    state = state if state is not None else _PdState()
    kind = event.get("event")
    if kind == osdp.Event.CardRead:
        data = bytes(event.get("data", b""))
        fmt = event.get("format")
        if fmt == osdp.CardFormat.ASCII:
            text = data.decode("ascii", "replace").strip()
            if not text.isdigit():
                log.warning("reader %s: ASCII card data is not numeric", name)
                return [CardReadError(name, "ASCII card data is not numeric", len(data) * 8)]
            return [CardRead(name, int(text), None, "ascii", len(data) * 8)]
        nbits = int(event.get("length", len(data) * 8))
        try:
            bits = wiegand.bytes_to_bits(data, nbits)
        except wiegand.WiegandError as exc:
            log.warning("reader %s: bad raw card data: %s", name, exc)
            return [CardReadError(name, str(exc), nbits)]
        mapped = wiegand.to_event(name, bits)
        if isinstance(mapped, CardReadError):
            log.warning("reader %s: card read rejected: %s", name, mapped.reason)
        return [mapped]
    if kind == osdp.Event.KeyPress:
        keys = []
        for byte in bytes(event.get("data", b"")):
            key = _KEYMAP.get(byte)
            if key is None:
                log.debug("reader %s: ignoring keypad code 0x%02x", name, byte)
                continue
            keys.append(KeyPress(name, key))
        return list(keys)
    if kind == osdp.Event.Status:
        report = bytes(event.get("report", b""))
        rtype = event.get("type")
        out: list[ReaderEvent] = []
        if rtype == osdp.StatusReportType.Input:
            prev = state.inputs
            for i, v in enumerate(report):
                if prev is None or i >= len(prev) or bool(prev[i]) != bool(v):
                    out.append(InputChanged(name, i, bool(v)))
            state.inputs = report
        elif rtype == osdp.StatusReportType.Local and report:
            tamper = bool(report[0])
            if state.tamper is None or state.tamper != tamper:
                out.append(Tamper(name, tamper))
                if tamper:
                    log.warning("reader %s: tamper switch active", name)
            state.tamper = tamper
        return out
    return []
