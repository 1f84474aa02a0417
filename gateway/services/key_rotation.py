"""Rotate a stopped gate's key and check that the old key material is gone: the operation
``gateway keys rotate`` and ``gateway demo --rotate-keys`` run.

:func:`rotate_stopped` holds the state lock (the daemon must be stopped), loads the keys as
the daemon does, rotates one key (:func:`gateway.services.key_purposes.rotate`, or
:func:`gateway.services.keys.rotate_transform` for the gates key), and looks for what the
rotation retired on the storage an attacker would copy: the database file, its WAL and the
files of the key directories (:func:`storage_files`).

*Retired* (:func:`retired`): every key and keyed stored value of a :class:`Snapshot` taken
before that is not in the one taken after: the old roots, the old purpose subkeys (which are
never stored in clear: finding one is a leak too), the stored values keyed by an old key
(card hashes, audit MACs, access-log subjects, wrapped template keys, template ciphertexts)
and the old sealed carried keys. A key is looked for raw, in hex and in base64.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from gateway.config.base import SecretRef
from gateway.config.root import GatewayConfig
from gateway.errors import ConfigError
from gateway.keys import CARRY_KV, Keys, Purpose, StateLockedError, state_lock
from gateway.privacy import access_log, audit
from gateway.services.keys import Rotation, RotationError, kv_value, load_keys, rotate_transform
from gateway.store import database as store

#: What ``--what`` names: the device key, the gates key (``transform``), a purpose's key.
WHATS = ("device", "transform", "site", "audit", "access-log", "card", "pin", "pseudonym")
#: Adopted from a key file made elsewhere (``--key``): the gates key, the site key.
COPIED = ("transform", "site")
#: Stored values of one kind looked for at most (evenly sampled beyond; the report says so).
MAX_VALUES = 512
#: Never derived (:data:`gateway.keys.LAYERED`): their layers are in ``Keys.carried``.
_UNDERIVED = (Purpose.CARD_REKEY, Purpose.PIN_REKEY)
#: Stored values keyed by a key: (kind, query). Missing tables or columns are skipped.
_STORED = (
    ("card hashes", "SELECT card_hmac FROM cards"),
    ("audit MACs", "SELECT hash FROM audit WHERE key_id IS NOT NULL"),
    ("access-log subjects", "SELECT subject FROM access_log WHERE subject IS NOT NULL"),
    ("wrapped template keys", "SELECT wrapped_key FROM face_keys"),
    ("template ciphertexts", "SELECT ciphertext FROM templates"),
)


@dataclass(frozen=True, repr=False)
class Snapshot:
    """A gate's key material (name -> key) and keyed stored values (kind -> values)."""

    keys: Mapping[str, bytes] = field(default_factory=dict)
    stored: Mapping[str, frozenset[bytes]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Snapshot({len(self.keys)} keys, {sum(map(len, self.stored.values()))} values)"


@dataclass(frozen=True)
class Residue:
    """What a check looked for and found (names and kinds only, never a value)."""

    keys_checked: int
    values_checked: int
    sampled: bool
    found: tuple[str, ...]
    files: tuple[str, ...]

    @property
    def clean(self) -> bool:
        """Nothing retired was found."""
        return not self.found

    def describe(self) -> str:
        """One line for an operator."""
        what = f"{self.keys_checked} retired keys and {self.values_checked} stored values"
        what += " (sampled)" if self.sampled else ""
        where = f"{len(self.files)} files (the database, its WAL, the key directories)"
        if self.clean:
            return f"old key material gone: none of {what} found in {where}"
        return f"OLD KEY MATERIAL STILL ON DISK ({', '.join(self.found)}); looked for {what}"


@dataclass(frozen=True)
class Outcome:
    """One rotation and the check of what it retired."""

    rotation: Rotation
    residue: Residue


def snapshot(db: sqlite_utils.Database, keys: Keys) -> Snapshot:
    """The key material of ``keys`` and the stored values keyed by it in ``db``."""
    material = {"device key": keys.device, "site key": keys.site}
    if keys.gates is not None:
        material["gates key"] = keys.gates
    for purpose in Purpose:
        if purpose not in _UNDERIVED:
            material[f"{purpose.name} key"] = keys.subkey(purpose)
    for purpose, value in keys.carried.items():
        material[f"{purpose.name} carried"] = value
    stored: dict[str, frozenset[bytes]] = {}
    for kind, sql in _STORED:
        with contextlib.suppress(sqlite3.OperationalError):  # an older schema
            stored[kind] = frozenset(_as_bytes(r[0]) for r in db.execute(sql) if r[0])
    carried = kv_value(db.conn, CARRY_KV)
    stored["sealed carried keys"] = frozenset([carried.encode()] if carried else [])
    return Snapshot(material, stored)


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def snapshot_stopped(cfg: GatewayConfig) -> Snapshot:
    """:func:`snapshot` of a stopped gate (its database opened and closed here)."""
    with _opened(cfg, gates_optional=True) as (db, keys):  # read only: a gates key file
        return snapshot(db, keys)  # not written yet means the site key stands in


def retired(before: Snapshot, after: Snapshot) -> Snapshot:
    """What ``before`` holds that ``after`` no longer does (a key value in use under any
    name after is not retired: the site key stands in for the gates key of an old gate)."""
    kept = set(after.keys.values())
    keys = {n: k for n, k in before.keys.items() if k not in kept}
    stored = {kind: v - after.stored.get(kind, frozenset()) for kind, v in before.stored.items()}
    return Snapshot(keys, {kind: v for kind, v in stored.items() if v})


def storage_files(cfg: GatewayConfig) -> list[Path]:
    """The database, its WAL and journal, and every file of the directories holding the
    configured key files (device key or TPM blobs, site and gates keys)."""
    database = Path(cfg.storage.database_path)
    files = [database.with_name(database.name + s) for s in ("", "-wal", "-journal")]
    dirs: list[Path] = []
    refs: list[SecretRef | None] = [
        cfg.privacy.device_key,
        cfg.privacy.site_key,
        cfg.privacy.gates_key,
    ]
    for ref in refs:
        if ref is not None:
            with contextlib.suppress(ConfigError):
                dirs.append(ref.path().parent)
    if cfg.keys.provider == "tpm":
        dirs += [cfg.keys.public_blob.parent, cfg.keys.private_blob.parent]
    for d in dict.fromkeys(dirs):
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.is_file())
    return [p for p in dict.fromkeys(f.resolve() for f in files) if p.is_file()]


