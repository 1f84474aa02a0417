"""Rotation of the site key (``privacy.site_key``): ``gateway keys rotate --what site``.

The site key is the root the office and every gate of the site share: event pseudonyms,
the PIN transport seal and the sealed person references of commands are derived from it
(and, on a gate without a gates key of its own, the template transform, bundle wrapping and
fan-out MAC). A purpose rotation (``--what pseudonym``) moves one of them to a new label,
but the old one stays derivable from the site key; only a new site key erases them.

Where it starts:

* **At the roster office** (``roster.role = "office"``): a fresh random key, only when
  every registered gate said in its last signed ack that it can adopt one (it runs the
  daemon, its site key is a file, it has a gates key of its own:
  :func:`gateway.services.roster_office.site_rotation_blockers`); otherwise refused,
  naming each gate and why (a gate out of service is removed first: ``gateway roster
  remove-gate``, so a stolen gate never receives the new key). In the same transaction
  every registered gate is sent a ``keys`` change in its roster stream
  (:func:`gateway.services.roster_office.queue_keys`), sealed for that gate alone, so every
  gate adopts the key, also one that is offline now (it gets the change, or the snapshot,
  when it catches up). Every later change and snapshot carries the current key too, so a
  gate registered after the rotation gets it with its first roster.
* **At a roster gate**: adopted from the roster (:func:`adopt_from_roster`), never made
  there. The keys are recorded (sealed) in the roster's transaction and adopted after it
  commits, so the roster (a revocation) is never held up by them; a crash or a failure
  is retried after the next roster and at the start
  (:func:`gateway.services.roster_gate.adopt_pending`). A key this instance retired is
  refused (an office restored from an old backup never rolls the site back).
* **At a site without a roster office**: by hand on each gate (``--key FILE``: the key
  made where the site's management side rotated it; without ``--key`` a fresh one, for a
  single-gate site).

What follows the key, in one transaction with the kv record of its id (``keys.site_id``):

* the templates, when the site key stands in for the gates key (no ``privacy.gates_key``):
  re-transformed as a ``transform`` rotation does (cancelable ones keep their transform
  key, carried; they cannot be re-transformed);
* the **PIN-index key is carried over** (sealed under the device key, ``keys.carried``):
  the stored PIN indexes at the office and on every gate cannot be recomputed without the
  PINs. The office sends its carried key with the site key so every gate indexes PINs
  alike. On a gate the stored indexes are hidden from it by ``--what pin`` (a gate-only
  layer); the PIN-index key is the one site-rooted key a site-key rotation does not erase;
* the generations of the site-rooted purposes (``--what pseudonym``) stay as they are.

The new key is written to ``<file>.new`` before the transaction and moved over the old one
(overwritten in place first) once it has committed; the WAL is then scrubbed. A crash in
between is finished at the next start (:func:`gateway.services.keys.finish_interrupted`).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import sqlite_utils

from gateway.config.root import GatewayConfig
from gateway.keys import CARRY_KV, MIN_KEY_BYTES, Keys, Purpose, key_id, seal_carried
from gateway.privacy.vault import Vault
from gateway.services.keys import (
    SITE_ID_KV,
    Rotation,
    RotationError,
    StagedKey,
    apply_rotation,
    carry_transform,
    check_current,
    kv_value,
    new_key_text,
    stage_key_file,
)
from gateway.store.kv import put_kv

log = logging.getLogger(__name__)

ROSTER_ACTOR = "roster"
#: kv entry: the fingerprints of the site keys rotated away from (JSON list, newest last).
RETIRED_KV = "keys.site_retired"
MAX_RETIRED = 64


def rotate_site(
    db: sqlite_utils.Database,
    keys: Keys,
    cfg: GatewayConfig,
    *,
    actor: str,
    new_key: bytes | None = None,
    pin_index_key: bytes | None = None,
    clock: Callable[[], float] = time.time,
) -> Rotation:
    """Move this instance to a new site key (``new_key``; default a fresh random one) in
    one transaction (see the module). ``pin_index_key``: the site's PIN-index key as the
    office sends it (default: the one in use here, carried over)."""
    ref = cfg.privacy.site_key
    if ref is None or ref.file is None:
        raise RotationError(
            "privacy.site_key must name a file (the gateway writes the new key there; a "
            "systemd credential cannot be rewritten)"
        )
    check_current(db.conn, keys)
    if new_key is None and cfg.roster.role == "gate":
        raise RotationError(
            "a roster gate's site key comes from its office: rotate it there (`gateway keys "
            "rotate --what site` at the office) and the roster brings it here"
        )
    if cfg.roster.role == "office":
        blockers = roster_blockers(db, cfg.site.id)
        if blockers:
            raise RotationError(
                "not every registered gate can adopt a new site key from the roster, so it "
                "would be left on the old one: " + "; ".join(blockers) + ". Fix them, or "
                "remove a gate no longer in service (`gateway roster remove-gate NAME`)"
            )
    key = new_key_text() if new_key is None else new_key
    if len(key) < MIN_KEY_BYTES:
        raise RotationError(f"a site key needs at least {MIN_KEY_BYTES} bytes")
    if pin_index_key is not None and len(pin_index_key) != len(keys.pin_index_site):
        raise RotationError("a PIN-index key has 32 bytes")
    if hmac.compare_digest(key, keys.site):
        raise RotationError("this instance already uses that site key")
    retired = retired_site_keys(db)
    if key_id(key) in retired:
        raise RotationError(f"site key {key_id(key)} was retired here: it is never used again")
    for other, name in ((keys.gates, "gates"), (keys.device, "device")):
        if other is not None and hmac.compare_digest(key, other):
            raise RotationError(f"the site key must differ from the {name} key")
    carried = dict(keys.carried)
    carried[Purpose.PIN_INDEX] = pin_index_key or keys.pin_index_site
    mode = cfg.privacy.template_protection
    extra: dict[str, Any] = {"pin_index": "carried over"}
    if keys.gates is None:  # the site key stands in for the gates key: templates follow
        carried, moved = carry_transform(db, replace(keys, carried=carried), mode)
        extra["gates_root"] = "site key"
        extra.update(moved)
    new_keys = replace(keys, site=key, carried=carried)
    old = Vault.from_keys(keys, protection=mode)
    new = Vault.from_keys(new_keys, clock=clock, protection=mode)
    recorded = kv_value(db.conn, SITE_ID_KV)
    staged = StagedKey(((stage_key_file(ref.file, key, recorded), ref.file),))
    kv = {
        SITE_ID_KV: key_id(key),
        CARRY_KV: seal_carried(keys.device, carried),
        RETIRED_KV: json.dumps([*retired, key_id(keys.site)][-MAX_RETIRED:]),
    }
    migrate = _queue_for_gates(cfg, new_keys, new) if cfg.roster.role == "office" else _adopted
    return apply_rotation(
        db,
        old,
        new,
        staged,
        what="site",
        ids=(key_id(keys.site), key_id(key)),
        actor=actor,
        clock=clock,
        extra=extra,
        kv=kv,
        migrate=migrate,
    )


def retired_site_keys(db: sqlite_utils.Database) -> list[str]:
    """The fingerprints of the site keys this instance rotated away from (newest last): a
    roster that sends one again (an office restored from an old backup) is refused."""
    text = kv_value(db.conn, RETIRED_KV)
    return [str(k) for k in json.loads(text)] if text else []


def roster_blockers(db: sqlite_utils.Database, site: str) -> list[str]:
    """:func:`gateway.services.roster_office.site_rotation_blockers` (imported late)."""
    from gateway.services.roster_office import site_rotation_blockers

    return site_rotation_blockers(db, site)


def _adopted(db: sqlite_utils.Database) -> Mapping[str, Any]:
    """A gate's part of the transaction: the roster's record of the keys to adopt goes
    (:data:`gateway.services.roster_gate.PENDING_KEYS_KV`: a sealed copy of the key)."""
    from gateway.services.roster_gate import PENDING_KEYS_KV

    db.execute("DELETE FROM kv WHERE key = ?", [PENDING_KEYS_KV])
    return {}


def _queue_for_gates(
    cfg: GatewayConfig, keys: Keys, vault: Vault
) -> Callable[[sqlite_utils.Database], Mapping[str, Any]]:
    """The office's part of the transaction: a ``keys`` change for every registered gate."""
    from gateway.services import roster_office

    def queue(db: sqlite_utils.Database) -> Mapping[str, Any]:
        deps = roster_office.office_deps(cfg, keys, db, vault)
        return {"gates_sent": roster_office.queue_keys(deps)}

    return queue


