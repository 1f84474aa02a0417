"""Keyed template protection (ISO/IEC 24745): how a raw embedding becomes a stored template.

Two modes, both keyed by the gates key (``Purpose.TEMPLATE_TRANSFORM``), both matched by a
dot product in the gallery:

* ``orthogonal`` (:class:`gateway.privacy.vault.SiteTransform`): a secret rotation. Exact
  scores, and a rotation can be re-keyed in place (``gateway keys rotate --what transform``),
  but it is invertible with the key and *linear*: from a few hundred people known at two
  sites an attacker fits the rotation between the sites (orthogonal Procrustes) and links
  everyone else.
* ``cancelable`` (:class:`CancelableTransform`): a keyed random projection onto a secret
  ``rank``-dimensional subspace, expanded to ``bits`` directions and quantised to their signs
  (BioHashing-like). The stored template is the sign vector (``bits`` values of
  +-1/sqrt(bits)); the probe is the unquantised projection, which is never stored. Their dot
  product estimates ``sqrt(2/pi)`` times the cosine of the projected embeddings
  (:func:`score_scale`); the thresholds take :func:`threshold_scale`. Non-invertible: the
  ``dim - rank`` directions outside the subspace and every magnitude are gone, even for a
  holder of the key. Renewal needs the raw embedding, so a key change means re-enrolment.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Final, Literal, Protocol

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

Mode = Literal["orthogonal", "cancelable"]
MODES: Final = ("orthogonal", "cancelable")

#: defaults chosen on lfw-dev (benchmarks/eval_unlinkability.py): accuracy cost vs linkage
CANCELABLE_RANK: Final = 112
CANCELABLE_BITS: Final = 256


#: Match thresholds (configured as cosines) x this in the cancelable mode: the ratio of the
#: thresholds on lfw-dev, cancelable (rank 112, 256 bits) over orthogonal, at FPIR 0.1 % (1:N)
#: and FMR 1e-4 (1:1): both 0.90, rounded up so the gate is never less strict than calibrated
#: (benchmarks/eval_unlinkability.py reports both on every run). Not sqrt(2/pi), the mean
#: ratio: the sign bits widen the impostor scores.
CANCELABLE_THRESHOLD_SCALE: Final = 0.91


def score_scale(mode: Mode) -> float:
    """Mean match score per unit of cosine similarity under ``mode`` (the estimator's scale)."""
    return 1.0 if mode == "orthogonal" else math.sqrt(2 / math.pi)


def threshold_scale(mode: Mode) -> float:
    """What the configured (cosine) thresholds and margin are multiplied by under ``mode``,
    so the false-positive rate stays where it was calibrated."""
    return 1.0 if mode == "orthogonal" else CANCELABLE_THRESHOLD_SCALE


class ProtectionError(ValueError):
    """An embedding or key does not fit the template protection."""


class TemplateProtection(Protocol):
    """What the vault and the gallery need from a template protection."""

    mode: Mode
    in_dim: int
    out_dim: int
    fingerprint: str
    score_scale: float

    def enrol(self, embeddings: np.ndarray) -> F32:
        """Stored templates (n x out_dim, unit rows) of raw unit embeddings (n x in_dim)."""
        ...

    def probe(self, embeddings: np.ndarray) -> F32:
        """Search vectors (n x out_dim, unit rows) of raw embeddings, matched by dot product."""
        ...


def orthonormalise(a: F64) -> F64:
    """Rows of ``a`` made orthonormal by Gram-Schmidt with re-orthogonalisation (CGS2).

    Equals the Q of a QR with a positive diagonal (a Haar-random rotation for Gaussian ``a``).
    Plain matrix-vector products: ``np.linalg.qr`` (multi-threaded LAPACK) can take over a
    second on a busy 2-core board, this takes milliseconds.
    """
    q = np.zeros_like(a)
    for j in range(a.shape[0]):
        v = a[j].copy()
        for _ in range(2):
            v -= q[:j].T @ (q[:j] @ v)
        q[j] = v / np.linalg.norm(v)
    return q


def _rng(key: bytes, label: bytes) -> np.random.Generator:
    seed = hmac.new(key, label, hashlib.sha256).digest()
    return np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))


def _rows(embeddings: np.ndarray, dim: int) -> F64:
    arr = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ProtectionError(f"embedding has shape {arr.shape}, expected n x {dim}")
    if not np.all(np.isfinite(arr)):
        raise ProtectionError("embedding has non-finite values")
    return arr


def _shaped(out: F32, like: np.ndarray) -> F32:
    """One row back for one (dim,) vector in, as the orthogonal transform does."""
    return out[0] if np.ndim(like) == 1 else out


class CancelableTransform:
    """Keyed rank-reducing random projection + sign quantisation (non-invertible, renewable)."""

    mode: Mode = "cancelable"

    def __init__(
        self,
        key: bytes,
        dim: int = 128,
        *,
        rank: int = CANCELABLE_RANK,
        bits: int = CANCELABLE_BITS,
    ) -> None:
        """Derive the projection from ``key`` (>= 16 bytes): ``bits`` directions inside a
        secret ``rank``-dimensional subspace of the ``dim``-d embedding space."""
        if len(key) < 16:
            raise ProtectionError("template protection key must be at least 16 bytes")
        if not 0 < rank <= dim or bits < rank:
            raise ProtectionError(f"need 0 < rank <= {dim} and bits >= rank, got {rank}, {bits}")
        rng = _rng(key, b"ag-template-cancelable-v1|%d|%d|%d" % (dim, rank, bits))
        basis = orthonormalise(rng.standard_normal((dim, dim)))[:rank]  # secret subspace
        blocks = [
            orthonormalise(rng.standard_normal((rank, rank))) for _ in range(-(-bits // rank))
        ]
        directions = np.concatenate(blocks)[:bits]  # bits x rank, near-isotropic
        self.matrix: F64 = directions @ basis  # bits x dim, rank ``rank``
        self.in_dim, self.out_dim, self.rank = dim, bits, rank
        self.score_scale = score_scale(self.mode)
        tag = b"ag-site-fingerprint|cancelable|%d|%d" % (rank, bits)
        self.fingerprint = hmac.new(key, tag, "sha256").hexdigest()[:16]

    def enrol(self, embeddings: np.ndarray) -> F32:
        """Sign vectors (n x bits, entries +-1/sqrt(bits)): the only form ever stored."""
        proj = _rows(embeddings, self.in_dim) @ self.matrix.T
        signs = np.where(proj >= 0, 1.0, -1.0) / math.sqrt(self.out_dim)
        return _shaped(signs.astype(np.float32), embeddings)

    def probe(self, embeddings: np.ndarray) -> F32:
        """Unit projections (n x bits) of probes: dot with a stored sign vector ~ 0.8 cos."""
        proj = _rows(embeddings, self.in_dim) @ self.matrix.T
        norms = np.linalg.norm(proj, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ProtectionError("embedding is zero inside the protected subspace")
        return _shaped((proj / norms).astype(np.float32), embeddings)
