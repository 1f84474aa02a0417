"""The console accounts' optional TOTP second factor (RFC 6238, pyotp).

The secret is sealed (AES-GCM, AAD = the account name) under the device key's
``WEB_TOTP`` purpose; it is active only once the account confirmed it with a code; a
login with an active factor needs a code, and a code's time step is never accepted twice
(replay within its window refused). An admin (or ``gateway web reset-totp``) removes an
account's factor; every change is audited, never with the secret or a code.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import sqlite_utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.privacy import audit
from gateway.store.tx import transaction
from gateway.web.accounts import AccountError
from gateway.web.i18n import N_

log = logging.getLogger(__name__)

ISSUER = "access-gateway"
STEP_S = 30
WINDOW = 1
"""Steps either side of now accepted (clock drift)."""
NO_KEY = N_("the second factor cannot be checked here (no device key for it)")


@dataclass(frozen=True)
class Enrolment:
    """A new, not yet confirmed secret: shown once."""

    secret: str
    uri: str


def _seal(key: bytes, account: str, secret: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode("ascii"), account.encode())


def _open(key: bytes, account: str, blob: bytes) -> str | None:
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], account.encode()).decode("ascii")
    except (InvalidTag, ValueError):
        log.warning("a web console TOTP secret does not open with this device key")
        return None


def enabled(db: sqlite_utils.Database, account: str) -> bool:
    """Whether ``account`` has an active (confirmed) second factor."""
    row = db.execute("SELECT active FROM web_totp WHERE account = ?", [account]).fetchone()
    return bool(row and row[0])


def begin(db: sqlite_utils.Database, key: bytes | None, account: str, *, actor: str) -> Enrolment:
    """A new secret for ``account``, pending until :func:`confirm` (an active factor is
    kept: it must be reset first)."""
    if key is None:
        raise AccountError(NO_KEY)
    if enabled(db, account):
        raise AccountError(N_("the second factor is on already; an admin can reset it"))
    import pyotp  # the web extra's: a reset (CLI) needs none of it

    secret = pyotp.random_base32()
    with transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO web_totp (account, secret_sealed, active, last_step,"
            " created_at) VALUES (?, ?, 0, 0, ?)",
            [account, _seal(key, account, secret), time.time()],
        )
        audit.append(db, actor, "web.totp.begin", account, {})
    uri = pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)
    return Enrolment(secret, uri)


def qr_svg(uri: str) -> str:
    """The set-up link as an inline SVG QR code (segno: pure Python, no image library;
    error correction M; black on white with the 4-module quiet zone that phone scanners
    need). Inline, so that it is never a file, a URL or a cached image; the page names it
    for screen readers."""
    import segno  # the web extra's

    qr = segno.make(uri, error="m", micro=False)
    return str(qr.svg_inline(scale=5, border=4, dark="#000", light="#fff", svgclass="qr-code"))


def _matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code ``code`` is (within the window), or None."""
    import pyotp

    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_S)
    step = int(now) // STEP_S
    for s in range(step - WINDOW, step + WINDOW + 1):
        if pyotp.utils.strings_equal(totp.at(s * STEP_S), code):
            return s
    return None


def _use(
    db: sqlite_utils.Database, key: bytes, account: str, code: str, now: float, *, active: int
) -> bool:
    """Accept ``code`` once: its step is recorded and older or equal steps refused."""
    row = db.execute(
        "SELECT secret_sealed, last_step FROM web_totp WHERE account = ? AND active = ?",
        [account, active],
    ).fetchone()
    if row is None:
        return False
    secret = _open(key, account, row[0])
    step = None if secret is None else _matching_step(secret, code, now)
    if step is None or step <= int(row[1]):
        return False
    with transaction(db):
        db.execute(
            "UPDATE web_totp SET last_step = ?, active = 1 WHERE account = ?", [step, account]
        )
        if not active:
            audit.append(db, f"web:{account}", "web.totp.on", account, {}, now=now)
    return True


def confirm(
    db: sqlite_utils.Database,
    key: bytes | None,
    account: str,
    code: str,
    now: float | None = None,
) -> None:
    """Turn the pending factor on with a code from the authenticator (AccountError else)."""
    if key is None:
        raise AccountError(NO_KEY)
    if not _use(db, key, account, code, time.time() if now is None else now, active=0):
        raise AccountError(N_("wrong code, or no second factor being set up; try again"))
    log.info("web console account %s turned its second factor on", account)


def login_ok(
    db: sqlite_utils.Database,
    key: bytes | None,
    account: str,
    code: str,
    now: float | None = None,
) -> bool:
    """After the password matched: True when ``account`` has no active factor, or
    ``code`` is a current code not used before (fails closed without a key)."""
    if not enabled(db, account):
        return True
    if key is None:
        log.error("web login refused: %s", NO_KEY)
        return False
    return _use(db, key, account, code, time.time() if now is None else now, active=1)


def reset(db: sqlite_utils.Database, account: str, *, actor: str) -> bool:
    """Remove ``account``'s second factor (audited); False when it had none."""
    if not db.execute("SELECT 1 FROM web_accounts WHERE name = ?", [account]).fetchone():
        raise AccountError(f"no account {account}")
    with transaction(db):
        gone = db.execute("DELETE FROM web_totp WHERE account = ?", [account]).rowcount
        if gone:
            audit.append(db, actor, "web.totp.reset", account, {})
    if gone:
        log.warning("web console account %s: second factor reset", account)
    return bool(gone)
