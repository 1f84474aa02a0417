"""Key rotation: the one operation the CLI (``gateway keys rotate``) and, later, MQTT and the
web console call.

``transform``: a new gates key (``privacy.gates_key``): every stored template is moved to the
new template transform (and its bundle-wrap and fan-out keys) in one transaction, without
re-enrolment; the match scores stay the same. The other gates of the site adopt the same new
key (``--key FILE``) so bundles and fan-outs keep working between them.

The new key is written beside the old one (``<file>.new``, 0600) before the transaction and
moved over it once the transaction has committed; the WAL is then checkpointed and truncated,
so neither the database, its WAL nor the key file keeps the old key or data encrypted under
it.

``device``: a new device key (file provider: a new 0600 key file; TPM provider: a new sealed
blob pair). Every per-person template key is re-wrapped under it in one transaction; the
device subkeys whose stored values cannot be recomputed (card and PIN lookup, audit chain,
access-log subjects: :data:`gateway.keys.CARRIED`) are carried over sealed under the new key,
and the old device key is gone.

Audited as ``keys.rotate`` (key fingerprints only, never key material). The daemon must be
stopped (it holds the old keys in memory): ``gateway keys rotate`` holds the state lock
(:func:`gateway.keys.state_lock`) the daemon holds while it runs.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.config.base import SecretRef
from gateway.config.keys import KeysConfig
from gateway.config.root import GatewayConfig
from gateway.errors import ConfigError, GatewayError
from gateway.face.protection import Mode
from gateway.keys import (
    CARRY_KV,
    MIN_KEY_BYTES,
    Keys,
    Purpose,
    carry_over,
    key_id,
    open_carried,
    seal_carried,
)
from gateway.privacy import audit, protection_record
from gateway.privacy.protection_record import template_count
from gateway.privacy.scrub import complete_pending
from gateway.privacy.vault import Vault, rekey_templates
from gateway.store.kv import put_kv
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

ROTATE_ACTION = "keys.rotate"
NEW_KEY_BYTES = 32
SCRUB_WAIT_S = 2.0
#: kv entry holding the id (:func:`gateway.keys.key_id`) of the gates key in use, written by
#: a transform rotation: once present, the site key never stands in for the gates key.
GATES_ID_KV = "keys.gates_id"
#: kv entry holding the id of the device key in use, written by a device rotation.
DEVICE_ID_KV = "keys.device_id"
#: kv entry holding the id of the site key in use, written by a site-key rotation
#: (:mod:`gateway.services.site_rotation`).
SITE_ID_KV = "keys.site_id"
#: kv entry: how many times each site- or gates-rooted purpose was rotated (JSON).
GENERATIONS_KV = "keys.generations"
#: In one rotation's transaction: recompute the stored values keyed by the old keys under the
#: new ones; returns counts for the audit row.
Migrate = Callable[[sqlite_utils.Database, Keys, Keys], Mapping[str, Any]]


class RotationError(GatewayError):
    """A key cannot be rotated (nothing changed)."""


@dataclass(frozen=True)
class Rotation:
    """What a rotation did (no key material)."""

    what: str
    people: int
    templates: int
    old_key_id: str
    new_key_id: str
    scrubbed: bool


def kv_value(conn: sqlite3.Connection, name: str) -> str | None:
    """One kv entry, None when absent (or when the database has no kv table yet)."""
    try:
        row = conn.execute("SELECT value FROM kv WHERE key = ?", (name,)).fetchone()
    except sqlite3.OperationalError:  # a database not created yet: no kv table
        return None
    return None if row is None else str(row[0])


def check_gates(conn: sqlite3.Connection, keys: Keys) -> None:
    """ConfigError when the site key would stand in for the gates key of a database that
    records a gates key of its own."""
    recorded = kv_value(conn, GATES_ID_KV)
    if keys.gates is None and recorded is not None:
        why = f"this database uses a gates key (id {recorded}): the site key cannot stand in"
        raise ConfigError([("privacy.gates_key", "None", why)])


def read_carried(conn: sqlite3.Connection, device_root: bytes) -> dict[Purpose, bytes]:
    """The device subkeys carried over a device-key rotation (none before the first one);
    ConfigError when a device rotation is recorded but its carried keys are gone."""
    text = kv_value(conn, CARRY_KV)
    if text is None and kv_value(conn, DEVICE_ID_KV) is not None:
        why = "a device-key rotation is recorded but its carried keys are missing"
        raise ConfigError([("kv", CARRY_KV, why)])
    return {} if text is None else open_carried(device_root, text)


def load_keys(
    cfg: GatewayConfig, conn: sqlite3.Connection, *, gates_optional: bool = False
) -> Keys:
    """The gate's keys: :meth:`Keys.from_config` plus the subkeys carried in its database
    (``gates_optional``: see there; the database decides whether the site key may stand in
    for the gates key, :func:`check_gates`). A rotation interrupted between its commit and
    its key file's move is finished first (:func:`finish_interrupted`)."""
    from gateway.services.decommission import is_decommissioned

    mark = is_decommissioned(conn)
    if mark is not None:
        why = f"this gate was decommissioned ({mark}): provision it anew (new database, keys)"
        raise ConfigError([("storage.database", str(cfg.storage.database_path), why)])
    finish_interrupted(cfg, conn)
    keys = Keys.from_config(cfg, gates_optional=gates_optional)
    check_gates(conn, keys)
    recorded = kv_value(conn, DEVICE_ID_KV)
    if recorded is not None and key_id(keys.device) != recorded:
        where = "keys.private_blob" if cfg.keys.provider == "tpm" else "privacy.device_key"
        why = (
            f"the device key is not the one the database records (id {recorded}); after an "
            "interrupted rotation the new key is at <file>.new: move it (both blobs) in"
        )
        raise ConfigError([(where, "<redacted>", why)])
    site = kv_value(conn, SITE_ID_KV)
    if site is not None and key_id(keys.site) != site:
        why = (
            f"the site key is not the one the database records (id {site}): the site key "
            "was rotated; install the site's current key file (or the backup made with it)"
        )
        raise ConfigError([("privacy.site_key", "<redacted>", why)])
    generations = read_generations(conn)
    return replace(keys, carried=read_carried(conn, keys.device), generations=generations)