def _forms(key: bytes) -> tuple[bytes, ...]:
    return key, key.hex().encode(), base64.b64encode(key)


def _sample(values: frozenset[bytes]) -> tuple[list[bytes], bool]:
    ordered = sorted(values)
    if len(ordered) <= MAX_VALUES:
        return ordered, False
    step = len(ordered) / MAX_VALUES
    return [ordered[int(i * step)] for i in range(MAX_VALUES)], True


def residue(cfg: GatewayConfig, gone: Snapshot) -> Residue:
    """Look for every key and stored value of ``gone`` in :func:`storage_files`."""
    files = storage_files(cfg)
    found: list[str] = []
    sampled = False
    values_checked = 0
    contents = [(p, p.read_bytes()) for p in files]
    for name, key in gone.keys.items():
        hits = [p.name for p, data in contents if any(f in data for f in _forms(key))]
        found += [f"{name} in {', '.join(hits)}"] if hits else []
    for kind, values in gone.stored.items():
        chosen, cut = _sample(values)
        sampled = sampled or cut
        values_checked += len(chosen)
        hits = sorted({p.name for p, data in contents for v in chosen if v in data})
        found += [f"{kind} in {', '.join(hits)}"] if hits else []
    return Residue(len(gone.keys), values_checked, sampled, tuple(found), tuple(map(str, files)))


@contextlib.contextmanager
def _opened(
    cfg: GatewayConfig, *, gates_optional: bool
) -> Iterator[tuple[sqlite_utils.Database, Keys]]:
    """The database with the gate's keys loaded and bound, the state lock held."""
    try:
        with state_lock(cfg.storage.state_dir):
            db = store.connect(Path(cfg.storage.database_path), create=False)
            try:
                keys = load_keys(cfg, db.conn, gates_optional=gates_optional)
                audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
                access_log.bind_key(db, keys.subkey(Purpose.ACCESS_LOG))
                yield db, keys
            finally:
                audit.bind_key(db, None)
                access_log.bind_key(db, None)
                db.close()
    except StateLockedError as exc:
        why = f"{exc}: stop the daemon first: systemctl stop access-gateway"
        raise ConfigError([("storage.state_dir", str(cfg.storage.state_dir), why)]) from exc


def rotate_stopped(
    cfg: GatewayConfig, what: str, *, actor: str, new_key: bytes | None = None
) -> Outcome:
    """Rotate ``what`` (one of :data:`WHATS`) on a stopped gate, then check that what it
    retired is gone from the database, its WAL and the key directories. ``new_key``: the
    site's new gates or site key made elsewhere (``transform``, ``site``)."""
    from gateway.services.key_purposes import rotate
    from gateway.services.site_rotation import rotate_site

    if what not in WHATS:
        raise RotationError(f"no key {what!r}: one of {', '.join(WHATS)}")
    if what not in COPIED and new_key is not None:
        raise ConfigError([("--key", "<file>", f"a {what} key is never copied: omit --key")])
    with _opened(cfg, gates_optional=what == "transform") as (db, keys):
        before = snapshot(db, keys)
        if what == "transform":
            done = rotate_transform(
                db,
                keys,
                cfg.privacy.gates_key,
                actor=actor,
                new_key=new_key,
                protection=cfg.privacy.template_protection,
            )
        elif what == "site":
            done = rotate_site(db, keys, cfg, actor=actor, new_key=new_key)
        else:
            done = rotate(db, keys, cfg, what, actor=actor)
        after = snapshot(db, load_keys(cfg, db.conn))
        found = residue(cfg, retired(before, after))  # the WAL as the rotation left it
    return Outcome(done, found)
