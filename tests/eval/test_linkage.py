"""The known-pairs linkage attack (gateway.eval.linkage) against both template protections:
synthetic faces (fast) and real lfw-dev embeddings (needs ../shared and the SFace model)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gateway.eval.linkage import link, predict_scores, procrustes, ridge
from gateway.face.protection import CancelableTransform
from gateway.privacy.vault import SiteTransform
from tests.conftest import SHARED

log = logging.getLogger(__name__)

KEYS = (b"site-A-gates-key-0123456789abcdef", b"site-B-gates-key-0123456789abcdef")
KNOWN = 140


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x, axis=-1, keepdims=True), np.float64)


def _sites(raw_a: np.ndarray, raw_b: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "orthogonal":
        a, b = SiteTransform(KEYS[0]).apply(raw_a), SiteTransform(KEYS[1]).apply(raw_b)
    else:
        a, b = CancelableTransform(KEYS[0]).enrol(raw_a), CancelableTransform(KEYS[1]).enrol(raw_b)
    return a.astype(np.float64), b.astype(np.float64)


def test_procrustes_and_ridge_recover_a_known_map() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((200, 16))
    w = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    np.testing.assert_allclose(procrustes(a, a @ w), w, atol=1e-8)
    np.testing.assert_allclose(ridge(a, a @ w, lam=1e-9), w, atol=1e-6)
    with pytest.raises(ValueError, match="unknown attack"):
        predict_scores("guess", a, a, a, a)


def test_synthetic_faces_orthogonal_linked_cancelable_not() -> None:
    rng = np.random.default_rng(24745)
    base = rng.standard_normal((400, 128))
    raw_a = _unit(base + 0.7 * rng.standard_normal(base.shape))  # two captures, cosine ~0.67
    raw_b = _unit(base + 0.7 * rng.standard_normal(base.shape))
    ortho = link(*_sites(raw_a, raw_b, "orthogonal"), "procrustes", KNOWN)
    cancel = link(*_sites(raw_a, raw_b, "cancelable"), "procrustes", KNOWN)
    assert ortho.success > 0.9  # measured 0.95
    assert cancel.success < 0.35  # measured 0.22: reduced, far from the orthogonal mode


def _lfw_pairs(people: int) -> tuple[np.ndarray, np.ndarray]:
    """First two usable images of the first ``people`` lfw-dev identities that have two."""
    from gateway.eval.embedder import read_image
    from gateway.eval.pipelines import GatewayEmbedder, gateway_model_dir

    root = SHARED / "faces" / "lfw-dev" / "images"
    embedder = GatewayEmbedder.load(gateway_model_dir())
    a, b = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(d.glob("*.jpg"))
        if len(images) < 2:
            continue
        vecs = [embedder.embed(img) for img in map(read_image, images[:2]) if img is not None]
        if len(vecs) == 2 and all(v.vector is not None for v in vecs):
            a.append(vecs[0].vector)
            b.append(vecs[1].vector)
        if len(a) == people:
            break
    return np.stack(a).astype(np.float64), np.stack(b).astype(np.float64)


@pytest.mark.shared
@pytest.mark.models
@pytest.mark.slow
def test_lfw_known_pairs_link_orthogonal_sites_not_cancelable_ones() -> None:
    if not (SHARED / "faces" / "lfw-dev" / "images").is_dir():
        pytest.skip(f"needs ../shared/faces/lfw-dev, absent at {SHARED}")
    raw_a, raw_b = _lfw_pairs(340)  # 140 known, 200 to link (chance 0.5 %)
    attacks = ("procrustes", "ridge", "profile")
    res = {}
    for mode in ("orthogonal", "cancelable"):
        sites = _sites(raw_a, raw_b, mode)
        res[mode] = {att: link(*sites, att, KNOWN, repeats=5).success for att in attacks}
        log.warning("lfw-dev linkage, %s (chance 0.005): %s", mode, res[mode])
    ortho, cancel = res["orthogonal"], res["cancelable"]
    assert ortho["procrustes"] > 0.75  # a fitted rotation links most of the others
    # the cancelable mode cuts every attack to well under half (measured: ~0.26-0.42 of it),
    # but NOT to chance: matching inside a site is what the profile attack needs
    for att in attacks:
        assert cancel[att] < 0.5 * ortho[att], att
