"""Sync one person's face templates between gates of the same site (consent scope 'compound').

Export (enrolling gate): the person's SITE-SPACE templates (already rotated by the site
transform) are decrypted with the local vault and re-encrypted as one AES-256-GCM ciphertext
under a fresh bundle data key (AAD binds format, person id, model, count and dimension). The
bundle key is wrapped with the ``BUNDLE_WRAP`` subkey of the GATES root
(:class:`gateway.keys.Purpose`), so only a gate of the same site can open it: the office relays
it but cannot. The result is the ``bundle`` of the signed MQTT command ``sync_person``
(:class:`gateway.command_args.TemplateBundle`): no raw embedding, no image, nothing usable at
another site.

Import (receiving gate): the consent reference is checked and recorded (method ``sync``),
the bundle unwrapped and decrypted, the templates stored through THIS gate's vault (wrapped by
its device key, not rotated again) and put into the live gallery. Any check that fails raises
a :class:`SyncError` before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import sqlite_utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.command_args import ConsentRef, SyncPersonArgs, TemplateBundle
from gateway.errors import PrivacyError
from gateway.keys import Purpose, subkey_of
from gateway.privacy import audit, consent, people
from gateway.privacy import person_ref as refs
from gateway.privacy.vault import NONCE_BYTES, GalleryLike, Vault, VaultError
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "ag-template-bundle-v1"
SYNC_METHOD = "sync"
SYNCED_NAME = "synced"
MAX_BUNDLE_TEMPLATES = 20

RunDb = Callable[..., Awaitable[Any]]
"""``await run_db(fn, *args, **kwargs)``: runs ``fn`` on the database thread."""


class SyncError(PrivacyError):
    """A template bundle cannot be exported or imported (consent, key, tampering, shape)."""


def bundle_wrap_key(site_root: bytes) -> bytes:
    """The key wrapping bundle data keys, from the GATES root (``Keys.gates_root``)."""
    if len(site_root) < 16:
        raise SyncError("gates key must be at least 16 bytes")
    return subkey_of(site_root, Purpose.BUNDLE_WRAP)


def bundle_key_id(wrap_key: bytes) -> str:
    """Non-secret fingerprint of a bundle wrap key (tells 'other site' from 'tampered')."""
    return hashlib.sha256(b"ag-bundle-key-id" + wrap_key).hexdigest()[:16]


def _key_aad(person_id: str, key_id: str) -> bytes:
    return f"{BUNDLE_FORMAT}|key|{key_id}|{person_id}".encode()


def _tpl_aad(person_id: str, model: str, count: int, dim: int) -> bytes:
    return "|".join((BUNDLE_FORMAT, person_id, model, str(count), str(dim))).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SyncError(f"bundle field {field} is not valid base64") from exc


def _person_model(db: sqlite_utils.Database, person_id: str) -> str:
    models = [
        str(r[0])
        for r in db.execute(
            "SELECT DISTINCT model FROM templates WHERE person_id = ? ORDER BY model", [person_id]
        ).fetchall()
    ]
    if not models:
        raise SyncError(f"person {person_id}: no face templates on this gate to export")
    if len(models) > 1:
        raise SyncError(
            f"person {person_id}: templates of several models ({', '.join(models)}); re-enrol"
        )
    return models[0]


def _require_compound(
    db: sqlite_utils.Database, person_id: str, *, grace_days: float, now: float
) -> consent.ConsentRecord:
    st = consent.face_status(db, person_id, grace_days=grace_days, now=now)
    if not st.allowed or st.consent is None:
        raise SyncError(f"person {person_id}: export refused: {st.reason}")
    if st.consent.scope != "compound":
        raise SyncError(
            f"person {person_id}: export refused: consent scope is {st.consent.scope!r}; "
            "only scope 'compound' allows syncing templates to other gates"
        )
    return st.consent


def _seal(
    person_id: str, site: np.ndarray, model: str, dim: int, site_key: bytes
) -> TemplateBundle:
    """Encrypt ``site`` (the person's site-space templates) under a fresh data key wrapped
    by the bundle key derived from ``site_key``."""
    wrap_key = bundle_wrap_key(site_key)
    key_id = bundle_key_id(wrap_key)
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    count = len(site)
    ciphertext = AESGCM(data_key).encrypt(
        nonce,
        np.ascontiguousarray(site, dtype="<f4").tobytes(),
        _tpl_aad(person_id, model, count, dim),
    )
    key_nonce = os.urandom(NONCE_BYTES)
    wrapped = key_nonce + AESGCM(wrap_key).encrypt(key_nonce, data_key, _key_aad(person_id, key_id))
    del data_key
    return TemplateBundle(
        key_id=key_id,
        wrapped_key_b64=_b64(wrapped),
        nonce_b64=_b64(nonce),
        ciphertext_b64=_b64(ciphertext),
        model=model,
        count=count,
    )


def consent_ref(db: sqlite_utils.Database, person_id: str, seal_key: bytes) -> dict[str, Any]:
    """The person's current consent as a :class:`ConsentRef` dict (for ``sync_person``), the
    guardian sealed under ``seal_key`` (the SITE root; the empty id when there is none)."""
    rec = consent.latest(db, person_id)
    if rec is None or rec.status != "granted":
        raise SyncError(f"person {person_id}: no granted consent on record")
    return ConsentRef.model_validate(
        {
            "scope": rec.scope,
            "notice_version": rec.notice_version,
            "notice_sha256": rec.notice_sha256,
            "granted_at": dt.datetime.fromtimestamp(rec.created_at, dt.UTC),
            "guardian_ref": refs.seal(seal_key, rec.guardian_id, role="guardian"),
        }
    ).model_dump(mode="json")


def export_sync_args(
    db: sqlite_utils.Database,
    vault: Vault,
    person_id: str,
    site_key: bytes,
    *,
    seal_key: bytes,
    actor: str = "system",
    grace_days: float = 30,
    now: float | None = None,
) -> dict[str, Any]:
    """The full ``args`` of a ``sync_person`` command (:class:`SyncPersonArgs`, JSON-ready):
    the sealed person, the consent and the person's encrypted template bundle. Audited.

    ``site_key`` is the GATES root key (:attr:`gateway.keys.Keys.gates_root`), ``seal_key``
    the SITE root (:attr:`gateway.keys.Keys.site`) the person and guardian refs are sealed
    under (:mod:`gateway.privacy.person_ref`): no id travels in clear.
    Refused (:class:`SyncError`) unless the current consent is granted with scope 'compound'.
    """
    now = time.time() if now is None else now
    _require_compound(db, person_id, grace_days=grace_days, now=now)
    model = _person_model(db, person_id)
    site = vault.load_person(db, person_id)
    count = len(site)
    if not 1 <= count <= MAX_BUNDLE_TEMPLATES:
        raise SyncError(
            f"person {person_id}: {count} templates; a bundle holds 1..{MAX_BUNDLE_TEMPLATES}"
        )
    bundle = _seal(person_id, site, model, vault.dim, site_key)
    del site
    audit.append(
        db,
        actor,
        "template.export",
        person_id,
        {"count": count, "model": model, "key_id": bundle.key_id, "format": BUNDLE_FORMAT},
        now=now,
    )
    log.info("person %s: %d templates exported as a sync bundle", person_id, count)
    args = SyncPersonArgs.model_validate(
        {
            "person_ref": refs.seal(seal_key, person_id),
            "consent": consent_ref(db, person_id, seal_key),
            "bundle": bundle.model_dump(),
        }
    )
    return args.model_dump(mode="json")


def open_bundle(person_id: str, bundle: TemplateBundle, site_key: bytes, *, dim: int) -> np.ndarray:
    """Unwrap and decrypt a bundle: ``count`` x ``dim`` site-space templates, or SyncError."""
    if bundle.format != BUNDLE_FORMAT:
        raise SyncError(f"bundle format {bundle.format!r} is not {BUNDLE_FORMAT!r}")
    wrap_key = bundle_wrap_key(site_key)
    key_id = bundle_key_id(wrap_key)
    if bundle.key_id != key_id:
        raise SyncError(
            f"person {person_id}: bundle was wrapped for site key {bundle.key_id}, this "
            f"gate's is {key_id} (another site, or a gates key not rotated here yet?)"
        )
    wrapped = _unb64(bundle.wrapped_key_b64, "wrapped_key_b64")
    nonce = _unb64(bundle.nonce_b64, "nonce_b64")
    ciphertext = _unb64(bundle.ciphertext_b64, "ciphertext_b64")
    if len(nonce) != NONCE_BYTES or len(wrapped) <= NONCE_BYTES:
        raise SyncError("bundle nonce or wrapped key has the wrong length")
    try:
        data_key = AESGCM(wrap_key).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _key_aad(person_id, key_id)
        )
    except InvalidTag as exc:
        raise SyncError(
            f"person {person_id}: bundle key does not unwrap (tampered, or for another person)"
        ) from exc
    try:
        plain = AESGCM(data_key).decrypt(
            nonce, ciphertext, _tpl_aad(person_id, bundle.model, bundle.count, dim)
        )
    except InvalidTag as exc:
        raise SyncError(
            f"person {person_id}: bundle does not decrypt (ciphertext, model or count altered)"
        ) from exc
    finally:
        del data_key
    expected = bundle.count * dim * 4
    if len(plain) != expected:
        raise SyncError(f"bundle holds {len(plain)} bytes, expected {expected} (count x dim)")
    return np.frombuffer(plain, dtype="<f4").astype(np.float32).reshape(bundle.count, dim)


def _check_consent_ref(
    db: sqlite_utils.Database, person_id: str, ref: ConsentRef, guardian: str | None, *, now: float
) -> None:
    if ref.scope != "compound":
        raise SyncError(
            f"person {person_id}: consent scope {ref.scope!r} does not allow syncing templates"
        )
    granted = ref.granted_at.timestamp() if ref.granted_at.tzinfo else None
    if granted is None:
        raise SyncError("consent granted_at must carry a timezone")
    if granted > now + 300:
        raise SyncError(f"person {person_id}: consent granted_at is in the future")
    rec = consent.latest(db, person_id)
    if rec is not None and rec.status != "granted" and rec.created_at >= granted:
        raise SyncError(
            f"person {person_id}: consent was {rec.status} at this gate after the consent "
            "the bundle carries; not synced"
        )
    person = people.find_person(db, person_id)
    minor = person.minor_at(now) if person is not None else guardian is not None
    if minor:
        if not people.is_adult_on_record(db, guardian, now):
            raise SyncError(
                f"person {person_id}: refused: {people.GUARDIAN_RULE}; guardian "
                f"{guardian!r} is not an adult person on record at this gate"
            )
        if person is not None and person.guardian_id not in {None, guardian}:
            raise SyncError(
                f"person {person_id}: refused: {people.GUARDIAN_RULE}; the consent names "
                "another guardian than the one on record"
            )
    elif guardian is not None:
        raise SyncError(f"person {person_id}: a guardian only gives consent for a minor")


def _ensure_person(
    db: sqlite_utils.Database, person_id: str, guardian: str | None, *, actor: str, now: float
) -> bool:
    """Add a bare person record (no personal data) when missing; True when added."""
    if people.find_person(db, person_id) is not None:
        return False
    minor = guardian is not None
    db.execute(
        "INSERT INTO people (id, display_name, unit, role, access_group, valid_from,"
        " valid_until, is_minor, guardian_id, needs_renotice, last_seen_at, created_at)"
        " VALUES (?, ?, '', 'resident', 'residents', NULL, NULL, ?, ?, 0, NULL, ?)",
        [person_id, SYNCED_NAME, int(minor), guardian, now],
    )
    audit.append(
        db,
        actor,
        "person.add",
        person_id,
        {"role": "resident", "is_minor": minor, "guardian_id": guardian, "source": "sync"},
        now=now,
    )
    return True


def _record_consent(
    db: sqlite_utils.Database,
    person_id: str,
    ref: ConsentRef,
    guardian: str | None,
    *,
    actor: str,
    now: float,
) -> int | None:
    """Record the synced consent (method 'sync'); None when the same one is already current."""
    rec = consent.latest(db, person_id)
    if (
        rec is not None
        and rec.status == "granted"
        and rec.scope == ref.scope
        and rec.notice_version == ref.notice_version
        and rec.notice_sha256 == ref.notice_sha256
        and rec.guardian_id == guardian
    ):
        return None
    cur = db.execute(
        "INSERT INTO consents (person_id, purpose, status, notice_version, notice_sha256,"
        " method, recorded_by, scope, guardian_id, created_at)"
        " VALUES (?, 'face_processing', 'granted', ?, ?, ?, ?, ?, ?, ?)",
        [
            person_id,
            ref.notice_version,
            ref.notice_sha256,
            SYNC_METHOD,
            actor,
            ref.scope,
            guardian,
            now,
        ],
    )
    cid = int(cur.lastrowid or 0)
    db.execute("UPDATE people SET needs_renotice = 0 WHERE id = ?", [person_id])
    audit.append(
        db,
        actor,
        "consent.granted",
        person_id,
        {
            "consent_id": cid,
            "notice_version": ref.notice_version,
            "method": SYNC_METHOD,
            "scope": ref.scope,
            "guardian_id": guardian,
            "granted_at": ref.granted_at.isoformat(),
        },
        now=now,
    )
    return cid


def import_bundle(
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    args: SyncPersonArgs,
    site_key: bytes,
    *,
    seal_key: bytes,
    actor: str,
    grace_days: float = 30,
    now: float | None = None,
) -> dict[str, Any]:
    """Install a synced person's templates on this gate; ``{"templates", ...}`` (no id).

    ``site_key`` is the GATES root key, ``seal_key`` the SITE root that opens the sealed
    person and guardian refs. Checks (refs, consent, key, integrity, shape) all run
    before anything is written; the writes (person, consent, templates, audit) are one
    transaction. Importing the same bundle again replaces the templates (one set).
    """
    now = time.time() if now is None else now
    try:
        pid = refs.open_ref(seal_key, args.person_ref)
        guardian = refs.open_ref(seal_key, args.consent.guardian_ref, role="guardian")
    except refs.PersonRefError as exc:
        raise SyncError(f"sync_person: {exc}") from exc
    if pid is None:
        raise SyncError("sync_person: person_ref seals no person")
    _check_consent_ref(db, pid, args.consent, guardian, now=now)
    templates = open_bundle(pid, args.bundle, site_key, dim=vault.dim)
    if not np.all(np.isfinite(templates)) or not np.allclose(
        np.linalg.norm(templates, axis=1), 1.0, atol=1e-3
    ):
        raise SyncError(f"person {pid}: bundle templates are not unit vectors")
    try:
        with transaction(db):
            added = _ensure_person(db, pid, guardian, actor=actor, now=now)
            cid = _record_consent(db, pid, args.consent, guardian, actor=actor, now=now)
            site = vault.store_site_templates(db, pid, templates, model=args.bundle.model)
            audit.append(
                db,
                actor,
                "template.create",
                pid,
                {
                    "count": len(site),
                    "model": args.bundle.model,
                    "source": "sync",
                    "key_id": args.bundle.key_id,
                },
                now=now,
            )
    except VaultError as exc:
        raise SyncError(f"person {pid}: {exc}") from exc
    status = consent.face_status(db, pid, grace_days=grace_days, now=now)
    if status.allowed:
        gallery.replace_person(pid, site)
    else:
        log.warning("person %s synced but not matched yet: %s", pid, status.reason)
    log.info("person %s: %d templates synced from another gate", pid, len(site))
    return {
        "templates": len(site),
        "person_added": added,
        "consent_recorded": cid is not None,
        "active": status.allowed,
    }


async def handle_sync_person(
    args: SyncPersonArgs,
    *,
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    site_key: bytes,
    seal_key: bytes,
    run_db: RunDb,
    actor: str = "mqtt:sync_person",
    grace_days: float = 30,
) -> dict[str, Any]:
    """The ``sync_person`` command handler: :func:`import_bundle` on the database thread."""
    if not isinstance(args, SyncPersonArgs):
        raise SyncError("sync_person: arguments are not SyncPersonArgs")
    result: dict[str, Any] = await run_db(
        import_bundle,
        db,
        vault,
        gallery,
        args,
        site_key,
        seal_key=seal_key,
        actor=actor,
        grace_days=grace_days,
    )
    return result
