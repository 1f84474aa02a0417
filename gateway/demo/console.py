"""The demo's web console: on in the daemon's configuration, on a free local port, with
an ``admin`` account whose password is made for this run only and printed once (the demo's
state directory, and the account with it, is removed when the demo ends)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCOUNT = "admin"


@dataclass(frozen=True)
class DemoConsole:
    """Where the console listens and the run's admin password."""

    port: int
    password: str

    @property
    def url(self) -> str:
        """The console's address."""
        return f"https://127.0.0.1:{self.port}/"

    def config_section(self) -> str:
        """The daemon configuration's ``[web]`` table."""
        return f'\n[web]\nenabled = true\nlisten = ["127.0.0.1"]\nport = {self.port}\n'


def plan() -> DemoConsole | None:
    """A console on a free port, or None (said loudly) without the ``web`` extra."""
    if importlib.util.find_spec("aiohttp") is None:
        print(
            "web console OFF: the 'web' extra is not installed (pip install -e '.[web]')",
            flush=True,
        )
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return DemoConsole(port, secrets.token_urlsafe(12))


def add_admin(db: Any, console: DemoConsole) -> None:
    """The run's admin account (argon2id hash, audited as the demo's)."""
    from gateway.web import accounts

    accounts.add_account(db, ACCOUNT, "admin", console.password, actor="demo")


async def wait_up(console: DemoConsole, state_dir: Path, limit_s: float = 20.0) -> str:
    """Wait until the console listens; its certificate's SHA-256 fingerprint."""
    from gateway.web.tls import CERT_NAME, fingerprint

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", console.port)
            w.close()
            return fingerprint((state_dir / CERT_NAME).read_bytes())
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the web console did not listen on {console.url} within {limit_s:.0f} s")


def announce(console: DemoConsole, fp: str) -> None:
    """Print the console's address, account and one-time password."""
    print(
        f"web console: {console.url}  account {ACCOUNT}, password {console.password} "
        f"(made for this run only)\n  certificate SHA-256 {fp} (self-signed: the browser "
        "warns; compare the fingerprint)",
        flush=True,
    )


async def keep_open() -> None:
    """Keep everything running until Ctrl-C or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("--keep-open: everything keeps running; Ctrl-C stops it", flush=True)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
