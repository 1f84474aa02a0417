"""systemd notification protocol (READY, STATUS, WATCHDOG); a no-op outside systemd."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Send ``sd_notify`` datagrams to ``$NOTIFY_SOCKET`` when it is set."""

    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            if self._address.startswith("@"):
                self._address = "\0" + self._address[1:]

    @property
    def enabled(self) -> bool:
        """True under systemd (Type=notify)."""
        return self._sock is not None

    def watchdog_interval(self) -> float | None:
        """Half the watchdog timeout in seconds, or None when no watchdog is set."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2_000_000
        except ValueError:
            return None

    def notify(self, state: str) -> None:
        """Send one notification; errors are logged, never raised."""
        if self._sock is None or self._address is None:
            return
        try:
            self._sock.sendto(state.encode(), self._address)
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", state.split("=", maxsplit=1)[0], exc)

    def ready(self, status: str) -> None:
        """READY=1 with a status line."""
        self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """Update the status line shown by ``systemctl status``."""
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        """Keep-alive ping."""
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """Tell systemd we are shutting down."""
        self.notify("STOPPING=1")

    def reloading(self) -> None:
        """Tell systemd a reload is in progress."""
        self.notify("RELOADING=1")
