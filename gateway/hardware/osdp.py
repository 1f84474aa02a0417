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
- After a response timeout, one reply with a bad CRC or a bad secure block, libosdp parks
  a PD offline for 300 s (``OSDP_ONLINE_RETRY_WAIT_MAX_MS``, compile-time, not exposed by
  the binding). We reset that PD instead: ``flush_commands`` (stale commands must never
  reach the reader later), ``disable_pd`` then (one refresh later) ``enable_pd``, which
  restarts the ID/capabilities/Secure Channel handshake at once; retried with a capped,
  jittered backoff while the PD stays silent (see :class:`_Recovery`).
- Commands are acknowledged through the binding's command-completion callback (per PD,
  in submission order); :meth:`OsdpReader.output` waits for it.
- A channel ``read`` that raises leaves a Python error set inside the C refresh: our
  channel never raises; transport errors are turned into a "lost" flag.
- Status events carry ``report`` bytes (one byte per input); local status is
  ``[tamper, power]``. The output command ``timer_count`` is truncated to 8 bits by the
  binding (at most 25.5 s): longer timed outputs are renewed by the caller (the door lock
  re-issues a short timed output before it ends, see :mod:`gateway.hardware.lock`).
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
from collections import deque
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
_ACK_TIMEOUT_S = 2.0  # a command the PD has not acknowledged by then counts as failed
_HANDSHAKE_GRACE_S = 3.0  # time a reset PD gets to finish ID/CAP/Secure Channel
_OFFLINE_REASON = "no answer from the reader (timeout or a bad frame)"

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
    epoch: int = 0  # incremented each time the PD comes online


