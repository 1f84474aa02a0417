"""One OSDP reader (PD) on a shared bus: its commands (LED, buzzer, text, outputs) and the
translation of its libosdp events into reader events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import osdp

from gateway.errors import HardwareError
from gateway.hardware import wiegand
from gateway.hardware.events import (
    CardRead,
    CardReadError,
    InputChanged,
    KeyPress,
    ReaderEvent,
    Tamper,
)

if TYPE_CHECKING:
    from gateway.hardware.osdp import OsdpBus

log = logging.getLogger(__name__)

_MAX_TIMER_UNITS = 255  # libosdp python binding truncates timer_count to uint8
_ACK_TIMEOUT_S = 2.0  # a command the PD has not acknowledged by then counts as failed

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


@dataclass
class PdState:
    """What the CP knows of one PD between events (online, last inputs, tamper)."""

    online: bool = False
    inputs: bytes | None = None
    tamper: bool | None = None
    epoch: int = 0  # incremented each time the PD comes online


class OsdpReader:
    """One OSDP PD on an :class:`OsdpBus`; implements the ``Reader`` protocol."""

    def __init__(self, bus: OsdpBus, name: str, address: int, index: int, secure: bool) -> None:
        self.bus = bus
        self.name = name
        self.address = address
        self.index = index
        self.secure = secure
        self._queue: asyncio.Queue[ReaderEvent] = asyncio.Queue()
        self.state = PdState()

    @property
    def online(self) -> bool:
        """True while the PD answers (with the Secure Channel up when a key is set)."""
        return self.state.online

    @property
    def online_epoch(self) -> int:
        """Changes each time the reader comes (back) online: the door re-asserts its lock."""
        return self.state.epoch

    @property
    def health(self) -> str:
        """``online``, ``recovering`` (being reset after going offline) or ``offline``."""
        if self.state.online:
            return "online"
        return "recovering" if self.bus.recovering(self.index) else "offline"

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

    def put(self, event: ReaderEvent) -> None:
        """Queue an event for :meth:`events` (on the event loop's thread)."""
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


def map_event(name: str, event: dict[str, Any], state: PdState | None = None) -> list[ReaderEvent]:
    """Translate one libosdp event dict into reader events (pure apart from ``state``)."""
    state = state if state is not None else PdState()
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
