"""Face templates at rest: AES-256-GCM under per-person data keys wrapped by a device key.

* Each enrolled person has one random 256-bit data key, stored only wrapped (AES-GCM under
  the device key, AAD = person id + key id) in ``face_keys``. Templates are AES-GCM
  ciphertexts under that data key (AAD = version, site fingerprint, person id, model).
* Deleting the ``face_keys`` row is the erase (crypto-erase); ``templates`` rows cascade.
  ``PRAGMA secure_delete`` (on in :func:`gateway.store.database.connect`) zeroes the freed bytes and
  :mod:`gateway.privacy.scrub` checkpoints and truncates the WAL so no file keeps them.
* The device key comes from the configured provider (:mod:`gateway.keys`): a 0600 file, a
  systemd credential, or sealed to the board's TPM 2.0 (:mod:`gateway.tpm`) and unsealed into
  memory at start. A :class:`KeyProvider` that wraps/unwraps inside the TPM, never revealing
  the key, would slot in below.
* Templates are bound to the site: before encryption every embedding is multiplied by a
  secret orthogonal matrix derived from the gates key (``Purpose.TEMPLATE_TRANSFORM``, which
  the office never holds; HKDF -> seeded Gaussian -> QR). :func:`retransform` renews it. The
  rotation preserves cosine similarity, so matching works inside one site, while the stored
  vectors of the same face at two sites (different site keys) are unrelated. The gallery holds
  site-space templates, so probes must go through :meth:`Vault.transform` before matching.
* ``[privacy] template_protection = "cancelable"`` replaces the rotation by the non-invertible
  :class:`gateway.face.protection.CancelableTransform` (stored: sign bits of a keyed
  projection): sites are then unlinkable by a fitted map, but a new key means re-enrolment
  (:func:`rekey_templates` refuses).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import sqlite_utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import PrivacyError
from gateway.face.protection import (
    CancelableTransform,
    Mode,
    ProtectionError,
    TemplateProtection,
    orthonormalise,
)
from gateway.keys import Keys, Purpose, subkey_of
from gateway.privacy import protection_record
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
TEMPLATE_DIM = 128
_FORMAT = b"ag-template-v1"

F32 = npt.NDArray[np.float32]


class VaultError(PrivacyError):
    """A key is missing, unsafe or wrong, or a template cannot be decrypted."""


class GalleryLike(Protocol):
    """The part of :class:`gateway.face.gallery.Gallery` the privacy code uses."""

    def replace_person(self, person_id: str, templates: np.ndarray) -> None: ...

    def remove_person(self, person_id: str) -> int: ...


class NullGallery:
    """No live gallery in this process (the CLI): the daemon loads the gallery at
    start/reload and follows database changes."""

    def replace_person(self, person_id: str, templates: np.ndarray) -> None:
        """Nothing to update offline."""

    def remove_person(self, person_id: str) -> int:
        """Nothing to remove offline."""
        return 0


@runtime_checkable
class KeyProvider(Protocol):
    """Holds the device key and wraps/unwraps per-person data keys with it.

    A TPM implementation keeps the device key sealed in the TPM (e.g. an AES key object
    under the storage root key, or ``tpm2_encryptdecrypt``) and implements ``wrap``/``unwrap``
    there; nothing else changes. ``key_id`` names the key (stored next to each wrapped key)
    so a rotated device key is detected with a clear error.
    """

    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...


def _root_key(raw: bytes, where: str) -> bytes:
    """Root key material exactly as :class:`gateway.config.base.SecretRef` reads it (>= 32 B)."""
    from gateway.config.base import secret_bytes

    key = secret_bytes(raw)
    if len(key) < KEY_BYTES:
        raise VaultError(f"{where}: a key needs at least {KEY_BYTES} bytes, got {len(key)}")
    return key


def wrap_key_from_root(device_root: bytes) -> bytes:
    """The template-wrapping subkey of the device root key (``Purpose.TEMPLATE_WRAP``)."""
    return subkey_of(device_root, Purpose.TEMPLATE_WRAP)


class StaticKeyProvider:
    """A device key held in memory; base of the file and credential providers."""

    def __init__(self, key: bytes) -> None:
        """Wrap with ``key`` (32 bytes)."""
        if len(key) != KEY_BYTES:
            raise VaultError("device key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key_id = hashlib.sha256(b"ag-device-key-id" + key).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        """Non-secret fingerprint of the device key."""
        return self._key_id

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        """Encrypt ``data_key`` under the device key: nonce || ciphertext+tag."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Decrypt a wrapped data key; :class:`VaultError` if the device key is wrong."""
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise VaultError("data key does not unwrap: wrong device key or tampered row") from exc


