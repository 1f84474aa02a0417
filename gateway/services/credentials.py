"""Every change to a card, a PIN or a person's validity, once, for the CLI and the signed
MQTT commands alike.

Each function takes its dependencies explicitly (:class:`CredentialDeps`), writes the change
and its audit row in one transaction, and tells the running daemon's caches: a revocation
is taken out of the in-memory credential cache *before* the database is read or written,
so that a revocation that reached this process is refused even if the database then fails
(the caller gets the error). A validity change is cached before the write only as far as
it restricts access; the stored period replaces it after the commit. Changes made by
another process (the CLI) reach the daemon through
:class:`gateway.services.cache_follower.CacheFollower`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.credentials.hashing import NORMAL_PIN, CredentialError, PinKind, PinTerms
from gateway.privacy import audit
from gateway.privacy.people import Person, get_person
from gateway.services.cache_state import CacheState, PersonRecord
from gateway.store.tx import transaction

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CredentialDeps:
    """What a credential change needs: the card/PIN store (its database is the one
    written), the daemon's cache state when running inside the daemon, a clock."""

    credentials: Credentials
    cache: CacheState | None = None
    clock: Callable[[], float] = time.time


def _changed(deps: CredentialDeps, person_id: str, record: PersonRecord | None = None) -> None:
    if deps.cache is not None:
        deps.cache.note_change(person_id, record=record)


@contextmanager
def _change(
    deps: CredentialDeps, person_id: str, action: str, *, actor: str, channel: str
) -> Iterator[tuple[float, dict[str, Any]]]:
    """After the caller took the person's cards or PINs out of the in-memory cache (fail
    closed): tell the cache, check the person exists, and give the time of the change; the
    change and its audit row ``action`` (with the details the caller fills in, and the
    channel) are made in one transaction."""
    _changed(deps, person_id)  # even when the database cannot be read below
    db = deps.credentials.db
    get_person(db, person_id)  # a clear error for an unknown id
    now = deps.clock()
    details: dict[str, Any] = {}
    with transaction(db):
        yield now, details
        audit.append(db, actor, action, person_id, {**details, "channel": channel}, now=now)


def add_card(
    deps: CredentialDeps,
    person_id: str,
    card: tuple[int | None, int],
    *,
    actor: str,
    channel: str,
) -> int:
    """Give a person a card ``(facility, number)`` (stored as a keyed hash only); return its
    id. CredentialError when the card belongs to someone. Audited as ``card.added``."""
    creds = deps.credentials
    try:
        with _change(deps, person_id, "card.added", actor=actor, channel=channel) as (now, info):
            card_id = creds.add_card(person_id, card[0], card[1], now)
            info["card_id"] = card_id
    except BaseException:
        # rolled back: not in the database, so not in the cache either (the store caches
        # a card as it writes it, before this transaction commits)
        creds.forget_cards(person_id, creds.card_hmac(card[0], card[1]))
        raise
    log.info("a card was added to a person via %s", channel)
    return card_id


def revoke_card(
    deps: CredentialDeps,
    person_id: str,
    *,
    actor: str,
    channel: str,
    card_hmac: bytes | None = None,
    card: tuple[int | None, int] | None = None,
) -> int:
    """Revoke one card of ``person_id`` (by its keyed hash, or by ``(facility, number)``)
    or all of their cards; return how many were active. Audited as ``card.revoked``."""
    creds = deps.credentials
    if card is not None:
        card_hmac = creds.card_hmac(card[0], card[1])
    # a hash given out before a card-key rotation names the card in its layered form now
    forms: list[bytes | None] = [None] if card_hmac is None else [*creds.card_hmac_forms(card_hmac)]
    for form in forms:
        creds.forget_cards(person_id, form)  # fail closed: refused from now on
    with _change(deps, person_id, "card.revoked", actor=actor, channel=channel) as (now, info):
        n = sum(creds.revoke_cards(person_id, now, form) for form in forms)
        info.update(count=n, one_card=card_hmac is not None)
    log.info("%d card(s) of a person revoked via %s", n, channel)
    return n


def revoke_pin(
    deps: CredentialDeps,
    person_id: str,
    *,
    actor: str,
    channel: str,
    kind: PinKind | None = None,
) -> int:
    """Revoke a person's PINs (of one kind, or all); return how many. ``pin.revoked``."""
    creds = deps.credentials
    creds.forget_pins(person_id, kind)
    with _change(deps, person_id, "pin.revoked", actor=actor, channel=channel) as (now, info):
        n = creds.revoke_pins(person_id, now, kind)
        info.update(count=n, kind=kind or "all")
    log.info("%d PIN(s) of a person revoked via %s", n, channel)
    return n


def set_pin(
    deps: CredentialDeps,
    person_id: str,
    pin: str,
    *,
    actor: str,
    channel: str,
    kind: PinKind = "normal",
) -> int:
    """Set a person's PIN (argon2id hash only; replaces their PIN of that kind)."""
    creds = deps.credentials
    creds.forget_pins(person_id, kind)  # the PIN it replaces is refused from now on
    with _change(deps, person_id, "pin.set", actor=actor, channel=channel) as (now, info):
        pin_id = creds.set_pin(person_id, pin, now, PinTerms(kind))
        info.update(pin_id=pin_id, kind=kind)
    return pin_id


