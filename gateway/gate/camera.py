"""Camera capture: a reader thread per camera, latest frame wins, reconnect with backoff.

Frames live only in memory: the one-slot mailbox holds the newest frame and drops older
ones, and nothing here writes a frame anywhere. The capture thread drains the stream
continuously so that the frame handed to the face pipeline is always fresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gateway.daemon.supervisor import Backoff


def redact_url(source: str) -> str:
    """``source`` with any ``user:password@`` replaced, for logs and reports."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(source)
    except ValueError:
        return "<unparseable camera URL>"
    if "@" not in parts.netloc:
        return source
    # host[:port] exactly as written (an IPv6 literal keeps its brackets)
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]


class FrameSource(Protocol):
    """What a camera driver offers: blocking reads of BGR frames."""

    def read(self) -> Frame | None:
        """The next frame, or None when the stream failed."""

    def close(self) -> None:
        """Release the device or stream."""


class OpenCVSource:
    """V4L2 device, RTSP/HTTP-MJPEG stream or file through ``cv2.VideoCapture``."""

    def __init__(self, source: str, width: int, height: int, timeout_s: float = 5.0) -> None:
        import cv2

        self._cv2 = cv2
        target: int | str = int(source) if source.isdigit() else source
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(timeout_s * 1000),
        ]
        self._cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
        if not self._cap.isOpened():
            self._cap.release()
            raise OSError(f"cannot open camera source {redact_url(source)}")
        if source.startswith("/dev/video") or isinstance(target, int):
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self) -> Frame | None:
        """Read one frame (BGR)."""
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def close(self) -> None:
        """Release the capture."""
        self._cap.release()


@dataclass(frozen=True)
class CapturedFrame:
    """A frame with its capture time (monotonic seconds) and sequence number."""

    image: Frame
    ts: float
    seq: int


class Mailbox:
    """A one-slot, latest-wins hand-off between the capture thread and the pipeline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: CapturedFrame | None = None
        self.dropped = 0

    def put(self, item: CapturedFrame) -> None:
        """Replace whatever is waiting (an unprocessed older frame is dropped)."""
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> CapturedFrame | None:
        """Wait up to ``timeout`` for the newest frame and remove it."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        """Forget any waiting frame (camera offline, face path disabled)."""
        with self._cond:
            self._item = None


StateCallback = Callable[[bool, str], None]


class CameraCapture:
    """Capture thread for one camera with reconnect, fps limit and online/offline reports."""

    def __init__(
        self,
        name: str,
        open_source: Callable[[], FrameSource],
        *,
        fps: float,
        on_state: StateCallback,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self._open = open_source
        self._interval = 1.0 / fps
        self._on_state = on_state
        self._backoff = backoff or Backoff(base=0.5, cap=10.0)
        self.mailbox = Mailbox()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.online = False
        self.frames = 0

    def start(self) -> None:
        """Start the capture thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and release the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.mailbox.clear()

    def _set_online(self, online: bool, reason: str) -> None:
        if online != self.online:
            self.online = online
            self._on_state(online, reason)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                source = self._open()
            except Exception as exc:  # noqa: BLE001 - any driver failure means offline
                attempt += 1
                delay = self._backoff.delay(attempt)
                if attempt == 1:
                    log.warning("camera %s: cannot open (%s); retrying", self.name, exc)
                    self._set_online(False, "unreachable")
                else:
                    log.debug("camera %s: still unreachable (%s)", self.name, exc)
                self._stop.wait(delay)
                continue
            log.info("camera %s: streaming", self.name)
            attempt = 0
            try:
                self._pump(source)
            finally:
                source.close()
                self.mailbox.clear()

    def _pump(self, source: FrameSource) -> None:
        last = 0.0
        failures = 0
        while not self._stop.is_set():
            image = source.read()
            now = time.monotonic()
            if image is None:
                failures += 1
                if failures >= 3:
                    log.warning("camera %s: stream lost; reconnecting", self.name)
                    self._set_online(False, "stream_lost")
                    return
                continue
            failures = 0
            self._set_online(True, "streaming")
            if now - last < self._interval * 0.9:
                continue  # faster than the configured fps: drop
            last = now
            self.frames += 1
            self.mailbox.put(CapturedFrame(image, now, self.frames))