@dataclass
class _Recovery:
    """Per-PD offline recovery: when to reset the PD next, with capped jittered backoff."""

    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, cap_s=5.0))
    next_reset: float | None = None
    resets: int = 0


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

    @property
    def online_epoch(self) -> int:
        """Changes each time the reader comes (back) online: the door re-asserts its lock."""
        return self._state.epoch

    @property
    def health(self) -> str:
        """``online``, ``recovering`` (being reset after going offline) or ``offline``."""
        if self._state.online:
            return "online"
        rec = self.bus._recovery.get(self.index)
        return "recovering" if rec is not None and rec.next_reset is not None else "offline"

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

    async def output(
        self, no: int, on: bool, seconds: float | None = None, *, timeout_s: float = _ACK_TIMEOUT_S
    ) -> None:
        """Drive output ``no`` and wait until the reader acknowledges it.

        ``seconds=None``: permanent on/off (OSDP codes 2/1, which also cancel a running
        timer). Otherwise a *timed* output (codes 5/6): ``on`` for ``seconds``, after which
        the reader itself returns to the permanent state, even if this controller is gone.
        ``seconds`` is capped at 25.5 s (the binding's 8-bit timer); callers renew longer
        holds. HardwareError when the reader is offline, refuses or does not acknowledge.
        """
        if not 0 <= no < 256:
            raise HardwareError(f"reader {self.name}: output number {no} out of range")
        if seconds is None:
            code, timer = (2 if on else 1), 0
        else:
            code, timer = (5 if on else 6), max(1, min(_MAX_TIMER_UNITS, round(seconds * 10)))
        cmd = {
            "command": osdp.Command.Output,
            "output_no": no,
            "control_code": code,
            "timer_count": timer,
        }
        await self.bus.send(self, cmd, timeout_s)


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
        # per PD index: kinds of the submitted, not yet completed commands (FIFO), with the
        # future of those a caller waits for (libosdp completes a PD's commands in order)
        self._pending: dict[int, deque[tuple[int, asyncio.Future[bool] | None]]] = {}
        self._recovery: dict[int, _Recovery] = {}

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
        self._ctx.set_command_completion_callback(self._on_completion)
        self._pending = {r.index: deque() for r in self.readers}
        self._recovery = {r.index: _Recovery() for r in self.readers}
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
        self._submit(reader, cmd, None)

    def _submit(
        self, reader: OsdpReader, cmd: dict[str, Any], fut: asyncio.Future[bool] | None
    ) -> None:
        if self._ctx is None:
            raise HardwareError(f"reader {reader.name}: OSDP bus not started")
        with self._lock:
            try:
                ok = self._ctx.submit_command(reader.index, cmd)
            except (ValueError, TypeError, KeyError) as exc:
                raise HardwareError(f"reader {reader.name}: bad OSDP command: {exc}") from exc
            if ok:
                self._pending.setdefault(reader.index, deque()).append((int(cmd["command"]), fut))
        if not ok:
            raise HardwareError(
                f"reader {reader.name}: OSDP command refused (reader offline or queue full)"
            )

    async def send(self, reader: OsdpReader, cmd: dict[str, Any], timeout_s: float) -> None:
        """Submit ``cmd`` and wait for the reader's acknowledgement.

        HardwareError when refused, failed, flushed or not acknowledged in ``timeout_s``.
        After a timeout the PD's queue is flushed: commands still *queued* (this one, if
        it was not sent yet, and any behind it) never reach the reader. A command already
        in flight (sent, its reply lost or late) can still take effect afterwards; for a
        door release that is bounded by its timed output (at most one lease, 5 s), and the
        lock's next command (relock, retry) follows it in order.
        """
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._submit(reader, cmd, fut)
        try:
            ok = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            self._flush(reader.index)
            raise HardwareError(
                f"reader {reader.name}: no acknowledgement within {timeout_s:.1f} s"
            ) from None
        if not ok:
            raise HardwareError(f"reader {reader.name}: command not acknowledged by the reader")

    def _flush(self, index: int) -> None:
        """Drop the PD's queued commands (their waiters fail); one already sent is not
        recalled (libosdp's flush_commands only empties the queue)."""
        with self._lock:
            if self._ctx is not None:
                self._ctx.flush_commands(index)

    def _on_completion(self, pd_index: int, cmd: dict[str, Any], status: int) -> None:
        """libosdp command-completion callback (refresh thread, our lock held)."""
        try:
            queue = self._pending.get(pd_index)
            if not queue:
                return
            kind = int(cmd.get("command", -1))
            # normally the first one; a mismatch means an untracked completion: search on
            for i, (k, fut) in enumerate(queue):
                if k == kind:
                    del queue[i]
                    if fut is not None:
                        self._resolve(fut, status == osdp.CompletionStatus.Ok)
                    return
        except Exception:  # never into the C refresh loop
            log.exception("OSDP bus %s: cannot handle a completion", self.transport.description)

    def _resolve(self, fut: asyncio.Future[bool], ok: bool) -> None:
        def done() -> None:
            if not fut.done():
                fut.set_result(ok)

        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(done)

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
                self._ctx.flush_commands(r.index)
                self._ctx.disable_pd(r.index)
        # libosdp refuses enable_pd until the disable went through a refresh: retried
        self._to_enable = {r.index for r in self.readers}
        self._enable_wait = 1

    def _enable_pending(self) -> None:
        if self._enable_wait > 0:
            self._enable_wait -= 1
            return
        now = time.monotonic()
        with self._lock:
            for index in sorted(self._to_enable):
                if self._ctx.enable_pd(index):
                    self._to_enable.discard(index)
                    rec = self._recovery.get(index)
                    if rec is not None and rec.next_reset is not None:
                        # give the handshake time before judging the PD again
                        rec.next_reset = now + _HANDSHAKE_GRACE_S + rec.backoff.next_delay()

    def _reset_pd(self, reader: OsdpReader) -> None:
        """Flush, disable and (next refresh) re-enable one PD: a fresh session at once,
        instead of libosdp's 300 s offline wait."""
        with self._lock:
            self._ctx.flush_commands(reader.index)
            self._ctx.disable_pd(reader.index)
        self._to_enable.add(reader.index)
        self._enable_wait = 1

    def _recover(self, reader: OsdpReader, up: bool, now: float) -> None:
        """Reset a PD that stays offline, with capped jittered backoff; report it."""
        rec = self._recovery[reader.index]
        if up:
            if rec.resets:
                log.info(
                    "reader %s: recovered after %d OSDP session reset(s)", reader.name, rec.resets
                )
            rec.next_reset = None
            rec.resets = 0
            rec.backoff.reset()
            return
        if rec.next_reset is None:
            rec.next_reset = now + rec.backoff.next_delay()
            return
        if now < rec.next_reset or reader.index in self._to_enable:
            return
        rec.resets += 1
        (log.warning if rec.resets == 1 else log.debug)(
            "reader %s: offline; resetting its OSDP session (attempt %d)", reader.name, rec.resets
        )
        self._reset_pd(reader)
        rec.next_reset = now + _HANDSHAKE_GRACE_S + rec.backoff.next_delay()

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
                self._recovery[r.index] = _Recovery()
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
            self._mark(r, up, _OFFLINE_REASON)
            if self._channel.connected:
                self._recover(r, up, now)

    def _mark(self, reader: OsdpReader, up: bool, reason: str) -> None:
        if up == reader._state.online:
            return
        reader._state.online = up
        if up:
            reader._state.epoch += 1
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
