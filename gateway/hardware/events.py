"""Reader and door-input events (frozen dataclasses).

``CardRead`` carries the card number in memory only: the caller hashes it at once
(:mod:`gateway.credentials.store`) and never logs it; its ``repr`` hides the number.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CardRead:
    """A card was presented and decoded."""

    reader: str
    card_number: int = field(repr=False)
    facility: int | None = field(repr=False)
    fmt: str
    bits: int


@dataclass(frozen=True)
class CardReadError:
    """A card frame arrived but could not be decoded (parity, unknown length)."""

    reader: str
    reason: str
    bits: int


@dataclass(frozen=True)
class KeyPress:
    """One key: ``"0"``-``"9"``, ``"*"`` or ``"#"``."""

    reader: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class ReaderOnline:
    """The reader answers (and, for OSDP with a key, the Secure Channel is up)."""

    reader: str


@dataclass(frozen=True)
class ReaderOffline:
    """The reader stopped answering or its transport closed."""

    reader: str
    reason: str


@dataclass(frozen=True)
class Tamper:
    """The reader's tamper switch changed."""

    reader: str
    active: bool


@dataclass(frozen=True)
class InputChanged:
    """A digital input (door contact, exit button, ...) changed."""

    reader_or_board: str
    input_no: int
    active: bool


ReaderEvent = (
    CardRead | CardReadError | KeyPress | ReaderOnline | ReaderOffline | Tamper | InputChanged
)
