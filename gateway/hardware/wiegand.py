"""Wiegand frames: decoders and encoders for the common card formats, key bursts, framing.

Bits are a sequence of 0/1, first transmitted bit first (the leading parity bit).
Supported card formats: 26-bit H10301, 34-bit H10306, 35-bit HID Corporate 1000 and
37-bit H10304; 4-bit and 8-bit keypad bursts. Decoding checks length and every parity
bit and raises :class:`WiegandError` subclasses that name what is wrong (never the number).

The live input (:class:`GpioWiegandReader`) reads a D0/D1 line pair through libgpiod v2
(``gpiod``, optional: ``pip install 'access-gateway[pi]'``) and frames bits with an
inter-bit timeout (:class:`WiegandFramer`, pure); tests feed frames in process with
:meth:`GpioWiegandReader.feed_bits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from gateway.errors import HardwareError, ProtocolError
from gateway.hardware.events import (
    CardRead,
    CardReadError,
    KeyPress,
    ReaderEvent,
    ReaderOffline,
    ReaderOnline,
)

log = logging.getLogger(__name__)

Bits = tuple[int, ...]


class WiegandError(ProtocolError):
    """A Wiegand frame cannot be decoded."""


class WiegandLengthError(WiegandError):
    """The frame length matches no supported format."""


class WiegandParityError(WiegandError):
    """A parity bit is wrong (noise, a cut wire, or a mis-read)."""


@dataclass(frozen=True)
class _Parity:
    position: int
    odd: bool
    covers: tuple[int, ...]


@dataclass(frozen=True)
class WiegandFormat:
    """Layout of one card format: field slices and parity bits (0-based positions)."""

    name: str
    length: int
    facility: tuple[int, int] | None  # (start, width)
    card: tuple[int, int]
    parities: tuple[_Parity, ...]


@dataclass(frozen=True)
class WiegandCard:
    """A decoded card frame. ``card_number`` is a secret: hash it, never log it."""

    fmt: str
    bits: int
    facility: int | None = field(repr=False)
    card_number: int = field(repr=False)


def _rng(a: int, b: int) -> tuple[int, ...]:
    return tuple(range(a, b + 1))


def _standard(
    name: str,
    length: int,
    facility: tuple[int, int],
    card: tuple[int, int],
    *,
    even: tuple[int, int],
    odd: tuple[int, int],
) -> WiegandFormat:
    """A format framed the common way: an even parity bit first over the bits ``even``
    (first, last), an odd parity bit last over the bits ``odd``."""
    parities = (_Parity(0, False, _rng(*even)), _Parity(length - 1, True, _rng(*odd)))
    return WiegandFormat(name, length, facility, card, parities)


_H10301 = _standard("H10301", 26, (1, 8), (9, 16), even=(1, 12), odd=(13, 24))
_H10306 = _standard("H10306", 34, (1, 16), (17, 16), even=(1, 16), odd=(17, 32))
# Corporate 1000 (1-based bit numbers in HID's description): bit 2 even over 3-4,6-7,..,33-34;
# bit 35 odd over 2-3,5-6,..,32-33; bit 1 odd over bits 2-35. Order matters when encoding.
_CORP1000 = WiegandFormat(
    "Corp1000",
    35,
    (2, 12),
    (14, 20),
    (
        _Parity(1, False, tuple(p - 1 for p in range(3, 35) if p % 3 != 2)),
        _Parity(34, True, tuple(p - 1 for p in range(2, 34) if p % 3 != 1)),
        _Parity(0, True, _rng(1, 34)),
    ),
)
_H10304 = _standard("H10304", 37, (1, 16), (17, 19), even=(1, 18), odd=(18, 35))

FORMATS: dict[str, WiegandFormat] = {f.name: f for f in (_H10301, _H10306, _CORP1000, _H10304)}
_BY_LENGTH: dict[int, WiegandFormat] = {f.length: f for f in FORMATS.values()}
KEY_BURST_LENGTHS = (4, 8)
_KEYS = "0123456789*#"


def _field(bits: Sequence[int], start: int, width: int) -> int:
    value = 0
    for b in bits[start : start + width]:
        value = (value << 1) | b
    return value


def _check_bits(bits: Sequence[int]) -> Bits:
    out = tuple(int(b) for b in bits)
    if any(b not in (0, 1) for b in out):
        raise WiegandError("Wiegand frame holds a value other than 0 or 1")
    return out


def _parity_ok(bits: Sequence[int], p: _Parity) -> bool:
    ones = sum(bits[i] for i in p.covers) + bits[p.position]
    return ones % 2 == (1 if p.odd else 0)


def decode(bits: Sequence[int]) -> WiegandCard:
    """Decode a card frame; raise :class:`WiegandLengthError` / :class:`WiegandParityError`."""
    frame = _check_bits(bits)
    fmt = _BY_LENGTH.get(len(frame))
    if fmt is None:
        supported = ", ".join(str(n) for n in sorted(_BY_LENGTH))
        raise WiegandLengthError(
            f"Wiegand frame of {len(frame)} bits matches no card format (supported: {supported})"
        )
    for p in fmt.parities:
        if not _parity_ok(frame, p):
            kind = "odd" if p.odd else "even"
            raise WiegandParityError(
                f"Wiegand {fmt.name} frame: {kind} parity bit {p.position} is wrong"
            )
    facility = _field(frame, *fmt.facility) if fmt.facility else None
    return WiegandCard(fmt.name, fmt.length, facility, _field(frame, *fmt.card))


def encode(fmt_name: str, facility: int | None, card_number: int) -> Bits:
    """Build a valid frame (for the simulator and tests)."""
    fmt = FORMATS.get(fmt_name)
    if fmt is None:
        raise WiegandError(f"unknown Wiegand format {fmt_name!r} (known: {', '.join(FORMATS)})")
    frame = [0] * fmt.length

    def put(value: int, start: int, width: int, what: str) -> None:
        if not 0 <= value < (1 << width):
            raise WiegandError(f"{what} does not fit the {width} bits of {fmt.name}")
        for i in range(width):
            frame[start + i] = (value >> (width - 1 - i)) & 1

    if fmt.facility is not None:
        put(facility or 0, *fmt.facility, "facility code")
    elif facility:
        raise WiegandError(f"{fmt.name} has no facility code")
    put(card_number, *fmt.card, "card number")
    for p in fmt.parities:
        ones = sum(frame[i] for i in p.covers)
        frame[p.position] = (ones + (1 if p.odd else 0)) % 2
    return tuple(frame)


def encode_h10301(facility: int, card_number: int) -> Bits:
    """26-bit H10301: 8-bit facility, 16-bit card number."""
    return encode("H10301", facility, card_number)


def decode_key(bits: Sequence[int]) -> str:
    """Decode a 4-bit or 8-bit (nibble + complement) keypad burst to ``0-9``, ``*``, ``#``."""
    frame = _check_bits(bits)
    if len(frame) == 8:
        hi, lo = _field(frame, 0, 4), _field(frame, 4, 4)
        if hi != (~lo & 0xF):
            raise WiegandParityError("8-bit Wiegand key burst: complement nibble is wrong")
        value = lo
    elif len(frame) == 4:
        value = _field(frame, 0, 4)
    else:
        raise WiegandLengthError(f"Wiegand key burst of {len(frame)} bits (expected 4 or 8)")
    if value >= len(_KEYS):
        raise WiegandError(f"Wiegand key code {value} is not a key")
    return _KEYS[value]


