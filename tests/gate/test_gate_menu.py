"""The keypad privacy menu: 88# binds a face to an identity only with card AND the person's
own PIN; 99# 1# withdraws. Driven through the real controller built from a config."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.hardware.events import CardRead, KeyPress


class TextReader:
    """Stands in for the reader: records texts, accepts LED/buzzer."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def text(self, message: str) -> None:
        self.texts.append(message)

    def __getattr__(self, name: str) -> Any:
        async def ignore(*_a: Any, **_k: Any) -> None:
            return None

        return ignore


def _run(minimal_config: Path, script: Any) -> tuple[list[tuple[str, str]], list[str]]:
    from tests.conftest import built_gateway

    async def main() -> tuple[list[tuple[str, str]], list[str]]:
        async with built_gateway(minimal_config) as gw:
            ctl = gw.controller
            assert ctl is not None
            from gateway.privacy.people import add_person

            pid = add_person(gw.db, "Li Wei", unit="3-402")
            ctl.credentials.add_card(pid, 10, 4242, 0.0)
            ctl.credentials.set_pin(pid, "246810", 0.0)
            reader = TextReader()
            ctl.readers["entry"] = reader  # type: ignore[assignment]
            enrolled: list[tuple[str, str]] = []

            async def on_enrol(person: str, door: str) -> str:
                enrolled.append((person, door))
                return "Face enrolled"

            ctl.menu.on_enrol = on_enrol

            async def keys(text: str) -> None:
                for k in text:
                    await ctl.on_reader_event("entry", KeyPress("entry", k))

            async def card() -> None:
                await ctl.on_reader_event("entry", CardRead("entry", 4242, 10, "H10301", 26))

            await script(card, keys)
            return [("pid" if p == pid else p, d) for p, d in enrolled], reader.texts

    return asyncio.run(main())


CARD = "card"  # a step: present the person's card; any other step is keyed in


@pytest.mark.parametrize(
    ("steps", "enrols", "says"),
    [
        pytest.param(
            [CARD, "88#", "246810#"], True, "Enter your PIN to enrol your face", id="card+pin"
        ),
        pytest.param(
            [CARD, "88#", "111111#"],
            False,
            "PIN not accepted: face enrolment cancelled",
            id="stolen-card-wrong-pin",
        ),
        pytest.param(
            ["246810#", "88#"], False, "Present your card, then 88# and your PIN", id="pin-only"
        ),
    ],
)
def test_face_is_bound_to_an_identity_only_with_card_and_own_pin(
    minimal_config: Path, steps: list[str], enrols: bool, says: str
) -> None:
    async def script(card: Any, keys: Any) -> None:
        for step in steps:
            await (card() if step == CARD else keys(step))

    enrolled, texts = _run(minimal_config, script)
    assert enrolled == ([("pid", "main")] if enrols else [])
    assert says in texts
