"""API tokens for a property-management platform: a random token shown once, only its
SHA-256 stored; a role (``operator`` or ``auditor``: a platform never configures the
gate); revocable; each call audited as ``web:token:<name>`` like an account's.

A token is sent as ``Authorization: Bearer <token>`` to ``/api/`` routes only. It needs no
CSRF token: a browser never adds it by itself, so another site cannot make one ride along.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from gateway.privacy import audit
from gateway.store.tx import transaction
from gateway.web.accounts import ACCOUNT_NAME, AccountError, Session

log = logging.getLogger(__name__)

TOKEN_ROLES = ("operator", "auditor")
PREFIX = "gwt_"


@dataclass(frozen=True)
class NewToken:
    """A token just made: its id and the token itself (shown once, never stored)."""

    id: str
    token: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create(db: sqlite_utils.Database, name: str, role: str, *, actor: str) -> NewToken:
    """A new token named ``name`` with ``role``; audited ``web.token.add``."""
    if not ACCOUNT_NAME.match(name):
        raise AccountError("a token name is 1-32 of a-z 0-9 _ . - (starting with a letter/digit)")
    if role not in TOKEN_ROLES:
        raise AccountError(f"a token's role is one of {', '.join(TOKEN_ROLES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    tid = uuid.uuid4().hex
    with transaction(db):
        db.execute(
            "INSERT INTO web_api_tokens (id, token_sha256, name, role, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [tid, _digest(token), name, role, actor, time.time()],
        )
        audit.append(db, actor, "web.token.add", tid, {"name": name, "role": role})
    log.info("web API token %s (%s) created", tid, role)
    return NewToken(tid, token)


def revoke(db: sqlite_utils.Database, token_id: str, *, actor: str) -> bool:
    """Revoke a token (False when unknown or already revoked); audited ``web.token.revoke``."""
    with transaction(db):
        n = db.execute(
            "UPDATE web_api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            [time.time(), token_id],
        ).rowcount
        if n:
            audit.append(db, actor, "web.token.revoke", token_id, {})
    return bool(n)


def listing(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every token's id, name, role, creator and times (never the token)."""
    rows = db.execute(
        "SELECT id, name, role, created_by, created_at, last_used, revoked_at"
        " FROM web_api_tokens ORDER BY created_at"
    ).fetchall()
    keys = ("id", "name", "role", "created_by", "created_at", "last_used", "revoked_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def session_of(db: sqlite_utils.Database, token: str) -> Session | None:
    """The session of a live token (its last use noted when storage allows), or None."""
    if not token.startswith(PREFIX) or len(token) > 128:
        return None
    row = db.execute(
        "SELECT id, name, role FROM web_api_tokens WHERE token_sha256 = ? AND revoked_at IS NULL",
        [_digest(token)],
    ).fetchone()
    if row is None:
        return None
    try:
        with transaction(db):
            db.execute(
                "UPDATE web_api_tokens SET last_used = ? WHERE id = ?", [time.time(), row[0]]
            )
    except sqlite3.Error as exc:  # read-only storage: the token still reads
        log.debug("web API token use not recorded: %s", exc)
    return Session(f"token:{row[1]}", row[2], "")