def encode_key(key: str, width: int = 4) -> Bits:
    """Build a 4-bit or 8-bit keypad burst."""
    if key not in _KEYS or len(key) != 1:
        raise WiegandError("key must be one of 0-9, * or #")
    value = _KEYS.index(key)
    if width == 4:
        return tuple((value >> (3 - i)) & 1 for i in range(4))
    if width == 8:
        byte = ((~value & 0xF) << 4) | value
        return tuple((byte >> (7 - i)) & 1 for i in range(8))
    raise WiegandError("key burst width must be 4 or 8")


def bits_to_bytes(bits: Sequence[int]) -> bytes:
    """Pack bits MSB first, left aligned, zero padded (OSDP raw card data layout)."""
    frame = _check_bits(bits)
    out = bytearray((len(frame) + 7) // 8)
    for i, b in enumerate(frame):
        if b:
            out[i // 8] |= 0x80 >> (i % 8)
    return bytes(out)


def bytes_to_bits(data: bytes, nbits: int) -> Bits:
    """Unpack ``nbits`` bits, MSB first, from left-aligned bytes."""
    if nbits < 0 or (nbits + 7) // 8 > len(data):
        raise WiegandError(f"{len(data)} bytes of card data cannot hold {nbits} bits")
    return tuple((data[i // 8] >> (7 - i % 8)) & 1 for i in range(nbits))


def to_event(reader: str, bits: Sequence[int]) -> ReaderEvent:
    """Turn one frame into a CardRead, a KeyPress or a CardReadError (never raises)."""
    try:
        if len(bits) in KEY_BURST_LENGTHS:
            return KeyPress(reader, decode_key(bits))
        card = decode(bits)
    except WiegandError as exc:
        return CardReadError(reader, str(exc), len(bits))
    return CardRead(reader, card.card_number, card.facility, card.fmt, card.bits)


class WiegandFramer:
    """Group bits into frames: a frame ends after ``gap_s`` without a bit (pure, clock given)."""

    def __init__(self, gap_s: float = 0.025, max_bits: int = 64) -> None:
        self.gap_s = gap_s
        self.max_bits = max_bits
        self._bits: list[int] = []
        self._last: float | None = None

    def feed(self, bit: int, now: float) -> Bits | None:
        """Add one bit; return the previous frame when this bit starts a new one."""
        done = self.flush(now)
        if len(self._bits) < self.max_bits:
            self._bits.append(1 if bit else 0)
        self._last = now
        return done

    def flush(self, now: float) -> Bits | None:
        """Return the pending frame when the gap has passed, else None."""
        if self._bits and self._last is not None and now - self._last >= self.gap_s:
            frame = tuple(self._bits)
            self._bits.clear()
            self._last = None
            return frame
        return None


@dataclass(frozen=True)
class GpioWiegandConfig:
    """``wiegand+gpio:///dev/gpiochip0?d0=17&d1=27``."""

    chip: str
    d0: int
    d1: int
    gap_s: float = 0.025


def _import_gpiod() -> object:
    try:
        import gpiod  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise HardwareError(
            "Wiegand over GPIO needs the libgpiod v2 Python binding: "
            "pip install 'access-gateway[pi]' (package gpiod>=2.1)"
        ) from exc
    if not hasattr(gpiod, "request_lines"):
        raise HardwareError("the installed gpiod package is not the v2 API (need gpiod>=2.1)")
    return gpiod


class GpioWiegandReader:
    """A Wiegand reader on a GPIO line pair (D0 = 0 bits, D1 = 1 bits, falling edges).

    With ``config=None`` it is an in-process reader fed by :meth:`feed_bits` (tests,
    simulator). LED/buzzer/text/output are not wired on plain Wiegand and are logged only.
    """

    def __init__(self, name: str, config: GpioWiegandConfig | None = None) -> None:
        self.name = name
        self.config = config
        self._queue: asyncio.Queue[ReaderEvent] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Open the lines (GPIO) and start the edge thread."""
        self._loop = asyncio.get_running_loop()
        if self.config is None:
            self._queue.put_nowait(ReaderOnline(self.name))
            return
        gpiod = _import_gpiod()
        cfg = self.config
        try:
            request = gpiod.request_lines(  # type: ignore[attr-defined]
                cfg.chip,
                consumer=f"access-gateway-{self.name}",
                config={
                    (cfg.d0, cfg.d1): gpiod.LineSettings(  # type: ignore[attr-defined]
                        edge_detection=gpiod.line.Edge.FALLING,  # type: ignore[attr-defined]
                        bias=gpiod.line.Bias.PULL_UP,  # type: ignore[attr-defined]
                    )
                },
            )
        except OSError as exc:
            raise HardwareError(
                f"reader {self.name}: cannot request GPIO lines {cfg.d0}/{cfg.d1} "
                f"on {cfg.chip}: {exc}"
            ) from exc
        self._thread = threading.Thread(
            target=self._run, args=(request, cfg), name=f"wiegand-{self.name}", daemon=True
        )
        self._thread.start()
        self._queue.put_nowait(ReaderOnline(self.name))

    def _run(self, request: object, cfg: GpioWiegandConfig) -> None:
        framer = WiegandFramer(cfg.gap_s)
        try:
            while not self._stop.is_set():
                if request.wait_edge_events(cfg.gap_s):  # type: ignore[attr-defined]
                    for ev in request.read_edge_events():  # type: ignore[attr-defined]
                        bit = 1 if ev.line_offset == cfg.d1 else 0
                        frame = framer.feed(bit, ev.timestamp_ns / 1e9)
                        if frame:
                            self._emit_frame(frame)
                frame = framer.flush(time.monotonic())
                if frame:
                    self._emit_frame(frame)
        except OSError as exc:
            log.warning("reader %s: GPIO edge read failed: %s", self.name, exc)
            self._post(ReaderOffline(self.name, f"gpio error: {exc}"))
        finally:
            with contextlib.suppress(OSError):
                request.release()  # type: ignore[attr-defined]

    def _post(self, event: ReaderEvent) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def _decode(self, frame: Bits) -> ReaderEvent:
        event = to_event(self.name, frame)
        if isinstance(event, CardReadError):
            # The reason names the fault (length, parity bit position), never the bits.
            log.warning("reader %s: bad Wiegand frame: %s", self.name, event.reason)
        return event

    def _emit_frame(self, frame: Bits) -> None:
        self._post(self._decode(frame))

    def feed_bits(self, bits: Iterable[int]) -> None:
        """Inject one complete frame (in-process feed; call from the event loop)."""
        self._queue.put_nowait(self._decode(tuple(bits)))

    async def events(self) -> AsyncIterator[ReaderEvent]:
        """Yield events until closed."""
        while True:
            yield await self._queue.get()

    async def led(self, color: str, pattern: str, seconds: float | None = None) -> None:
        """Plain Wiegand has no LED control line wired here."""
        log.debug("reader %s: LED %s/%s not wired on Wiegand", self.name, color, pattern)

    async def buzzer(self, pattern: str) -> None:
        """Plain Wiegand has no buzzer line wired here."""
        log.debug("reader %s: buzzer %s not wired on Wiegand", self.name, pattern)

    async def text(self, msg: str) -> None:
        """Wiegand readers have no display."""
        log.debug("reader %s: no display on Wiegand", self.name)

    async def output(self, no: int, on: bool, seconds: float | None = None) -> None:
        """Wiegand readers have no outputs; use a GPIO relay (gateway.hardware.io)."""
        raise HardwareError(f"reader {self.name}: Wiegand readers have no output {no}")

    async def close(self) -> None:
        """Stop the edge thread."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
            self._thread = None