def read_secret_file(path: Path) -> bytes:
    """Read a 32-byte key from a file that only its owner can read (refuse group/world bits)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise VaultError(f"key file {path}: {exc.strerror}") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise VaultError(
            f"key file {path} is readable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it"
        )
    return _root_key(path.read_bytes(), f"key file {path}")


class FileKeyProvider(StaticKeyProvider):
    """Device root key from a 0600 file; wraps with its ``template-wrap`` subkey."""

    def __init__(self, path: Path) -> None:
        """Load the root key from ``path``; refuse a group/world-accessible file."""
        super().__init__(wrap_key_from_root(read_secret_file(path)))
        self.path = path


class CredentialKeyProvider(StaticKeyProvider):
    """Device root key from a systemd credential ``$CREDENTIALS_DIRECTORY/<name>``."""

    def __init__(self, name: str = "device-key", directory: Path | None = None) -> None:
        """Load credential ``name``; :class:`VaultError` if no credentials directory is set."""
        base = directory or _credentials_dir()
        if base is None:
            raise VaultError(
                f"credential {name!r}: $CREDENTIALS_DIRECTORY is not set "
                "(add LoadCredential= to the unit)"
            )
        path = base / name
        if not path.exists():
            raise VaultError(f"credential {name!r} not found in {base}")
        # systemd credential files are 0400 and owned by the service user
        super().__init__(wrap_key_from_root(_root_key(path.read_bytes(), f"credential {name!r}")))


def _credentials_dir() -> Path | None:
    env = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(env) if env else None


def generate_key_file(path: Path) -> None:
    """Create a new random 32-byte key as 64 hex characters in a 0600 file (never overwrite)."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(KEY_BYTES) + "\n")


def load_key(explicit: Path | None, credential: str) -> bytes:
    """Root key bytes from ``explicit`` file, else ``$CREDENTIALS_DIRECTORY/<credential>``."""
    if explicit is not None:
        return read_secret_file(explicit)
    base = _credentials_dir()
    if base is None or not (base / credential).exists():
        raise VaultError(
            f"no {credential}: pass --{credential} FILE or provide the systemd credential "
            f"{credential!r}"
        )
    return _root_key((base / credential).read_bytes(), f"credential {credential!r}")


class SiteTransform:
    """Secret orthogonal rotation of embeddings, derived from the site key (cosine-preserving)."""

    mode: Mode = "orthogonal"
    score_scale = 1.0

    def __init__(self, site_key: bytes, dim: int = TEMPLATE_DIM) -> None:
        """Derive the ``dim`` x ``dim`` rotation and a public site fingerprint from ``site_key``."""
        if len(site_key) < 16:
            raise VaultError("site key must be at least 16 bytes")
        seed = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"ag-template-rotation-v1|dim=%d" % dim,
        ).derive(site_key)
        rng = np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))
        self.matrix: F32 = orthonormalise(rng.standard_normal((dim, dim))).astype(np.float32)
        self.dim = self.in_dim = self.out_dim = dim
        self.fingerprint = hmac.new(site_key, b"ag-site-fingerprint", "sha256").hexdigest()[:16]

    def apply(self, embeddings: np.ndarray) -> F32:
        """Rotate one (dim,) or many (n, dim) embeddings into this site's space."""
        arr = np.asarray(embeddings, dtype=np.float32)
        if arr.shape[-1] != self.dim:
            raise VaultError(f"embedding has {arr.shape[-1]} values, expected {self.dim}")
        out: F32 = (arr @ self.matrix.T).astype(np.float32)
        return out

    def enrol(self, embeddings: np.ndarray) -> F32:
        """Stored templates: the rotated embeddings."""
        return self.apply(embeddings)

    def probe(self, embeddings: np.ndarray) -> F32:
        """Search vectors: rotated like the stored templates (exact cosine scores)."""
        return self.apply(embeddings)

    def invert(self, templates: np.ndarray) -> F32:
        """The embeddings :meth:`apply` rotated into ``templates`` (the roster office's)."""
        return (np.asarray(templates, dtype=np.float32) @ self.matrix).astype(np.float32)


