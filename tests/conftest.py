"""Shared fixtures: paths, the ../shared data folder, minimal configs."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", REPO.parent / "shared")).resolve()


def shared_available() -> bool:
    """True when ../shared (real faces, anti-spoofing models) is beside the checkout."""
    return (SHARED / "README.md").is_file()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``shared`` tests loudly when ../shared is absent, ``mosquitto`` ones without it."""
    no_shared = pytest.mark.skip(
        reason=f"needs ../shared (real face images / anti-spoofing models), absent at {SHARED}"
    )
    no_broker = pytest.mark.skip(reason="needs the mosquitto binary (apt-get install mosquitto)")
    have_broker = bool(shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists())
    for item in items:
        if "shared" in item.keywords and not shared_available():
            item.add_marker(no_shared)
        if "mosquitto" in item.keywords and not have_broker:
            item.add_marker(no_broker)


def write_secret(path: Path, data: bytes) -> Path:
    """Write a 0600 secret file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


MINIMAL_CONFIG = """
[site]
id = "test-site"
gate = "gate-1"

[readers.entry]
url = "osdp+socket://127.0.0.1:{reader_port}"
protocol = "osdp"
scbk = {{ file = "{scbk}" }}

[doors.main]
reader = "entry"
methods = ["card", "pin", "card+pin"]
relay = {{ kind = "osdp", output = 0 }}

[mqtt]
enabled = false

[storage]
state_dir = "{state}"

[privacy]
site_key = {{ file = "{site_key}" }}
device_key = {{ file = "{device_key}" }}
"""


def minimal_config_text(keys: Path, state: Path, site_key: Path | None = None) -> str:
    """MINIMAL_CONFIG with fresh secrets written in ``keys`` (``site_key``: an existing one)."""
    return MINIMAL_CONFIG.format(
        reader_port=free_port(),
        scbk=write_secret(keys / "scbk", secrets.token_hex(16).encode()),
        state=state,
        site_key=site_key or write_secret(keys / "site-key", secrets.token_bytes(32)),
        device_key=write_secret(keys / "device-key", secrets.token_bytes(32)),
    )


@pytest.fixture
def minimal_config(tmp_path: Path) -> Path:
    """A valid card/PIN-only config with its secrets in tmp_path."""
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(minimal_config_text(tmp_path / "keys", tmp_path / "state"))
    return cfg


@contextlib.asynccontextmanager
async def built_gateway(
    config: Path, prepare: Callable[[Any], None] | None = None
) -> AsyncIterator[Any]:
    """A ``Gateway`` set up from ``config`` (readers not connected), closed on exit.

    ``prepare(gw)`` runs before ``setup()`` (e.g. to replace a hardware factory).
    """
    from gateway.config.root import load_config
    from gateway.daemon.process import Daemon
    from gateway.gate.app import Gateway
    from gateway.store import database as store

    cfg = load_config(config, env=False)
    daemon = Daemon(config, cfg)
    daemon.db = store.connect(cfg.storage.database_path)
    gw = Gateway(daemon)
    if prepare is not None:
        prepare(gw)
    await gw.setup()
    try:
        yield gw
    finally:
        await gw._close()
        daemon.db.close()
