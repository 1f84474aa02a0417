"""Cards and PINs in the state database, with brute-force lockout and a memory fallback.

Storage (tables ``cards``, ``pins``, ``lockouts`` in :mod:`gateway.store.database`): cards
as keyed hashes, PINs as argon2id hashes plus a 16-bit pepper index (the maths:
:mod:`gateway.credentials.hashing`).

The index key: the daemon passes ``Keys.pin_index_site``, i.e.
``gateway.keys.derive(site_key, "access-gateway/pin-index/v1")``. The management system
holds the site key, so it can send a PIN as ``(argon2id hash, pin_index_for(pin, key))``
(MQTT command ``set_pin``) without the PIN ever leaving it. Without ``index_key`` the
index is keyed by a device-key subkey (the original design, kept for compatibility);
with it, rows indexed under that legacy key are still found and re-indexed on their
next successful use. PINs must be unique per device: :meth:`Credentials.set_pin`
enforces it; for pre-hashed PINs the management side must, and a PIN that matches two
people is refused at the gate.

Degradation: cards and PIN rows are also held in memory
(:class:`gateway.credentials.cache.CredentialCache`: loaded at construction, kept in
step with every write made through this object, reloaded by :meth:`Credentials.refresh`,
and updated from every successful read). When the database fails (``sqlite3.Error``:
locked, disk full, I/O error) lookups are answered from that cache, failed-attempt
counters and visitor-PIN uses are kept in memory and written back once the store works
again; :attr:`Credentials.degraded` says so. Management writes still fail loudly.

Brute force: failed PIN-only (1:N) attempts count per reader, failed card+PIN / face+PIN
attempts per claimed person (never against the reader); after ``free_attempts``
failures the subject is locked out for ``base_s * factor**n`` (capped), and a
:class:`LockoutEvent` is emitted.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import replace
from typing import Any, Literal, TypeVar

import sqlite_utils

from gateway.credentials.cache import CachedPin, pin_of
from gateway.credentials.fallback import FallbackStore, StoreDown
from gateway.credentials.hashing import (
    NORMAL_PIN,
    CredentialError,
    LockedOutError,
    LockoutEvent,
    LockoutPolicy,
    PinHashParams,
    PinKind,
    PinMatch,
    PinTerms,
    card_digest,
    check_pin_hash,
    check_pin_record,
    check_visitor,
    failures_after,
    lockout_seconds,
    make_hasher,
    pin_index_for,
    validate_pin,
    verify_pin,
)
from gateway.keys import Purpose, device_subkey, layers, rekey_card, rekey_pin_index
from gateway.store.tx import snapshot

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_PIN_COLUMNS = "id, person_id, pin_index, pin_hash, kind, expires_at, uses_left"
CACHE_CARDS_SQL = "SELECT card_hmac, person_id FROM cards WHERE revoked_at IS NULL"
CACHE_PINS_SQL = f"SELECT {_PIN_COLUMNS} FROM pins WHERE revoked_at IS NULL"  # noqa: S608 - constant
FINGERPRINT_SQL = (
    "SELECT (SELECT count(*) FROM cards WHERE revoked_at IS NULL), (SELECT max(id) FROM cards), "
    "(SELECT count(*) FROM pins WHERE revoked_at IS NULL), (SELECT max(id) FROM pins), "
    "(SELECT total(uses_left) + total(expires_at) + total(pin_index) FROM pins "
    "WHERE revoked_at IS NULL)"
)


class Credentials(FallbackStore):
    """Card and PIN store over the state database, with an in-memory fallback cache."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        device_key: bytes,
        *,
        index_key: bytes | None = None,
        carried: Mapping[Purpose, bytes] | None = None,
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
        super().__init__(db, db_retry_s, clock)
        kept = carried or {}  # the keys carried over a device-key rotation
        self._card_key = device_subkey(device_key, Purpose.CARD_LOOKUP, kept)
        # what rotations of the card and PIN-index keys put over the stored values
        self._card_layers = layers(kept, Purpose.CARD_LOOKUP)
        self._pin_layers = layers(kept, Purpose.PIN_INDEX)
        self._other_card_keys: tuple[bytes, ...] = ()  # the roster office's (issue 15)
        legacy = device_subkey(device_key, Purpose.PIN_INDEX_LOCAL, kept)
        self._pin_key = legacy if index_key is None else index_key
        self._legacy_keys = () if self._pin_key == legacy else (legacy,)
        self._params = hash_params or PinHashParams()
        self._ph = make_hasher(self._params)
        self.lockout = lockout or LockoutPolicy()
        # PIN-only (1:N) entry at a reader; a claimed identity (card+PIN) is limited per person
        self.anonymous_lockout = anonymous_lockout
        self.on_lockout = on_lockout
        self.refresh()

    def _fingerprint(self) -> tuple[Any, ...]:
        return tuple(self.db.execute(FINGERPRINT_SQL).fetchone())

    def refresh_if_changed(self) -> bool:
        """Reload the cache when the credential tables changed since the last load (a
        cheap aggregate query; catches writes made on the same connection, which
        ``PRAGMA data_version`` does not). True when the cache was reloaded."""
        try:
            current = self._db("cache check", "-", self._fingerprint, force=True)
        except StoreDown:
            return False
        if current == self._cache.loaded_fingerprint:
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

        if self._cache.waiting():
            self._flush()  # first, so the rows loaded below already include them
        try:
            cards, pins, mark = self._db("cache refresh", "-", load, force=True)
        except StoreDown:
            return False
        self._cache.install(cards, pins, mark)
        log.debug("credential cache: %d cards, %d PINs", len(cards), len(pins))
        return True

    # -- cards -------------------------------------------------------------------------

    def card_hmac(self, facility: int | None, card_number: int) -> bytes:
        """Keyed hash of a card (format-independent: facility and number only)."""
        return rekey_card(card_digest(self._card_key, facility, card_number), self._card_layers)

    def card_hmac_forms(self, digest: bytes) -> list[bytes]:
        """Every form a card hash the gate gave out may be stored in now: as given, and
        under the layers of the card rotations since (a hash from before them)."""
        n = len(self._card_layers)
        return [rekey_card(digest, self._card_layers[i:]) for i in range(n, -1, -1)]

    def add_card_key(self, key: bytes) -> None:
        """Also look cards up under ``key`` (the roster office's card lookup key: the cards
        of roster people are stored as the office hashed them)."""
        if key != self._card_key and key not in self._other_card_keys:
            self._other_card_keys = (*self._other_card_keys, key)

    def _card_digests(self, facility: int | None, card_number: int) -> list[bytes]:
        """The card's hash under this gate's key (and layers), then under the roster office's
        keys in every form a card rotation may have left it (as delivered, or layered)."""
        out = [self.card_hmac(facility, card_number)]
        for key in self._other_card_keys:
            for form in self.card_hmac_forms(card_digest(key, facility, card_number)):
                if form not in out:
                    out.append(form)
        return out

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
        self._cache.put_card(digest, person_id)
        return int(cur.lastrowid or 0)

    def revoke_card(self, facility: int | None, card_number: int, now: float) -> bool:
        """Revoke a card; True if it was active."""
        digest = self.card_hmac(facility, card_number)
        cur = self.db.execute(
            "UPDATE cards SET revoked_at = ? WHERE card_hmac = ? AND revoked_at IS NULL",
            [now, digest],
        )
        self._cache.drop_card(digest)
        return cur.rowcount > 0

    def revoke_cards(self, person_id: str, now: float, card_hmac: bytes | None = None) -> int:
        """Revoke one card of a person by its HMAC (as the ``revoke_card`` command names
        it), or all of the person's cards; return how many were active."""
        n = self._revoke("cards", person_id, now, "card_hmac", card_hmac)
        self._cache.forget_cards(person_id, card_hmac)
        return n

    def _revoke(
        self,
        table: Literal["cards", "pins"],
        person_id: str,
        now: float,
        column: Literal["card_hmac", "kind"],
        value: object,
    ) -> int:
        """Revoke a person's active rows of ``table`` (only those with ``column = value``
        unless ``value`` is None); return how many."""
        sql = f"UPDATE {table} SET revoked_at = ? WHERE person_id = ? AND revoked_at IS NULL"  # noqa: S608 - literal names
        args: list[Any] = [now, person_id]
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
        return int(self.db.execute(sql, args).rowcount)

    def identify_card(self, card: Any) -> str | None:
        """Person holding ``card`` (a CardRead or any object with ``facility`` and
        ``card_number``), or None when unknown or revoked."""
        digests = self._card_digests(card.facility, int(card.card_number))
        reader = str(getattr(card, "reader", "-"))
        epoch = self.epoch  # a revocation during the read below wins over the row read
        marks = ", ".join("?" * len(digests))
        sql = (
            f"SELECT person_id, card_hmac FROM cards WHERE card_hmac IN ({marks})"  # noqa: S608 - placeholders only
            " AND revoked_at IS NULL"
        )
        try:
            row = self._db("card lookup", reader, lambda: self.db.execute(sql, digests).fetchone())
        except StoreDown:
            return next((p for d in digests if (p := self._cache.card(d)) is not None), None)
        if row is None:
            for digest in digests:
                self._cache.card_read(digest, None, epoch)
            return None
        self._cache.card_read(bytes(row[1]), str(row[0]), epoch)
        return str(row[0])

    def verify_card_for(self, person_id: str, card: Any) -> bool:
        """1:1 check: does ``card`` belong to ``person_id``?"""
        return self.identify_card(card) == person_id

    # -- PINs --------------------------------------------------------------------------

    def pin_index(self, pin: str) -> int:
        """16-bit keyed bucket of a PIN (under the current index key and rotation layers)."""
        return rekey_pin_index(pin_index_for(pin, self._pin_key), self._pin_layers)

    def _indexes(self, pin: str) -> list[int]:
        out = [self.pin_index(pin)]
        for key in self._legacy_keys:
            idx = rekey_pin_index(pin_index_for(pin, key), self._pin_layers)
            if idx not in out:
                out.append(idx)
        return out

    def _candidates(
        self, pin: str, now: float, person_id: str | None = None, *, where: str = "-"
    ) -> list[CachedPin]:
        idxs = self._indexes(pin)
        marks = ", ".join("?" * len(idxs))
        sql = (
            f"SELECT {_PIN_COLUMNS} FROM pins WHERE pin_index IN ({marks}) "  # noqa: S608 - placeholders only
            "AND revoked_at IS NULL ORDER BY id"
        )
        try:
            rows = self._db("PIN lookup", where, lambda: self.db.execute(sql, idxs).fetchall())
        except StoreDown:
            found = self._cache.in_buckets(idxs)
        else:
            found = [pin_of(r) for r in rows]
            self._cache.replace_buckets(idxs, found)
        return [
            p for p in found if p.usable(now) and (person_id is None or p.person_id == person_id)
        ]

    def _verify(self, pin_hash: str, pin: str) -> bool:
        return verify_pin(self._ph, pin_hash, pin)

    def _reindex(self, pin: CachedPin, plain: str) -> None:
        """Move a row found under a legacy index key to the current one (best effort)."""
        idx = self.pin_index(plain)
        if pin.pin_index == idx or self._degraded is not None:
            return
        try:
            self.db.execute("UPDATE pins SET pin_index = ? WHERE id = ?", [idx, pin.id])
        except sqlite3.Error:
            return
        self._cache.put(replace(pin, pin_index=idx), from_store=False)

    def set_pin(self, person_id: str, pin: str, now: float, terms: PinTerms = NORMAL_PIN) -> int:
        """Store a PIN. A person has at most one active PIN per kind (the old one is
        revoked). CredentialError when the PIN is malformed or already in use."""
        validate_pin(pin)
        check_visitor(terms)
        for row in self._candidates(pin, now):
            if self._verify(row.pin_hash, pin):
                # never say whose: only that this PIN cannot be used
                raise CredentialError("this PIN is already in use; choose another")
        return self._store_pin(person_id, self._ph.hash(pin), self.pin_index(pin), now, terms)

    def set_pin_hash(
        self,
        person_id: str,
        pin_hash: str,
        pin_index: int,
        now: float,
        terms: PinTerms = NORMAL_PIN,
    ) -> int:
        """Store a PIN hashed by the management side: an argon2id hash not cheaper than
        this gateway's parameters (and not so costly a Pi cannot verify it) plus its
        :func:`pin_index_for` index under this gateway's index key. Replaces the person's
        active PIN of that kind. CredentialError names what is wrong. Uniqueness of the
        PIN cannot be checked here (the gateway never sees it): the sender must ensure it."""
        self.check_pin_hash(pin_hash)
        check_pin_record(pin_index, terms)
        stored = rekey_pin_index(pin_index, self._pin_layers)  # the sender has no layers
        return self._store_pin(person_id, pin_hash, stored, now, terms)

    def check_pin_hash(self, pin_hash: str) -> None:
        """CredentialError unless ``pin_hash`` is an argon2id (v1.3) hash with parameters
        at least this gateway's and at most :data:`MAX_MEMORY_KIB` etc."""
        check_pin_hash(pin_hash, self._params, self._ph)

    def _store_pin(
        self, person_id: str, pin_hash: str, pin_index: int, now: float, terms: PinTerms
    ) -> int:
        kind, expires_at, uses_left = terms.kind, terms.expires_at, terms.uses_left
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
        self._cache.drop_person(person_id, kind)
        self._cache.put(
            CachedPin(pin_id, person_id, pin_index, pin_hash, kind, expires_at, uses_left)
        )
        return pin_id

    def revoke_pins(self, person_id: str, now: float, kind: PinKind | None = None) -> int:
        """Revoke a person's PINs (of one kind, or all); return how many."""
        n = self._revoke("pins", person_id, now, "kind", kind)
        self._cache.drop_person(person_id, kind)
        return n

    def consume_use(self, pin_id: int) -> bool:
        """Take one use off a counted (visitor) PIN after a grant; False when none left
        or the PIN has no use count. While the store fails the use is taken off the
        cached row and written back later."""
        if self._cache.pending_uses and self._may_try_db():
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
        except StoreDown:
            return self._cache.take_use(pin_id)
        if cur.rowcount > 0:
            self._cache.used(pin_id)
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
        found: list[CachedPin] = []
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
        hit: CachedPin | None = None
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
        self._cache.set_lockout(("person", person_id), None)
        with suppress(StoreDown):
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
        mem = self._cache.lockout((scope, subject))
        left = mem[1] - now if mem else 0.0
        try:
            row = self._stored_lockout("lockout check", scope, subject)
        except StoreDown:
            row = None
        if row is not None:
            left = max(left, float(row[1]) - now)
        return max(0.0, left)

    def _stored_lockout(
        self, what: str, scope: str, subject: str, where: str = ""
    ) -> tuple[int, float] | None:
        """The stored ``(failures, locked_until)`` of a subject; StoreDown when unreadable."""
        row = self._db(
            what,
            where or (subject if scope == "reader" else "-"),
            lambda: self.db.execute(
                "SELECT failures, locked_until FROM lockouts WHERE scope = ? AND subject = ?",
                [scope, subject],
            ).fetchone(),
        )
        return None if row is None else (int(row[0]), float(row[1]))

    def _raise_if_locked(self, scope: str, subject: str, now: float) -> None:
        left = self.locked_for(scope, subject, now)
        if left > 0:
            raise LockedOutError(scope, subject, left)

    def _fail(
        self, scope: Literal["reader", "person"], subject: str, now: float, where: str = ""
    ) -> None:
        where = where or (subject if scope == "reader" else "-")
        key = (scope, subject)
        stored: tuple[int, float] | None = None
        up = True
        try:
            stored = self._stored_lockout("failure count", scope, subject, where)
        except StoreDown:
            up = False
        policy = self.policy_for(scope)
        failures = failures_after((stored, self._cache.lockout(key)), now, policy)
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
            except StoreDown:
                up = False
        self._cache.set_lockout(key, None if up else (failures, until))
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
        self._cache.set_lockout((scope, subject), None)
        self.db.execute("DELETE FROM lockouts WHERE scope = ? AND subject = ?", [scope, subject])