def protection_of(site_key: bytes, mode: Mode, dim: int = TEMPLATE_DIM) -> TemplateProtection:
    """The template protection ``mode`` keyed by ``site_key`` (the template-transform subkey)."""
    if mode == "orthogonal":
        return SiteTransform(site_key, dim)
    try:
        return CancelableTransform(site_key, dim)
    except ProtectionError as exc:
        raise VaultError(str(exc)) from exc


class Vault:
    """Encrypts, stores, loads and crypto-erases templates for one site and device."""

    def __init__(
        self,
        keys: KeyProvider,
        site_key: bytes,
        *,
        dim: int = TEMPLATE_DIM,
        clock: Callable[[], float] = time.time,
        protection: Mode = "orthogonal",
    ) -> None:
        """Use ``keys`` to wrap data keys and ``site_key`` to key the template ``protection``
        (``dim`` is the raw embedding size; :attr:`dim` the stored template size)."""
        self.keys = keys
        self.mode: Mode = protection
        self.site = protection_of(site_key, protection, dim)
        self.dim = self.site.out_dim
        self._clock = clock

    @classmethod
    def from_root_keys(
        cls, device_root: bytes, site_root: bytes, *, protection: Mode = "orthogonal"
    ) -> Vault:
        """A vault of a gate without its own gates key (the site key stands in)."""
        return cls.from_keys(Keys(device=device_root, site=site_root), protection=protection)

    @classmethod
    def from_keys(
        cls,
        keys: Keys,
        *,
        clock: Callable[[], float] = time.time,
        protection: Mode = "orthogonal",
    ) -> Vault:
        """The vault the daemon uses: subkeys derived exactly as :class:`gateway.keys.Keys`."""
        return cls(
            StaticKeyProvider(keys.subkey(Purpose.TEMPLATE_WRAP)),
            keys.subkey(Purpose.TEMPLATE_TRANSFORM),
            clock=clock,
            protection=protection,
        )

    def transform(self, embeddings: np.ndarray) -> F32:
        """Map raw probe embeddings into the space the gallery's stored templates are matched
        in (the gallery scores them by dot product; see ``site.score_scale``)."""
        try:
            return self.site.probe(embeddings)
        except ProtectionError as exc:
            raise VaultError(str(exc)) from exc

    def _key_aad(self, person_id: str) -> bytes:
        return b"|".join((_FORMAT, b"key", self.keys.key_id.encode(), person_id.encode()))

    def _tpl_aad(self, person_id: str, model: str) -> bytes:
        return b"|".join(
            (_FORMAT, self.site.fingerprint.encode(), person_id.encode(), model.encode())
        )

    def store_templates(
        self,
        db: sqlite_utils.Database,
        person_id: str,
        embeddings: np.ndarray,
        *,
        model: str,
        qualities: list[float] | None = None,
    ) -> F32:
        """Replace the person's templates with ``embeddings`` (raw, n x dim); return site-space.

        Any previous face data is crypto-erased first (a new data key each enrolment).
        Runs in one transaction; the caller audits.
        """
        raw = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if raw.shape[1] != self.site.in_dim or raw.shape[0] == 0:
            raise VaultError(f"templates must be n x {self.site.in_dim}, got {raw.shape}")
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        if not np.all(np.isfinite(raw)) or np.any(norms == 0):
            raise VaultError("templates contain zero or non-finite vectors")
        site = self.site.enrol(raw / norms)
        return self.store_site_templates(db, person_id, site, model=model, qualities=qualities)

    def store_site_templates(
        self,
        db: sqlite_utils.Database,
        person_id: str,
        templates: np.ndarray,
        *,
        model: str,
        qualities: list[float] | None = None,
    ) -> F32:
        """Replace the person's templates with SITE-SPACE ``templates`` (n x dim, unit norm).

        For templates that are already rotated by this site's transform (e.g. a sync bundle
        from another gate of the same site): they are stored as given, never rotated again.
        Any previous face data is crypto-erased first (a new data key). One transaction; the
        caller audits.
        """
        site = np.atleast_2d(np.asarray(templates, dtype=np.float32))
        if site.ndim != 2 or site.shape[1] != self.dim or site.shape[0] == 0:
            raise VaultError(f"templates must be n x {self.dim}, got {site.shape}")
        if not np.all(np.isfinite(site)):
            raise VaultError("templates contain non-finite values")
        if not np.allclose(np.linalg.norm(site, axis=1), 1.0, atol=1e-3):
            raise VaultError("site-space templates must be unit vectors")
        if qualities is not None and len(qualities) != site.shape[0]:
            raise VaultError(f"{len(qualities)} qualities for {site.shape[0]} templates")
        data_key = AESGCM.generate_key(bit_length=256)
        aead = AESGCM(data_key)
        now = self._clock()
        aad = self._tpl_aad(person_id, model)
        conn = db.conn
        with transaction(db):
            if problem := protection_record.mismatch(conn, self.mode):
                raise VaultError(problem)  # never a gallery of two modes
            protection_record.record(conn, self.mode)
            if conn.execute("DELETE FROM face_keys WHERE person_id = ?", (person_id,)).rowcount:
                from gateway.privacy.scrub import mark_pending

                mark_pending(db, now)  # the old key's pages: scrubbed by the next pass
            conn.execute(
                "INSERT INTO face_keys (person_id, wrapped_key, key_id, created_at)"
                " VALUES (?, ?, ?, ?)",
                (
                    person_id,
                    self.keys.wrap(data_key, self._key_aad(person_id)),
                    self.keys.key_id,
                    now,
                ),
            )
            for i, vec in enumerate(site):
                nonce = os.urandom(NONCE_BYTES)
                conn.execute(
                    "INSERT INTO templates"
                    " (person_id, nonce, ciphertext, model, quality, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        person_id,
                        nonce,
                        aead.encrypt(nonce, vec.tobytes(), aad),
                        model,
                        None if qualities is None else float(qualities[i]),
                        now,
                    ),
                )
        del data_key, aead
        return site

    def load_person(self, db: sqlite_utils.Database, person_id: str) -> F32:
        """Decrypt one person's site-space templates (0 x dim when none)."""
        row = db.conn.execute(
            "SELECT wrapped_key, key_id FROM face_keys WHERE person_id = ?", (person_id,)
        ).fetchone()
        if row is None:
            return np.zeros((0, self.dim), dtype=np.float32)
        wrapped, key_id = row
        if key_id != self.keys.key_id:
            raise VaultError(
                f"person {person_id}: templates were wrapped by device key {key_id}, "
                f"this device has {self.keys.key_id}"
            )
        aead = AESGCM(self.keys.unwrap(bytes(wrapped), self._key_aad(person_id)))
        out = []
        for nonce, ct, model in db.conn.execute(
            "SELECT nonce, ciphertext, model FROM templates WHERE person_id = ? ORDER BY id",
            (person_id,),
        ):
            try:
                pt = aead.decrypt(bytes(nonce), bytes(ct), self._tpl_aad(person_id, model))
            except InvalidTag as exc:
                raise VaultError(
                    f"person {person_id}: template does not decrypt (other site key or tampered)"
                ) from exc
            out.append(np.frombuffer(pt, dtype=np.float32))
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(out)

    def has_face_data(self, db: sqlite_utils.Database, person_id: str) -> bool:
        """Whether ``person_id`` has a wrapped data key (face data) on this device."""
        row = db.conn.execute("SELECT 1 FROM face_keys WHERE person_id = ?", (person_id,))
        return row.fetchone() is not None

    def enrolled_people(self, db: sqlite_utils.Database) -> list[str]:
        """Ids of everyone with a wrapped data key (i.e. face data) on this device."""
        return [r[0] for r in db.conn.execute("SELECT person_id FROM face_keys ORDER BY person_id")]

    def erase_person(
        self, db: sqlite_utils.Database, person_id: str, *, vacuum: bool = True
    ) -> int:
        """Crypto-erase: delete the wrapped key and templates; scrub the WAL; return #templates.

        Inside a transaction (or with ``vacuum=False``) the scrub is only marked pending.
        """
        from gateway.privacy.scrub import mark_pending

        conn = db.conn
        n = int(
            conn.execute(
                "SELECT count(*) FROM templates WHERE person_id = ?", (person_id,)
            ).fetchone()[0]
        )
        conn.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed, not just unlinked
        conn.execute("DELETE FROM templates WHERE person_id = ?", (person_id,))
        conn.execute("DELETE FROM face_keys WHERE person_id = ?", (person_id,))
        mark_pending(db, self._clock())
        if vacuum and not conn.in_transaction:
            from gateway.privacy.scrub import complete_pending

            complete_pending(conn, 0.5)
        return n


