"""A minimal libosdp PeripheralDevice listening on TCP loopback (test fixture).

The PD's socket can be swapped: ``pull()`` closes the current connection and refuses new
ones until ``plug()``; a fresh libosdp PD is created per connection, as a real reader
would restart its session after a cable is re-seated.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import osdp

from gateway.hardware.events import ReaderEvent

CAPS = osdp.PDCapabilities(
    [
        (osdp.Capability.OutputControl, 1, 4),
        (osdp.Capability.ContactStatusMonitoring, 1, 4),
        (osdp.Capability.LEDControl, 1, 1),
        (osdp.Capability.AudibleControl, 1, 1),
        (osdp.Capability.TextOutput, 1, 1),
        (osdp.Capability.CommunicationSecurity, 1, 1),
    ]
)


class _SockChannel(osdp.Channel):  # type: ignore[misc]
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def read(self, max_bytes: int) -> bytes:
        try:
            return self.sock.recv(max_bytes)
        except (BlockingIOError, OSError):
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return self.sock.send(buf)
        except BlockingIOError:
            return 0
        except OSError:
            return len(buf)

    def flush(self) -> None:
        return None


class PdFixture:
    """One PD at ``address`` with ``scbk``, served on 127.0.0.1:``port``."""

    def __init__(self, address: int = 101, scbk: bytes | None = None) -> None:
        self.address = address
        self.scbk = scbk
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self._server = self._listen(0)
        self.port: int = self._server.getsockname()[1]
        self.url = f"osdp+socket://127.0.0.1:{self.port}?address={address}"
        self._accepting = threading.Event()
        self._accepting.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pd: Any = None
        self._conn: socket.socket | None = None
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen(4)
        server.settimeout(0.1)
        return server

    def _on_command(self, cmd: dict[str, Any]) -> tuple[int, None]:
        self.commands.put(cmd)
        return 0, None

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self._accepting.is_set() or self._conn is not None:
                self._stop.wait(0.05)
                continue
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            conn.setblocking(False)
            flags = [osdp.LibFlag.EnforceSecure] if self.scbk else []
            info = osdp.PDInfo(self.address, _SockChannel(conn), scbk=self.scbk, flags=flags)
            pd = osdp.PeripheralDevice(info, CAPS, log_level=osdp.LogLevel.Emergency)
            pd.set_command_handler(self._on_command)
            pd.start()
            with self._lock:
                self._pd, self._conn = pd, conn
                self.connections += 1

    def submit(self, event: dict[str, Any]) -> bool:
        with self._lock:
            if self._pd is None:
                return False
            return bool(self._pd.submit_event(event))

    def present_card(self, bits: tuple[int, ...]) -> bool:
        from gateway.hardware.wiegand import bits_to_bytes

        return self.submit(
            {
                "event": osdp.Event.CardRead,
                "reader_no": 0,
                "direction": 0,
                "format": osdp.CardFormat.Wiegand,
                "length": len(bits),
                "data": bits_to_bytes(bits),
            }
        )

    def key(self, keys: str) -> bool:
        return self.submit(
            {"event": osdp.Event.KeyPress, "reader_no": 0, "data": keys.encode("ascii")}
        )

    def inputs(self, states: list[int]) -> bool:
        return self.submit(
            {
                "event": osdp.Event.Status,
                "type": osdp.StatusReportType.Input,
                "report": bytes(states),
            }
        )

    def tamper(self, active: bool) -> bool:
        return self.submit(
            {
                "event": osdp.Event.Status,
                "type": osdp.StatusReportType.Local,
                "report": bytes([int(active), 0]),
            }
        )

    def pull(self) -> None:
        """Close the connection and refuse new ones (reader unplugged)."""
        self._accepting.clear()
        time.sleep(0.1)  # let the serve loop leave accept()
        self._server.close()
        self._drop()

    def plug(self) -> None:
        self._server = self._listen(self.port)
        self._accepting.set()

    def _drop(self) -> None:
        with self._lock:
            pd, conn = self._pd, self._conn
            self._pd = self._conn = None
        if conn is not None:  # the cable goes first
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if pd is not None:
            with contextlib.suppress(RuntimeError):
                pd.teardown()

    def close(self) -> None:
        self._stop.set()
        self._accepting.clear()
        self._thread.join(2)
        self._drop()
        self._server.close()


SCBK = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


async def wait_for(it: AsyncIterator[ReaderEvent], kind: type[Any], within: float = 5.0) -> Any:
    async def _find() -> Any:
        async for ev in it:
            if isinstance(ev, kind):
                return ev
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(_find(), within)
