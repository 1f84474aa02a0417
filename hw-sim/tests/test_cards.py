"""Wiegand encoders: layout, parity, packing, and agreement with the gateway's decoder."""

from __future__ import annotations

import importlib.util

import pytest

from hw_sim.cards import (
    CardFormatError,
    corp1000,
    get_format,
    h10301,
    h10304,
    h10306,
    to_osdp_bytes,
)


def _int(bits: tuple[int, ...]) -> int:
    return int("".join(map(str, bits)), 2)


def test_h10301_layout_and_parity() -> None:
    bits = h10301(card=4242, facility=10)
    assert len(bits) == 26
    assert _int(bits[1:9]) == 10
    assert _int(bits[9:25]) == 4242
    assert sum(bits[0:13]) % 2 == 0  # even parity over the first half
    assert sum(bits[13:26]) % 2 == 1  # odd parity over the second half


def test_h10301_known_vector() -> None:
    # FC 1, card 1: 0 00000001 0000000000000001 0 -> leading even parity 1, trailing odd 0
    assert h10301(1, 1) == (1, *(0,) * 7, 1, *(0,) * 15, 1, 0)


def test_h10306_and_h10304_parity() -> None:
    b34 = h10306(card=65535, facility=1234)
    assert len(b34) == 34
    assert _int(b34[1:17]) == 1234
    assert _int(b34[17:33]) == 65535
    assert sum(b34[0:17]) % 2 == 0
    assert sum(b34[17:34]) % 2 == 1
    b37 = h10304(card=524287, facility=4321)
    assert len(b37) == 37
    assert _int(b37[1:17]) == 4321
    assert _int(b37[17:36]) == 524287
    assert sum(b37[0:19]) % 2 == 0
    assert sum(b37[18:37]) % 2 == 1


def test_corp1000_parity() -> None:
    b = corp1000(card=123456, facility=789)
    assert len(b) == 35
    assert _int(b[2:14]) == 789
    assert _int(b[14:34]) == 123456
    assert (b[1] + sum(b[p - 1] for p in range(3, 35) if p % 3 != 2)) % 2 == 0
    assert (b[34] + sum(b[p - 1] for p in range(2, 34) if p % 3 != 1)) % 2 == 1
    assert sum(b) % 2 == 1


def test_out_of_range_and_unknown_format() -> None:
    with pytest.raises(CardFormatError, match="card 65536 does not fit"):
        h10301(65536, 0)
    with pytest.raises(CardFormatError, match="unknown card format"):
        get_format("H99999")
    assert get_format(26).name == "H10301"
    assert get_format("35").name == "Corp1000"


def test_osdp_packing_is_msb_first_left_aligned() -> None:
    assert to_osdp_bytes((1, 0, 1)) == bytes([0b1010_0000])
    assert to_osdp_bytes((0,) * 8 + (1,)) == bytes([0, 0x80])


@pytest.mark.skipif(
    importlib.util.find_spec("gateway.hardware.wiegand") is None, reason="gateway not present"
)
@pytest.mark.parametrize(
    ("fmt", "card", "fac"),
    [
        ("H10301", 4242, 10),
        ("H10306", 60000, 999),
        ("Corp1000", 654321, 4000),
        ("H10304", 500000, 65000),
    ],
)
def test_gateway_decoder_agrees(fmt: str, card: int, fac: int) -> None:
    """Interop check: the daemon's decoder reads what the simulator encodes."""
    from gateway.hardware import wiegand

    form = get_format(fmt)
    decoded = wiegand.decode(form.encode(card, fac))
    assert (decoded.card_number, decoded.facility, decoded.bits) == (card, fac, form.bits)
