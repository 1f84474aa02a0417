"""Fixtures for the MQTT tests: a real mosquitto per test, a state DB, signing keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import database as store
from tests.mosquitto import Mosquitto, available


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port (skips when mosquitto is not installed)."""
    if not available():
        pytest.skip("mosquitto binary not installed (apt-get install mosquitto)")
    b = Mosquitto()
    b.start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Path of a fresh, migrated state DB."""
    p = tmp_path / "state" / "gateway.db"
    store.connect(p).conn.close()
    return p
