"""Adding a card by presenting it at a reader: the gate's capture hands the next card read
there to the credential service (never to a door, never to the browser)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.gate.card_capture import CaptureError, CardCapture
from gateway.hardware.events import CardRead, KeyPress
from tests.web.console import Console, console

CARD = (10, 424242)


def test_capture_takes_the_next_card_at_its_reader_only() -> None:
    passed: list[tuple[str, Any]] = []

    async def controller(reader: str, event: Any) -> None:
        passed.append((reader, event))

    async def main() -> None:
        cap = CardCapture(lambda: ["entry", "side"])
        on_event = cap.wrap(controller)
        waiting = asyncio.create_task(cap.next_card("entry", 5))
        await asyncio.sleep(0)
        with pytest.raises(CaptureError, match="already waiting"):
            await cap.next_card("entry", 5)
        with pytest.raises(CaptureError, match="no reader"):
            await cap.next_card("garage", 5)
        other = CardRead("side", 1, None, "h10301", 26)
        await on_event("side", other)  # another reader: a normal card read
        await on_event("entry", KeyPress("entry", "1"))  # not a card: passed on
        await on_event("entry", CardRead("entry", CARD[1], CARD[0], "h10301", 26))
        assert await waiting == CARD
        assert [r for r, _ in passed] == ["side", "entry"]
        again = CardRead("entry", 7, None, "h10301", 26)
        await on_event("entry", again)  # the capture is over: to the controller
        assert passed[-1] == ("entry", again)
        with pytest.raises(CaptureError, match="no card was presented"):
            await cap.next_card("entry", 0.05)
        with pytest.raises(CaptureError, match="no card was presented"):
            await cap.next_card("entry", 0.05)  # the reader is free again after a timeout

    asyncio.run(main())


def run(tmp_path: Path, body: Any, **changes: Any) -> None:
    async def main() -> None:
        async with console(tmp_path, **changes) as c:
            await body(c)

    asyncio.run(main())


def test_an_operator_adds_a_presented_card(tmp_path: Path) -> None:
    asked: list[str] = []

    async def next_card(reader: str, timeout_s: float) -> tuple[int | None, int]:
        asked.append(reader)
        if reader == "side":
            raise CaptureError(f"no card was presented at {reader} within {timeout_s:.0f} s")
        return CARD

    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "Ma Li"})
        pid = made["id"]
        page = await (await c.client.get(f"/people/{pid}", headers=c.headers())).text()
        assert "Add a card by presenting it at" in page
        resp = await c.client.post(
            f"/people/{pid}/cards/present",
            data={"csrf": c.csrf, "reader": "entry"},
            headers=c.headers(csrf=False),
            allow_redirects=False,
        )
        assert resp.headers["Location"] == f"/people/{pid}?msg=card-added"
        await c.api("POST", f"/api/people/{pid}/cards/revoke", {"all": True})
        status, got = await c.api("POST", f"/api/people/{pid}/cards/present", {"reader": "entry"})
        assert status == 200
        assert got["reader"] == "entry"
        assert str(CARD[1]) not in str(got)
        deps = c.backend.credential_deps()
        card = CardRead("entry", CARD[1], CARD[0], "h10301", 26)
        assert deps.credentials.identify_card(card) == pid
        actor = c.backend.db.execute(
            "SELECT actor FROM audit WHERE action = 'card.added'"
        ).fetchone()[0]
        assert actor == "web:operator"
        status, err = await c.api("POST", f"/api/people/{pid}/cards/present", {"reader": "side"})
        assert (status, "no card was presented at side" in err["error"]) == (400, True)
        status, err = await c.api("POST", f"/api/people/{pid}/cards/present", {"reader": "x"})
        assert (status, "reader must be one of" in err["error"]) == (400, True)
        status, _ = await c.api("POST", f"/api/people/{'0' * 32}/cards/present", {})
        assert status == 404
        assert asked == [
            "entry",
            "entry",
            "side",
        ]  # no capture for a bad reader or an unknown person
        await c.login("auditor")
        assert (await c.api("POST", f"/api/people/{pid}/cards/present", {}))[0] == 403

    run(tmp_path, body, next_card=next_card, readers=["entry", "side"])


def test_without_the_gates_readers_the_number_is_typed(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "Ma Li"})
        page = await (await c.client.get(f"/people/{made['id']}", headers=c.headers())).text()
        assert "Add a card by presenting it at" not in page
        status, err = await c.api("POST", f"/api/people/{made['id']}/cards/present", {})
        assert status == 400
        assert "type the number instead" in err["error"]

    run(tmp_path, body)


def test_capture_takes_the_next_pin_typed_at_its_keypad() -> None:
    passed: list[Any] = []

    async def controller(reader: str, event: Any) -> None:
        passed.append(event)

    async def main() -> None:
        cap = CardCapture(lambda: ["entry", "side"])
        on_event = cap.wrap(controller)
        waiting = asyncio.create_task(cap.next_pin("entry", 5))
        await asyncio.sleep(0)
        with pytest.raises(CaptureError, match="already waiting"):
            await cap.next_card("entry", 5)
        for key in "99*1357#":  # "*" starts over
            await on_event("entry", KeyPress("entry", key))
        await on_event("side", KeyPress("side", "5"))  # another keypad: to the controller
        assert await waiting == "1357"
        assert [e.key for e in passed] == ["5"]
        await on_event("entry", KeyPress("entry", "2"))  # the capture is over
        assert [e.key for e in passed] == ["5", "2"]
        with pytest.raises(CaptureError, match="no PIN was typed"):
            await cap.next_pin("entry", 0.05)

    asyncio.run(main())


def test_an_operator_sets_the_pin_the_resident_types(tmp_path: Path) -> None:
    typed = iter(["86420", "97531", "11235"])

    async def next_pin(reader: str, timeout_s: float) -> str:
        return next(typed)

    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "He Yu"})
        pid = made["id"]
        page = await (await c.client.get(f"/people/{pid}", headers=c.headers())).text()
        assert "Set a PIN typed by the resident on the keypad of" in page
        status, got = await c.api("POST", f"/api/people/{pid}/pins/typed", {"reader": "entry"})
        assert (status, got["kind"]) == (200, "normal")
        assert "86420" not in str(got)
        creds = c.backend.credential_deps().credentials
        assert creds.identify_pin("86420", reader="entry", now=time.time()) is not None
        rows = c.backend.db.execute("SELECT actor, details FROM audit WHERE action = 'pin.set'")
        [(actor, details)] = rows.fetchall()
        assert actor == "web:operator"
        assert "86420" not in details
        resp = await c.client.post(
            f"/people/{pid}/pins/typed",
            data={"csrf": c.csrf, "reader": "entry", "kind": "normal"},
            headers=c.headers(csrf=False),
            allow_redirects=False,
        )
        assert resp.headers.get("Location") == f"/people/{pid}?msg=pin-set", await resp.text()
        status, err = await c.api("POST", f"/api/people/{pid}/pins/typed", {"kind": "visitor"})
        assert status == 400
        assert "kind must be one of" in err["error"]

    run(tmp_path, body, next_pin=next_pin, readers=["entry"], next_card=None)
