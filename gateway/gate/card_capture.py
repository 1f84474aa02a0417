"""Enrol a card by presenting it, or a PIN by typing it on the reader's keypad: the next
card read (or the next PIN, digits then ``#``; ``*`` starts over) at a chosen reader is
handed to the one who armed the capture (the web console) instead of opening a door.
One capture per reader at a time; it ends after its timeout. The card number or PIN
travels only in memory, to the credential service that stores its keyed hash; the
operator never sees the PIN."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import GatewayError
from gateway.hardware.events import CardRead, KeyPress, ReaderEvent

log = logging.getLogger(__name__)

MAX_PIN = 12
OnEvent = Callable[[str, ReaderEvent], Awaitable[None]]


class CaptureError(GatewayError):
    """No card could be captured (unknown reader, busy, or none presented in time)."""


class CardCapture:
    """The readers' event handler with a capture in front of it."""

    def __init__(self, readers: Callable[[], list[str]]) -> None:
        self._readers = readers
        self._armed: dict[str, asyncio.Future[tuple[int | None, int]]] = {}
        self._pins: dict[str, tuple[asyncio.Future[str], list[str]]] = {}

    def wrap(self, handler: OnEvent) -> OnEvent:
        """``handler`` (the access controller's), a captured card kept from it."""

        async def on_event(reader: str, event: ReaderEvent) -> None:
            fut = self._armed.get(reader)
            if isinstance(event, CardRead) and fut is not None and not fut.done():
                fut.set_result((event.facility, event.card_number))
                log.info("reader %s: a card was captured for enrolment", reader)
                return
            if isinstance(event, KeyPress) and reader in self._pins:
                self._key(reader, event.key)
                return
            await handler(reader, event)

        return on_event

    def _key(self, reader: str, key: str) -> None:
        fut, digits = self._pins[reader]
        if key == "*":
            digits.clear()
        elif key == "#":
            if digits and not fut.done():
                fut.set_result("".join(digits))
        elif key.isdigit() and len(digits) < MAX_PIN:
            digits.append(key)

    async def next_pin(self, reader: str, timeout_s: float) -> str:
        """The next PIN typed at ``reader``'s keypad (digits, then ``#``); CaptureError
        for an unknown or busy reader, or when none was typed within ``timeout_s``."""
        self._check(reader)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pins[reader] = (fut, [])
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            raise CaptureError(f"no PIN was typed at {reader} within {timeout_s:.0f} s") from None
        finally:
            del self._pins[reader]

    def _check(self, reader: str) -> None:
        if reader not in self._readers():
            raise CaptureError(f"no reader {reader!r} on this gate")
        if reader in self._armed or reader in self._pins:
            raise CaptureError(f"reader {reader} is already waiting for a card or a PIN")

    async def next_card(self, reader: str, timeout_s: float) -> tuple[int | None, int]:
        """The next card presented at ``reader`` as ``(facility, number)``; CaptureError
        for an unknown or busy reader, or when no card came within ``timeout_s``."""
        self._check(reader)
        fut: asyncio.Future[tuple[int | None, int]] = asyncio.get_running_loop().create_future()
        self._armed[reader] = fut
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            raise CaptureError(
                f"no card was presented at {reader} within {timeout_s:.0f} s"
            ) from None
        finally:
            del self._armed[reader]