def read_generations(conn: sqlite3.Connection) -> dict[Purpose, int]:
    """How many times each site- or gates-rooted purpose was rotated (kv, not secret)."""
    text = kv_value(conn, GENERATIONS_KV)
    if text is None:
        return {}
    try:
        return {Purpose[name]: int(n) for name, n in json.loads(text).items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError([("kv", GENERATIONS_KV, "not a map of purpose to count")]) from exc


def finish_interrupted(cfg: GatewayConfig, conn: sqlite3.Connection) -> None:
    """Finish the key file move of a rotation that committed but crashed before moving its
    ``<file>.new`` in; ConfigError naming the file when neither holds the recorded key."""
    gates, device, site = cfg.privacy.gates_key, cfg.privacy.device_key, cfg.privacy.site_key
    if gates is not None and gates.file is not None:
        _finish_move(conn, gates.file, GATES_ID_KV, "privacy.gates_key")
    if site is not None and site.file is not None:
        _finish_move(conn, site.file, SITE_ID_KV, "privacy.site_key")
    if cfg.keys.provider == "tpm":
        _finish_tpm_move(conn, cfg.keys)
    elif device is not None and device.file is not None:
        _finish_move(conn, device.file, DEVICE_ID_KV, "privacy.device_key")


def _finish_tpm_move(conn: sqlite3.Connection, cfg: KeysConfig) -> None:
    """The TPM blob pair's :func:`_finish_move`: the pair made of each ``<blob>.new`` still
    there (else the blob already moved) is moved in when it unseals to the recorded key,
    so a crash between the two moves is finished too; then the NV counter is advanced if
    the blob in place was sealed for its next value (a crash before :func:`tpm.advance`)."""
    from gateway import tpm

    _move_tpm_blobs(conn, cfg)
    with contextlib.suppress(ConfigError):  # load_keys names what is wrong with the blobs
        if tpm.pending(tpm.read_blobs(cfg), cfg):  # moved in, counter not yet advanced
            tpm.advance(cfg)
            log.warning("finished an interrupted key rotation: old sealed blobs revoked")


def _move_tpm_blobs(conn: sqlite3.Connection, cfg: KeysConfig) -> None:
    from gateway import tpm

    recorded = kv_value(conn, DEVICE_ID_KV)
    blobs = {"public_blob": cfg.public_blob, "private_blob": cfg.private_blob}
    news = {name: _staged_path(path) for name, path in blobs.items()}
    if recorded is None or not any(p.exists() for p in news.values()):
        return
    with contextlib.suppress(ConfigError):
        if key_id(tpm.unseal(tpm.read_blobs(cfg), cfg)) == recorded:
            return  # the .new blobs are left over from a rotation that did not commit
    pair = cfg.model_copy(update={n: p if p.exists() else blobs[n] for n, p in news.items()})
    try:
        if key_id(tpm.unseal(tpm.read_blobs(pair), cfg)) != recorded:
            return  # load_keys refuses, naming the blobs
    except ConfigError:
        return
    for name, staged in news.items():
        if staged.exists():
            commit_key_file(staged, blobs[name])
            log.warning(
                "finished an interrupted key rotation: moved %s over %s", staged, blobs[name]
            )


def _file_key_id(path: Path) -> str | None:
    if not path.exists():
        return None
    return key_id(SecretRef(file=path).read_bytes())  # read as the key loader reads it


def _finish_move(conn: sqlite3.Connection, target: Path, kv_name: str, setting: str) -> None:
    recorded = kv_value(conn, kv_name)
    if recorded is None or _file_key_id(target) == recorded:
        return
    staged = _staged_path(target)
    if _file_key_id(staged) != recorded:
        why = (
            f"{target} does not hold the key the database records (id {recorded}), nor does "
            f"{staged}: restore that key file (or the database backup made with it)"
        )
        raise ConfigError([(setting, str(target), why)])
    commit_key_file(staged, target)
    log.warning("finished an interrupted key rotation: moved %s over %s", staged, target)


def new_key_text() -> bytes:
    """A fresh random key as the 64 hex characters a key file holds (the key's bytes)."""
    return secrets.token_hex(NEW_KEY_BYTES).encode("ascii")


def _staged_path(target: Path) -> Path:
    return target.with_name(target.name + ".new")


def stage_key_file(target: Path, key: bytes, recorded: str | None = None) -> Path:
    """Write ``key`` to ``<target>.new`` (0600, synced); the caller moves it over ``target``
    with :func:`commit_key_file` once the database has committed. A left-over ``.new`` is
    replaced unless it holds ``recorded`` (the key the database records: never lost)."""
    staged = _staged_path(target)
    if recorded is not None and _file_key_id(staged) == recorded:
        raise RotationError(
            f"{staged} holds the key the database records (an interrupted rotation): "
            "load the keys once (start the daemon) to move it in, then rotate"
        )
    staged.unlink(missing_ok=True)  # a left-over from a rotation that did not commit
    fd = os.open(staged, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return staged


def overwrite_in_place(path: Path) -> None:
    """Overwrite the file ``path`` with random bytes (its size, at least 64) and sync it; a
    missing file is left alone (OSError otherwise)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, os.urandom(max(size, 64)))
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_key_file(staged: Path, target: Path) -> None:
    """Atomically replace ``target`` with ``staged`` and sync the directory."""
    staged.replace(target)
    dfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _scrub(db: sqlite_utils.Database) -> bool:
    done = complete_pending(db.conn, SCRUB_WAIT_S)
    if not done:
        log.warning(
            "key rotation: the WAL is still in use; the old pages leave it at the next scrub"
        )
    return done


@dataclass(frozen=True)
class StagedKey:
    """A new device key written beside the old one, moved in once the database commits."""

    moves: tuple[tuple[Path, Path], ...]
    after: Callable[[], object] | None = None  # e.g. advancing the TPM's NV counter

    def commit(self) -> None:
        for staged, target in self.moves:
            # the old key's own blocks, not only its name (a hard link or a copy of the
            # inode would keep it); a crash here is finished from <file>.new at the next load
            try:
                overwrite_in_place(target)
            except OSError as exc:
                log.warning("key rotation: the old %s not overwritten: %s", target, exc.strerror)
            commit_key_file(staged, target)
        if self.after is not None:
            self.after()

    def discard(self) -> None:
        for staged, _ in self.moves:
            staged.unlink(missing_ok=True)


def apply_rotation(
    db: sqlite_utils.Database,
    old: Vault,
    new: Vault,
    staged: StagedKey,
    *,
    what: str,
    ids: tuple[str, str],
    actor: str,
    clock: Callable[[], float],
    extra: Mapping[str, Any] | None = None,
    kv: Mapping[str, str] | None = None,
    migrate: Callable[[sqlite_utils.Database], Mapping[str, Any]] | None = None,
) -> Rotation:
    """Move every template from ``old`` to ``new`` (and store the ``kv`` entries) in one
    transaction, audited; then move the staged key in and scrub the WAL. Nothing changes
    (and the staged key is removed) when the transaction fails. The commit is synced
    (``synchronous = FULL``) before the key moves: under the database's usual ``NORMAL`` a
    power cut could undo a WAL commit whose new key already replaced the old one."""
    db.execute("PRAGMA synchronous = FULL")
    try:
        protection_record.check(db.conn, old.mode)  # templates of another mode: refused
        with transaction(db, join=False):  # acts on its own commit: never joins another
            people, templates = rekey_templates(db, old, new)
            for name, value in (kv or {}).items():
                put_kv(db, name, value)
            moved = {} if migrate is None else migrate(db)
            details = {
                "what": what,
                **(extra or {}),
                **moved,
                "people": people,
                "template_count": templates,
                "old_key_id": ids[0],
                "new_key_id": ids[1],
            }
            audit.append(db, actor, ROTATE_ACTION, what, details, now=clock())
    except BaseException:
        staged.discard()
        raise
    finally:
        db.execute("PRAGMA synchronous = NORMAL")
    staged.commit()
    log.info("%s key rotated: %d people, %d templates moved", what, people, templates)
    return Rotation(what, people, templates, ids[0], ids[1], _scrub(db))


def rotate_transform(
    db: sqlite_utils.Database,
    keys: Keys,
    gates_key: SecretRef | None,
    *,
    actor: str,
    new_key: bytes | None = None,
    clock: Callable[[], float] = time.time,
    protection: Mode = "orthogonal",
) -> Rotation:
    """Renew the gates key (template transform, bundle wrap, fan-out MAC) and move every
    template to it in one transaction. ``new_key``: the key another gate of the site rotated
    to (default: a fresh random one). Cancelable templates cannot follow a new transform:
    while any is stored, the current transform key is carried over (:func:`carry_transform`)
    and only bundle wrapping and the fan-out MAC move to the new key."""
    if gates_key is None or gates_key.file is None:
        raise RotationError(
            "privacy.gates_key must name a file (the gateway writes the new key there; a "
            "systemd credential cannot be rewritten)"
        )
    key = new_key_text() if new_key is None else new_key
    if len(key) < MIN_KEY_BYTES:
        raise RotationError(f"a gates key needs at least {MIN_KEY_BYTES} bytes")
    for other, name in ((keys.site, "site"), (keys.device, "device")):
        if hmac.compare_digest(key, other):
            raise RotationError(f"the gates key must differ from the {name} key")
    if hmac.compare_digest(key, keys.gates_root):
        raise RotationError("this gate already uses that gates key")
    carried, extra = carry_transform(db, keys, protection)
    old = Vault.from_keys(keys, protection=protection)
    new_keys = replace(keys, gates=key, carried=carried)
    new = Vault.from_keys(new_keys, clock=clock, protection=protection)
    recorded = kv_value(db.conn, GATES_ID_KV)
    staged = StagedKey(((stage_key_file(gates_key.file, key, recorded), gates_key.file),))
    ids = (key_id(keys.gates_root), key_id(key))
    kv = {GATES_ID_KV: key_id(key), CARRY_KV: seal_carried(keys.device, carried)}
    return apply_rotation(
        db,
        old,
        new,
        staged,
        what="transform",
        ids=ids,
        actor=actor,
        clock=clock,
        kv=kv,
        extra=extra,
    )


def carry_transform(
    db: sqlite_utils.Database, keys: Keys, protection: Mode
) -> tuple[dict[Purpose, bytes], dict[str, Any]]:
    """The carried keys after a gates-key rotation: with cancelable templates stored, the
    current template-transform key (sealed under the device key, never leaving the gate;
    the templates keep matching, not renewed); else none (a fresh transform: renewal)."""
    carried = dict(keys.carried)
    keep = protection == "cancelable" and template_count(db.conn) > 0
    if keep:
        carried[Purpose.TEMPLATE_TRANSFORM] = keys.subkey(Purpose.TEMPLATE_TRANSFORM)
    else:
        carried.pop(Purpose.TEMPLATE_TRANSFORM, None)
    return carried, {"template_transform": "carried over" if keep else "renewed"}


def _stage_tpm(key: bytes, cfg: KeysConfig) -> StagedKey:
    from gateway import tpm

    sealed = tpm.seal(key, cfg)
    if tpm.unseal(sealed, cfg) != key:  # never trust a blob the TPM has not opened
        raise RotationError("the TPM unsealed a different key; nothing changed")
    staged = cfg.model_copy(
        update={
            "public_blob": cfg.public_blob.with_name(cfg.public_blob.name + ".new"),
            "private_blob": cfg.private_blob.with_name(cfg.private_blob.name + ".new"),
        }
    )
    tpm.write_blobs(sealed, staged, replace=True)
    moves = ((staged.public_blob, cfg.public_blob), (staged.private_blob, cfg.private_blob))
    return StagedKey(moves, after=lambda: tpm.advance(cfg))  # the old blob is revoked


def _new_device_key(cfg: GatewayConfig, recorded: str | None) -> tuple[bytes, StagedKey]:
    """A fresh device key, staged where the configured provider keeps it."""
    if cfg.keys.provider == "tpm":
        from gateway.tpm import fresh_key

        key = fresh_key(NEW_KEY_BYTES, cfg.keys)
        return key, _stage_tpm(key, cfg.keys)
    ref = cfg.privacy.device_key
    if ref is None or ref.file is None:
        raise RotationError(
            "privacy.device_key must name a file (the gateway writes the new key there; a "
            "systemd credential cannot be rewritten)"
        )
    key = new_key_text()
    staged = stage_key_file(ref.file, key, recorded)
    return key, StagedKey(((staged, ref.file),))


def check_current(conn: sqlite3.Connection, keys: Keys) -> None:
    """RotationError unless ``keys`` are the ones the database records now: keys loaded
    before another rotation (a daemon not restarted yet) would drop what that rotation
    carried (a card or PIN layer, the new audit key) or re-bind the keys it replaced."""
    for name, key in ((DEVICE_ID_KV, keys.device), (SITE_ID_KV, keys.site)):
        recorded = kv_value(conn, name)
        if recorded is not None and recorded != key_id(key):
            raise RotationError(
                f"the keys in use are not the database's ({name} {recorded}): a rotation "
                "ran since they were loaded; restart the gate, then rotate"
            )


def rotate_device(
    db: sqlite_utils.Database,
    keys: Keys,
    cfg: GatewayConfig,
    *,
    actor: str,
    clock: Callable[[], float] = time.time,
    what: str = "device",
    carried: Mapping[Purpose, bytes] | None = None,
    migrate: Migrate | None = None,
) -> Rotation:
    """Renew the device key held by the configured provider: every template key re-wrapped
    in one transaction, the lookup and audit keys carried over, the old key erased. A
    device purpose's rotation (:mod:`gateway.services.key_purposes`) passes its own
    ``carried`` (without the renewed key) and the ``migrate`` of its stored values."""
    check_current(db.conn, keys)
    carried = carry_over(keys) if carried is None else dict(carried)
    key, staged = _new_device_key(cfg, kv_value(db.conn, DEVICE_ID_KV))
    new_keys = replace(keys, device=key, carried=carried)
    mode = cfg.privacy.template_protection
    old = Vault.from_keys(keys, protection=mode)
    new = Vault.from_keys(new_keys, clock=clock, protection=mode)
    return apply_rotation(
        db,
        old,
        new,
        staged,
        what=what,
        ids=(old.keys.key_id, new.keys.key_id),
        actor=actor,
        clock=clock,
        extra={"provider": cfg.keys.provider},
        kv={CARRY_KV: seal_carried(key, carried), DEVICE_ID_KV: key_id(key)},
        migrate=None if migrate is None else lambda d: migrate(d, keys, new_keys),
    )