def _turn(old: Vault, new: Vault) -> npt.NDArray[np.float64]:
    """The map from ``old``'s stored templates to ``new``'s (identity for the same transform)."""
    if old.site.fingerprint == new.site.fingerprint:
        return np.eye(old.dim)
    if not isinstance(old.site, SiteTransform) or not isinstance(new.site, SiteTransform):
        raise VaultError(
            "cancelable templates cannot be re-transformed (the raw embedding is never kept): "
            "a new template-protection key means re-enrolling every face"
        )
    return old.site.matrix.astype(np.float64) @ new.site.matrix.astype(np.float64).T


def rekey_templates(db: sqlite_utils.Database, old: Vault, new: Vault) -> tuple[int, int]:
    """Move every stored template from ``old``'s keys to ``new``'s, without re-enrolment.

    Each site-space template ``s`` becomes ``s @ M_old @ M_new.T`` (the raw embedding seen
    through the new transform: cosine scores are unchanged) under a fresh per-person data
    key wrapped by ``new``'s device key. The old rows are overwritten in place
    (``secure_delete`` zeroes them) and the WAL scrub is marked pending. One transaction
    (joins the caller's). Returns (people, templates).
    """
    turn = _turn(old, new) if old.enrolled_people(db) else np.eye(old.dim)  # none: any key
    conn = db.conn
    people = templates = 0
    with transaction(db):
        for pid in old.enrolled_people(db):
            rows = conn.execute(
                "SELECT id, model FROM templates WHERE person_id = ? ORDER BY id", (pid,)
            ).fetchall()
            site = old.load_person(db, pid).astype(np.float64) @ turn
            site /= np.linalg.norm(site, axis=1, keepdims=True)
            data_key = AESGCM.generate_key(bit_length=256)
            aead = AESGCM(data_key)
            for (row_id, model), vec in zip(rows, site.astype(np.float32), strict=True):
                nonce = os.urandom(NONCE_BYTES)
                ct = aead.encrypt(nonce, vec.tobytes(), new._tpl_aad(pid, model))
                conn.execute(
                    "UPDATE templates SET nonce = ?, ciphertext = ? WHERE id = ?",
                    (nonce, ct, row_id),
                )
            conn.execute(
                "UPDATE face_keys SET wrapped_key = ?, key_id = ? WHERE person_id = ?",
                (new.keys.wrap(data_key, new._key_aad(pid)), new.keys.key_id, pid),
            )
            del data_key, aead
            people += 1
            templates += len(rows)
        from gateway.privacy.scrub import mark_pending

        mark_pending(db, new._clock())
    return people, templates


