"""The known-pairs linkage attack across two sites (#20 item 4, measured, not solved).

Two sites store the same people under their own orthogonal template transforms. An
attacker who knows which stored templates belong together for some people (140 here)
recovers the map between the two spaces (orthogonal Procrustes) and links the rest. The
orthogonal transform does not resist this; what a rotation (``keys rotate --what
transform``) does give is renewability: pairs learned before it no longer link anything.
"""

from __future__ import annotations

import logging
import secrets

import numpy as np

from gateway.privacy.vault import TEMPLATE_DIM, SiteTransform

log = logging.getLogger(__name__)

PEOPLE = 300
KNOWN = 140
NOISE = 0.04  # per dimension: two captures of a face at cosine ~ 0.9


def _captures(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    base = rng.standard_normal((PEOPLE, TEMPLATE_DIM))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    out = []
    for _ in range(2):
        x = base + NOISE * rng.standard_normal(base.shape)
        out.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return out[0], out[1]


def _procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal R minimising ||a R - b||."""
    u, _, vt = np.linalg.svd(a.T @ b)
    return np.asarray(u @ vt)


def _linked(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> float:
    """Share of people whose site-A template, mapped by r, is nearest their site-B one."""
    scores = (a @ r) @ b.T
    return float(np.mean(np.argmax(scores, axis=1) == np.arange(len(a))))


def test_known_pairs_link_the_rest_until_the_transform_is_rotated() -> None:
    rng = np.random.default_rng(2474)
    x1, x2 = _captures(rng)
    site_a = SiteTransform(secrets.token_bytes(32)).apply(x1).astype(np.float64)
    site_b = SiteTransform(secrets.token_bytes(32)).apply(x2).astype(np.float64)
    r = _procrustes(site_a[:KNOWN], site_b[:KNOWN])
    rest_a, rest_b = site_a[KNOWN:], site_b[KNOWN:]

    linked = _linked(rest_a, rest_b, r)
    chance = _linked(rest_a, rest_b, np.eye(TEMPLATE_DIM))
    rotated_b = SiteTransform(secrets.token_bytes(32)).apply(x2).astype(np.float64)[KNOWN:]
    after_rotation = _linked(rest_a, rotated_b, r)
    log.warning(
        "linkage attack, %d known pairs: %.1f %% of %d others linked (no pairs: %.1f %%; "
        "after site B rotates its transform: %.1f %%)",
        KNOWN,
        100 * linked,
        PEOPLE - KNOWN,
        100 * chance,
        100 * after_rotation,
    )
    assert linked > 0.95  # the orthogonal transform is linkable: what item 4 must change
    assert chance < 0.05
    assert after_rotation < 0.05  # renewability: pairs learned before a rotation are useless
