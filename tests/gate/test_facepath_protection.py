"""The face path under ``template_protection = "cancelable"``: probes through the vault's
transform, the gallery at the vault's width, the thresholds the config translation scales."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import sqlite_utils

from gateway.config.root import load_config
from gateway.config.settings import match_settings
from gateway.face.gallery import Gallery
from gateway.face.pipeline import FaceObservation
from gateway.gate.facepath import FacePath
from gateway.keys import Keys
from gateway.privacy import people
from gateway.privacy.vault import Vault
from gateway.privacy.zones import ZoneMasker
from gateway.store import database as store
from tests.gate.test_facepath import BOX, verdict

#: per-dimension capture noise: probe-to-template cosine ~0.89, a cancelable score ~0.7,
#: well above the scaled threshold (0.06 gave ~0.5 against 0.464: it failed for 1 key in 4)
NOISE = 0.03


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), np.float32)


def _obs(embedding: np.ndarray) -> FaceObservation:
    return FaceObservation(BOX, np.zeros((5, 2)), 0.9, verdict(True), None, embedding)


@pytest.fixture
def db(tmp_path: Path) -> sqlite_utils.Database:
    return store.connect(tmp_path / "state.db")


def test_cancelable_face_path_identifies_and_verifies(
    db: sqlite_utils.Database, minimal_config: Path
) -> None:
    text = minimal_config.read_text()
    minimal_config.write_text(
        text.replace("[privacy]\n", '[privacy]\ntemplate_protection = "cancelable"\n')
    )
    cfg = load_config(minimal_config, env=False)
    keys = Keys(device=secrets.token_bytes(32), site=secrets.token_bytes(32))
    vault = Vault.from_keys(keys, protection=cfg.privacy.template_protection)
    gallery = Gallery(vault.dim)
    rng = np.random.default_rng(7)
    faces = _unit(rng.standard_normal((10, 128)))
    ids = [people.add_person(db, f"P {i}", unit=f"1-{i}", role="resident") for i in range(10)]
    for pid, face in zip(ids, faces, strict=True):
        captures = _unit(face + NOISE * rng.standard_normal((3, 128)))
        gallery.replace_person(pid, vault.store_templates(db, pid, captures, model="m"))
    none = cast(Any, None)
    path = FacePath(
        camera="cam",
        door="door",
        reader=None,
        capture=none,
        pipeline=none,
        gallery=gallery,
        transform=vault.transform,
        masker=ZoneMasker("cam", []),
        engine=none,
        tracker=none,
        settings=match_settings(cfg),
        sink=none,
    )
    probe = _unit(faces[4] + NOISE * rng.standard_normal(128))
    stranger = _unit(rng.standard_normal(128))
    assert [m.person_id for m in path._match([_obs(probe)], None, 0.0)] == [ids[4]]
    assert [m.person_id for m in path._match([_obs(stranger)], None, 0.0)] == [None]
    assert [m.person_id for m in path._match([_obs(probe)], ids[4], 0.0)] == [ids[4]]
    assert [m.person_id for m in path._match([_obs(probe)], ids[5], 0.0)] == [None]
