"""Image size from the file header, before any pixel is decoded (pure: bytes in, numbers out).

OpenCV has no header-only API: ``cv2.imdecode`` allocates whatever the header claims (a
389 KB PNG of 20000x20000 takes 2.5 GB) or raises on a 7.8 KB JPEG claiming 65000x65000.
So the formats the gateway accepts are recognised here by their signature and their
dimensions read from the header (JPEG SOFn, PNG IHDR, BMP info header, WebP VP8/VP8L/VP8X,
TIFF first IFD, PNM); anything else is refused before decoding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class HeaderError(ValueError):
    """The header is missing, truncated or not of a supported format."""


@dataclass(frozen=True)
class ImageHeader:
    """What the header claims."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """Width times height."""
        return self.width * self.height


# SOFn markers that carry the frame size (not DHT C4, JPG C8, DAC CC).
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_MAX_JPEG_SEGMENTS = 10_000


def read_header(data: bytes) -> ImageHeader:
    """The format and claimed size of an encoded image; HeaderError when unknown or bad."""
    if data[:2] == b"\xff\xd8":
        return _jpeg(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png(data)
    if data[:2] == b"BM":
        return _bmp(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data)
    if len(data) >= 2 and data[0:1] == b"P" and data[1:2] in b"123456":
        return _pnm(data)
    raise HeaderError("unsupported image format (JPEG, PNG, BMP, WebP, TIFF or PNM expected)")


def _need(data: bytes, end: int, what: str) -> None:
    if len(data) < end:
        raise HeaderError(f"truncated {what} header")


def _jpeg(data: bytes) -> ImageHeader:
    pos = 2
    for _ in range(_MAX_JPEG_SEGMENTS):
        _need(data, pos + 2, "JPEG")
        if data[pos] != 0xFF:
            raise HeaderError(f"JPEG: no marker at offset {pos}")
        while pos + 1 < len(data) and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        _need(data, pos + 2, "JPEG")
        marker = data[pos + 1]
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9, 0xDA):
            raise HeaderError("JPEG: no frame header (SOF) before the image data")
        _need(data, pos + 4, "JPEG")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise HeaderError(f"JPEG: bad segment length {length}")
        if marker in _SOF:
            _need(data, pos + 9, "JPEG")
            height, width = struct.unpack_from(">HH", data, pos + 5)
            if height == 0:
                raise HeaderError("JPEG: frame height not given in the header (DNL)")
            return ImageHeader("jpeg", width, height)
        pos += 2 + length
    raise HeaderError("JPEG: too many segments before the frame header")


def _png(data: bytes) -> ImageHeader:
    _need(data, 24, "PNG")
    if data[12:16] != b"IHDR":
        raise HeaderError("PNG: first chunk is not IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    return ImageHeader("png", width, height)


def _bmp(data: bytes) -> ImageHeader:
    _need(data, 18, "BMP")
    (size,) = struct.unpack_from("<I", data, 14)
    if size == 12:
        _need(data, 22, "BMP")
        width, height = struct.unpack_from("<HH", data, 18)
    elif size >= 40:
        _need(data, 26, "BMP")
        width, height = struct.unpack_from("<ii", data, 18)
    else:
        raise HeaderError(f"BMP: unknown info header size {size}")
    return ImageHeader("bmp", abs(width), abs(height))


def _webp(data: bytes) -> ImageHeader:
    _need(data, 16, "WebP")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        _need(data, 30, "WebP")
        if data[23:26] != b"\x9d\x01\x2a":
            raise HeaderError("WebP: bad VP8 start code")
        w, h = struct.unpack_from("<HH", data, 26)
        return ImageHeader("webp", w & 0x3FFF, h & 0x3FFF)
    if chunk == b"VP8L":
        _need(data, 25, "WebP")
        if data[20] != 0x2F:
            raise HeaderError("WebP: bad VP8L signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        _need(data, 30, "WebP")
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return ImageHeader("webp", w, h)
    raise HeaderError(f"WebP: unknown chunk {chunk!r}")


def _tiff(data: bytes) -> ImageHeader:
    order = "<" if data[:2] == b"II" else ">"
    _need(data, 8, "TIFF")
    (ifd,) = struct.unpack_from(f"{order}I", data, 4)
    _need(data, ifd + 2, "TIFF")
    (count,) = struct.unpack_from(f"{order}H", data, ifd)
    _need(data, ifd + 2 + 12 * count, "TIFF")
    size: dict[int, int] = {}
    for i in range(count):
        tag, kind, n = struct.unpack_from(f"{order}HHI", data, ifd + 2 + 12 * i)
        if tag in (256, 257) and n == 1 and kind in (3, 4):
            fmt = f"{order}H" if kind == 3 else f"{order}I"
            (size[tag],) = struct.unpack_from(fmt, data, ifd + 2 + 12 * i + 8)
    if 256 not in size or 257 not in size:
        raise HeaderError("TIFF: no image width/length in the first directory")
    return ImageHeader("tiff", size[256], size[257])


def _pnm(data: bytes) -> ImageHeader:
    tokens: list[int] = []
    pos = 2
    head = data[:4096]
    while len(tokens) < 2:
        while pos < len(head) and (head[pos : pos + 1].isspace() or head[pos] == ord("#")):
            if head[pos] == ord("#"):
                end = head.find(b"\n", pos)
                pos = len(head) if end < 0 else end + 1
            else:
                pos += 1
        start = pos
        while pos < len(head) and head[pos : pos + 1].isdigit():
            pos += 1
        if start == pos or pos - start > 9:
            raise HeaderError("PNM: bad width/height in the header")
        tokens.append(int(head[start:pos]))
    return ImageHeader("pnm", tokens[0], tokens[1])
