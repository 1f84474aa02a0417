"""Rotation of one purpose's key: ``gateway keys rotate --what
audit|access-log|card|pin|pseudonym`` (the one operation the CLI and the signed site-wide
MQTT command ``rotate_keys`` call).

Device purposes are renewed with the device key itself (:func:`rotate_device`: a new root,
every template re-wrapped, the old root erased), in the same transaction as their stored
values:

* ``audit``: the chain is verified under the old key and every keyed row re-MACed under the
  new one (contents unchanged); the old key is no longer carried, so it is gone.
* ``access-log``: every subject moved to the new key (people on record keep one subject
  each; subjects of people no longer on record are re-hashed too); the old key is gone.
* ``card``: a card hash cannot be recomputed without the card number, which the gate never
  stores. Rather than keep the old hashes (whoever had the old key and a copy of the
  database could test card numbers against them), each stored hash gets an outer HMAC layer
  under a fresh random key (``HMAC(new, HMAC(card_key, card))``); the layers are carried
  sealed under the new device key. The old stored values are gone, so the old key alone no
  longer tests a card against the database; the inner card key itself stays (carried): it
  cannot be erased without re-enrolling every card.
* ``pin``: the stored PIN index (16 bits of an HMAC of the PIN under the site's PIN-index
  key, which the office holds too) cannot be recomputed without the PIN either; it gets the
  same kind of layer (16 bits again: :func:`gateway.keys.rekey_pin_index`), held by the gate
  only. The office keeps sending un-layered indexes (``set_pin``); the gate layers them. So
  the site key and a copy of the database no longer narrow a stored PIN to its bucket. The
  argon2id hashes are salted and keyless: they need no rotation.
* ``card`` and ``pin`` are refused at a roster office (``roster.role = "office"``): it
  sends its stored card hashes and PIN indexes to the gates, which could not match them
  under a layer only the office holds. Each gate rotates its own.

Site-rooted purposes are shared with the office and the site's other gates, so they move to
the next *generation* of the purpose's label (kv ``keys.generations``, not secret), which
every holder of the site key derives alike; the signed site-wide command names the target
generation so every gate converges:

* ``pseudonym``: the event pseudonyms change (events before and after cannot be linked by
  their pseudonyms). The old generation stays derivable from the site key: erasing it needs
  a new site key, which only the office can roll out.

Every rotation is audited as ``keys.rotate`` with fingerprints only and appears in the
compliance report.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import sqlite_utils

from gateway.config.root import GatewayConfig
from gateway.keys import (
    LAYER_BYTES,
    LAYERED,
    Keys,
    Purpose,
    carry_over,
    key_id,
    rekey_card,
    rekey_pin_index,
)
from gateway.privacy import access_log, audit
from gateway.services.keys import (
    DEVICE_ID_KV,
    GENERATIONS_KV,
    ROTATE_ACTION,
    Migrate,
    Rotation,
    RotationError,
    check_current,
    kv_value,
    read_generations,
    rotate_device,
)
from gateway.store.kv import put_kv
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

#: Device purposes renewed with the device key (their stored values migrated).
DEVICE_PURPOSES = {
    "audit": Purpose.AUDIT_CHAIN,
    "access-log": Purpose.ACCESS_LOG,
    "card": Purpose.CARD_LOOKUP,
    "pin": Purpose.PIN_INDEX,
}
#: Site-rooted purposes moved to their next generation.
GENERATION_PURPOSES = {"pseudonym": Purpose.PSEUDONYM}
#: Every ``--what`` of ``gateway keys rotate``.
WHATS = ("device", "transform", *DEVICE_PURPOSES, *GENERATION_PURPOSES)


def _rekey_audit(db: sqlite_utils.Database, old: Keys, new: Keys) -> Mapping[str, Any]:
    key, before = (audit.ChainKey(k.subkey(Purpose.AUDIT_CHAIN)) for k in (new, old))
    head = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    rows = audit.rekey(db, before, key)
    audit.bind_key(db, key)  # the rotation's own audit row goes under the new key
    if head is None:
        return {"audit_rows": rows}
    # the head published before the rotation stays recognisable (gateway.gate.audit_watch)
    mac = audit.head_mac(before, int(head[0]), str(head[1]))
    return {"audit_rows": rows, "rekeyed_upto": int(head[0]), "old_head_mac": mac}


def _rekey_access_log(db: sqlite_utils.Database, old: Keys, new: Keys) -> Mapping[str, Any]:
    key = new.subkey(Purpose.ACCESS_LOG)
    rows = access_log.rekey(db, old.subkey(Purpose.ACCESS_LOG), key)
    access_log.bind_key(db, key)
    return {"access_log_rows": rows}


#: Where the values a layered rotation moves are stored: table, column.
_LAYERED_VALUES = {"card": ("cards", "card_hmac"), "pin": ("pins", "pin_index")}


def _layer_migration(what: str, layer: bytes) -> Migrate:
    """Put ``layer`` over every stored card hash (``card``) or PIN index (``pin``)."""
    table, column = _LAYERED_VALUES[what]

    def rekey(db: sqlite_utils.Database, old: Keys, new: Keys) -> Mapping[str, Any]:
        rows = db.execute(f"SELECT id, {column} FROM {table}").fetchall()  # noqa: S608 - constants
        for row_id, value in rows:
            if what == "card":
                moved: bytes | int = rekey_card(bytes(value), [layer])
            else:
                moved = rekey_pin_index(int(value), [layer])
            db.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", [moved, row_id])  # noqa: S608
        return {table: len(rows)}

    return rekey


def rotate(
    db: sqlite_utils.Database,
    keys: Keys,
    cfg: GatewayConfig,
    what: str,
    *,
    actor: str,
    generation: int | None = None,
    clock: Callable[[], float] = time.time,
    running: bool = False,
) -> Rotation:
    """Renew the device key or one purpose's key (``what``: ``device``, a key of
    :data:`DEVICE_PURPOSES` or of :data:`GENERATION_PURPOSES`) and move its stored values,
    in one transaction (what the CLI and the signed ``rotate_keys`` command run; the gates
    key needs the site's shared new key: :func:`gateway.services.keys.rotate_transform`).
    ``generation``: the target generation of a site-rooted purpose (the site-wide command's;
    default the next one). ``running``: on the running gate (:func:`holding_writes`)."""
    if running:
        again = partial(
            rotate, db, keys, cfg, what, actor=actor, generation=generation, clock=clock
        )
        return holding_writes(db, what, again)
    if what in GENERATION_PURPOSES:
        return _rotate_generation(db, keys, what, actor=actor, target=generation, clock=clock)
    if generation is not None:
        raise RotationError(f"the {what} key has no generation (only a site-rooted one has)")
    if what == "device":
        return rotate_device(db, keys, cfg, actor=actor, clock=clock)
    if what not in DEVICE_PURPOSES:
        raise RotationError(f"no key {what!r}: one of {', '.join(WHATS)}")
    if DEVICE_PURPOSES[what] in LAYERED and cfg.roster.role == "office":
        raise RotationError(
            f"the {what} key is not rotated at a roster office: the gates match the "
            f"{what} values this office sends, which a rotation layer known here only "
            "would hide from them; rotate it on each gate (`gateway keys rotate` there)"
        )
    check_current(db.conn, keys)  # before the old keys could be re-bound below
    purpose = DEVICE_PURPOSES[what]
    carried = carry_over(keys)
    migrate: Migrate
    if purpose in LAYERED:
        layer = secrets.token_bytes(LAYER_BYTES)
        carried[LAYERED[purpose]] = carried.get(LAYERED[purpose], b"") + layer
        migrate = _layer_migration(what, layer)
    else:
        del carried[purpose]  # derived from the new device key from now on
        migrate = _rekey_audit if purpose is Purpose.AUDIT_CHAIN else _rekey_access_log
    try:
        return rotate_device(
            db, keys, cfg, actor=actor, clock=clock, what=what, carried=carried, migrate=migrate
        )
    except BaseException:
        # rolled back: the old keys stay bound. Committed (the key file's move failed
        # after it): the new ones stay, the rows from now on must be keyed as the database is
        if kv_value(db.conn, DEVICE_ID_KV) in (None, key_id(keys.device)):
            audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
            access_log.bind_key(db, keys.subkey(Purpose.ACCESS_LOG))
        raise


def holding_writes(db: sqlite_utils.Database, what: str, run: Callable[[], Rotation]) -> Rotation:
    """``run`` the rotation on the running gate, whose parts still hold the old keys until
    its restart: from before the rotation's transaction every other audited write to the
    database in this process (cards, PINs, enrolments, consents) is refused with a
    retryable error, until the restart; released if the rotation fails."""
    reason = (
        f"the gate's {what} key is being rotated and the gate restarts with the new keys: "
        "nothing was changed, retry in a few seconds"
    )
    audit.hold_writes(db, reason, allow_thread=threading.get_ident())  # the rotation's own
    try:
        done = run()
    except BaseException:
        audit.hold_writes(db, None)
        raise
    audit.hold_writes(db, reason)  # until the restart (a new process)
    log.warning("%s key rotated on the running gate: writes refused until the restart", what)
    return done


def _rotate_generation(
    db: sqlite_utils.Database,
    keys: Keys,
    what: str,
    *,
    actor: str,
    target: int | None,
    clock: Callable[[], float],
) -> Rotation:
    purpose = GENERATION_PURPOSES[what]
    with transaction(db):
        generations = read_generations(db.conn)
        current = generations.get(purpose, 0)
        new_gen = current + 1 if target is None else target
        if new_gen <= current:
            raise RotationError(f"{what} is at generation {current} already (asked: {new_gen})")
        generations[purpose] = new_gen
        old_id = key_id(keys.subkey(purpose))
        new_keys = Keys(keys.device, keys.site, keys.gates, keys.carried, generations)
        new_id = key_id(new_keys.subkey(purpose))
        put_kv(db, GENERATIONS_KV, json.dumps({p.name: n for p, n in generations.items()}))
        details = {"what": what, "generation": new_gen, "old_key_id": old_id}
        audit.append(db, actor, ROTATE_ACTION, what, {**details, "new_key_id": new_id}, now=clock())
    return Rotation(what, 0, 0, old_id, new_id, True)


def generation_of(db: sqlite_utils.Database, what: str) -> int:
    """The current generation of a site-rooted purpose (0: never rotated)."""
    return read_generations(db.conn).get(GENERATION_PURPOSES[what], 0)
