"""Append-only, keyed hash chain (table ``audit``).

Each row's ``hash`` is HMAC-SHA256, under a per-device key derived from the device key
(:class:`ChainKey`), over ``prev_hash`` and the canonical JSON of the row (``seq, ts, actor,
action, subject, details``; sorted keys, compact separators, UTF-8); ``key_id`` names the key.
Rows written before the chain was keyed (``key_id`` NULL) are plain SHA-256 links: the first
keyed row is an ``audit.keyed`` anchor over their head, and an unkeyed row after a keyed one
is a break. Without the key nobody can rewrite a row and its successors undetected.
The chain head (last seq and hash) is also kept in ``kv['audit.head']`` and published off the
device (:mod:`gateway.gate.audit_watch`) so that deleting the newest rows is detected too.
Old rows are pruned only behind a keyed ``audit.checkpoint`` row that carries the pruned head
(:mod:`gateway.privacy.audit_retention`), so the rest stays verifiable.
``details`` must never hold biometrics: bytes, arrays, or keys named like an
embedding/template/image are refused with :class:`AuditError`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlite_utils

from gateway.errors import GatewayError, PrivacyError
from gateway.store.kv import put_kv
from gateway.store.tx import snapshot, transaction

log = logging.getLogger(__name__)

GENESIS = "0" * 64
HEAD_KEY = "audit.head"
ANCHOR_ACTION = "audit.keyed"
CHECKPOINT_ACTION = "audit.checkpoint"
KEYED_RULE = (
    "the audit log of this device is keyed: write it with the device key "
    "(--device-key FILE or --config), never as plain hashes"
)

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
_V = TypeVar("_V")


class AuditError(PrivacyError):
    """An audit entry would carry biometric or secret data, or is not JSON-serialisable."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`: ``ok`` or the first broken ``seq`` and why.

    ``unchecked``: keyed rows whose MAC could not be checked (no key given): only their links
    were. ``head_seq``/``head_hash``: the verified head.
    """

    ok: bool
    rows: int
    broken_seq: int | None = None
    reason: str | None = None
    unchecked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS


@dataclass(frozen=True, repr=False)
class ChainKey:
    """The audit chain's per-device MAC key (never printed)."""

    key: bytes

    def __repr__(self) -> str:
        return f"ChainKey({self.key_id})"

    @property
    def key_id(self) -> str:
        """Non-secret fingerprint stored with each keyed row."""
        return hashlib.sha256(b"ag-audit-key-id" + self.key).hexdigest()[:16]

    @classmethod
    def from_device(cls, device_root: bytes) -> ChainKey:
        """The chain key of the device whose root key is ``device_root`` (HKDF subkey)."""
        from gateway.keys import Purpose, subkey_of

        return cls(subkey_of(device_root, Purpose.AUDIT_CHAIN))

    def mac(self, message: str) -> str:
        """HMAC-SHA256 of ``message`` (UTF-8), hex."""
        return hmac.new(self.key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def db_id(conn: sqlite3.Connection) -> str:
    """The identity of a connection's database: its file's real path (per connection for
    in-memory databases)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    path = str(row[2]) if row and row[2] else ""
    return _realpath(path) if path else f"memory:{id(conn)}"


@functools.lru_cache(maxsize=64)
def _realpath(path: str) -> str:
    return os.path.realpath(path)


class PerDatabase(Generic[_V]):
    """Values bound to database files for this process: any connection to the same file
    finds the value (see :func:`db_id`)."""

    def __init__(self) -> None:
        """Nothing bound yet."""
        self._values: dict[str, _V] = {}
        self._lock = threading.Lock()

    def bind(self, db: sqlite_utils.Database, value: _V | None) -> None:
        """Bind ``value`` to the database file of ``db`` (None: unbind)."""
        ident = db_id(db.conn)
        with self._lock:
            if value is None:
                self._values.pop(ident, None)
            else:
                self._values[ident] = value

    def get(self, db: sqlite_utils.Database) -> _V | None:
        """The value bound to the database file of ``db``, if any."""
        ident = db_id(db.conn)
        with self._lock:
            return self._values.get(ident)


_keys: PerDatabase[ChainKey] = PerDatabase()


class WritesHeldError(GatewayError):
    """An audited write refused while this process's keys are stale (a key rotation on the
    running gate, until its restart): retry in a few seconds."""


_held: PerDatabase[tuple[str, int | None]] = PerDatabase()
#: rows that only record what happened to a command (no keyed data): never held
_RECORDS = frozenset({"command.executed", "command.failed", "command.rejected"})


def hold_writes(
    db: sqlite_utils.Database, reason: str | None, *, allow_thread: int | None = None
) -> None:
    """Refuse every later :func:`append` to this database file in this process, and with it
    the write whose transaction it is part of (every credential, enrolment and consent
    change is audited in its own transaction; not the command records of
    :data:`_RECORDS`), with ``reason``; ``allow_thread``: the one
    thread still allowed (the rotation's own); None: allow writes again."""
    _held.bind(db, None if reason is None else (reason, allow_thread))


def bind_key(db: sqlite_utils.Database, key: ChainKey | None) -> None:
    """Key every later append to this database file in this process (None: unbind)."""
    _keys.bind(db, key)


def bound_key(db: sqlite_utils.Database) -> ChainKey | None:
    """The chain key bound to this database file, if any."""
    return _keys.get(db)


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
    prev_hash: str,
    *,
    seq: int,
    ts: float,
    actor: str,
    action: str,
    subject: str,
    details: str,
    key: ChainKey | None = None,
) -> str:
    """The chain link of one row (``details`` is the stored canonical JSON text): HMAC under
    ``key``, or the legacy plain SHA-256 when ``key`` is None."""
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
    if key is not None:
        return key.mac(prev_hash + body)
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
    id or object concerned. Safe to call inside or outside an open transaction. Keyed with the
    key bound by :func:`bind_key`; :class:`AuditError` when the chain is keyed and no key (or
    another device's key) is bound. The first keyed append re-anchors a legacy chain.
    """
    details_text = _details_text(details)
    ts = time.time() if now is None else float(now)
    key = bound_key(db)
    conn = db.conn
    with _lock, transaction(conn):
        held = _held.get(db)
        if held is not None and held[1] != threading.get_ident() and action not in _RECORDS:
            raise WritesHeldError(held[0])
        last = conn.execute(
            "SELECT seq, hash, key_id FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        last_key = None if last is None else last[2]
        if key is None and last_key is not None:
            raise AuditError(KEYED_RULE)
        if key is not None and last_key is not None and last_key != key.key_id:
            raise AuditError(
                f"the audit log is keyed by device key {last_key}, this process has "
                f"{key.key_id}: wrong device key"
            )
        if key is not None and last_key is None and action != ANCHOR_ACTION:
            legacy = int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])
            anchor = {
                "legacy_rows": legacy,
                "legacy_head": GENESIS if last is None else last[1],
            }
            _insert(
                conn,
                key,
                "system",
                action=ANCHOR_ACTION,
                subject="audit",
                details_text=canonical(anchor),
                ts=ts,
            )
        seq = _insert(
            conn,
            key,
            actor,
            action=action,
            subject=subject,
            details_text=details_text,
            ts=ts,
        )
    log.debug("audit seq %d: %s %s by %s", seq, action, subject, actor)
    return seq


def appender(db: sqlite_utils.Database) -> Callable[[str, str, str, dict[str, Any]], None]:
    """:func:`append` to ``db`` as ``audit(actor, action, subject, details)`` (what the MQTT
    command processor is given)."""

    def append_to(actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        append(db, actor, action, subject, details)

    return append_to


def is_keyed(db: sqlite_utils.Database) -> bool:
    """Whether this database's chain is keyed (its newest row carries a key id)."""
    row = db.conn.execute("SELECT key_id FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return row is not None and row[0] is not None


def _details_text(details: Mapping[str, Any] | None) -> str:
    checked = dict(details or {})
    _check_details(checked, "details")
    try:
        return canonical(checked)
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details are not JSON-serialisable: {exc}") from exc


def _insert(
    conn: sqlite3.Connection,
    key: ChainKey | None,
    actor: str,
    *,
    action: str,
    subject: str,
    details_text: str,
    ts: float,
) -> int:
    """Insert the next row after the current head and move ``kv['audit.head']``."""
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
        key=key,
    )
    conn.execute(
        "INSERT INTO audit (seq, ts, actor, action, subject, details, prev_hash, hash, key_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, ts, actor, action, subject, details_text, prev_hash, h, key and key.key_id),
    )
    put_kv(conn, HEAD_KEY, f"{seq}:{h}")
    return seq


_BOUND: Any = object()


def verify(
    db: sqlite_utils.Database, key: ChainKey | None = _BOUND, *, upto: int | None = None
) -> VerifyResult:
    """Recompute the whole chain; report the first row whose link or MAC is wrong.

    ``key`` defaults to the bound key; without one, keyed rows are checked for their links
    only (counted in ``unchecked``). A pruned start must match a later checkpoint row.
    ``upto``: check only the rows up to that seq (their links and MACs; not the head).
    """
    if key is _BOUND:
        key = bound_key(db)
    rows = db.conn.execute(
        "SELECT seq, ts, actor, action, subject, details, prev_hash, hash, key_id"
        " FROM audit WHERE seq <= ? ORDER BY seq",
        (upto if upto is not None else 1 << 62,),
    )
    st = _Walk(key)
    for row in rows:
        broken = st.step(tuple(row))
        if broken is not None:
            return broken
    if upto is not None:
        return VerifyResult(True, st.n, None, None, st.unchecked)
    return st.finish(db)


def verify_file(path: str, key: ChainKey | None) -> VerifyResult:
    """:func:`verify` on a connection of its own (for worker threads: a long walk never
    occupies the gate's database connection or thread)."""
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    try:
        with snapshot(conn):  # one consistent snapshot of rows and head
            return verify(sqlite_utils.Database(conn), key)
    finally:
        conn.close()


class _Walk:
    """State of one :func:`verify` pass."""

    def __init__(self, key: ChainKey | None) -> None:
        self.key = key
        self.prev_hash = GENESIS
        self.expected: int | None = None
        self.base: tuple[int, str] | None = None
        self.n = 0
        self.unchecked = 0
        self.keyed = False
        self.checkpoints: set[tuple[int, str]] = set()

    def fail(self, seq: int, reason: str) -> VerifyResult:
        return VerifyResult(False, self.n, seq, reason, self.unchecked)

    def step(self, row: tuple[Any, ...]) -> VerifyResult | None:
        seq, ts, actor, action, subject, details, stored_prev, stored_hash, key_id = row
        self.n += 1
        if self.expected is None:  # first row: the chain starts here or after a checkpoint
            self.expected = seq
            if seq != 1:
                self.base = (seq - 1, stored_prev)
                self.prev_hash = stored_prev
        if seq != self.expected:
            return self.fail(self.expected, f"row seq {self.expected} is missing")
        if stored_prev != self.prev_hash:
            return self.fail(seq, "prev_hash does not match the previous row")
        fields = {"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject}
        if key_id is None:
            if self.keyed:
                return self.fail(seq, "unkeyed row after the chain was keyed")
            if row_hash(self.prev_hash, details=details, **fields) != stored_hash:
                return self.fail(seq, "hash does not match the row contents")
        else:
            self.keyed = True
            if self.key is None:
                self.unchecked += 1
            elif key_id != self.key.key_id:
                return self.fail(seq, f"row keyed by another device key ({key_id})")
            elif not hmac.compare_digest(
                row_hash(self.prev_hash, details=details, key=self.key, **fields), stored_hash
            ):
                return self.fail(seq, "MAC does not match the row contents")
            if action == CHECKPOINT_ACTION:
                self._checkpoint(details)
        self.prev_hash = stored_hash
        self.expected = seq + 1
        return None

    def _checkpoint(self, details: str) -> None:
        try:
            d = json.loads(details)
            self.checkpoints.add((int(d["pruned_to_seq"]), str(d["pruned_head"])))
        except (ValueError, KeyError, TypeError):
            return

    def finish(self, db: sqlite_utils.Database) -> VerifyResult:
        last_seq = 0 if self.expected is None else self.expected - 1
        if self.base is not None and self.base not in self.checkpoints:
            return self.fail(
                self.base[0] + 1, f"rows up to seq {self.base[0]} were removed without a checkpoint"
            )
        head = db.conn.execute("SELECT value FROM kv WHERE key = ?", (HEAD_KEY,)).fetchone()
        if head is None:
            if self.n:
                return self.fail(1, "chain head record is missing")
            return VerifyResult(True, 0)
        head_seq, _, head_hash = str(head[0]).partition(":")
        if int(head_seq) != last_seq or head_hash != self.prev_hash:
            return self.fail(
                last_seq + 1, f"rows after seq {last_seq} were removed (head {head_seq})"
            )
        return VerifyResult(True, self.n, None, None, self.unchecked, last_seq, self.prev_hash)


def head_mac(key: ChainKey, seq: int, link: str) -> str:
    """The MAC of the chain's head ``seq``/``link`` that is published off the device."""
    return key.mac(f"audit-head|{seq}|{link}")


def last_rekey(db: sqlite_utils.Database) -> tuple[int, str] | None:
    """The last audit-key rotation (:func:`rekey`) as recorded in its ``keys.rotate`` row:
    the last seq it re-MACed and that row's published-head MAC under the old key."""
    for (details,) in db.execute(
        "SELECT details FROM audit WHERE action = 'keys.rotate' AND subject = 'audit'"
        " ORDER BY seq DESC LIMIT 1"
    ).fetchall():
        d = json.loads(details)
        if "rekeyed_upto" in d:
            return int(d["rekeyed_upto"]), str(d["old_head_mac"])
    return None


def rekey(db: sqlite_utils.Database, old: ChainKey, new: ChainKey) -> int:
    """Re-MAC every keyed row under ``new`` after verifying the chain under ``old`` (an
    audit-key rotation, inside its transaction): the rows' contents stay, their links and
    MACs change. AuditError when the chain does not verify. Returns the rows re-keyed.
    The rotation's audit row records the old head (:func:`last_rekey`) so that a head
    published before it is still recognised off the device."""
    checked = verify(db, old)
    if not checked.ok:
        raise AuditError(
            f"the audit chain does not verify (seq {checked.broken_seq}: {checked.reason}): "
            "not re-keyed"
        )
    conn = db.conn
    rows = conn.execute(
        "SELECT seq, ts, actor, action, subject, details, prev_hash, hash, key_id"
        " FROM audit ORDER BY seq"
    ).fetchall()
    prev: str | None = None
    n = 0
    for seq, ts, actor, action, subject, details, stored_prev, stored_hash, kid in rows:
        prev = stored_prev if prev is None else prev  # the genesis or a pruned head stays
        if kid is None:  # a legacy plain-hash row before the chain was keyed
            prev = stored_hash
            continue
        fields = {"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject}
        h = row_hash(prev, details=details, key=new, **fields)
        conn.execute(
            "UPDATE audit SET prev_hash = ?, hash = ?, key_id = ? WHERE seq = ?",
            (prev, h, new.key_id, seq),
        )
        prev, n = h, n + 1
    if rows:
        conn.execute("UPDATE kv SET value = ? WHERE key = ?", (f"{rows[-1][0]}:{prev}", HEAD_KEY))
    return n
