"""The privacy menu at the keypad, opened by a card or PIN: ``99#`` then ``1#`` withdraws face
consent, ``88#`` then the person's own PIN enrols the face from the door's camera."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.credentials.hashing import LockedOutError, PinMatch
from gateway.credentials.store import Credentials
from gateway.hardware import feedback

log = logging.getLogger(__name__)

MENU_CODE = "99"  # after a card/PIN, "99#" opens the privacy menu at the keypad
MENU_CONFIRM = "1"  # then "1#" withdraws face consent
MENU_ENROL = "88"  # after a card/PIN, "88#" enrols the face from the camera (consent needed)
MENU_WINDOW_S = 15.0

Text = Callable[[str | None, str], Awaitable[None]]
Feedback = Callable[[str | None, feedback.Outcome], Awaitable[None]]


@dataclass
class _Menu:
    person_id: str
    until: float
    confirming: bool = False
    by_card: bool = False  # opened by the person's card (not by a PIN alone)
    enrol_pin: bool = False  # 88# given: waiting for the person's PIN to confirm


@dataclass(kw_only=True, eq=False)
class KeypadMenu:
    """One open menu per reader, for MENU_WINDOW_S after the person's card or PIN."""

    credentials: Credentials
    run_decide: Callable[..., Awaitable[Any]]
    reader_door: Mapping[str, str]
    text: Text
    show: Feedback
    storage_error: Callable[[str, Exception], None]
    on_withdraw: Callable[[str, str], Any] | None = None
    on_enrol: Callable[[str, str], Awaitable[str]] | None = None
    _menus: dict[str, _Menu] = field(init=False, default_factory=dict)

    def open(self, reader: str, person_id: str, now: float, *, by_card: bool = False) -> None:
        """Open (or reopen) the menu at ``reader`` for the person just identified."""
        self._menus[reader] = _Menu(person_id, now + MENU_WINDOW_S, by_card=by_card)

    def expire(self, now: float) -> None:
        """Close the menus whose window has passed."""
        for reader, menu in list(self._menus.items()):
            if menu.until < now:
                del self._menus[reader]

    async def entry(self, reader: str, entry: str, now: float) -> bool:
        """Handle a keypad entry as a menu choice; False when no menu takes it."""
        menu = self._menus.get(reader)
        if menu is None or menu.until < now:
            return False
        if menu.enrol_pin:
            # Enrolling a face binds it to this identity: a stolen card alone must not do
            # that, so the person's own PIN confirms (failures count towards lockout).
            del self._menus[reader]
            return await self._enrol_confirmed(reader, menu.person_id, entry, now)
        if not menu.confirming and entry == MENU_ENROL:
            if not menu.by_card:
                del self._menus[reader]
                await self.text(reader, "Present your card, then 88# and your PIN")
                return True
            menu.enrol_pin = True
            menu.until = now + MENU_WINDOW_S
            await self.text(reader, "Enter your PIN to enrol your face")
            return True
        if not menu.confirming and entry == MENU_CODE:
            menu.confirming = True
            menu.until = now + MENU_WINDOW_S
            await self.text(reader, "Withdraw face consent and erase face data? 1# = yes")
            return True
        if menu.confirming and entry == MENU_CONFIRM:
            del self._menus[reader]
            if self.on_withdraw is not None:
                await _maybe_await(self.on_withdraw(menu.person_id, "gate"))
            await self.text(reader, "Face data erased. Card and PIN still work.")
            return True
        if menu.confirming:
            del self._menus[reader]
            await self.text(reader, "Cancelled")
            return True
        return False

    async def _enrol_confirmed(self, reader: str, person: str, pin: str, now: float) -> bool:
        door = self.reader_door.get(reader)
        match: PinMatch | None = None
        try:
            match = await self.run_decide(
                self.credentials.verify_pin_for, person, pin, reader=reader, now=now
            )
        except LockedOutError:
            match = None
        except sqlite3.Error as exc:
            self.storage_error("PIN lookup", exc)
        if match is None or match.kind != "normal":
            log.info("door %s: at-gate enrolment refused: PIN not confirmed", door)
            await self.text(reader, "PIN not accepted: face enrolment cancelled")
            await self.show(reader, feedback.Outcome.DENIED)
            return True
        if self.on_enrol is None or door is None:
            await self.text(reader, "Face enrolment is not available here")
            return True
        await self.text(reader, "Look at the camera")
        message = await self.on_enrol(person, door)
        await self.text(reader, message)
        return True


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value
