"""HTTP control API and camera streams on one loopback port (stdlib, one thread per client).

``GET /cameras/<name>.mjpg`` MJPEG stream; ``GET /state``; ``GET /urls``;
``POST /<action>`` with a JSON object body (actions: see ``hw_sim.sim.ACTIONS``).
Errors answer ``{"ok": false, "error": "..."}`` with status 400/404.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hw_sim.sim import Simulator

log = logging.getLogger(__name__)
_MAX_BODY = 64 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: Simulator


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)  # noqa: G003 - stdlib format string

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        sim = self.server.sim
        path = self.path.split("?", 1)[0]
        if path.startswith("/cameras/") and path.endswith(".mjpg"):
            name = path[len("/cameras/") : -len(".mjpg")]
            cam = sim.cameras.get(name)
            if cam is None:
                self._json(404, {"ok": False, "error": f"unknown camera {name!r}"})
                return
            cam.serve(self)
            return
        if path == "/state":
            self._json(200, sim.state())
        elif path == "/urls":
            self._json(200, sim.urls())
        else:
            self._json(404, {"ok": False, "error": f"no such resource {path}"})

    def do_POST(self) -> None:
        from hw_sim.sim import SimError

        action = self.path.split("?", 1)[0].strip("/")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                raise SimError("request body too large")
            raw = self.rfile.read(length) if length else b"{}"
            args = json.loads(raw or b"{}")
            if not isinstance(args, dict):
                raise SimError("the request body must be a JSON object")
            result = self.server.sim.do(action, args)
        except json.JSONDecodeError as exc:
            self._json(400, {"ok": False, "error": f"bad JSON: {exc}"})
        except SimError as exc:
            self._json(400, {"ok": False, "error": str(exc)})
        except Exception as exc:  # the API must answer, whatever broke
            log.exception("api: action %s failed", action)
            self._json(500, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        else:
            self._json(200, result)


class ApiServer:
    """The HTTP server in a background thread."""

    def __init__(self, sim: Simulator, host: str, port: int) -> None:
        self._httpd = _Server((host, port), _Handler)
        self._httpd.sim = sim
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="hwsim-api", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(2)
