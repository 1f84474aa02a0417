"""Keypad PIN entry (injected clock) and reader feedback patterns."""

from __future__ import annotations

import asyncio

from gateway.errors import HardwareError
from gateway.hardware.feedback import PATTERNS, Outcome, show
from gateway.hardware.keypad import EntryCleared, KeypadBuffer, KeypadOutput, PinEntered
from gateway.hardware.wiegand import decode_key, encode_key


def typed(
    buf: KeypadBuffer, keys: str, start: float = 0.0, step: float = 0.5
) -> list[KeypadOutput]:
    out = []
    for i, k in enumerate(keys):
        r = buf.key(k, start + i * step)
        if r is not None:
            out.append(r)
    return out


def test_hash_submits() -> None:
    assert typed(KeypadBuffer("r"), "1234#") == [PinEntered("r", "1234")]


def test_star_clears() -> None:
    assert typed(KeypadBuffer("r"), "12*5678#") == [
        EntryCleared("r", "cleared"),
        PinEntered("r", "5678"),
    ]


def test_inter_digit_timeout() -> None:
    buf = KeypadBuffer("r", inter_digit_s=5)
    buf.key("1", 0.0)
    buf.key("2", 1.0)
    assert buf.tick(5.9) is None
    assert buf.tick(6.0) == EntryCleared("r", "timeout")
    assert typed(buf, "9876#", start=10.0) == [PinEntered("r", "9876")]


def test_timeout_reported_on_next_key() -> None:
    buf = KeypadBuffer("r", inter_digit_s=5)
    buf.key("1", 0.0)
    assert buf.key("2", 10.0) == EntryCleared("r", "timeout")
    assert buf.length == 1


def test_max_len_and_too_short() -> None:
    assert typed(KeypadBuffer("r", max_len=6), "123456789#") == [PinEntered("r", "123456")]
    assert typed(KeypadBuffer("r"), "12#") == [EntryCleared("r", "too_short")]
    assert typed(KeypadBuffer("r"), "#*") == []


def test_wiegand_key_bursts_feed_the_keypad() -> None:
    buf = KeypadBuffer("w")
    out = [buf.key(decode_key(encode_key(k, 8)), float(i)) for i, k in enumerate("2468#")]
    assert out[-1] == PinEntered("w", "2468")


def test_pin_never_in_repr() -> None:
    assert "1234" not in repr(PinEntered("r", "1234"))
    buf = KeypadBuffer("r")
    typed(buf, "1234")
    assert "1234" not in repr(buf)


class RecordingReader:
    def __init__(self, fail: bool = False) -> None:
        self.name = "rec"
        self.calls: list[tuple[str, object]] = []
        self.fail = fail

    async def led(self, color: str, pattern: str, seconds: float | None = None) -> None:
        if self.fail:
            raise HardwareError("offline")
        self.calls.append(("led", (color, pattern, seconds)))

    async def buzzer(self, pattern: str) -> None:
        self.calls.append(("buzzer", pattern))

    async def text(self, msg: str) -> None:
        self.calls.append(("text", msg))


def test_feedback_patterns() -> None:
    async def main() -> None:
        r = RecordingReader()
        await show(r, Outcome.GRANTED)  # type: ignore[arg-type]
        assert r.calls == [
            ("led", ("green", "steady", 3.0)),
            ("buzzer", "short"),
            ("text", "Welcome - door open"),
        ]
        r.calls.clear()
        await show(r, Outcome.USE_PIN_OR_CARD, text=False)  # type: ignore[arg-type]
        assert r.calls[0] == ("led", ("amber", "blink", 10.0))
        # a dead reader never breaks the caller
        await show(RecordingReader(fail=True), Outcome.DENIED)  # type: ignore[arg-type]

    asyncio.run(main())


def test_patterns_distinct_and_display_safe() -> None:
    seen = {(p.color, p.pattern, p.buzzer) for p in PATTERNS.values()}
    assert len(seen) == len(PATTERNS)
    assert all(p.text.isascii() and len(p.text) <= 32 for p in PATTERNS.values())
    assert PATTERNS[Outcome.GRANTED].color == "green"
    assert PATTERNS[Outcome.DENIED].color == "red"
