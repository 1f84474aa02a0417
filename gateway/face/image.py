"""Validated image input: every frame the face code sees is HxWx3 uint8 BGR."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from gateway.errors import GatewayError
from gateway.face.image_header import HeaderError, read_header

MIN_SIDE = 16
MAX_SIDE = 8192
MAX_PIXELS = 36_000_000
"""Largest decoded image (e.g. 6000x6000): about 108 MB as BGR."""
MAX_FILE_BYTES = 32 * 1024 * 1024
"""Largest encoded image file read."""


class ImageError(GatewayError):
    """An image cannot be decoded or is not a usable picture."""


def as_bgr(image: np.ndarray, *, what: str = "image") -> np.ndarray:
    """The image as contiguous HxWx3 uint8 BGR: grey (2-D or 1-channel) and BGRA converted."""
    import cv2

    if not isinstance(image, np.ndarray):
        raise ImageError(f"{what}: expected a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise ImageError(f"{what}: empty image")
    if image.dtype != np.uint8:
        if (
            image.dtype.kind == "f"
            and image.size
            and np.isfinite(image).all()
            and image.max() <= 1.0
        ):
            image = (image * 255.0).round().clip(0, 255).astype(np.uint8)
        elif image.dtype.kind in "uif" and np.isfinite(image).all():
            image = image.clip(0, 255).astype(np.uint8)
        else:
            raise ImageError(f"{what}: unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"{what}: unsupported shape {image.shape} (need HxW, HxWx3 or HxWx4)")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise ImageError(f"{what}: size {w}x{h} outside {MIN_SIDE}..{MAX_SIDE} pixels")
    return np.ascontiguousarray(image)


def load_image(source: Path | str | bytes) -> np.ndarray:
    """Decode a file path or encoded bytes (JPEG/PNG/...) into validated BGR; ImageError else."""
    import cv2

    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        what = "image bytes"
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(f"{what}: {len(data)} bytes, at most {MAX_FILE_BYTES} accepted")
    else:
        what = str(source)
        data = read_image_file(Path(source))
    if not data:
        raise ImageError(f"{what}: empty file")
    check_header(data, what)
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise ImageError(f"{what}: truncated JPEG (no end-of-image marker)")
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR applies the EXIF orientation and gives 8-bit BGR for grey/alpha/16-bit files.
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageError(f"{what}: not a decodable image ({_first_line(exc)})") from None
    if img is None:
        raise ImageError(f"{what}: not a decodable image (corrupt or unsupported format)")
    return as_bgr(img, what=what)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1][:200] if lines else type(exc).__name__


def read_image_file(path: Path) -> bytes:
    """The bytes of a regular image file of at most MAX_FILE_BYTES; ImageError otherwise.

    Opened non-blocking and checked with fstat: a FIFO, a device or a directory named
    ``.jpg`` is refused at once instead of blocking or streaming forever."""
    what = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(f"{what}: cannot read ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # checked before fdopen, which refuses directories
        os.close(fd)
        raise ImageError(f"{what}: not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > MAX_FILE_BYTES:
            raise ImageError(f"{what}: {st.st_size} bytes, at most {MAX_FILE_BYTES} accepted")
        try:
            data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ImageError(f"{what}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{what}: more than {MAX_FILE_BYTES} bytes")
    return data


def check_header(data: bytes, what: str) -> None:
    """Refuse, before decoding, an image whose header is unknown or claims too many pixels."""
    try:
        head = read_header(data)
    except HeaderError as exc:
        raise ImageError(f"{what}: {exc}") from None
    if min(head.width, head.height) < 1:
        raise ImageError(f"{what}: {head.format} header claims an empty image")
    if max(head.width, head.height) > MAX_SIDE or head.pixels > MAX_PIXELS:
        raise ImageError(
            f"{what}: {head.format} header claims {head.width}x{head.height} pixels, "
            f"more than {MAX_SIDE} per side or {MAX_PIXELS} in all"
        )
