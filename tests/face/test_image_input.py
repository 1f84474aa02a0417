"""Hostile image files: sizes come from the header before any decoding; a bad file is an
ImageError (one per-file verdict at enrolment), never a crash, a hang or gigabytes (#18 item 9)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from gateway.face.image import ImageError, load_image


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    img = np.full((64, 64, 3), 90, np.uint8)
    ok, enc = cv2.imencode(".jpg", img)
    assert ok
    data = bytearray(enc.tobytes())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header claiming ``width`` x ``height`` grey pixels, with a token IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


@pytest.fixture
def no_decode(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail loudly if anything reaches the decoder."""
    calls: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("cv2.imdecode called for an image the header should have refused")

    monkeypatch.setattr(cv2, "imdecode", spy)
    return calls


def test_header_sizes_of_every_supported_format() -> None:
    from gateway.face.image_header import HeaderError, read_header

    img = np.zeros((48, 80, 3), np.uint8)
    for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm"):
        ok, enc = cv2.imencode(ext, img)
        assert ok, ext
        head = read_header(enc.tobytes())
        assert (head.width, head.height) == (80, 48), ext
    with pytest.raises(HeaderError, match="unsupported"):
        read_header(b"GIF89a" + b"\x00" * 20)


def test_jpeg_claiming_65000_squared_is_refused_before_decoding(no_decode: list[Any]) -> None:
    data = jpeg_claiming(65000, 65000)
    assert len(data) < 8 * 1024
    with pytest.raises(ImageError, match="65000x65000"):
        load_image(data)
    assert no_decode == []


def test_png_bomb_is_refused_before_decoding(no_decode: list[Any], tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(20000, 20000))
    with pytest.raises(ImageError, match="20000x20000"):
        load_image(path)
    assert no_decode == []


def test_too_many_pixels_within_the_side_limit(no_decode: list[Any]) -> None:
    with pytest.raises(ImageError, match="pixels"):
        load_image(png_claiming(8000, 8000))


@pytest.mark.timeout(20)
def test_fifo_named_jpg_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "face.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(fifo)


def test_oversized_file_refused_without_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as fh:
        fh.write(png_claiming(64, 64))
        fh.truncate(256 * 1024 * 1024)  # sparse: nothing to read if the size is checked
    with pytest.raises(ImageError, match="at most"):
        load_image(big)


def test_decoder_error_becomes_image_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise cv2.error("OpenCV(5.0) imgcodecs: Image size is too big")

    monkeypatch.setattr(cv2, "imdecode", broken)
    _, enc = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ImageError, match="too big"):
        load_image(enc.tobytes())


def test_directory_named_jpg_is_an_image_error(tmp_path: Path) -> None:
    folder = tmp_path / "face.jpg"
    folder.mkdir()
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(folder)
