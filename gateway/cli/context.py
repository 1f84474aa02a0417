"""Shared options of the privacy subcommands (``people``, ``consent``, ``enroll``, ``zones``,
``audit``, ``compliance``, ``purge``): the database, the keys, the notice, dates.

Paths and secrets come from options or the configuration: ``--db`` (default from
``--config``, else ``$GATEWAY_STORAGE__DATABASE`` or /var/lib/access-gateway/state.db),
``--device-key``/``--site-key``/``--gates-key`` files (default: systemd credentials
``device-key``, ``site-key``, ``gates-key``), ``--notice-file``/``--notice-version``. The
site key stands in for the gates key only when none is given or configured and the database
records none.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from gateway.errors import GatewayError
from gateway.face.protection import Mode
from gateway.privacy import audit, retention
from gateway.privacy.notice import Notice, load_notice
from gateway.privacy.vault import Vault, load_key

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials
    from gateway.keys import Keys

DEFAULT_DB = Path("/var/lib/access-gateway/state.db")
DEFAULT_MODEL_DIR = Path("/var/lib/access-gateway/models")

Sub = argparse._SubParsersAction


def common_options(p: argparse.ArgumentParser, *, keys: bool = False, notice: bool = False) -> None:
    """--db, --actor, the key files and (``notice``) the notice options."""
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        help="state database (default: from --config, else $GATEWAY_STORAGE__DATABASE, "
        f"else {DEFAULT_DB})",
    )
    p.add_argument("--actor", default=os.environ.get("USER", "operator"), help="who does this")
    if not keys:
        p.add_argument(
            "--device-key",
            type=Path,
            help="device key file (0600), keys the audit chain; default: "
            "$CREDENTIALS_DIRECTORY/device-key",
        )
    if keys:
        p.add_argument(
            "--device-key",
            type=Path,
            help="device key file (0600); default: $CREDENTIALS_DIRECTORY/device-key",
        )
        p.add_argument(
            "--site-key",
            type=Path,
            help="site key file (0600); default: $CREDENTIALS_DIRECTORY/site-key",
        )
        p.add_argument(
            "--gates-key",
            type=Path,
            help="gates key file (0600); default: $CREDENTIALS_DIRECTORY/gates-key when "
            "present (without one the site key stands in: gates set up before gates keys)",
        )
    if notice:
        p.add_argument("--notice-file", type=Path, help="the notice text shown (UTF-8)")
        p.add_argument("--notice-version", help="version of that notice")
    p.add_argument(
        "--renotice-grace-days",
        type=float,
        default=30.0,
        help="days face use continues after a notice change (default %(default)s)",
    )


def config_of(args: argparse.Namespace) -> Any:
    """The gateway configuration when ``--config`` names a readable file, else None."""
    if not hasattr(args, "_gateway_cfg"):
        cfg = None
        path = getattr(args, "config", None)
        if path is not None and Path(path).is_file():
            from gateway.config.root import load_config

            cfg = load_config(path)
        args._gateway_cfg = cfg
    return args._gateway_cfg


def db_path(args: argparse.Namespace) -> Path:
    if args.db is not None:
        return Path(args.db)
    cfg = config_of(args)
    if cfg is not None:
        return Path(cfg.storage.database_path)
    env_db = os.environ.get("GATEWAY_STORAGE__DATABASE")
    return Path(env_db) if env_db else DEFAULT_DB


_BOUND_HERE: set[Path] = set()
"""Databases whose keys a CLI command bound (one process may run several commands)."""


def open_db(args: argparse.Namespace, *, write: bool = True) -> sqlite_utils.Database:
    """The state database, with the device's audit and access-log keys bound when available.

    ``write``: the command will audit; on a keyed chain without the device key it is refused
    here, before it changes anything (never half done, never an unkeyed audit row).
    """
    from gateway.store import database as store

    path = db_path(args)
    db = store.connect(path, create=False) if path.exists() else store.connect(path)
    device = _device_key_if_any(args)
    if device is not None:  # the audit chain and the access log are keyed per device
        from gateway.keys import Purpose, device_subkey
        from gateway.privacy import access_log
        from gateway.services.keys import read_carried

        kept = read_carried(db.conn, device)  # over a device-key rotation
        audit.bind_key(db, audit.ChainKey(device_subkey(device, Purpose.AUDIT_CHAIN, kept)))
        access_log.bind_key(db, device_subkey(device, Purpose.ACCESS_LOG, kept))
        _BOUND_HERE.add(path)
    else:
        if path in _BOUND_HERE:  # a key an earlier command of this process bound: not ours
            from gateway.privacy import access_log

            audit.bind_key(db, None)
            access_log.bind_key(db, None)
            _BOUND_HERE.discard(path)
        if write and audit.bound_key(db) is None and audit.is_keyed(db):
            raise GatewayError(audit.KEYED_RULE)
    return db


def _device_key_if_any(args: argparse.Namespace) -> bytes | None:
    """The device root key from --device-key, --config or the credentials, else None."""
    explicit = getattr(args, "device_key", None)
    cfg = config_of(args)
    try:
        if explicit is None and cfg is not None and _configured_device_key(cfg):
            return _config_keys(args, cfg).device
        return load_key(explicit, "device-key")
    except GatewayError:
        if explicit is not None:
            raise
        return None


def _configured_device_key(cfg: Any) -> bool:
    return bool(cfg.keys.provider == "tpm" or cfg.privacy.device_key is not None)


def vault_of(args: argparse.Namespace, keys: Keys | None = None) -> Vault:
    """The face vault keyed by the device and gates root keys (``keys``: already loaded),
    with the configured template protection (orthogonal without a config)."""
    cfg = config_of(args)
    mode: Mode = "orthogonal" if cfg is None else cfg.privacy.template_protection
    return Vault.from_keys(keys_of(args) if keys is None else keys, protection=mode)


def keys_of(args: argparse.Namespace) -> Keys:
    """The root keys from --config, with --device-key/--site-key/--gates-key (else the
    credentials) in its place when given or when there is no config. The site key stands in
    for the gates key only when none is given or configured and the database records none."""
    from gateway.keys import Keys

    cfg = config_of(args)
    explicit = (args.device_key, args.site_key, getattr(args, "gates_key", None))
    if cfg is not None and explicit == (None, None, None):
        return _config_keys(args, cfg)
    if cfg is not None and cfg.privacy.gates_key is not None and explicit[2] is None:
        raise GatewayError(
            "--config sets privacy.gates_key: give --gates-key with --device-key/--site-key"
        )
    gates = _gates_key_if_any(explicit[2])
    keys = Keys(load_key(explicit[0], "device-key"), load_key(explicit[1], "site-key"), gates)
    keys.check_distinct()
    _check_db_gates(args, keys)
    return keys


def _gates_key_if_any(explicit: Path | None) -> bytes | None:
    """--gates-key, else the ``gates-key`` credential when there is one, else None."""
    base = os.environ.get("CREDENTIALS_DIRECTORY")
    if explicit is None and (not base or not (Path(base) / "gates-key").exists()):
        return None
    return load_key(explicit, "gates-key")


def _config_keys(args: argparse.Namespace, cfg: Any) -> Keys:
    """The configured keys as the daemon loads them (:func:`gateway.services.keys.load_keys`:
    an interrupted rotation finished, the database's key records checked)."""
    from gateway.keys import Keys
    from gateway.services.keys import load_keys

    path = db_path(args)
    if not path.exists():
        return Keys.from_config(cfg)
    conn = _read_only(path)
    try:
        return load_keys(cfg, conn)
    finally:
        conn.close()


def _check_db_gates(args: argparse.Namespace, keys: Keys) -> None:
    """Refuse the site key in the gates key's place on a database that records a gates key."""
    from gateway.services.keys import check_gates

    path = db_path(args)
    if keys.gates is not None or not path.exists():
        return
    conn = _read_only(path)
    try:
        check_gates(conn, keys)
    finally:
        conn.close()


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def credentials_of(args: argparse.Namespace, db: sqlite_utils.Database) -> Credentials:
    """The gateway's card/PIN store, keyed exactly as the daemon keys it."""
    from gateway.credentials.store import Credentials
    from gateway.keys import Purpose
    from gateway.services.keys import read_carried

    keys = keys_of(args)
    kept = read_carried(db.conn, keys.device)
    index_key = kept.get(Purpose.PIN_INDEX) or keys.pin_index_site  # after a site rotation
    return Credentials(db, keys.device, index_key=index_key, carried=kept)


def notice_of(args: argparse.Namespace) -> Notice:
    """The notice shown: --notice-file/--notice-version, else the configured one."""
    cfg = config_of(args)
    if args.notice_file is None and cfg is not None and cfg.privacy.notice_file is not None:
        return load_notice(cfg.privacy.notice_file, cfg.privacy.notice_version)
    if args.notice_file is None or not args.notice_version:
        raise GatewayError(
            "--notice-file and --notice-version are required: consent is "
            "recorded against the exact notice shown"
        )
    return load_notice(args.notice_file, args.notice_version)


def parse_ts(value: str | None) -> float | None:
    """An ISO date/time (local time when no zone is given) as a timestamp."""
    if not value:
        return None
    try:
        d = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise GatewayError(f"{value!r} is not an ISO date (YYYY-MM-DD[THH:MM])") from exc
    if d.tzinfo is None:
        d = d.astimezone()
    return d.timestamp()


def fmt_ts(ts: float | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM`` (UTC), or ``-``."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def gates_root(args: argparse.Namespace) -> bytes:
    """The GATES root key (:func:`keys_of`: the site key stands in only for a gate without
    a gates key)."""
    return keys_of(args).gates_root


_RETENTION_FIELDS = (
    "access_log_days",
    "inactive_template_days",
    "expired_person_days",
    "visitor_pin_grace_days",
    "processing_records_years",
    "audit_days",
    "audit_max_rows",
    "people_inactive_days",
)


def retention_policy(args: argparse.Namespace) -> retention.RetentionPolicy:
    """The ``[retention]`` periods of --config (the daemon's), each overridable by a flag."""
    from gateway.services.compliance import retention_policy as configured

    flags = {n: v for n in _RETENTION_FIELDS if (v := getattr(args, n, None)) is not None}
    return configured(config_of(args), **flags)


def retention_options(p: argparse.ArgumentParser) -> None:
    """One flag per retention period."""
    for name in _RETENTION_FIELDS:
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=None,
            help="default: [retention] of --config, else the built-in default",
        )


def load_json(value: str | None) -> Any:
    """JSON given inline or as a file name."""
    if value is None:
        return None
    text = value if value.lstrip().startswith(("{", "[")) else Path(value).read_text("utf-8")
    return json.loads(text)


def safe(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``fn`` with the project's errors printed as one line and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (GatewayError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run