def adopt_from_roster(
    db: sqlite_utils.Database,
    keys: Keys,
    cfg: GatewayConfig,
    site_key: bytes,
    pin_index_key: bytes | None,
    *,
    status: Mapping[str, Any],
) -> bool:
    """A gate adopts the site key (and the PIN-index key) its roster carries; True when the
    gate must restart with them (adopted now, or adopted before but not running yet), False
    when it already runs with them. ``status``: whether it can take a new site key
    (:func:`gateway.gate.roster_wiring.site_key_status`); RotationError saying why when it
    cannot (the roster stays applied; the office does not rotate while a gate says so). On
    the running gate the other audited writes are held from before the transaction until
    its restart (:func:`gateway.services.key_purposes.holding_writes`), also when the
    rotation committed but its key file could not be moved (finished at the start)."""
    from gateway.privacy import audit
    from gateway.services.key_purposes import holding_writes
    from gateway.services.keys import read_carried

    recorded = kv_value(db.conn, SITE_ID_KV)
    if recorded == key_id(site_key) and recorded != key_id(keys.site):
        return True  # adopted already, not running with it yet: restart
    if hmac.compare_digest(site_key, keys.site):  # a gate set up after a rotation
        stored = read_carried(db.conn, keys.device).get(Purpose.PIN_INDEX)
        current = stored or keys.pin_index_site
        if pin_index_key is None or hmac.compare_digest(pin_index_key, current):
            return False
        carry_pin_index(db, keys, pin_index_key, actor=ROSTER_ACTOR)
        log.warning("PIN-index key adopted from the roster: restarting with it")
        return True
    if not status.get("adopts"):
        raise RotationError(f"this gate cannot take a new site key: {status.get('why')}")

    def run() -> Rotation:
        return rotate_site(
            db, keys, cfg, actor=ROSTER_ACTOR, new_key=site_key, pin_index_key=pin_index_key
        )

    try:
        done = holding_writes(db, "site", run)
    except Exception:
        if kv_value(db.conn, SITE_ID_KV) != key_id(site_key):
            raise  # rolled back: nothing changed
        # committed, its key file not moved in: the next start finishes it (finish_interrupted)
        audit.hold_writes(db, "the gate restarts with its new site key: retry in a few seconds")
        log.exception("site key adopted, its file not moved in: the restart finishes it")
        return True
    log.warning("site key %s adopted from the roster: restarting with it", done.new_key_id)
    return True


def carry_pin_index(
    db: sqlite_utils.Database, keys: Keys, pin_index_key: bytes, *, actor: str
) -> None:
    """Carry the site's PIN-index key (sealed under the device key) on an instance that
    already uses the site's current key but derived another one: a gate registered after a
    site-key rotation (from its roster), an office set up after one. Audited as
    ``keys.adopt`` (the key's fingerprint only); the instance restarts with it."""
    from gateway.privacy import audit
    from gateway.store.tx import transaction

    if len(pin_index_key) != len(keys.pin_index_site):
        raise RotationError("a PIN-index key has 32 bytes")
    check_current(db.conn, keys)
    carried = {**keys.carried, Purpose.PIN_INDEX: pin_index_key}
    with transaction(db):
        put_kv(db, CARRY_KV, seal_carried(keys.device, carried))
        detail = {"what": "pin-index", "new_key_id": key_id(pin_index_key)}
        audit.append(db, actor, "keys.adopt", "pin-index", detail)
