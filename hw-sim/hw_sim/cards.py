"""Wiegand card-format encoders (own implementation; the simulator never imports gateway).

Each encoder returns the frame as a tuple of bits, MSB first; :func:`to_osdp_bytes` packs
them left-aligned the way OSDP raw card data carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Bits = tuple[int, ...]


class CardFormatError(ValueError):
    """A card number or facility code does not fit the chosen format."""


def _field(value: int, width: int, what: str, fmt: str) -> list[int]:
    if not 0 <= value < (1 << width):
        raise CardFormatError(f"{fmt}: {what} {value} does not fit in {width} bits")
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def _parity(bits: Sequence[int], positions: Sequence[int], *, odd: bool) -> int:
    ones = sum(bits[p] for p in positions)
    return (ones + 1) % 2 if odd else ones % 2


def h10301(card: int, facility: int = 0) -> Bits:
    """26-bit H10301: even parity over 1-12, 8-bit facility, 16-bit card, odd over 13-24."""
    b = [0, *_field(facility, 8, "facility", "H10301"), *_field(card, 16, "card", "H10301"), 0]
    b[0] = _parity(b, range(1, 13), odd=False)
    b[25] = _parity(b, range(13, 25), odd=True)
    return tuple(b)


def h10306(card: int, facility: int = 0) -> Bits:
    """34-bit H10306: even parity over 1-16, 16-bit facility, 16-bit card, odd over 17-32."""
    b = [0, *_field(facility, 16, "facility", "H10306"), *_field(card, 16, "card", "H10306"), 0]
    b[0] = _parity(b, range(1, 17), odd=False)
    b[33] = _parity(b, range(17, 33), odd=True)
    return tuple(b)


def corp1000(card: int, facility: int = 0) -> Bits:
    """35-bit HID Corporate 1000: 12-bit company code, 20-bit card, three parity bits.

    1-based bit numbers: bit 2 even over 3-4,6-7,..,33-34; bit 35 odd over 2-3,5-6,..,32-33;
    bit 1 odd over bits 2-35 (computed last).
    """
    b = [
        0,
        0,
        *_field(facility, 12, "company", "Corp1000"),
        *_field(card, 20, "card", "Corp1000"),
        0,
    ]
    b[1] = _parity(b, [p - 1 for p in range(3, 35) if p % 3 != 2], odd=False)
    b[34] = _parity(b, [p - 1 for p in range(2, 34) if p % 3 != 1], odd=True)
    b[0] = _parity(b, range(1, 35), odd=True)
    return tuple(b)


def h10304(card: int, facility: int = 0) -> Bits:
    """37-bit H10304: even parity over 1-18, 16-bit facility, 19-bit card, odd over 18-35."""
    b = [0, *_field(facility, 16, "facility", "H10304"), *_field(card, 19, "card", "H10304"), 0]
    b[0] = _parity(b, range(1, 19), odd=False)
    b[36] = _parity(b, range(18, 36), odd=True)
    return tuple(b)


@dataclass(frozen=True)
class CardFormat:
    """A named Wiegand format and its encoder."""

    name: str
    bits: int
    encode: Callable[[int, int], Bits]


FORMATS: dict[str, CardFormat] = {
    f.name: f
    for f in (
        CardFormat("H10301", 26, h10301),
        CardFormat("H10306", 34, h10306),
        CardFormat("Corp1000", 35, corp1000),
        CardFormat("H10304", 37, h10304),
    )
}
ALIASES = {"26": "H10301", "34": "H10306", "35": "Corp1000", "37": "H10304"}


def get_format(name: str | int) -> CardFormat:
    """Look a format up by name (``H10301``) or bit length (``26``)."""
    key = ALIASES.get(str(name), str(name))
    try:
        return FORMATS[key]
    except KeyError:
        known = ", ".join([*FORMATS, *ALIASES])
        raise CardFormatError(f"unknown card format {name!r} (known: {known})") from None


def to_osdp_bytes(bits: Sequence[int]) -> bytes:
    """Pack bits MSB first, left-aligned, into bytes (OSDP raw card data)."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 0x80 >> (i % 8)
    return bytes(out)
