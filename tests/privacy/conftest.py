"""Fixtures for the privacy tests: a file database, a vault, fakes for the face pipeline."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from gateway.privacy import consent, people
from gateway.privacy.notice import Notice
from gateway.privacy.vault import StaticKeyProvider, Vault
from gateway.store import database as store

NOTICE_EN = """Face recognition at the gates of Green Court
Processor: Green Court Property Management Ltd. Contact: privacy@greencourt.example, 010-1234
Purpose: to open the compound gates for residents without a card.
Method: the gate camera computes a face template on the device; no photo is kept.
Retention: templates are kept while you live here and deleted 180 days after your last visit.
Your rights: you may withdraw consent at any time (keypad *9, the app, or the office);
we then delete your face data at once. You may also ask us to delete or copy your records.
"""

NOTICE_ZH = (Path(__file__).parent / "data" / "notice_zh.txt").read_text(encoding="utf-8")


@dataclass
class FakeGallery:
    """In-memory stand-in for gateway.face.gallery.Gallery (cosine 1:N)."""

    data: dict[str, np.ndarray]

    def replace_person(self, person_id: str, templates: np.ndarray) -> None:
        self.data[person_id] = np.asarray(templates, dtype=np.float32)

    def remove_person(self, person_id: str) -> int:
        t = self.data.pop(person_id, None)
        return 0 if t is None else len(t)

    def identify(self, probe: np.ndarray, threshold: float) -> str | None:
        best, who = -1.0, None
        for pid, tpl in self.data.items():
            s = float(np.max(tpl @ probe))
            if s > best:
                best, who = s, pid
        return who if best >= threshold else None


def unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def random_embedding(seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal(128))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[sqlite_utils.Database]:
    d = store.connect(db_path)
    yield d
    d.conn.close()


@pytest.fixture
def device_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def site_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def vault(device_key: bytes, site_key: bytes) -> Vault:
    return Vault(StaticKeyProvider(device_key), site_key)


@pytest.fixture
def gallery() -> FakeGallery:
    return FakeGallery({})


@pytest.fixture
def notice() -> Notice:
    return Notice("2025-06", NOTICE_EN)


@pytest.fixture
def adult(db: sqlite_utils.Database) -> str:
    return people.add_person(db, "Li Wei", unit="3-402", role="resident")


@pytest.fixture
def consented(db: sqlite_utils.Database, adult: str, notice: Notice) -> str:
    consent.grant(db, adult, notice, method="paper", recorded_by="office-1", scope="device")
    return adult


def write_key(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(mode)
    return path
