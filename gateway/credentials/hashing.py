"""Pure credential maths: keyed card and PIN hashes, PIN policy, lockout length.

- A card is stored as ``HMAC-SHA256(card_key, "facility:number")`` (:func:`card_digest`);
  ``card_key`` is the device key's ``Purpose.CARD_LOOKUP`` subkey (:mod:`gateway.keys`).
  The plaintext number exists only in memory.
- A PIN is stored as an argon2id hash (per-PIN salt) plus a *pepper index*: the first
  16 bits of ``HMAC-SHA256(index_key, pin)`` (:func:`pin_index_for`). Identifying a PIN
  without a claimed identity looks up the (few) rows in that bucket and argon2-verifies
  only those, so the cost is O(candidates x KDF), not O(people x KDF). The index holds
  16 bits only: even with the index key it narrows a 6-digit PIN to ~15 guesses that
  still need argon2.
- A PIN hashed by the management side travels sealed (:func:`seal_pin_hash`) and must
  not be cheaper than this gateway's parameters (:func:`check_pin_hash`).
- Brute force: after ``free_attempts`` failures a subject is locked out for
  ``base_s * factor**n`` (capped): :func:`lockout_seconds`, :func:`failures_after`.

No I/O here: the SQL store is :mod:`gateway.credentials.store`, the in-memory fallback
:mod:`gateway.credentials.cache`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import GatewayError

log = logging.getLogger(__name__)


PinKind = Literal["normal", "duress", "visitor"]
INDEX_BITS = 16
KINDS: frozenset[str] = frozenset(get_args(PinKind))

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
class PinTerms:
    """What a stored PIN is and how long it lasts: its kind and, for a visitor PIN, an
    expiry and/or a number of uses (at least one of them)."""

    kind: PinKind = "normal"
    expires_at: float | None = None
    uses_left: int | None = None


NORMAL_PIN = PinTerms()


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


def pin_index_for(pin: str, index_key: bytes) -> int:
    """The 16-bit pepper index of ``pin`` under ``index_key`` (0..65535).

    For the management side: with ``index_key = gateway.keys.derive(site_key,
    "access-gateway/pin-index/v1")`` the result is what the ``set_pin`` command's
    ``pin_index`` must carry."""
    digest = hmac.new(index_key, pin.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - INDEX_BITS)


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

    from gateway.keys import Purpose, subkey_of

    nonce = os.urandom(12)
    key = subkey_of(site_key, Purpose.PIN_TRANSPORT)
    ct = AESGCM(key).encrypt(nonce, pin_hash.encode(), _pin_transport_aad(person_id))
    return base64.b64encode(nonce + ct).decode()


def open_pin_hash(sealed: str, person_id: str, site_key: bytes) -> str:
    """The argon2id hash inside :func:`seal_pin_hash`'s output; CredentialError otherwise."""
    import base64
    import binascii

    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from gateway.keys import Purpose, subkey_of

    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialError("pin_hash_sealed is not base64") from None
    if len(raw) < 12 + 16 + 1:
        raise CredentialError("pin_hash_sealed is too short")
    key = subkey_of(site_key, Purpose.PIN_TRANSPORT)
    try:
        plain = AESGCM(key).decrypt(raw[:12], raw[12:], _pin_transport_aad(person_id))
    except InvalidTag:
        raise CredentialError(
            "pin_hash_sealed does not open with this site's key for this person"
        ) from None
    return plain.decode("utf-8", errors="replace")


def management_pin_record(
    pin: str,
    site_key: bytes,
    person_id: str,
    params: PinHashParams | None = None,
    *,
    index_key: bytes | None = None,
) -> tuple[str, int]:
    """What the management side (holding the site key) sends in a ``set_pin`` command for
    ``pin``: its argon2id hash (fresh salt) sealed by :func:`seal_pin_hash`, and its index
    under the site's PIN index key (``index_key``: the one carried over a site-key
    rotation; default derived from ``site_key``). Neither the PIN nor its bare hash ever
    travels."""
    from gateway.keys import pin_index_key

    validate_pin(pin)
    index = pin_index_for(pin, index_key or pin_index_key(site_key))
    return seal_pin_hash(make_hasher(params).hash(pin), person_id, site_key), index


def validate_pin(pin: str, min_len: int = 4, max_len: int = 8) -> None:
    """Raise CredentialError unless ``pin`` is min_len..max_len digits."""
    if not pin.isascii() or not pin.isdigit() or not min_len <= len(pin) <= max_len:
        raise CredentialError(f"a PIN must be {min_len} to {max_len} digits")


