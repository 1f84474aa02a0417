"""Key rotation: the one operation the CLI (``gateway keys rotate``) and, later, MQTT and the
web console call.

``transform``: a new gates key (``privacy.gates_key``): every stored template is moved to the
new template transform (and its bundle-wrap and fan-out keys) in one transaction, without
re-enrolment; the match scores stay the same. The other gates of the site adopt the same new
key (``--key FILE``) so bundles and fan-outs keep working between them.

The new key is written beside the old one (``<file>.new``, 0600) before the transaction and
moved over it once the transaction has committed; the WAL is then checkpointed and truncated,
so neither the database, its WAL nor the key file keeps the old key or data encrypted under
it. Audited as ``keys.rotate`` (key fingerprints only, never key material). The daemon must
be restarted afterwards (it holds the old keys in memory).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import sqlite_utils

from gateway.config.base import SecretRef
from gateway.errors import GatewayError
from gateway.keys import MIN_KEY_BYTES, Keys
from gateway.privacy import audit
from gateway.privacy.scrub import complete_pending
from gateway.privacy.vault import Vault, rekey_templates
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

ROTATE_ACTION = "keys.rotate"
NEW_KEY_BYTES = 32
SCRUB_WAIT_S = 2.0


class RotationError(GatewayError):
    """A key cannot be rotated (nothing changed)."""


@dataclass(frozen=True)
class Rotation:
    """What a rotation did (no key material)."""

    what: str
    people: int
    templates: int
    old_key_id: str
    new_key_id: str
    scrubbed: bool


def new_key_text() -> bytes:
    """A fresh random key as the 64 hex characters a key file holds (the key's bytes)."""
    return secrets.token_hex(NEW_KEY_BYTES).encode("ascii")


def stage_key_file(target: Path, key: bytes) -> Path:
    """Write ``key`` to ``<target>.new`` (0600, synced); the caller moves it over ``target``
    with :func:`commit_key_file` once the database has committed."""
    staged = target.with_name(target.name + ".new")
    staged.unlink(missing_ok=True)  # a left-over from an interrupted rotation
    fd = os.open(staged, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return staged


def commit_key_file(staged: Path, target: Path) -> None:
    """Atomically replace ``target`` with ``staged`` and sync the directory."""
    staged.replace(target)
    dfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _scrub(db: sqlite_utils.Database) -> bool:
    done = complete_pending(db.conn, SCRUB_WAIT_S)
    if not done:
        log.warning(
            "key rotation: the WAL is still in use; the old pages leave it at the next scrub"
        )
    return done


def rotate_transform(
    db: sqlite_utils.Database,
    keys: Keys,
    gates_key: SecretRef | None,
    *,
    actor: str,
    new_key: bytes | None = None,
    clock: Callable[[], float] = time.time,
) -> Rotation:
    """Renew the gates key (template transform, bundle wrap, fan-out MAC) and move every
    template to it in one transaction. ``new_key``: the key another gate of the site rotated
    to (default: a fresh random one)."""
    if gates_key is None or gates_key.file is None:
        raise RotationError(
            "privacy.gates_key must name a file (the gateway writes the new key there; a "
            "systemd credential cannot be rewritten)"
        )
    key = new_key_text() if new_key is None else new_key
    if len(key) < MIN_KEY_BYTES:
        raise RotationError(f"a gates key needs at least {MIN_KEY_BYTES} bytes")
    if key == keys.gates_root:
        raise RotationError("this gate already uses that gates key")
    old = Vault.from_keys(keys)
    new = Vault.from_keys(replace(keys, gates=key), clock=clock)
    target = gates_key.file
    staged = stage_key_file(target, key)
    try:
        with transaction(db):
            people, templates = rekey_templates(db, old, new)
            details = {
                "what": "transform",
                "people": people,
                "template_count": templates,
                "old_key_id": old.site.fingerprint,
                "new_key_id": new.site.fingerprint,
            }
            audit.append(db, actor, ROTATE_ACTION, "transform", details, now=clock())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    commit_key_file(staged, target)
    log.info("gates key rotated: %d people, %d templates re-transformed", people, templates)
    return Rotation(
        "transform", people, templates, old.site.fingerprint, new.site.fingerprint, _scrub(db)
    )
