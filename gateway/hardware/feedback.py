"""What the reader shows and sounds for each outcome, in patterns a resident understands.

Green steady + one short beep = come in. Red blinking + three short beeps = no.
Amber = please also type your PIN / present your card. Amber fast blink + long beep =
too many tries, wait. The text line (OSDP displays only, ASCII) says it in words.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from gateway.errors import HardwareError
from gateway.hardware.readers import Reader

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """Feedback situations."""

    GRANTED = "granted"
    DENIED = "denied"
    LOCKED_OUT = "locked_out"
    NEED_PIN = "need_pin"
    NEED_CARD = "need_card"
    USE_PIN_OR_CARD = "use_pin_or_card"
    IDLE = "idle"


@dataclass(frozen=True)
class Feedback:
    """LED colour/pattern (temporary for ``seconds``), buzzer pattern, text."""

    color: str
    pattern: str
    seconds: float | None
    buzzer: str
    text: str


PATTERNS: dict[Outcome, Feedback] = {
    Outcome.GRANTED: Feedback("green", "steady", 3.0, "short", "Welcome - door open"),
    Outcome.DENIED: Feedback("red", "blink", 3.0, "error", "Not recognised"),
    Outcome.LOCKED_OUT: Feedback("amber", "fast_blink", 5.0, "long", "Too many tries - wait"),
    Outcome.NEED_PIN: Feedback("amber", "steady", 10.0, "short", "Now type your PIN, then #"),
    Outcome.NEED_CARD: Feedback("amber", "steady", 10.0, "double", "Now present your card"),
    Outcome.USE_PIN_OR_CARD: Feedback("amber", "blink", 10.0, "double", "Use PIN or card please"),
    Outcome.IDLE: Feedback("blue", "steady", None, "off", "Card, PIN or face"),
}


async def show(reader: Reader, outcome: Outcome, *, text: bool = True) -> None:
    """Play the feedback for ``outcome``; a reader error is logged, never raised (the
    door decision has already been made)."""
    fb = PATTERNS[outcome]
    try:
        await reader.led(fb.color, fb.pattern, fb.seconds)
        if fb.buzzer != "off":
            await reader.buzzer(fb.buzzer)
        if text:
            await reader.text(fb.text)
    except HardwareError as exc:
        log.warning("reader %s: feedback %s failed: %s", reader.name, outcome.value, exc)
