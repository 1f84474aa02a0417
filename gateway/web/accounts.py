"""Web console accounts and sessions, in the state database.

Passwords are argon2id hashes (argon2-cffi); an account is locked for a while after too many
failed logins; a session is a random token whose SHA-256 alone is stored, with its own CSRF
token (synchronizer pattern), an absolute lifetime and an idle timeout. Every change is
audited with the actor ``web:<account>`` (or the CLI's actor for ``add-user``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Literal

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.errors import GatewayError
from gateway.privacy import audit
from gateway.store.tx import transaction
from gateway.web.i18n import N_

log = logging.getLogger(__name__)

Role = Literal["admin", "operator", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "operator", "auditor")
ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 256
REFUSED = N_("wrong account name, password or one-time code, or the account is locked for a while")
"""The one answer to every refused login."""

_HASHER = PasswordHasher()  # argon2id, the library's (RFC 9106 low-memory) parameters
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))  # unknown accounts cost the same time


class AccountError(GatewayError):
    """An account cannot be created, or a login is refused."""


@dataclass(frozen=True)
class LoginPolicy:
    """How many failures lock an account, and for how long."""

    max_failures: int = 5
    lockout_s: float = 900.0


@dataclass(frozen=True)
class SessionPolicy:
    """A session's absolute lifetime and idle timeout."""

    lifetime_s: float = 8 * 3600.0
    idle_s: float = 1800.0


@dataclass(frozen=True)
class Session:
    """A logged-in account: who, with what role, and the CSRF token of the session."""

    account: str
    role: Role
    csrf: str


def add_account(
    db: sqlite_utils.Database, name: str, role: str, password: str, *, actor: str
) -> None:
    """Create an account (``web.account.add``, audited; no password in the audit)."""
    if not ACCOUNT_NAME.match(name):
        raise AccountError(
            "an account name is 1-32 of a-z 0-9 _ . - (starting with a letter/digit)"
        )
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    pw_hash = _HASHER.hash(password)
    with transaction(db):
        if db.execute("SELECT 1 FROM web_accounts WHERE name = ?", [name]).fetchone():
            raise AccountError(f"account {name} exists")
        db.execute(
            "INSERT INTO web_accounts (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
            [name, role, pw_hash, time.time()],
        )
        audit.append(db, actor, "web.account.add", name, {"role": role})
    log.info("web console account %s (%s) created", name, role)


@dataclass(frozen=True)
class LoginRecord:
    """What a login checks: the account's hash (a dummy one for an unknown account, so that
    it costs the same time), role, failures and lock."""

    name: str
    role: Role | None
    password_hash: str
    failures: int
    locked_until: float | None


def login_record(db: sqlite_utils.Database, name: str) -> LoginRecord:
    """The account ``name`` as a login checks it (quick: on the database thread)."""
    row = db.execute(
        "SELECT role, password_hash, failures, locked_until FROM web_accounts WHERE name = ?",
        [name],
    ).fetchone()
    if row is None:
        return LoginRecord(name, None, _DUMMY_HASH, 0, None)
    return LoginRecord(name, row[0], row[1], int(row[2]), row[3])


def verify(record: LoginRecord, password: str) -> bool:
    """The argon2 check of ``password`` (slow on purpose: off the database threads)."""
    return _verify(record.password_hash, password[:MAX_PASSWORD])


def finish_login(
    db: sqlite_utils.Database,
    record: LoginRecord,
    ok: bool,
    *,
    policy: LoginPolicy,
    now: float | None = None,
) -> tuple[str, Session]:
    """After :func:`verify`: a new session token and its session, or AccountError (one
    message for an unknown account, a wrong password and a locked account); a failure
    is counted, and locks the account after ``policy.max_failures``. The count and the lock
    are read and written in the database in one transaction, never from ``record`` (read
    before the slow check): parallel failures all count, and a lock set meanwhile holds."""
    now = time.time() if now is None else now
    name = record.name
    if record.role is None:
        raise AccountError(REFUSED)
    if not ok:
        _failed(db, name, policy, now)
        raise AccountError(REFUSED)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with transaction(db):
        row = db.execute(
            "SELECT role FROM web_accounts WHERE name = ?"
            " AND (locked_until IS NULL OR locked_until <= ?)",
            [name, now],
        ).fetchone()
        if row is None:  # removed, or locked since its record was read: not told apart
            raise AccountError(REFUSED)
        db.execute(
            "UPDATE web_accounts SET failures = 0, locked_until = NULL WHERE name = ?", [name]
        )
        db.execute(
            "INSERT INTO web_sessions (token_sha256, account, csrf, created_at, last_seen)"
            " VALUES (?, ?, ?, ?, ?)",
            [_digest(token), name, csrf, now, now],
        )
        audit.append(db, f"web:{name}", "web.login", name, {}, now=now)
    return token, Session(name, row[0], csrf)


