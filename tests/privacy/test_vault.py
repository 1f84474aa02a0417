"""Vault: encryption at rest, key providers, copied database, site unlinkability."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from gateway.privacy.vault import (
    CredentialKeyProvider,
    FileKeyProvider,
    StaticKeyProvider,
    Vault,
    VaultError,
    load_gallery,
    wrap_key_from_root,
)
from gateway.store import database as store

from .conftest import FakeGallery, random_embedding, unit, write_key


def test_roundtrip_and_cosine_preserved(
    db: sqlite_utils.Database, vault: Vault, adult: str
) -> None:
    raw = np.stack([random_embedding(1), random_embedding(2)])
    site = vault.store_templates(db, adult, raw, model="sface")
    loaded = vault.load_person(db, adult)
    np.testing.assert_allclose(loaded, site, atol=1e-6)
    # matching still works in site space: cosine between probe and template preserved
    probe = unit(raw[0] + 0.3 * random_embedding(9))
    assert float(vault.transform(probe) @ loaded[0]) == pytest.approx(
        float(probe @ raw[0]), abs=1e-5
    )
    # stored vector is not the raw embedding
    assert abs(float(loaded[0] @ raw[0])) < 0.5
    # no plaintext in the database
    ct = db.execute("SELECT ciphertext FROM templates").fetchall()
    for (blob,) in ct:
        assert raw[0].tobytes()[:16] not in blob
        assert site[0].tobytes()[:16] not in blob


def test_copied_db_without_device_key_yields_nothing(
    db: sqlite_utils.Database,
    db_path: Path,
    vault: Vault,
    site_key: bytes,
    adult: str,
) -> None:
    vault.store_templates(db, adult, random_embedding(3)[None, :], model="sface")
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    copy = db_path.parent.parent / "other-machine" / "state.db"
    copy.parent.mkdir()
    shutil.copy(db_path, copy)
    other = store.connect(copy)
    thief = Vault(StaticKeyProvider(secrets.token_bytes(32)), site_key)
    with pytest.raises(VaultError):
        thief.load_person(other, adult)
    g = FakeGallery({})
    counts = load_gallery(other, thief, g)
    assert counts == {"loaded": 0, "skipped": 0, "failed": 1}
    assert g.data == {}


def test_same_device_key_id_but_wrong_key_fails(
    db: sqlite_utils.Database, vault: Vault, site_key: bytes, adult: str
) -> None:
    vault.store_templates(db, adult, random_embedding(3)[None, :], model="sface")
    db.execute("UPDATE face_keys SET key_id = ?", [StaticKeyProvider(b"k" * 32).key_id])
    with pytest.raises(VaultError, match="does not unwrap"):
        Vault(StaticKeyProvider(b"k" * 32), site_key).load_person(db, adult)


def test_two_sites_unlinkable_but_each_matches(device_key: bytes) -> None:
    a = Vault(StaticKeyProvider(device_key), secrets.token_bytes(32))
    b = Vault(StaticKeyProvider(device_key), secrets.token_bytes(32))
    faces = np.stack([random_embedding(i) for i in range(50)])
    same_person_noise = np.stack(
        [unit(f + 0.25 * random_embedding(100 + i)) for i, f in enumerate(faces)]
    )
    ta, tb = a.transform(faces), b.transform(faces)
    # within a site: same-person similarity unchanged by the transform
    np.testing.assert_allclose(
        np.sum(a.transform(same_person_noise) * ta, axis=1),
        np.sum(same_person_noise * faces, axis=1),
        atol=1e-5,
    )
    same_site = np.sum(same_person_noise * faces, axis=1)
    assert same_site.min() > 0.8
    # across sites: the same face's stored vectors look like two random vectors
    cross = np.sum(ta * tb, axis=1)
    assert np.abs(cross).max() < 0.4
    assert abs(float(cross.mean())) < 0.1
    # and a site-A template cannot be matched against a site-B gallery any better than chance
    assert float((tb @ ta.T).diagonal().mean()) < 0.1


def test_template_bound_to_site_by_aad(
    db: sqlite_utils.Database, device_key: bytes, adult: str
) -> None:
    a = Vault(StaticKeyProvider(device_key), secrets.token_bytes(32))
    a.store_templates(db, adult, random_embedding(1)[None, :], model="sface")
    b = Vault(StaticKeyProvider(device_key), secrets.token_bytes(32))
    with pytest.raises(VaultError, match="other site key"):
        b.load_person(db, adult)


def test_file_key_provider_refuses_readable_file(tmp_path: Path) -> None:
    good = write_key(tmp_path / "dk", secrets.token_hex(32).encode())
    assert len(FileKeyProvider(good).key_id) == 16
    loose = write_key(tmp_path / "loose", secrets.token_bytes(32), mode=0o640)
    with pytest.raises(VaultError, match="readable by group or others"):
        FileKeyProvider(loose)
    short = write_key(tmp_path / "short", b"abcd")
    with pytest.raises(VaultError, match="at least 32 bytes"):
        FileKeyProvider(short)


def test_credential_key_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = secrets.token_bytes(32)
    write_key(tmp_path / "device-key", key, mode=0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert CredentialKeyProvider().key_id == StaticKeyProvider(wrap_key_from_root(key)).key_id
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(VaultError, match="CREDENTIALS_DIRECTORY"):
        CredentialKeyProvider()


def test_load_gallery_filters(db: sqlite_utils.Database, vault: Vault, adult: str) -> None:
    vault.store_templates(db, adult, random_embedding(1)[None, :], model="sface")
    g = FakeGallery({})
    assert load_gallery(db, vault, g, allowed=lambda _pid: False)["skipped"] == 1
    assert g.data == {}
    assert load_gallery(db, vault, g)["loaded"] == 1
    assert g.data[adult].shape == (1, 128)


def test_bad_templates_refused(db: sqlite_utils.Database, vault: Vault, adult: str) -> None:
    with pytest.raises(VaultError):
        vault.store_templates(db, adult, np.zeros((1, 128), dtype=np.float32), model="sface")
    with pytest.raises(VaultError):
        vault.store_templates(db, adult, np.ones((1, 64), dtype=np.float32), model="sface")


def test_site_rotation_is_orthogonal_and_deterministic(site_key: bytes) -> None:
    from gateway.privacy.vault import SiteTransform

    t = SiteTransform(site_key)
    m = t.matrix.astype(np.float64)
    np.testing.assert_allclose(m @ m.T, np.eye(128), atol=1e-5)
    np.testing.assert_array_equal(SiteTransform(site_key).matrix, t.matrix)
    assert t.fingerprint == SiteTransform(site_key).fingerprint
    assert t.fingerprint != SiteTransform(secrets.token_bytes(32)).fingerprint


def test_cli_and_daemon_derive_the_same_vault(
    tmp_path: Path, db: sqlite_utils.Database, adult: str
) -> None:
    """Templates written with root-key files decrypt with the daemon's Keys-derived vault."""
    from gateway.keys import Keys, Purpose

    dk_root, sk_root = secrets.token_hex(32).encode(), secrets.token_bytes(32)
    dk = write_key(tmp_path / "dk", dk_root)
    from_files = Vault(
        FileKeyProvider(dk), Keys(device=dk_root, site=sk_root).subkey(Purpose.TEMPLATE_TRANSFORM)
    )
    from_files.store_templates(db, adult, random_embedding(5)[None, :], model="m")
    keys = Keys(device=dk_root, site=sk_root)
    daemon = Vault(
        StaticKeyProvider(keys.subkey(Purpose.TEMPLATE_WRAP)),
        keys.subkey(Purpose.TEMPLATE_TRANSFORM),
    )
    np.testing.assert_allclose(
        daemon.load_person(db, adult), Vault.from_root_keys(dk_root, sk_root).load_person(db, adult)
    )
