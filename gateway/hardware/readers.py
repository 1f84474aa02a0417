"""The one reader interface, and the factory that picks a driver from a URL.

URLs::

    osdp:///dev/ttyUSB0?baud=9600&address=101     OSDP over a serial line (pyserial)
    osdp+pty:///dev/pts/7?address=101              OSDP over a pseudo-terminal
    osdp+socket://127.0.0.1:7000?address=101       OSDP over TCP (the simulator PD listens)
    wiegand+gpio:///dev/gpiochip0?d0=17&d1=27      Wiegand D0/D1 on GPIO (libgpiod v2)
    wiegand+feed://                                in-process Wiegand feed (tests, simulator)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from gateway.errors import HardwareError
from gateway.hardware.events import ReaderEvent

LED_COLORS = ("off", "red", "green", "amber", "blue", "magenta", "cyan", "white")
LED_PATTERNS = ("off", "steady", "blink", "fast_blink")
BUZZER_PATTERNS = ("off", "short", "double", "long", "error")


@runtime_checkable
class Reader(Protocol):
    """A card reader / keypad. Event iteration ends only when the reader is closed."""

    name: str

    def events(self) -> AsyncIterator[ReaderEvent]:
        """Yield reader events (async generator)."""
        ...

    async def led(self, color: str, pattern: str, seconds: float | None = None) -> None:
        """Set the LED: ``color`` in LED_COLORS, ``pattern`` in LED_PATTERNS; ``seconds``
        makes it temporary (then the LED returns to its permanent state)."""

    async def buzzer(self, pattern: str) -> None:
        """Sound the buzzer: ``pattern`` in BUZZER_PATTERNS."""

    async def text(self, msg: str) -> None:
        """Show a short ASCII text on the reader display (if any)."""

    async def output(self, no: int, on: bool, seconds: float | None = None) -> None:
        """Drive the reader's output ``no`` (door relay = 0); ``seconds`` = timed pulse."""

    async def start(self) -> None:
        """Open the transport and start delivering events."""

    async def close(self) -> None:
        """Stop and release the transport."""


def _query_int(query: dict[str, list[str]], key: str, default: int | None, url: str) -> int:
    values = query.get(key)
    if not values:
        if default is None:
            raise HardwareError(f"reader URL {url!r} lacks ?{key}=")
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise HardwareError(f"reader URL {url!r}: {key}={values[-1]!r} is not a number") from None


def open_reader(
    url: str, name: str, scbk: bytes | None = None, install_mode: bool = False
) -> Reader:
    """Build (not start) the driver for ``url``; raise HardwareError on a bad URL."""
    from gateway.hardware import osdp as osdp_driver
    from gateway.hardware import wiegand
    from gateway.hardware.osdp_transport import transport_from_url

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    scheme = parts.scheme.lower()
    if scheme in ("osdp", "osdp+serial", "osdp+pty", "osdp+socket", "socket"):
        address = _query_int(query, "address", 101, url)
        transport = transport_from_url(url)
        bus = osdp_driver.OsdpBus(transport)
        return bus.add_reader(name, address, scbk=scbk, install_mode=install_mode)
    if scheme == "wiegand+gpio":
        if not parts.path:
            raise HardwareError(f"reader URL {url!r} lacks the gpiochip path")
        cfg = wiegand.GpioWiegandConfig(
            chip=parts.path,
            d0=_query_int(query, "d0", None, url),
            d1=_query_int(query, "d1", None, url),
            gap_s=_query_int(query, "gap_ms", 25, url) / 1000.0,
        )
        return wiegand.GpioWiegandReader(name, cfg)
    if scheme == "wiegand+feed":
        return wiegand.GpioWiegandReader(name, None)
    raise HardwareError(
        f"reader URL {url!r}: unknown scheme {parts.scheme!r} "
        "(use osdp://, osdp+pty://, osdp+socket://, wiegand+gpio://)"
    )
