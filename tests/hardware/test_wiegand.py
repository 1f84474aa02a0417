"""Wiegand decoders/encoders, key bursts and framing."""

from __future__ import annotations

import asyncio

import pytest

from gateway.hardware import open_reader
from gateway.hardware.events import CardRead, CardReadError, KeyPress, ReaderOnline
from gateway.hardware.wiegand import (
    FORMATS,
    GpioWiegandReader,
    WiegandFramer,
    WiegandLengthError,
    WiegandParityError,
    bits_to_bytes,
    bytes_to_bits,
    decode,
    decode_key,
    encode,
    encode_h10301,
    encode_key,
)


def _bits(s: str) -> tuple[int, ...]:
    return tuple(int(c) for c in s)


def test_h10301_known_frame() -> None:
    # FC 1, card 1: even parity over 12 bits (one 1 -> P=1), odd over 12 bits (one 1 -> P=0)
    frame = _bits("1" + "00000001" + "0000000000000001" + "0")
    card = decode(frame)
    assert (card.fmt, card.bits, card.facility, card.card_number) == ("H10301", 26, 1, 1)
    assert encode_h10301(1, 1) == frame


@pytest.mark.parametrize(
    ("fmt", "facility", "card"),
    [
        ("H10301", 255, 65535),
        ("H10301", 42, 12345),
        ("H10306", 65535, 1),
        ("H10306", 1234, 54321),
        ("Corp1000", 4095, 1048575),
        ("Corp1000", 17, 98765),
        ("H10304", 65535, 524287),
        ("H10304", 321, 123456),
    ],
)
def test_roundtrip_each_format(fmt: str, facility: int, card: int) -> None:
    frame = encode(fmt, facility, card)
    assert len(frame) == FORMATS[fmt].length
    got = decode(frame)
    assert (got.fmt, got.facility, got.card_number) == (fmt, facility, card)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_single_bit_flip_is_caught(fmt: str) -> None:
    frame = list(encode(fmt, 5, 77))
    for i in range(len(frame)):
        bad = frame.copy()
        bad[i] ^= 1
        with pytest.raises(WiegandParityError):
            decode(bad)


def test_c1000_parity_positions() -> None:
    frame = encode("Corp1000", 0, 0)
    # all-zero data: bit2 even -> 0, bit35 odd -> 1, bit1 odd over bits 2..35 (one 1) -> 0
    assert (frame[0], frame[1], frame[34]) == (0, 0, 1)


@pytest.mark.parametrize("n", [0, 1, 25, 27, 33, 36, 38, 64])
def test_wrong_length(n: int) -> None:
    with pytest.raises(WiegandLengthError, match=f"{n} bits"):
        decode([0] * n)


def test_parity_error_message_names_no_number() -> None:
    frame = list(encode_h10301(42, 12345))
    frame[0] ^= 1
    with pytest.raises(WiegandParityError) as info:
        decode(frame)
    assert "12345" not in str(info.value)
    assert "even parity bit 0" in str(info.value)


def test_encode_range_checks() -> None:
    with pytest.raises(Exception, match="card number does not fit"):
        encode_h10301(1, 70000)
    with pytest.raises(Exception, match="facility code does not fit"):
        encode_h10301(256, 1)


def test_keys_4_and_8_bit() -> None:
    for key in "0123456789*#":
        assert decode_key(encode_key(key, 4)) == key
        assert decode_key(encode_key(key, 8)) == key
    bad = list(encode_key("5", 8))
    bad[0] ^= 1
    with pytest.raises(WiegandParityError):
        decode_key(bad)
    with pytest.raises(WiegandLengthError):
        decode_key([1, 0, 1])


def test_bytes_packing_roundtrip() -> None:
    frame = encode_h10301(42, 12345)
    data = bits_to_bytes(frame)
    assert len(data) == 4
    assert bytes_to_bits(data, 26) == frame
    with pytest.raises(Exception, match="cannot hold"):
        bytes_to_bits(data, 40)


def test_framer_splits_on_gap() -> None:
    fr = WiegandFramer(gap_s=0.025)
    t = 0.0
    frames = []
    for b in encode_h10301(1, 2):
        out = fr.feed(b, t)
        assert out is None
        t += 0.002
    assert fr.flush(t + 0.01) is None  # gap not yet over
    frames.append(fr.flush(t + 0.03))
    for b in encode_key("7", 4):
        fr.feed(b, t + 1.0)
    frames.append(fr.flush(t + 2.0))
    assert frames == [encode_h10301(1, 2), encode_key("7", 4)]


def test_feed_reader_delivers_events() -> None:
    async def main() -> None:
        reader = open_reader("wiegand+feed://", "side-gate")
        assert isinstance(reader, GpioWiegandReader)
        await reader.start()
        events = reader.events()
        assert isinstance(await anext(events), ReaderOnline)
        reader.feed_bits(encode_h10301(9, 999))
        card = await anext(events)
        assert isinstance(card, CardRead)
        assert (card.facility, card.card_number, card.fmt) == (9, 999, "H10301")
        reader.feed_bits(encode_key("#", 8))
        key = await anext(events)
        assert isinstance(key, KeyPress)
        assert key.key == "#"
        reader.feed_bits([1] * 26)
        err = await anext(events)
        assert isinstance(err, CardReadError)
        assert "parity" in err.reason
        await reader.close()

    asyncio.run(main())


def test_gpio_reader_without_gpiod_is_loud() -> None:
    try:
        import gpiod  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gpiod is installed here")

    async def main() -> None:
        reader = open_reader("wiegand+gpio:///dev/gpiochip0?d0=17&d1=27", "g")
        with pytest.raises(Exception, match="libgpiod v2"):
            await reader.start()

    asyncio.run(main())


def test_bad_urls() -> None:
    with pytest.raises(Exception, match="lacks \\?d0="):
        open_reader("wiegand+gpio:///dev/gpiochip0?d1=27", "g")
    with pytest.raises(Exception, match="unknown scheme"):
        open_reader("http://x", "g")
    with pytest.raises(Exception, match="baud is not a number"):
        open_reader("osdp:///dev/ttyUSB0?baud=fast", "g")
