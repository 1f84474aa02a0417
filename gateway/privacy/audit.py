"""Append-only, hash-chained audit log (table ``audit``).

Each row's ``hash`` is SHA-256 over ``prev_hash`` and the canonical JSON of the row
(``seq, ts, actor, action, subject, details``; sorted keys, compact separators, UTF-8).
The chain head (last seq and hash) is also kept in ``kv['audit.head']`` so that deleting the
newest rows is detected too. ``details`` must never hold biometrics: bytes, arrays, or keys
named like an embedding/template/image are refused with :class:`AuditError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from gateway.errors import PrivacyError

log = logging.getLogger(__name__)

GENESIS = "0" * 64
HEAD_KEY = "audit.head"

#: Keys that must never appear anywhere inside ``details`` (case-insensitive).
FORBIDDEN_KEYS = frozenset(
    {
        "embedding",
        "embeddings",
        "template",
        "templates",
        "image",
        "images",
        "frame",
        "frames",
        "face",
        "photo",
        "ciphertext",
        "plaintext",
        "data_key",
        "wrapped_key",
        "pin",
        "card_number",
    }
)
#: A list of this many numbers or more looks like a feature vector and is refused.
MAX_NUMERIC_LIST = 32

_lock = threading.RLock()


class AuditError(PrivacyError):
    """An audit entry would carry biometric or secret data, or is not JSON-serialisable."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``ok`` or the first broken ``seq`` and why."""

    ok: bool
    rows: int
    broken_seq: int | None = None
    reason: str | None = None


def _check_details(value: Any, path: str) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        raise AuditError(f"audit details {path}: binary data is not allowed (no biometrics)")
    if hasattr(value, "__array__") or hasattr(value, "tobytes"):
        raise AuditError(f"audit details {path}: arrays are not allowed (no biometrics)")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise AuditError(f"audit details {path}: keys must be strings, got {k!r}")
            if k.lower() in FORBIDDEN_KEYS:
                raise AuditError(
                    f"audit details {path}.{k}: key {k!r} is reserved for biometric or "
                    "secret data and may not be audited"
                )
            _check_details(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        if len(value) >= MAX_NUMERIC_LIST and all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in value
        ):
            raise AuditError(
                f"audit details {path}: a list of {len(value)} numbers looks like a "
                "feature vector and is not allowed"
            )
        for i, v in enumerate(value):
            _check_details(v, f"{path}[{i}]")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise AuditError(f"audit details {path}: unsupported type {type(value).__name__}")


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, compact, UTF-8, no NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def row_hash(
    prev_hash: str, *, seq: int, ts: float, actor: str, action: str, subject: str, details: str
) -> str:
    """The chain hash of one row (``details`` is the stored canonical JSON text)."""
    body = canonical(
        {
            "seq": seq,
            "ts": repr(float(ts)),
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details,
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def append(
    db: sqlite_utils.Database,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
    *,
    now: float | None = None,
) -> int:
    """Append one audit row and return its ``seq``.

    ``actor`` is who did it (operator id, ``"system"``, ``"mqtt:<key id>"``), ``action`` a
    dotted verb (``template.create``, ``consent.withdraw``, ``export``), ``subject`` the person
    id or object concerned. Safe to call inside or outside an open transaction.
    """
    details = dict(details or {})
    _check_details(details, "details")
    try:
        details_text = canonical(details)
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details are not JSON-serialisable: {exc}") from exc
    ts = time.time() if now is None else float(now)
    conn = db.conn
    with _lock:
        own_tx = not conn.in_transaction
        if own_tx:
            conn.execute("BEGIN IMMEDIATE")
        try:
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            prev_seq, prev_hash = (0, GENESIS) if last is None else (int(last[0]), str(last[1]))
            seq = prev_seq + 1
            h = row_hash(
                prev_hash,
                seq=seq,
                ts=ts,
                actor=actor,
                action=action,
                subject=subject,
                details=details_text,
            )
            conn.execute(
                "INSERT INTO audit (seq, ts, actor, action, subject, details, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, ts, actor, action, subject, details_text, prev_hash, h),
            )
            conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (HEAD_KEY, f"{seq}:{h}"),
            )
            if own_tx:
                conn.execute("COMMIT")
        except BaseException:
            if own_tx:
                conn.execute("ROLLBACK")
            raise
    log.debug("audit seq %d: %s %s by %s", seq, action, subject, actor)
    return seq


def verify(db: sqlite_utils.Database) -> VerifyResult:
    """Recompute the whole chain; report the first row whose link or hash is wrong."""
    prev_hash = GENESIS
    expected_seq = 1
    n = 0
    rows = db.conn.execute(
        "SELECT seq, ts, actor, action, subject, details, prev_hash, hash FROM audit ORDER BY seq"
    )
    for seq, ts, actor, action, subject, details, stored_prev, stored_hash in rows:
        n += 1
        if seq != expected_seq:
            return VerifyResult(False, n, expected_seq, f"row seq {expected_seq} is missing")
        if stored_prev != prev_hash:
            return VerifyResult(False, n, seq, "prev_hash does not match the previous row")
        computed = row_hash(
            prev_hash, seq=seq, ts=ts, actor=actor, action=action, subject=subject, details=details
        )
        if computed != stored_hash:
            return VerifyResult(False, n, seq, "hash does not match the row contents")
        prev_hash = stored_hash
        expected_seq += 1
    head = db.conn.execute("SELECT value FROM kv WHERE key = ?", (HEAD_KEY,)).fetchone()
    if head is None:
        if n:
            return VerifyResult(False, n, 1, "chain head record is missing")
        return VerifyResult(True, 0)
    head_seq, _, head_hash = str(head[0]).partition(":")
    if int(head_seq) != expected_seq - 1 or head_hash != prev_hash:
        return VerifyResult(
            False,
            n,
            expected_seq,
            f"rows after seq {expected_seq - 1} were removed (head {head_seq})",
        )
    return VerifyResult(True, n)
