"""Fuzz classes for reader data and images (see :mod:`tests.fuzz.cases`): OSDP replies,
Wiegand frames, encoded images."""

from __future__ import annotations

import itertools
from typing import Any

import cv2
import numpy as np
from hypothesis import strategies as st

from tests.fuzz.cases import FuzzError

# ----------------------------------------------------------------------------- OSDP


def osdp_events() -> st.SearchStrategy[dict[str, Any]]:
    import osdp

    data = st.binary(max_size=80)
    card = st.fixed_dictionaries(
        {
            "event": st.just(osdp.Event.CardRead),
            "reader_no": st.integers(0, 255),
            "format": st.sampled_from(
                [osdp.CardFormat.Wiegand, osdp.CardFormat.ASCII, 0, 1, 2, 99]
            ),
            "direction": st.integers(0, 1),
            "data": data,
        },
        optional={"length": st.integers(-10, 1000)},
    )
    keys = st.fixed_dictionaries(
        {"event": st.just(osdp.Event.KeyPress), "reader_no": st.integers(0, 255), "data": data}
    )
    status = st.fixed_dictionaries(
        {
            "event": st.just(osdp.Event.Status),
            "type": st.sampled_from(
                [
                    osdp.StatusReportType.Input,
                    osdp.StatusReportType.Local,
                    osdp.StatusReportType.Output,
                    osdp.StatusReportType.Remote,
                ]
            )
            | st.integers(-1, 10),
            "report": st.binary(max_size=40),
        }
    )
    other = st.fixed_dictionaries({"event": st.integers(-5, 50)})
    return st.one_of(card, keys, status, other)


def run_osdp(events: list[dict[str, Any]]) -> str:
    """Decode a sequence of reader replies with one reader's state; events only."""
    from gateway.hardware.events import CardReadError
    from gateway.hardware.osdp_reader import PdState, map_event

    state = PdState()
    outcome = "ok"
    for event in events:
        out = map_event("entry", event, state)
        if not isinstance(out, list):
            raise FuzzError(f"map_event returned {type(out).__name__}")
        if any(isinstance(e, CardReadError) and not e.reason for e in out):
            raise FuzzError("card read error without a reason")
        if any(isinstance(e, CardReadError) for e in out):
            outcome = "error"
    return outcome


# ----------------------------------------------------------------------------- Wiegand


def _card_stream(fmt: str, facility: int, card: int, flips: list[int], gap: float) -> list[Any]:
    """A valid frame of ``fmt`` (numbers masked to fit), some bits flipped, ``gap`` s after
    the previous frame (under 25 ms: the frames run together)."""
    from gateway.hardware.wiegand import FORMATS, encode

    f = FORMATS[fmt]
    fac = facility % (1 << f.facility[1]) if f.facility else None
    bits = list(encode(fmt, fac, card % (1 << f.card[1])))
    for i in flips:
        bits[i % len(bits)] ^= 1
    return [(b, gap if i == 0 else 0.001) for i, b in enumerate(bits)]


_random_bits = st.lists(st.tuples(st.integers(0, 1), st.floats(0.0, 0.2)), max_size=200)
_cards = st.builds(
    _card_stream,
    st.sampled_from(["H10301", "H10306", "Corp1000", "H10304"]),
    st.integers(0, 2**20),
    st.integers(0, 2**24),
    st.lists(st.integers(0, 63), max_size=2),
    st.floats(0.0, 0.1) | st.just(0.05),
)
wiegand_streams = st.one_of(
    _random_bits,
    st.lists(_cards, min_size=1, max_size=4).map(lambda xs: list(itertools.chain(*xs))),
)


def run_wiegand(stream: list[tuple[int, float]]) -> str:
    """Bits with gaps -> frames -> events; only cards, keys and CardReadErrors come out."""
    from gateway.hardware.events import CardRead, CardReadError, KeyPress
    from gateway.hardware.wiegand import WiegandFramer, to_event

    framer = WiegandFramer()
    now = 0.0
    frames = []
    for bit, gap in stream:
        now += gap
        frame = framer.feed(bit, now)
        if frame is not None:
            frames.append(frame)
    last = framer.flush(now + 1.0)
    if last is not None:
        frames.append(last)
    outcome = "ok"
    for frame in frames:
        ev = to_event("entry", frame)
        if not isinstance(ev, CardRead | KeyPress | CardReadError):
            raise FuzzError(f"unexpected event {ev!r}")
        if isinstance(ev, CardReadError):
            outcome = "error"
    return outcome


# ----------------------------------------------------------------------------- images


def _encoded(ext: str, w: int, h: int) -> bytes:
    img = np.random.default_rng(w * 7 + h).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, enc = cv2.imencode(ext, img)
    assert ok
    return bytes(enc.tobytes())


_SEEDS = {ext: _encoded(ext, 48, 40) for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm")}


def _patch(base: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(base)
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    return bytes(data)


def _header_lie(ext: str, w: int, h: int) -> bytes:
    """A seed image whose header claims ``w`` x ``h``."""
    import struct

    data = bytearray(_SEEDS[ext])
    if ext == ".jpg":
        sof = data.index(b"\xff\xc0")
        struct.pack_into(">HH", data, sof + 5, h % 65536, w % 65536)
    elif ext == ".png":
        struct.pack_into(">II", data, 16, w % 2**32, h % 2**32)
    elif ext == ".bmp":
        struct.pack_into("<ii", data, 18, w % 2**31, h % 2**31)
    return bytes(data)


image_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(
        _patch,
        st.sampled_from(sorted(_SEEDS.values(), key=len)),
        st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), max_size=8),
        st.none() | st.integers(0, 100_000),
    ),
    st.builds(
        _header_lie,
        st.sampled_from([".jpg", ".png", ".bmp"]),
        st.integers(0, 70_000) | st.sampled_from([65000, 20000, 8192, 8193, 6000]),
        st.integers(0, 70_000) | st.sampled_from([65000, 20000, 1, 0]),
    ),
    st.sampled_from(list(_SEEDS.values())).map(lambda d: d[:2] + d[2:][: len(d) // 3]),
)


def run_image(data: bytes) -> str:
    """Decode through the project's loader: an image or an ImageError with a message."""
    from gateway.face.image import ImageError, load_image

    try:
        img = load_image(data)
    except ImageError as exc:
        if not str(exc):
            raise FuzzError("ImageError without a message") from exc
        return "error"
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise FuzzError(f"loader returned {img.shape} {img.dtype}")
    return "ok"