def make_hasher(params: PinHashParams | None = None) -> PasswordHasher:
    """An argon2id hasher with ``params`` (the defaults when None)."""
    p = params or PinHashParams()
    return PasswordHasher(
        time_cost=p.time_cost, memory_cost=p.memory_kib, parallelism=p.parallelism
    )


def card_digest(card_key: bytes, facility: int | None, card_number: int) -> bytes:
    """Keyed hash of a card (format-independent: facility and number only)."""
    msg = f"{facility or 0}:{card_number}".encode()
    return hmac.new(card_key, msg, hashlib.sha256).digest()


def verify_pin(hasher: PasswordHasher, pin_hash: str, pin: str) -> bool:
    """True when ``pin`` matches ``pin_hash``; a corrupt hash never matches (logged)."""
    try:
        return bool(hasher.verify(pin_hash, pin))
    except VerifyMismatchError:
        return False
    except (VerificationError, InvalidHashError):
        log.warning("a stored PIN hash is corrupt; it can never match")
        return False


def check_pin_hash(pin_hash: str, ours: PinHashParams, hasher: PasswordHasher) -> None:
    """CredentialError unless ``pin_hash`` is an argon2id (v1.3) hash with parameters
    at least ``ours`` (and ``hasher``'s salt and hash lengths) and at most
    :data:`MAX_MEMORY_KIB` etc."""
    if not isinstance(pin_hash, str) or len(pin_hash) > 256:
        raise CredentialError("pin_hash must be an argon2id hash string")
    try:
        got = extract_parameters(pin_hash)
    except (InvalidHashError, ValueError):
        raise CredentialError("pin_hash is not a valid argon2 hash") from None
    problems: list[str] = []
    if got.type is not Type.ID:
        problems.append(f"type argon2{got.type.name.lower()} (argon2id required)")
    if got.version != 0x13:
        problems.append(f"version {got.version} (19 required)")
    if got.time_cost < ours.time_cost:
        problems.append(f"t={got.time_cost} < {ours.time_cost}")
    if got.memory_cost < ours.memory_kib:
        problems.append(f"m={got.memory_cost} KiB < {ours.memory_kib}")
    if got.salt_len < hasher.salt_len:
        problems.append(f"salt of {got.salt_len} bytes < {hasher.salt_len}")
    if got.hash_len < hasher.hash_len:
        problems.append(f"hash of {got.hash_len} bytes < {hasher.hash_len}")
    if got.time_cost > MAX_TIME_COST:
        problems.append(f"t={got.time_cost} > {MAX_TIME_COST}")
    if got.memory_cost > MAX_MEMORY_KIB:
        problems.append(f"m={got.memory_cost} KiB > {MAX_MEMORY_KIB}")
    if not 1 <= got.parallelism <= MAX_PARALLELISM:
        problems.append(f"p={got.parallelism} outside 1..{MAX_PARALLELISM}")
    if problems:
        raise CredentialError("pin_hash not accepted: " + ", ".join(problems))


def check_pin_record(pin_index: int, terms: PinTerms) -> None:
    """CredentialError unless a pre-hashed PIN's index, kind and limits are acceptable."""
    if isinstance(pin_index, bool) or not isinstance(pin_index, int):
        raise CredentialError("pin_index must be an integer")
    if not 0 <= pin_index < 1 << INDEX_BITS:
        raise CredentialError(f"pin_index must be 0..{(1 << INDEX_BITS) - 1}")
    if terms.kind not in KINDS:
        raise CredentialError(f"unknown PIN kind {terms.kind!r}")
    check_visitor(terms)
    if terms.uses_left is not None and terms.uses_left < 1:
        raise CredentialError("uses_left must be at least 1")


def check_visitor(terms: PinTerms) -> None:
    """CredentialError for a visitor PIN without an expiry or a use count."""
    if terms.kind == "visitor" and terms.expires_at is None and terms.uses_left is None:
        raise CredentialError("a visitor PIN needs an expiry or a use count")


def failures_after(
    previous: Iterable[tuple[int, float] | None], now: float, policy: LockoutPolicy
) -> int:
    """The failure count after one more failure at ``now``, given earlier records
    ``(failures, locked_until)`` (stored and in memory); records older than
    ``reset_after_s`` are forgotten."""
    failures = 0
    for prev in previous:
        if prev is not None and now - float(prev[1]) < policy.reset_after_s:
            failures = max(failures, int(prev[0]))
    return failures + 1
