"""The tests' OSDP peers, over loopback sockets or a pseudo-terminal (libosdp both sides).

- :class:`PdFixture`: a PeripheralDevice listening on TCP loopback. Its socket can be
  swapped: ``pull()`` closes the current connection and refuses new ones until ``plug()``;
  a fresh libosdp PD is created per connection, as a real reader would restart its session
  after a cable is re-seated.
- :class:`OsdpClient`: a ControlPanel connected to a PD's port (the simulator's readers).
- :class:`SocketChannel`, :class:`FdChannel`: libosdp channels over a non-blocking socket
  or file descriptor; a lost peer reads as silence and swallows writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
SCBK = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


class SocketChannel(osdp.Channel):  # type: ignore[misc]
    """A libosdp channel over a non-blocking socket."""

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


class FdChannel(osdp.Channel):  # type: ignore[misc]
    """A libosdp channel over a non-blocking file descriptor (a pty master)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self.fd, max_bytes)
        except OSError:
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self.fd, buf)
        except OSError:
            return len(buf)

    def flush(self) -> None:
        return None


class OsdpClient:
    """A libosdp ControlPanel on 127.0.0.1:``port`` for the PD at ``address`` (Secure
    Channel enforced with ``scbk``); started at once unless ``start`` is False."""

    def __init__(self, port: int, *, scbk: bytes, address: int = 101, start: bool = True) -> None:
        self.address = address
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        self.chan = SocketChannel(sock)
        info = osdp.PDInfo(address, self.chan, scbk=scbk, flags=[osdp.LibFlag.EnforceSecure])
        self.cp = osdp.ControlPanel([info], log_level=osdp.LogLevel.Error)
        if start:
            self.cp.start()

    def event(self, kind: int, timeout: float = 3.0) -> dict[str, Any]:
        """The next event of ``kind`` from the PD (others are dropped); AssertionError when
        none comes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.cp.get_event(self.address, timeout=0.2)
            if ev is not None and ev["event"] == kind:
                return dict(ev)
        raise AssertionError(f"no event {kind} within {timeout}s")

    def close(self) -> None:
        self.cp.teardown()
        self.chan.sock.close()


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
            info = osdp.PDInfo(self.address, SocketChannel(conn), scbk=self.scbk, flags=flags)
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


async def wait_for(it: AsyncIterator[ReaderEvent], kind: type[Any], within: float = 5.0) -> Any:
    async def _find() -> Any:
        async for ev in it:
            if isinstance(ev, kind):
                return ev
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(_find(), within)
