"""Cards and PINs: keyed hashes only, brute-force lockout, duress and visitor PINs.

Storage (tables ``cards``, ``pins``, ``lockouts`` in :mod:`gateway.store.database`):

- A card is stored as ``HMAC-SHA256(card_key, "facility:number")``; ``card_key`` is
  derived from the device key. The plaintext number exists only in memory.
- A PIN is stored as an argon2id hash (per-PIN salt) plus a *pepper index*: the first
  16 bits of ``HMAC-SHA256(index_key, pin)`` (:func:`pin_index_for`). Identifying a PIN
  without a claimed identity looks up the (few) rows in that bucket and argon2-verifies
  only those, so the cost is O(candidates x KDF), not O(people x KDF). The index holds
  16 bits only: even with the index key it narrows a 6-digit PIN to ~15 guesses that
  still need argon2.

The index key: the daemon passes ``Keys.pin_index_site``, i.e.
``gateway.keys.derive(site_key, "access-gateway/pin-index/v1")``. The management system
holds the site key, so it can send a PIN as ``(argon2id hash, pin_index_for(pin, key))``
(MQTT command ``set_pin``) without the PIN ever leaving it. Without ``index_key`` the
index is keyed by a device-key subkey (the original design, kept for compatibility);
with it, rows indexed under that legacy key are still found and re-indexed on their
next successful use. PINs must be unique per device: :meth:`Credentials.set_pin`
enforces it; for pre-hashed PINs the management side must, and a PIN that matches two
people is refused at the gate.

Degradation: cards and PIN rows are also held in memory (loaded at construction, kept in
step with every write made through this object, reloaded by :meth:`Credentials.refresh`,
and updated from every successful read). When the database fails (``sqlite3.Error``:
locked, disk full, I/O error) lookups are answered from that cache, failed-attempt
counters and visitor-PIN uses are kept in memory and written back once the store works
again; :attr:`Credentials.degraded` says so. Management writes still fail loudly.

Brute force: failed PIN-only (1:N) attempts count per reader, failed card+PIN / face+PIN
attempts per claimed person (never against the reader); after ``free_attempts``
failures the subject is locked out for ``base_s * factor**n`` (capped), and a
:class:`LockoutEvent` is emitted. The policy (:func:`lockout_seconds`) is pure.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar, get_args

import sqlite_utils
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import GatewayError
from gateway.store.tx import snapshot

log = logging.getLogger(__name__)

PinKind = Literal["normal", "duress", "visitor"]
_INDEX_BITS = 16
_KINDS: frozenset[str] = frozenset(get_args(PinKind))
_T = TypeVar("_T")

# Upper bounds for pre-hashed PINs: one verification must stay affordable on a Pi.
MAX_TIME_COST = 16
MAX_MEMORY_KIB = 256 * 1024
MAX_PARALLELISM = 8


class CredentialError(GatewayError):
    """A credential cannot be stored (bad PIN format, PIN already in use, ...)."""


class LockedOutError(GatewayError):
    """Too many failed attempts: try again after ``retry_after_s``."""

    def __init__(self, scope: str, subject: str, retry_after_s: float) -> None:
        self.scope = scope
        self.subject = subject
        self.retry_after_s = retry_after_s
        super().__init__(f"{scope} locked out for another {retry_after_s:.0f} s")


@dataclass(frozen=True)
class PinHashParams:
    """argon2id cost. Defaults (t=2, m=19 MiB, p=1: OWASP's minimum) verify in roughly
    30-80 ms on a Raspberry Pi 4; lower them only in tests."""

    time_cost: int = 2
    memory_kib: int = 19 * 1024
    parallelism: int = 1


@dataclass(frozen=True)
class LockoutPolicy:
    """Exponential lockout: ``free_attempts`` failures allowed, then ``base_s``, doubling,
    capped at ``max_s``; counters forget after ``reset_after_s`` without failures (a day
    by default, so that the daily guessing budget stays small:
    :mod:`gateway.credentials.pin_budget`)."""

    free_attempts: int = 3
    base_s: float = 30.0
    factor: float = 2.0
    max_s: float = 3600.0
    reset_after_s: float = 86400.0


@dataclass(frozen=True)
class LockoutEvent:
    """Emitted when a reader or a person gets locked out. ``subject`` is a reader name
    or a person id (the MQTT layer pseudonymises person ids)."""

    scope: Literal["reader", "person"]
    subject: str
    failures: int
    locked_until: float
    ts: float


@dataclass(frozen=True)
class PinMatch:
    """Who typed the PIN and which kind it was (``duress`` grants and raises an alarm)."""

    person_id: str
    kind: PinKind
    pin_id: int
    expires_at: float | None = None
    uses_left: int | None = None

    @property
    def duress(self) -> bool:
        """True for a duress PIN."""
        return self.kind == "duress"


def lockout_seconds(failures: int, policy: LockoutPolicy) -> float:
    """Lockout length after ``failures`` consecutive failures (pure)."""
    if failures < policy.free_attempts:
        return 0.0
    return float(
        min(policy.max_s, policy.base_s * policy.factor ** (failures - policy.free_attempts))
    )


def _derive(device_key: bytes, label: bytes) -> bytes:
    return hmac.new(device_key, b"access-gateway/" + label, hashlib.sha256).digest()


def pin_index_for(pin: str, index_key: bytes) -> int:
    """The 16-bit pepper index of ``pin`` under ``index_key`` (0..65535).

    For the management side: with ``index_key = gateway.keys.derive(site_key,
    "access-gateway/pin-index/v1")`` the result is what the ``set_pin`` command's
    ``pin_index`` must carry."""
    digest = hmac.new(index_key, pin.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - _INDEX_BITS)


#: HKDF purpose of the key that seals ``set_pin`` hashes in transit (from the site key).
PIN_TRANSPORT_PURPOSE = "access-gateway/pin-transport/v1"


def _pin_transport_aad(person_id: str) -> bytes:
    return b"access-gateway set_pin v1\x00" + person_id.encode()


def seal_pin_hash(pin_hash: str, person_id: str, site_key: bytes) -> str:
    """AES-256-GCM-seal an argon2id hash for the ``set_pin`` command (base64 nonce|ct).

    A PIN has 4-8 digits: its hash alone would be cracked offline by anyone who reads the
    broker, so it travels sealed under a key only holders of the site key derive; the AAD
    binds it to ``person_id``."""
    import base64
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from gateway.keys import derive

    nonce = os.urandom(12)
    key = derive(site_key, PIN_TRANSPORT_PURPOSE)
    ct = AESGCM(key).encrypt(nonce, pin_hash.encode(), _pin_transport_aad(person_id))
    return base64.b64encode(nonce + ct).decode()


def open_pin_hash(sealed: str, person_id: str, site_key: bytes) -> str:
    """The argon2id hash inside :func:`seal_pin_hash`'s output; CredentialError otherwise."""
    import base64
    import binascii

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from gateway.keys import derive

    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialError("pin_hash_sealed is not base64") from None
    if len(raw) < 12 + 16 + 1:
        raise CredentialError("pin_hash_sealed is too short")
    key = derive(site_key, PIN_TRANSPORT_PURPOSE)
    try:
        plain = AESGCM(key).decrypt(raw[:12], raw[12:], _pin_transport_aad(person_id))
    except InvalidTag:
        raise CredentialError(
            "pin_hash_sealed does not open with this site's key for this person"
        ) from None
    return plain.decode("utf-8", errors="replace")


def management_pin_record(
    pin: str, site_key: bytes, person_id: str, params: PinHashParams | None = None
) -> tuple[str, int]:
    """What the management side (holding the site key) sends in a ``set_pin`` command for
    ``pin``: its argon2id hash (fresh salt) sealed by :func:`seal_pin_hash`, and its index
    under the site's PIN index key. Neither the PIN nor its bare hash ever travels."""
    from gateway.keys import pin_index_key

    validate_pin(pin)
    p = params or PinHashParams()
    hasher = PasswordHasher(
        time_cost=p.time_cost, memory_cost=p.memory_kib, parallelism=p.parallelism
    )
    index = pin_index_for(pin, pin_index_key(site_key))
    return seal_pin_hash(hasher.hash(pin), person_id, site_key), index


def validate_pin(pin: str, min_len: int = 4, max_len: int = 8) -> None:
    """Raise CredentialError unless ``pin`` is min_len..max_len digits."""
    if not pin.isascii() or not pin.isdigit() or not min_len <= len(pin) <= max_len:
        raise CredentialError(f"a PIN must be {min_len} to {max_len} digits")


@dataclass(slots=True)
class _Pin:
    """One active PIN row as held in memory."""

    id: int
    person_id: str
    pin_index: int
    pin_hash: str
    kind: PinKind
    expires_at: float | None
    uses_left: int | None

    def usable(self, now: float) -> bool:
        return (self.expires_at is None or self.expires_at > now) and (
            self.uses_left is None or self.uses_left > 0
        )

    def match(self) -> PinMatch:
        return PinMatch(self.person_id, self.kind, self.id, self.expires_at, self.uses_left)


_PIN_COLUMNS = "id, person_id, pin_index, pin_hash, kind, expires_at, uses_left"
CACHE_CARDS_SQL = "SELECT card_hmac, person_id FROM cards WHERE revoked_at IS NULL"
CACHE_PINS_SQL = f"SELECT {_PIN_COLUMNS} FROM pins WHERE revoked_at IS NULL"  # noqa: S608 - constant
FINGERPRINT_SQL = (
    "SELECT (SELECT count(*) FROM cards WHERE revoked_at IS NULL), (SELECT max(id) FROM cards), "
    "(SELECT count(*) FROM pins WHERE revoked_at IS NULL), (SELECT max(id) FROM pins), "
    "(SELECT total(uses_left) + total(expires_at) + total(pin_index) FROM pins "
    "WHERE revoked_at IS NULL)"
)


def _pin_of(row: Any) -> _Pin:
    return _Pin(
        int(row[0]),
        sys.intern(str(row[1])),
        int(row[2]),
        str(row[3]),
        row[4],
        None if row[5] is None else float(row[5]),
        None if row[6] is None else int(row[6]),
    )


class _StoreDown(Exception):  # noqa: N818 - internal control flow, not an error family
    """The database failed (or is being skipped while degraded): use the cache."""


class Credentials:
    """Card and PIN store over the state database, with an in-memory fallback cache."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        device_key: bytes,
        *,
        index_key: bytes | None = None,
        hash_params: PinHashParams | None = None,
        lockout: LockoutPolicy | None = None,
        anonymous_lockout: LockoutPolicy | None = None,
        on_lockout: Callable[[LockoutEvent], None] | None = None,
        db_retry_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(device_key) < 16:
            raise CredentialError("device key must be at least 16 bytes")
        if index_key is not None and len(index_key) < 16:
            raise CredentialError("PIN index key must be at least 16 bytes")
        self.db = db
        self._card_key = _derive(device_key, b"card-v1")
        legacy = _derive(device_key, b"pin-index-v1")
        self._pin_key = legacy if index_key is None else index_key
        self._legacy_keys = () if self._pin_key == legacy else (legacy,)
        p = hash_params or PinHashParams()
        self._params = p
        self._ph = PasswordHasher(
            time_cost=p.time_cost, memory_cost=p.memory_kib, parallelism=p.parallelism
        )
        self.lockout = lockout or LockoutPolicy()
        # PIN-only (1:N) entry at a reader; a claimed identity (card+PIN) is limited per person
        self.anonymous_lockout = anonymous_lockout
        self.on_lockout = on_lockout
        self.db_retry_s = db_retry_s
        self._clock = clock
        self._lock = threading.RLock()
        self._local = threading.local()
        self._cards: dict[bytes, str] = {}
        self._pins: dict[int, _Pin] = {}
        self._buckets: dict[int, list[int]] = {}
        self._pending_uses: dict[int, int] = {}
        self._mem_lockouts: dict[tuple[str, str], tuple[int, float]] = {}
        self._degraded: str | None = None
        self._retry_at = 0.0
        self._loaded_fingerprint: tuple[Any, ...] = ()
        # bumped whenever a credential leaves the cache or a pending use is written back
        self._epoch = 0  # (see install)
        self.refresh()

    # -- degradation -------------------------------------------------------------------

    @property
    def degraded(self) -> str | None:
        """Why decisions come from memory (None when the store works and nothing waits)."""
        if self._degraded is not None:
            return self._degraded
        with self._lock:
            waiting = len(self._pending_uses) + len(self._mem_lockouts)
        if waiting:
            return f"{waiting} credential update(s) not yet written to the store"
        return None

    @property
    def store_down(self) -> bool:
        """True while lookups are answered from memory (the store failed or timed out)."""
        return self._degraded is not None

    def mark_store_down(self, reason: str) -> None:
        """Answer from memory for the next ``db_retry_s`` (a lookup missed its deadline)."""
        self._retry_at = self._clock() + self.db_retry_s
        if self._degraded is None:
            log.error("credential store too slow (%s); deciding from the in-memory cache", reason)
        self._degraded = f"credential store unavailable ({reason})"

    def forget_cards(self, person_id: str, card_hmac: bytes | None = None) -> None:
        """Drop a person's card (or all their cards) from the cache, before a revocation is
        written: a revocation that reached this process is refused even if the write fails."""
        with self._lock:
            self._epoch += 1
            for digest, owner in list(self._cards.items()):
                if owner == person_id and card_hmac in (None, digest):
                    del self._cards[digest]

    def forget_pins(self, person_id: str, kind: str | None = None) -> None:
        """Drop a person's PINs (of one kind, or all) from the cache (see forget_cards)."""
        self._cache_drop_person(person_id, kind)

    def _db(self, what: str, where: str, fn: Callable[[], _T], *, force: bool = False) -> _T:
        """Run ``fn`` against the database; raise _StoreDown when it fails or while the
        store is being skipped (degraded, retried every ``db_retry_s``)."""
        if not force and not self._may_try_db():
            raise _StoreDown
        try:
            result = fn()
        except sqlite3.Error as exc:
            self._retry_at = self._clock() + self.db_retry_s
            if self._degraded is None:
                log.error(
                    "reader %s: credential store failed during %s (%s: %s); deciding from "
                    "the in-memory credential cache",
                    where,
                    what,
                    type(exc).__name__,
                    exc,
                )
            self._degraded = f"credential store unavailable ({type(exc).__name__}: {exc})"
            raise _StoreDown from exc
        if self._degraded is not None and self._flush():
            self._degraded = None
            log.warning("reader %s: credential store works again", where)
        return result

    def may_try_store(self) -> bool:
        """False while the store is being skipped after a failure (retried every db_retry_s)
        and inside :meth:`memory_only`."""
        return self._may_try_db()

    @contextmanager
    def memory_only(self) -> Iterator[None]:
        """Answer from the cache only, on this thread (a lookup that missed its deadline is
        repeated so, while the database thread may still be using the connection)."""
        self._local.offline = True
        try:
            yield
        finally:
            self._local.offline = False

    def _may_try_db(self) -> bool:
        if getattr(self._local, "offline", False):
            return False
        return self._degraded is None or self._clock() >= self._retry_at

    def _flush(self) -> bool:
        """Write back visitor-PIN uses and failure counters kept in memory (best effort)."""
        with self._lock:
            uses = dict(self._pending_uses)
            locks = dict(self._mem_lockouts)
        try:
            for pin_id, n in uses.items():
                self.db.execute(
                    "UPDATE pins SET uses_left = max(uses_left - ?, 0) "
                    "WHERE id = ? AND uses_left IS NOT NULL",
                    [n, pin_id],
                )
                with self._lock:
                    self._epoch += 1  # a snapshot read before this write is not installed
                    left = self._pending_uses.pop(pin_id, 0) - n
                    if left > 0:
                        self._pending_uses[pin_id] = left
            for (scope, subject), (failures, until) in locks.items():
                self.db.execute(
                    "INSERT INTO lockouts (scope, subject, failures, locked_until) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (scope, subject) DO UPDATE SET "
                    "failures = max(failures, excluded.failures), "
                    "locked_until = max(locked_until, excluded.locked_until)",
                    [scope, subject, failures, until],
                )
                with self._lock:
                    if self._mem_lockouts.get((scope, subject)) == (failures, until):
                        del self._mem_lockouts[(scope, subject)]
        except sqlite3.Error as exc:
            self._retry_at = self._clock() + self.db_retry_s
            log.debug("credential updates not written back yet: %s", exc)
            return False
        return True

    def _fingerprint(self) -> tuple[Any, ...]:
        return tuple(self.db.execute(FINGERPRINT_SQL).fetchone())

    def refresh_if_changed(self) -> bool:
        """Reload the cache when the credential tables changed since the last load (a
        cheap aggregate query; catches writes made on the same connection, which
        ``PRAGMA data_version`` does not). True when the cache was reloaded."""
        try:
            current = self._db("cache check", "-", self._fingerprint, force=True)
        except _StoreDown:
            return False
        if current == self._loaded_fingerprint:
            return False
        return self.refresh()

    def refresh(self) -> bool:
        """Reload the cache from the database (call periodically / when the data changed
        behind this object's back); False when the store cannot be read."""

        def load() -> tuple[list[Any], list[Any], tuple[Any, ...]]:
            with snapshot(self.db):  # one snapshot: cards and PINs of the same moment
                mark = self._fingerprint()
                cards = self.db.execute(CACHE_CARDS_SQL).fetchall()
                pins = self.db.execute(CACHE_PINS_SQL).fetchall()
            return list(cards), list(pins), mark

        if self._pending_uses or self._mem_lockouts:
            self._flush()  # first, so the rows loaded below already include them
        try:
            cards, pins, mark = self._db("cache refresh", "-", load, force=True)
        except _StoreDown:
            return False
        with self._lock:
            self._install(cards, pins, mark)
        log.debug("credential cache: %d cards, %d PINs", len(cards), len(pins))
        return True

    @property
    def epoch(self) -> int:
        """Changes with every credential taken out of the cache (take it before reading
        rows for :meth:`install`)."""
        with self._lock:
            return self._epoch

    def install(self, cards: list[Any], pins: list[Any], mark: tuple[Any, ...], epoch: int) -> bool:
        """Replace the cache with rows read on another connection in one snapshot
        (:data:`CACHE_CARDS_SQL`, :data:`CACHE_PINS_SQL`, :data:`FINGERPRINT_SQL`). False,
        and nothing replaced, when a credential left the cache since ``epoch`` was taken:
        the rows may predate that revocation."""
        with self._lock:
            if epoch != self._epoch:
                return False
            self._install(cards, pins, mark)
        return True

    def _install(self, cards: list[Any], pins: list[Any], mark: tuple[Any, ...]) -> None:
        new_cards = {bytes(r[0]): sys.intern(str(r[1])) for r in cards}
        new_pins = {p.id: p for p in map(_pin_of, pins)}
        buckets: dict[int, list[int]] = {}
        with self._lock:
            for pin in new_pins.values():
                self._apply_pending(pin)
                buckets.setdefault(pin.pin_index, []).append(pin.id)
            self._cards, self._pins, self._buckets = new_cards, new_pins, buckets
            self._loaded_fingerprint = mark

    def _apply_pending(self, pin: _Pin) -> None:
        n = self._pending_uses.get(pin.id)
        if n and pin.uses_left is not None:
            pin.uses_left = max(0, pin.uses_left - n)

    def _cache_put(self, pin: _Pin, *, from_store: bool = True) -> None:
        """Insert/replace a row; rows read from the store get the uses still pending."""
        with self._lock:
            self._cache_drop(pin.id)
            if from_store:
                self._apply_pending(pin)
            self._pins[pin.id] = pin
            self._buckets.setdefault(pin.pin_index, []).append(pin.id)

    def _cache_drop(self, pin_id: int) -> None:
        with self._lock:
            self._epoch += 1
            old = self._pins.pop(pin_id, None)
            if old is not None:
                bucket = self._buckets.get(old.pin_index, [])
                if pin_id in bucket:
                    bucket.remove(pin_id)
                if not bucket:
                    self._buckets.pop(old.pin_index, None)

    def _cache_drop_person(self, person_id: str, kind: str | None = None) -> None:
        with self._lock:
            for pin in list(self._pins.values()):
                if pin.person_id == person_id and (kind is None or pin.kind == kind):
                    self._cache_drop(pin.id)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """All-or-nothing group of writes (a savepoint: nests in a caller's transaction)."""
        self.db.execute("SAVEPOINT credentials")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO credentials")
            self.db.execute("RELEASE credentials")
            raise
        self.db.execute("RELEASE credentials")

    # -- cards -------------------------------------------------------------------------

    def card_hmac(self, facility: int | None, card_number: int) -> bytes:
        """Keyed hash of a card (format-independent: facility and number only)."""
        msg = f"{facility or 0}:{card_number}".encode()
        return hmac.new(self._card_key, msg, hashlib.sha256).digest()

    def add_card(self, person_id: str, facility: int | None, card_number: int, now: float) -> int:
        """Enrol a card; CredentialError when the card already belongs to someone."""
        digest = self.card_hmac(facility, card_number)
        with self._tx():
            existing = self.db.execute(
                "SELECT person_id, revoked_at FROM cards WHERE card_hmac = ?", [digest]
            ).fetchone()
            if existing is not None:
                if existing[1] is None:
                    raise CredentialError("this card is already enrolled")
                self.db.execute("DELETE FROM cards WHERE card_hmac = ?", [digest])
            cur = self.db.execute(
                "INSERT INTO cards (person_id, card_hmac, created_at) VALUES (?, ?, ?)",
                [person_id, digest, now],
            )
        with self._lock:
            self._cards[digest] = person_id
        return int(cur.lastrowid or 0)

    def revoke_card(self, facility: int | None, card_number: int, now: float) -> bool:
        """Revoke a card; True if it was active."""
        digest = self.card_hmac(facility, card_number)
        cur = self.db.execute(
            "UPDATE cards SET revoked_at = ? WHERE card_hmac = ? AND revoked_at IS NULL",
            [now, digest],
        )
        with self._lock:
            self._epoch += 1
            self._cards.pop(digest, None)
        return cur.rowcount > 0

    def revoke_cards(self, person_id: str, now: float, card_hmac: bytes | None = None) -> int:
        """Revoke one card of a person by its HMAC (as the ``revoke_card`` command names
        it), or all of the person's cards; return how many were active."""
        sql = "UPDATE cards SET revoked_at = ? WHERE person_id = ? AND revoked_at IS NULL"
        args: list[Any] = [now, person_id]
        if card_hmac is not None:
            sql += " AND card_hmac = ?"
            args.append(card_hmac)
        n = int(self.db.execute(sql, args).rowcount)
        with self._lock:
            self._epoch += 1
            for digest, owner in list(self._cards.items()):
                if owner == person_id and card_hmac in (None, digest):
                    del self._cards[digest]
        return n

    def identify_card(self, card: Any) -> str | None:
        """Person holding ``card`` (a CardRead or any object with ``facility`` and
        ``card_number``), or None when unknown or revoked."""
        digest = self.card_hmac(card.facility, int(card.card_number))
        reader = str(getattr(card, "reader", "-"))
        epoch = self.epoch  # a revocation during the read below wins over the row read
        try:
            row = self._db(
                "card lookup",
                reader,
                lambda: self.db.execute(
                    "SELECT person_id FROM cards WHERE card_hmac = ? AND revoked_at IS NULL",
                    [digest],
                ).fetchone(),
            )
        except _StoreDown:
            with self._lock:
                return self._cards.get(digest)
        with self._lock:
            if row is None:
                if self._cards.pop(digest, None) is not None:
                    self._epoch += 1
                return None
            if epoch == self._epoch:
                self._cards[digest] = str(row[0])
        return str(row[0])

    def verify_card_for(self, person_id: str, card: Any) -> bool:
        """1:1 check: does ``card`` belong to ``person_id``?"""
        return self.identify_card(card) == person_id

    # -- PINs --------------------------------------------------------------------------

    def pin_index(self, pin: str) -> int:
        """16-bit keyed bucket of a PIN (under the current index key)."""
        return pin_index_for(pin, self._pin_key)

    def _indexes(self, pin: str) -> list[int]:
        out = [self.pin_index(pin)]
        for key in self._legacy_keys:
            idx = pin_index_for(pin, key)
            if idx not in out:
                out.append(idx)
        return out

    def _candidates(
        self, pin: str, now: float, person_id: str | None = None, *, where: str = "-"
    ) -> list[_Pin]:
        idxs = self._indexes(pin)
        marks = ", ".join("?" * len(idxs))
        sql = (
            f"SELECT {_PIN_COLUMNS} FROM pins WHERE pin_index IN ({marks}) "  # noqa: S608 - placeholders only
            "AND revoked_at IS NULL ORDER BY id"
        )
        try:
            rows = self._db("PIN lookup", where, lambda: self.db.execute(sql, idxs).fetchall())
        except _StoreDown:
            with self._lock:
                found = [self._pins[i] for idx in idxs for i in self._buckets.get(idx, ())]
            found.sort(key=lambda p: p.id)
        else:
            found = [_pin_of(r) for r in rows]
            with self._lock:  # read-through: these buckets are now exactly the store's
                for idx in idxs:
                    for pin_id in list(self._buckets.get(idx, ())):
                        self._cache_drop(pin_id)
                for pin_row in found:
                    self._cache_put(pin_row)
        return [
            p for p in found if p.usable(now) and (person_id is None or p.person_id == person_id)
        ]

    def _verify(self, pin_hash: str, pin: str) -> bool:
        try:
            return bool(self._ph.verify(pin_hash, pin))
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            log.warning("a stored PIN hash is corrupt; it can never match")
            return False

    def _reindex(self, pin: _Pin, plain: str) -> None:
        """Move a row found under a legacy index key to the current one (best effort)."""
        idx = self.pin_index(plain)
        if pin.pin_index == idx or self._degraded is not None:
            return
        try:
            self.db.execute("UPDATE pins SET pin_index = ? WHERE id = ?", [idx, pin.id])
        except sqlite3.Error:
            return
        self._cache_put(replace(pin, pin_index=idx), from_store=False)

    def set_pin(
        self,
        person_id: str,
        pin: str,
        now: float,
        *,
        kind: PinKind = "normal",
        expires_at: float | None = None,
        uses_left: int | None = None,
    ) -> int:
        """Store a PIN. A person has at most one active PIN per kind (the old one is
        revoked). CredentialError when the PIN is malformed or already in use."""
        validate_pin(pin)
        if kind == "visitor" and expires_at is None and uses_left is None:
            raise CredentialError("a visitor PIN needs an expiry or a use count")
        for row in self._candidates(pin, now):
            if self._verify(row.pin_hash, pin):
                # never say whose: only that this PIN cannot be used
                raise CredentialError("this PIN is already in use; choose another")
        return self._store_pin(
            person_id,
            self._ph.hash(pin),
            self.pin_index(pin),
            now,
            kind=kind,
            expires_at=expires_at,
            uses_left=uses_left,
        )

    def set_pin_hash(
        self,
        person_id: str,
        pin_hash: str,
        pin_index: int,
        now: float,
        *,
        kind: PinKind = "normal",
        expires_at: float | None = None,
        uses_left: int | None = None,
    ) -> int:
        """Store a PIN hashed by the management side: an argon2id hash not cheaper than
        this gateway's parameters (and not so costly a Pi cannot verify it) plus its
        :func:`pin_index_for` index under this gateway's index key. Replaces the person's
        active PIN of that kind. CredentialError names what is wrong. Uniqueness of the
        PIN cannot be checked here (the gateway never sees it): the sender must ensure it."""
        self.check_pin_hash(pin_hash)
        if isinstance(pin_index, bool) or not isinstance(pin_index, int):
            raise CredentialError("pin_index must be an integer")
        if not 0 <= pin_index < 1 << _INDEX_BITS:
            raise CredentialError(f"pin_index must be 0..{(1 << _INDEX_BITS) - 1}")
        if kind not in _KINDS:
            raise CredentialError(f"unknown PIN kind {kind!r}")
        if kind == "visitor" and expires_at is None and uses_left is None:
            raise CredentialError("a visitor PIN needs an expiry or a use count")
        if uses_left is not None and uses_left < 1:
            raise CredentialError("uses_left must be at least 1")
        return self._store_pin(
            person_id,
            pin_hash,
            pin_index,
            now,
            kind=kind,
            expires_at=expires_at,
            uses_left=uses_left,
        )

    def check_pin_hash(self, pin_hash: str) -> None:
        """CredentialError unless ``pin_hash`` is an argon2id (v1.3) hash with parameters
        at least this gateway's and at most :data:`MAX_MEMORY_KIB` etc."""
        if not isinstance(pin_hash, str) or len(pin_hash) > 256:
            raise CredentialError("pin_hash must be an argon2id hash string")
        try:
            got = extract_parameters(pin_hash)
        except (InvalidHashError, ValueError):
            raise CredentialError("pin_hash is not a valid argon2 hash") from None
        ours = self._params
        problems: list[str] = []
        if got.type is not Type.ID:
            problems.append(f"type argon2{got.type.name.lower()} (argon2id required)")
        if got.version != 0x13:
            problems.append(f"version {got.version} (19 required)")
        if got.time_cost < ours.time_cost:
            problems.append(f"t={got.time_cost} < {ours.time_cost}")
        if got.memory_cost < ours.memory_kib:
            problems.append(f"m={got.memory_cost} KiB < {ours.memory_kib}")
        if got.salt_len < self._ph.salt_len:
            problems.append(f"salt of {got.salt_len} bytes < {self._ph.salt_len}")
        if got.hash_len < self._ph.hash_len:
            problems.append(f"hash of {got.hash_len} bytes < {self._ph.hash_len}")
        if got.time_cost > MAX_TIME_COST:
            problems.append(f"t={got.time_cost} > {MAX_TIME_COST}")
        if got.memory_cost > MAX_MEMORY_KIB:
            problems.append(f"m={got.memory_cost} KiB > {MAX_MEMORY_KIB}")
        if not 1 <= got.parallelism <= MAX_PARALLELISM:
            problems.append(f"p={got.parallelism} outside 1..{MAX_PARALLELISM}")
        if problems:
            raise CredentialError("pin_hash not accepted: " + ", ".join(problems))

    def _store_pin(
        self,
        person_id: str,
        pin_hash: str,
        pin_index: int,
        now: float,
        *,
        kind: PinKind,
        expires_at: float | None,
        uses_left: int | None,
    ) -> int:
        try:
            with self._tx():
                self.db.execute(
                    "UPDATE pins SET revoked_at = ? WHERE person_id = ? AND kind = ? "
                    "AND revoked_at IS NULL",
                    [now, person_id, kind],
                )
                cur = self.db.execute(
                    "INSERT INTO pins (person_id, pin_hash, pin_index, kind, expires_at, "
                    "uses_left, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [person_id, pin_hash, pin_index, kind, expires_at, uses_left, now],
                )
        except sqlite3.IntegrityError as exc:
            raise CredentialError(f"PIN not stored (unknown person?): {exc}") from None
        pin_id = int(cur.lastrowid or 0)
        self._cache_drop_person(person_id, kind)
        self._cache_put(_Pin(pin_id, person_id, pin_index, pin_hash, kind, expires_at, uses_left))
        return pin_id

    def revoke_pins(self, person_id: str, now: float, kind: PinKind | None = None) -> int:
        """Revoke a person's PINs (of one kind, or all); return how many."""
        sql = "UPDATE pins SET revoked_at = ? WHERE person_id = ? AND revoked_at IS NULL"
        args: list[Any] = [now, person_id]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        n = int(self.db.execute(sql, args).rowcount)
        self._cache_drop_person(person_id, kind)
        return n

    def consume_use(self, pin_id: int) -> bool:
        """Take one use off a counted (visitor) PIN after a grant; False when none left
        or the PIN has no use count. While the store fails the use is taken off the
        cached row and written back later."""
        if self._pending_uses and self._may_try_db():
            self._flush()
        try:
            cur = self._db(
                "visitor PIN use",
                "-",
                lambda: self.db.execute(
                    "UPDATE pins SET uses_left = uses_left - 1 WHERE id = ? AND uses_left > 0",
                    [pin_id],
                ),
            )
        except _StoreDown:
            with self._lock:
                pin = self._pins.get(pin_id)
                if pin is None or pin.uses_left is None or pin.uses_left <= 0:
                    return False
                pin.uses_left -= 1
                self._pending_uses[pin_id] = self._pending_uses.get(pin_id, 0) + 1
            return True
        with self._lock:
            pin = self._pins.get(pin_id)
            if cur.rowcount > 0 and pin is not None and pin.uses_left is not None:
                pin.uses_left = max(0, pin.uses_left - 1)
        return cur.rowcount > 0

    def _consume(self, match: PinMatch) -> None:
        if match.uses_left is not None:
            self.consume_use(match.pin_id)

    def identify_pin(
        self, pin: str, *, reader: str, now: float, consume: bool = False
    ) -> PinMatch | None:
        """1:N PIN lookup (PIN-only entry). Raises :class:`LockedOutError` while the reader is
        locked; a miss counts as a failure for the reader. With ``consume`` a counted
        (visitor) PIN loses one use now; otherwise call :meth:`consume_use` after a grant.
        A PIN matching two different people is refused (and logged)."""
        self._raise_if_locked("reader", reader, now)
        found: list[_Pin] = []
        if pin.isascii() and pin.isdigit():
            found = [
                row
                for row in self._candidates(pin, now, where=reader)
                if self._verify(row.pin_hash, pin)
            ]
        if len({row.person_id for row in found}) > 1:
            log.error(
                "reader %s: a PIN matches more than one person; refused (PINs must be unique)",
                reader,
            )
            found = []
        if not found:
            self._fail("reader", reader, now)
            return None
        self._reindex(found[0], pin)
        match = found[0].match()
        if consume:
            self._consume(match)
        if match.duress:
            log.warning("reader %s: duress PIN entered", reader)
        return match

    def verify_pin_for(
        self, person_id: str, pin: str, *, reader: str, now: float, consume: bool = False
    ) -> PinMatch | None:
        """1:1 PIN check for a claimed identity (card+PIN, face+PIN). Raises
        :class:`LockedOutError` while the person is locked; a miss counts against that
        person only, so that wrong PINs typed with one card (or by anonymous guessers) never
        lock out another card holder. The person's duress PIN matches too."""
        self._raise_if_locked("person", person_id, now)
        hit: _Pin | None = None
        if pin.isascii() and pin.isdigit():
            for row in self._candidates(pin, now, person_id, where=reader):
                if self._verify(row.pin_hash, pin):
                    hit = row
                    break
        if hit is None:
            self._fail("person", person_id, now, where=reader)
            return None
        self._reindex(hit, pin)
        match = hit.match()
        with self._lock:
            self._mem_lockouts.pop(("person", person_id), None)
        with suppress(_StoreDown):
            self._db(
                "lockout reset",
                reader,
                lambda: self.db.execute(
                    "DELETE FROM lockouts WHERE scope = 'person' AND subject = ?", [person_id]
                ),
            )
        if consume:
            self._consume(match)
        if match.duress:
            log.warning("reader %s: duress PIN entered", reader)
        return match

    # -- lockouts ----------------------------------------------------------------------

    def locked_for(self, scope: str, subject: str, now: float) -> float:
        """Seconds of lockout left (0 when free); counts held in memory while the store
        fails are included."""
        with self._lock:
            mem = self._mem_lockouts.get((scope, subject))
        left = mem[1] - now if mem else 0.0
        where = subject if scope == "reader" else "-"
        try:
            row = self._db(
                "lockout check",
                where,
                lambda: self.db.execute(
                    "SELECT locked_until FROM lockouts WHERE scope = ? AND subject = ?",
                    [scope, subject],
                ).fetchone(),
            )
        except _StoreDown:
            row = None
        if row is not None:
            left = max(left, float(row[0]) - now)
        return max(0.0, left)

    def _raise_if_locked(self, scope: str, subject: str, now: float) -> None:
        left = self.locked_for(scope, subject, now)
        if left > 0:
            raise LockedOutError(scope, subject, left)

    def _fail(
        self, scope: Literal["reader", "person"], subject: str, now: float, where: str = ""
    ) -> None:
        where = where or (subject if scope == "reader" else "-")
        key = (scope, subject)
        stored: Any = None
        up = True
        try:
            stored = self._db(
                "failure count",
                where,
                lambda: self.db.execute(
                    "SELECT failures, locked_until FROM lockouts WHERE scope = ? AND subject = ?",
                    [scope, subject],
                ).fetchone(),
            )
        except _StoreDown:
            up = False
        with self._lock:
            mem = self._mem_lockouts.get(key)
        failures = 0
        for prev in (stored, mem):
            if prev is not None and now - float(prev[1]) < self.policy_for(scope).reset_after_s:
                failures = max(failures, int(prev[0]))
        failures += 1
        policy = self.policy_for(scope)
        delay = lockout_seconds(failures, policy)
        until = now + delay
        if up:
            try:
                self._db(
                    "failure count",
                    where,
                    lambda: self.db.execute(
                        "INSERT INTO lockouts (scope, subject, failures, locked_until) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (scope, subject) DO UPDATE SET "
                        "failures = excluded.failures, locked_until = excluded.locked_until",
                        [scope, subject, failures, until],
                    ),
                )
            except _StoreDown:
                up = False
        with self._lock:
            if up:
                self._mem_lockouts.pop(key, None)
            else:
                self._mem_lockouts[key] = (failures, until)
        if delay > 0:
            if scope == "reader":
                log.warning(
                    "reader %s: PIN lockout for %.0f s after %d failures", subject, delay, failures
                )
            else:
                log.warning(
                    "reader %s: PIN lockout of one person for %.0f s after %d failures",
                    where,
                    delay,
                    failures,
                )
            if self.on_lockout is not None:
                self.on_lockout(LockoutEvent(scope, subject, failures, until, now))

    def policy_for(self, scope: str) -> LockoutPolicy:
        """The lockout policy of a scope: ``reader`` (anonymous PIN-only entry) or ``person``."""
        if scope == "reader" and self.anonymous_lockout is not None:
            return self.anonymous_lockout
        return self.lockout

    def clear_lockout(self, scope: str, subject: str) -> None:
        """Operator reset of a lockout."""
        with self._lock:
            self._mem_lockouts.pop((scope, subject), None)
        self.db.execute("DELETE FROM lockouts WHERE scope = ? AND subject = ?", [scope, subject])
