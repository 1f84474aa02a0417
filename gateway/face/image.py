"""Validated image input: every frame the face code sees is HxWx3 uint8 BGR."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.errors import GatewayError

MIN_SIDE = 16
MAX_SIDE = 8192


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
    else:
        path = Path(source)
        what = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{what}: cannot read ({exc.strerror or exc})") from exc
    if not data:
        raise ImageError(f"{what}: empty file")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise ImageError(f"{what}: truncated JPEG (no end-of-image marker)")
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR applies the EXIF orientation and gives 8-bit BGR for grey/alpha/16-bit files.
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"{what}: not a decodable image (corrupt or unsupported format)")
    return as_bgr(img, what=what)
