"""Reader drivers from the configuration (PDs on one RS-485 line share one bus) and the
service that feeds a reader's events to the access controller."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from gateway.config.readers import ReaderConfig
from gateway.errors import GatewayError
from gateway.hardware.events import ReaderEvent
from gateway.hardware.readers import Reader, open_reader

log = logging.getLogger(__name__)


def bus_key(rc: ReaderConfig) -> str:
    """Readers with the same key are PDs on one OSDP line (same device or socket)."""
    if rc.protocol != "osdp":
        return f"wiegand:{rc.url}"
    parts = urlsplit(rc.url)
    return urlunsplit(parts._replace(query="", fragment=""))


def open_readers(readers: dict[str, ReaderConfig]) -> dict[str, Reader]:
    """Build every reader driver; several PDs on one RS-485 line get one control panel."""
    from gateway.hardware.osdp import OsdpBus
    from gateway.hardware.osdp_transport import transport_from_url

    groups: dict[str, list[str]] = {}
    for name, rc in readers.items():
        groups.setdefault(bus_key(rc), []).append(name)
    out: dict[str, Reader] = {}
    for names in groups.values():
        first = readers[names[0]]
        if len(names) == 1 or first.protocol != "osdp":
            for name in names:
                rc = readers[name]
                out[name] = open_reader(_reader_url(rc), name, _scbk(rc), rc.install_mode)
            continue
        bus = OsdpBus(transport_from_url(_reader_url(first)))
        for name in names:
            rc = readers[name]
            out[name] = bus.add_reader(
                name, rc.address, scbk=_scbk(rc), install_mode=rc.install_mode
            )
        log.info("OSDP line %s: readers %s share one bus", bus_key(first), ", ".join(names))
    return out


def _scbk(rc: ReaderConfig) -> bytes | None:
    if rc.scbk is None:
        return None
    text = rc.scbk.read_bytes().decode().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise GatewayError("an SCBK must be 32 hexadecimal digits") from exc
    if len(key) != 16:
        raise GatewayError("an SCBK must be 16 bytes (32 hexadecimal digits)")
    return key


def _reader_url(rc: ReaderConfig) -> str:
    if rc.protocol != "osdp":
        return rc.url
    parts = urlsplit(rc.url)
    query = parse_qs(parts.query)
    query.setdefault("address", [str(rc.address)])
    if parts.scheme == "osdp":
        query.setdefault("baud", [str(rc.baud)])
    return urlunsplit(parts._replace(query=urlencode({k: v[0] for k, v in query.items()})))


async def run_reader(
    name: str, reader: Reader, handle: Callable[[str, ReaderEvent], Awaitable[None]]
) -> None:
    """Start the reader and hand each of its events to ``handle`` (the access controller);
    an event that fails is logged, the next one is handled."""
    await reader.start()
    try:
        async for event in reader.events():
            try:
                await handle(name, event)
            except (GatewayError, sqlite3.Error) as exc:
                log.error("reader %s: event %s not handled: %s", name, type(event).__name__, exc)
    finally:
        await reader.close()


async def close_readers(readers: dict[str, Reader]) -> None:
    """Close every reader, one second each at most (shutdown)."""
    for reader in readers.values():
        try:
            async with asyncio.timeout(1.0):
                await reader.close()
        except (TimeoutError, GatewayError) as exc:
            log.debug("reader close: %s", exc)
