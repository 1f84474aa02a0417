"""Simulated IP camera: an MJPEG stream (multipart/x-mixed-replace) that OpenCV can read.

One render thread per camera, running only while someone watches, produces the latest
JPEG at the configured fps; every HTTP client streams that frame. ``unplug()`` ends the
open streams and refuses new ones (HTTP 503) until ``replug()``. With ``basic_auth`` the
stream demands an HTTP Basic login (401 otherwise), like an IP camera with a password.
"""

from __future__ import annotations

import base64
import functools
import hmac
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler

import cv2
import numpy as np

from hw_sim.corpus import FaceCorpus, Image
from hw_sim.scenes import Actor, Polygon, Scene
from hw_sim.stereo import StereoView

log = logging.getLogger(__name__)
BOUNDARY = "hwsimframe"


class SimCamera:
    """One camera: a scene, a frame rate, and plug state."""

    def __init__(
        self,
        name: str,
        corpus: FaceCorpus,
        *,
        width: int = 640,
        height: int = 480,
        fps: float = 10.0,
        jpeg_quality: int = 80,
        zones: list[Polygon] | None = None,
        basic_auth: tuple[str, str] | None = None,
        stereo: StereoView | None = None,
    ) -> None:
        self.name = name
        #: a USB stereo camera or an RGB+NIR module (a NirView): each frame holds both views
        #: side by side (left: the first, colour view)
        self.stereo = stereo
        self._auth = (
            None
            if basic_auth is None
            else "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode("ascii")
        )
        self.refused_logins = 0
        self.fps = fps
        self.jpeg_quality = jpeg_quality
        self.scene = Scene(width, height, corpus, zones=list(zones or []))
        self.plugged = True
        self._t0 = time.monotonic()
        self._cond = threading.Condition()
        self._seq = 0
        self._jpeg = b""
        self._clients = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.frames_rendered = 0

    # ------------------------------------------------------------------ control
    def now(self) -> float:
        """Scene time (seconds since the camera was created)."""
        return time.monotonic() - self._t0

    def add_actor(self, actor: Actor) -> None:
        self.scene.add(actor)

    def unplug(self) -> None:
        log.info("camera %s: unplugged", self.name)
        with self._cond:
            self.plugged = False
            self._cond.notify_all()

    def replug(self) -> None:
        log.info("camera %s: plugged back in", self.name)
        with self._cond:
            self.plugged = True
            self._cond.notify_all()

    def state(self) -> dict[str, object]:
        actors = self.scene.active(self.now())
        return {
            "plugged": self.plugged,
            "clients": self._clients,
            "fps": self.fps,
            "size": [self.scene.width * (2 if self.stereo else 1), self.scene.height],
            "people": [
                {"variant": a.variant, "progress": round(a.progress(self.now()), 2)} for a in actors
            ],
        }

    def snapshot(self) -> Image:
        """Render one frame now (for tests and previews)."""
        return self.render(self.now())

    def render(self, t: float) -> Image:
        """The frame at scene time ``t``: both views side by side for a stereo camera."""
        first = self.scene.render(t)
        if self.stereo is None:
            return first
        return np.hstack([first, self.scene.render(t, self.stereo)])

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    # ------------------------------------------------------------------ render loop
    def _ensure_running(self) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, name=f"cam-{self.name}", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        period = 1.0 / self.fps
        params = [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality]
        next_t = time.monotonic()
        while not self._stop.is_set():
            with self._cond:
                if self._clients == 0:
                    self._thread = None
                    return
                plugged = self.plugged
            if plugged:
                ok, buf = cv2.imencode(".jpg", self.render(self.now()), params)
                if ok:
                    with self._cond:
                        self._jpeg = buf.tobytes()
                        self._seq += 1
                        self.frames_rendered += 1
                        self._cond.notify_all()
            next_t += period
            delay = next_t - time.monotonic()
            if delay < -period:  # fell behind: do not burst
                next_t = time.monotonic()
                delay = 0.0
            self._stop.wait(max(0.0, delay))

    # ------------------------------------------------------------------ HTTP
    def _ready(self, seen: int) -> bool:
        return self._seq != seen or not self.plugged or self._stop.is_set()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Stream to one HTTP client until it leaves, the camera is unplugged or stopped."""
        if not self.plugged:
            handler.send_error(503, f"camera {self.name} is unplugged")
            return
        given = handler.headers.get("Authorization")
        if self._auth is not None and not hmac.compare_digest(
            (given or "").encode(), self._auth.encode()
        ):
            if given is not None:
                self.refused_logins += 1
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", f'Basic realm="camera {self.name}"')
            handler.send_header("Content-Length", "0")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            return
        handler.send_response(200)
        handler.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        handler.send_header("Cache-Control", "no-cache, no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        with self._cond:
            self._clients += 1
        self._ensure_running()
        log.info("camera %s: client connected", self.name)
        seen = self._seq
        try:
            while not self._stop.is_set():
                with self._cond:
                    self._cond.wait_for(functools.partial(self._ready, seen), timeout=2.0)
                    if not self.plugged or self._stop.is_set():
                        break
                    if self._seq == seen:
                        continue
                    seen, jpeg = self._seq, self._jpeg
                part = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n"
                ).encode("ascii")
                handler.wfile.write(part + jpeg + b"\r\n")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        finally:
            with self._cond:
                self._clients -= 1
            handler.close_connection = True
            log.info("camera %s: client disconnected", self.name)