def compact(db: sqlite_utils.Database, *, wait_s: float = 0.5) -> bool:
    """Checkpoint and truncate the WAL so erased pages leave no file; True when done.

    Bounded: retries with a zero busy timeout for ``wait_s`` (see
    :mod:`gateway.privacy.scrub`); a reader holding an old snapshot leaves it pending.
    """
    from gateway.privacy.scrub import checkpoint_truncate, mark_pending

    conn = db.conn
    if conn.in_transaction:
        log.warning("compact skipped: a transaction is open; erased pages stay until later")
        return False
    if checkpoint_truncate(conn, wait_s):
        return True
    mark_pending(db, time.time())
    log.warning("compact: WAL checkpoint still busy; erased pages leave the WAL at the next one")
    return False


def load_gallery(
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    *,
    allowed: Callable[[str], bool] | None = None,
) -> dict[str, int]:
    """Load every enrolled person's site-space templates into ``gallery``.

    ``allowed(person_id)`` filters (e.g. :func:`gateway.privacy.consent.face_allowed`); people
    it rejects are not loaded. A person whose templates fail to decrypt is skipped and logged
    (by id only). Returns ``{"loaded": n, "skipped": n, "failed": n}``.
    """
    counts = {"loaded": 0, "skipped": 0, "failed": 0}
    for pid in vault.enrolled_people(db):
        if allowed is not None and not allowed(pid):
            counts["skipped"] += 1
            continue
        try:
            tpl = vault.load_person(db, pid)
        except VaultError as exc:
            log.error("gallery load: person %s skipped: %s", pid, exc)
            counts["failed"] += 1
            continue
        if len(tpl):
            gallery.replace_person(pid, tpl)
            counts["loaded"] += 1
    log.info(
        "gallery loaded: %d people, %d skipped (consent), %d failed to decrypt",
        counts["loaded"],
        counts["skipped"],
        counts["failed"],
    )
    return counts