def set_pin_hash(
    deps: CredentialDeps,
    person_id: str,
    pin_hash: str,
    pin_index: int,
    *,
    actor: str,
    channel: str,
    terms: PinTerms = NORMAL_PIN,
) -> int:
    """Store a PIN hashed by the management side (the MQTT ``set_pin`` command)."""
    creds = deps.credentials
    creds.check_pin_hash(pin_hash)  # bad input (no database read) changes nothing
    creds.forget_pins(person_id, terms.kind)
    with _change(deps, person_id, "pin.set", actor=actor, channel=channel) as (now, info):
        pin_id = creds.set_pin_hash(person_id, pin_hash, pin_index, now, terms)
        info.update(pin_id=pin_id, kind=terms.kind)
    return pin_id


_KEEP = object()


def set_validity(
    deps: CredentialDeps,
    person_id: str,
    *,
    actor: str,
    channel: str,
    valid_from: object = _KEEP,
    valid_until: object = _KEEP,
) -> Person:
    """Change a person's validity period (``None`` clears a bound; an omitted bound is
    kept). CredentialError when the period would end before it starts."""
    creds = deps.credentials
    db = creds.db
    _changed(deps, person_id)  # refused from memory for a while even if nothing can be read
    old = get_person(db, person_id)
    start = old.valid_from if valid_from is _KEEP else valid_from
    end = old.valid_until if valid_until is _KEEP else valid_until
    for name, v in (("valid_from", start), ("valid_until", end)):
        if v is not None and not isinstance(v, int | float):
            raise CredentialError(f"{name} must be a time or None")
    if isinstance(start, int | float) and isinstance(end, int | float) and end <= start:
        raise CredentialError("valid_until must be after valid_from")
    new_from = None if start is None else float(start)  # type: ignore[arg-type]
    new_until = None if end is None else float(end)  # type: ignore[arg-type]
    record = PersonRecord(old.id, old.role, old.access_group, new_from, new_until)
    # until it is stored, only the part of the change that restricts access is cached
    _changed(deps, person_id, _narrowest(record, old.valid_from, old.valid_until))
    with transaction(db):
        db.execute(
            "UPDATE people SET valid_from = ?, valid_until = ? WHERE id = ?",
            [new_from, new_until, person_id],
        )
        audit.append(
            db,
            actor,
            "person.validity",
            person_id,
            {"valid_from": new_from, "valid_until": new_until, "channel": channel},
        )
    _changed(deps, person_id, record)  # stored: the cache may now extend access too
    return get_person(db, person_id)


def _narrowest(new: PersonRecord, old_from: float | None, old_until: float | None) -> PersonRecord:
    """``new`` cut to the period the old one also allowed (a later start, an earlier end):
    what may be cached before the change is stored."""
    start = max((t for t in (old_from, new.valid_from) if t is not None), default=None)
    end = min((t for t in (old_until, new.valid_until) if t is not None), default=None)
    return PersonRecord(new.person_id, new.role, new.access_group, start, end)


@dataclass(frozen=True)
class PersonEdit:
    """Fields of a person to change (None: keep)."""

    name: str | None = None
    unit: str | None = None
    role: str | None = None
    access_group: str | None = None


def edit_person(
    deps: CredentialDeps, person_id: str, edit: PersonEdit, *, actor: str, channel: str
) -> Person:
    """Change a person's name, unit, role or access group; audited as ``person.edit`` with
    the names of the fields changed (never the name itself). A change of role or group
    takes the person out of the in-memory cache until it is stored (fail closed)."""
    from gateway.privacy.people import ROLES

    db = deps.credentials.db
    old = get_person(db, person_id)
    name = old.display_name if edit.name is None else edit.name.strip()
    if not name:
        raise CredentialError("display name must not be empty")
    role = old.role if edit.role is None else edit.role
    if role not in ROLES:
        raise CredentialError(f"role {role!r} is not one of {', '.join(ROLES)}")
    group = old.access_group if edit.access_group is None else edit.access_group.strip()
    if not group:
        raise CredentialError("access group must not be empty")
    unit = old.unit if edit.unit is None else edit.unit.strip()
    new = {"display_name": name, "unit": unit, "role": role, "access_group": group}
    changed = sorted(k for k, v in new.items() if getattr(old, k) != v)
    if not changed:
        return old
    access = role != old.role or group != old.access_group
    if access:
        _changed(deps, person_id)  # refused from memory until the change is stored
    with transaction(db):
        db.execute(
            "UPDATE people SET display_name = ?, unit = ?, role = ?, access_group = ? WHERE id = ?",
            [name, unit, role, group, person_id],
        )
        details = {"changed": changed, "role": role, "access_group": group, "channel": channel}
        audit.append(db, actor, "person.edit", person_id, details)
    if access:
        record = PersonRecord(old.id, role, group, old.valid_from, old.valid_until)
        _changed(deps, person_id, record)
    return get_person(db, person_id)
