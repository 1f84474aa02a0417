"""A real mosquitto broker for tests: own config in a tmp dir, free loopback port.

    broker = Mosquitto()            # or Mosquitto(tls=MosquittoTLS(ca, cert, key))
    broker.start(); ...; broker.restart(); ...; broker.stop()

Persistence is on (in the tmp dir), so persistent sessions and queued QoS 1 messages survive
``stop()``/``start()`` on the same port. Use ``with Mosquitto() as broker:`` to stop on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.net import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def available() -> bool:
    """True when a mosquitto binary exists."""
    return Path(MOSQUITTO).exists()


@dataclass(frozen=True)
class MosquittoTLS:
    """TLS listener files; ``require_certificate`` asks clients for a cert signed by ``ca``."""

    ca: Path
    cert: Path
    key: Path
    require_certificate: bool = True


class Mosquitto:
    """One mosquitto process listening on 127.0.0.1:``port`` (plain, or TLS when given)."""

    def __init__(
        self, port: int | None = None, tls: MosquittoTLS | None = None, *, tcp_nodelay: bool = True
    ) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.tcp_nodelay = tcp_nodelay
        self.host = "127.0.0.1"
        self._tmp = tempfile.TemporaryDirectory(prefix="mosquitto-")
        self.dir = Path(self._tmp.name)
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 0",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
        ]
        if self.tcp_nodelay:
            # PUBACKs are tiny: with Nagle on the broker they wait for the client's delayed ACK
            lines.append("set_tcp_nodelay true")
        if os.geteuid() == 0:
            lines.append("user root")  # do not drop to 'mosquitto' (cannot read our tmp files)
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.cert}",
                f"keyfile {self.tls.key}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
                "tls_version tlsv1.2",
            ]
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port accepts connections."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {err} {log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} in {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM saves persistence), then kill if it hangs."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker (no persistence save, clients see a dead TCP peer)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self.stop()

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the tmp dir."""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Mosquitto({self.host}:{self.port}, tls={self.tls is not None})"
