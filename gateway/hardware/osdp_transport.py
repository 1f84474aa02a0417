"""Byte streams to an OSDP line: serial port, pty or TCP socket, chosen by URL."""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import socket
import termios
import tty
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gateway.errors import HardwareError


class Transport(abc.ABC):
    """A byte stream to the RS-485 line. ``read``/``write`` are non-blocking and raise
    ``OSError`` (or ``EOFError``) when the line is gone."""

    description: str

    @abc.abstractmethod
    def open(self) -> None:
        """Connect/open; raise OSError on failure."""

    @abc.abstractmethod
    def read(self, max_bytes: int) -> bytes:
        """Return available bytes (maybe empty); raise on a closed line."""

    @abc.abstractmethod
    def write(self, data: bytes) -> int:
        """Write what fits; return the count."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the line (idempotent)."""


class _NonBlockingStream(Transport):
    """``read``/``write`` of a non-blocking stream: nothing ready gives ``b""`` or 0, its
    end raises EOFError(``end_message``); subclasses give the raw calls."""

    end_message = "end of stream"

    @abc.abstractmethod
    def _recv(self, max_bytes: int) -> bytes:
        """The raw read; EOFError when not open."""

    @abc.abstractmethod
    def _send(self, data: bytes) -> int:
        """The raw write; EOFError when not open."""

    def read(self, max_bytes: int) -> bytes:
        try:
            data = self._recv(max_bytes)
        except BlockingIOError:
            return b""
        if not data:
            raise EOFError(self.end_message)
        return data

    def write(self, data: bytes) -> int:
        try:
            return self._send(data)
        except BlockingIOError:
            return 0


class SocketTransport(_NonBlockingStream):
    """TCP client (the simulator PD listens, the gateway connects)."""

    def __init__(self, host: str, port: int, connect_timeout_s: float = 1.0) -> None:
        self.host, self.port, self.connect_timeout_s = host, port, connect_timeout_s
        self.description = f"tcp {host}:{port}"
        self._sock: socket.socket | None = None

    def open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock

    end_message = "peer closed the connection"

    def _recv(self, max_bytes: int) -> bytes:
        if self._sock is None:
            raise EOFError("not connected")
        return self._sock.recv(max_bytes)

    def _send(self, data: bytes) -> int:
        if self._sock is None:
            raise EOFError("not connected")
        return self._sock.send(data)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class PtyTransport(_NonBlockingStream):
    """A tty device opened raw and non-blocking (a pty slave, or a serial port without
    pyserial). Closing the other side of a pty shows as EIO here."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"pty {path}"
        self._fd: int | None = None

    def open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            if not os.isatty(fd):  # a regular file or /dev/null would "connect" and spin
                raise OSError(errno.ENOTTY, f"{self.path} is not a terminal (tty/pty)")
            tty.setraw(fd)
        except (OSError, termios.error) as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise
            raise OSError(errno.ENOTTY, f"{self.path}: cannot set raw mode: {exc}") from None
        self._fd = fd

    end_message = "end of file on the pty"

    def _recv(self, max_bytes: int) -> bytes:
        if self._fd is None:
            raise EOFError("not open")
        return os.read(self._fd, max_bytes)

    def _send(self, data: bytes) -> int:
        if self._fd is None:
            raise EOFError("not open")
        return os.write(self._fd, data)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class SerialTransport(Transport):
    """RS-485 adapter through pyserial (non-blocking)."""

    def __init__(self, path: str, baud: int) -> None:
        if baud not in (9600, 19200, 38400, 57600, 115200, 230400):
            raise HardwareError(f"OSDP serial {path}: unsupported baud rate {baud}")
        self.path, self.baud = path, baud
        self.description = f"serial {path}@{baud}"
        self._port: Any = None

    def open(self) -> None:
        import serial

        try:
            self._port = serial.Serial(self.path, self.baud, timeout=0, write_timeout=0)
        except serial.SerialException as exc:
            raise OSError(errno.EIO, str(exc)) from exc

    def read(self, max_bytes: int) -> bytes:
        import serial

        if self._port is None:
            raise EOFError("not open")
        try:
            return bytes(self._port.read(max_bytes))
        except serial.SerialException as exc:
            raise OSError(errno.EIO, str(exc)) from exc

    def write(self, data: bytes) -> int:
        import serial

        if self._port is None:
            raise EOFError("not open")
        try:
            return int(self._port.write(data) or 0)
        except serial.SerialTimeoutException:
            return 0
        except serial.SerialException as exc:
            raise OSError(errno.EIO, str(exc)) from exc

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(Exception):
                self._port.close()
            self._port = None


def transport_from_url(url: str) -> Transport:
    """``osdp:///dev/ttyUSB0?baud=9600``, ``osdp+pty:///dev/pts/3``,
    ``osdp+socket://host:port`` (also ``socket://host:port``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    if scheme in ("osdp+socket", "socket"):
        if not parts.hostname or parts.port is None:
            raise HardwareError(f"OSDP URL {url!r}: need host:port")
        return SocketTransport(parts.hostname, parts.port)
    if not parts.path:
        raise HardwareError(f"OSDP URL {url!r}: missing device path")
    if scheme == "osdp+pty":
        return PtyTransport(parts.path)
    if scheme in ("osdp", "osdp+serial"):
        try:
            baud = int(query.get("baud", ["9600"])[-1])
        except ValueError:
            raise HardwareError(f"OSDP URL {url!r}: baud is not a number") from None
        return SerialTransport(parts.path, baud)
    raise HardwareError(f"OSDP URL {url!r}: unknown scheme {parts.scheme!r}")