def _verify(pw_hash: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(pw_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def _failed(db: sqlite_utils.Database, name: str, policy: LoginPolicy, now: float) -> None:
    """Count one failure in SQL (failures = failures + 1) and lock the account there when
    it reaches the limit; a failure while locked changes nothing (the lock is not extended)."""
    with transaction(db):
        row = db.execute(
            "UPDATE web_accounts SET"
            " failures = CASE WHEN failures + 1 >= :max THEN 0 ELSE failures + 1 END,"
            " locked_until = CASE WHEN failures + 1 >= :max THEN :until ELSE NULL END"
            " WHERE name = :name AND (locked_until IS NULL OR locked_until <= :now)"
            " RETURNING locked_until",
            {"max": policy.max_failures, "until": now + policy.lockout_s, "name": name, "now": now},
        ).fetchone()
        locked = row is not None and row[0] is not None
        if locked:
            audit.append(
                db, "web", "web.account.locked", name, {"failures": policy.max_failures}, now=now
            )
    if locked:
        log.warning(
            "web console account %s locked after %d failed logins", name, policy.max_failures
        )


class SeenInMemory:
    """Sessions' last activity while the database cannot record it (read-only storage):
    bounded, the oldest entry forgotten first."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._seen: dict[str, float] = {}

    def get(self, digest: str) -> float | None:
        """The last activity kept in memory, or None."""
        return self._seen.get(digest)

    def note(self, digest: str, now: float) -> None:
        """Keep ``now`` as the session's last activity."""
        self._seen.pop(digest, None)
        self._seen[digest] = now
        while len(self._seen) > self._limit:
            del self._seen[next(iter(self._seen))]

    def forget(self, digest: str) -> None:
        """The database holds the session's activity again (or the session ended)."""
        self._seen.pop(digest, None)


def session_of(
    db: sqlite_utils.Database,
    token: str,
    *,
    policy: SessionPolicy,
    now: float | None = None,
    seen: SeenInMemory | None = None,
) -> Session | None:
    """The live session of ``token`` (its idle clock restarted), or None. When the database
    cannot be written, the activity is kept in ``seen`` (and the session still checked)."""
    now = time.time() if now is None else now
    seen = seen if seen is not None else SeenInMemory(0)
    digest = _digest(token)
    row = db.execute(
        "SELECT s.account, a.role, s.csrf, s.created_at, s.last_seen FROM web_sessions s"
        " JOIN web_accounts a ON a.name = s.account WHERE s.token_sha256 = ?",
        [digest],
    ).fetchone()
    if row is None:
        return None
    last_seen = max(row[4], seen.get(digest) or 0.0)
    if now - row[3] > policy.lifetime_s or now - last_seen > policy.idle_s:
        seen.forget(digest)
        try:
            with transaction(db):
                db.execute("DELETE FROM web_sessions WHERE token_sha256 = ?", [digest])
        except sqlite3.Error as exc:  # read-only storage: the checks above refuse it anyway
            log.debug("expired web session not deleted: %s", exc)
        return None
    try:
        with transaction(db):
            db.execute(
                "UPDATE web_sessions SET last_seen = ? WHERE token_sha256 = ?", [now, digest]
            )
    except sqlite3.Error as exc:
        log.debug("web session activity kept in memory: %s", exc)
        seen.note(digest, now)
    else:
        seen.forget(digest)
    return Session(row[0], row[1], row[2])


def logout(db: sqlite_utils.Database, token: str) -> None:
    """End a session."""
    with transaction(db):
        db.execute("DELETE FROM web_sessions WHERE token_sha256 = ?", [_digest(token)])


def csrf_matches(session: Session, given: str | None) -> bool:
    """Whether ``given`` is the session's CSRF token (constant-time)."""
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
