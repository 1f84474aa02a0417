"""Gate decommission: crypto-erase every key and template on a gate, and say what was erased.

One operation for ``gateway decommission --confirm GATE`` and the signed MQTT command
``decommission``. In order:

1. the database rows: face data (``templates``, ``face_keys``), credential hashes (``cards``,
   ``pins``, web console accounts and sessions), people, consents, withdrawal receipts,
   lockouts, the access log, the event outbox, command nonces and the key records in ``kv``
   (the carried device subkeys) are deleted with ``PRAGMA secure_delete`` (freed pages are
   overwritten with zeros) in one transaction that also writes the ``gate.decommission``
   audit row (counts only) and marks the database decommissioned (:data:`DECOMMISSIONED_KV`:
   the daemon refuses to start on it);
2. ``VACUUM`` and a WAL checkpoint (TRUNCATE): no erased page stays in the file or its WAL;
3. every key file of the configuration (each :class:`~gateway.config.base.SecretRef`:
   device, site and gates keys, reader and broker secrets; ``<file>.new`` leftovers of a
   rotation), the web console's self-signed key in the state directory and, with the TPM
   provider, both sealed-key blobs are overwritten with random bytes, flushed and unlinked.
   Without the device key and the TPM blob the wrapped template keys open for nobody: the
   templates are crypto-erased even where flash wear levelling keeps an old block. A
   secret held as a systemd credential cannot be erased from here: the report lists it
   under ``not_erased``;
4. the report (what, how many, when, by whom; never an identity) is written to a file
   (0600) and, as far as the still-bound audit key allows, to the audit log.

The audit chain itself stays (the record that the gate was decommissioned); the records of
processing are erased with the rest, so export them first (``gateway compliance export``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic import BaseModel

from gateway.config.base import SecretRef
from gateway.config.root import GatewayConfig
from gateway.config.web import SELF_SIGNED_KEY
from gateway.errors import GatewayError
from gateway.privacy import audit
from gateway.privacy.scrub import checkpoint_truncate
from gateway.services.keys import overwrite_in_place
from gateway.store.kv import put_kv
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

DECOMMISSIONED_KV = "gate.decommissioned"
"""Set (to the report's time and actor) once the gate is decommissioned."""

#: Erased in this order (children first); every one of them, whatever a row holds.
TABLES = (
    "templates",
    "face_keys",
    "cards",
    "pins",
    "lockouts",
    "consents",
    "withdrawal_receipts",
    "people",
    "access_log",
    "outbox",
    "command_nonces",
    "web_totp",
    "web_sessions",
    "web_accounts",
)


class DecommissionError(GatewayError):
    """The gate cannot be decommissioned as asked (wrong confirmation, no configuration)."""


@dataclass
class DecommissionReport:
    """What a decommission erased (counts and settings; never a person, never a key)."""

    site: str
    gate: str
    at: str
    by: str
    channel: str
    rows: dict[str, int] = field(default_factory=dict)
    key_records: int = 0
    files: list[dict[str, str]] = field(default_factory=list)
    not_erased: list[str] = field(default_factory=list)
    vacuumed: bool = False
    wal_truncated: bool = False
    report_file: str | None = None

    def summary(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return asdict(self)


def check_confirmation(cfg: GatewayConfig, confirm: str) -> None:
    """Refuse unless ``confirm`` is this gate's id (a decommission cannot be undone)."""
    if confirm != cfg.site.gate:
        raise DecommissionError(
            f"decommission erases every key and template of gate {cfg.site.gate!r} for good: "
            f"confirm with that gate id (got {confirm!r})"
        )


def is_decommissioned(conn: sqlite3.Connection) -> str | None:
    """The decommission record of this database, None when it is in service."""
    try:
        row = conn.execute("SELECT value FROM kv WHERE key = ?", [DECOMMISSIONED_KV]).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def decommission(
    cfg: GatewayConfig,
    db: sqlite_utils.Database,
    *,
    actor: str,
    channel: str,
    report_path: Path | None = None,
    now: float | None = None,
) -> DecommissionReport:
    """Crypto-erase this gate (see the module); the report, also written to a file."""
    now = time.time() if now is None else now
    at = dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds")
    rep = DecommissionReport(cfg.site.id, cfg.site.gate, at, actor, channel)
    _erase_rows(db, rep, now)
    try:
        db.execute("VACUUM")
        rep.vacuumed = True
    except sqlite3.Error as exc:  # another connection reading: the zeroed pages stay free
        log.warning("decommission: VACUUM not done: %s", exc)
        rep.not_erased.append(f"VACUUM not done ({exc}); freed pages were zeroed")
    rep.wal_truncated = checkpoint_truncate(db.conn, 5.0)
    for name, path in _key_files(cfg, rep):
        rep.files.append({"setting": name, "file": str(path), "result": _shred(path)})
    path = report_path or cfg.storage.state_dir / f"decommission-report-{int(now)}.json"
    rep.report_file = str(path)
    _write_report(path, rep)
    with contextlib.suppress(GatewayError, sqlite3.Error):  # where the audit key still allows
        files = {f["setting"]: f["result"] for f in rep.files}
        details = {"files": files, "not_erased": rep.not_erased, "report": rep.report_file}
        audit.append(db, actor, "gate.decommission.keys", cfg.site.gate, details, now=now)
    log.warning(
        "gate %s decommissioned by %s: %d rows, %d key files erased; report %s",
        cfg.site.gate,
        actor,
        sum(rep.rows.values()),
        sum(f["result"] == "erased" for f in rep.files),
        path,
    )
    return rep


def _erase_rows(db: sqlite_utils.Database, rep: DecommissionReport, now: float) -> None:
    """Delete every personal row and key record, audited, in one transaction."""
    db.execute("PRAGMA secure_delete = ON")
    with transaction(db):
        for table in TABLES:
            sql = f"DELETE FROM {table}"  # noqa: S608 - fixed names
            rep.rows[table] = int(db.execute(sql).rowcount)
        rep.key_records = int(db.execute("DELETE FROM kv WHERE key LIKE 'keys.%'").rowcount)
        mark = json.dumps({"at": rep.at, "by": rep.by, "channel": rep.channel})
        put_kv(db, DECOMMISSIONED_KV, mark)
        deleted = {f"{table}_deleted": n for table, n in rep.rows.items()}
        details = {"rows": deleted, "key_records": rep.key_records, "channel": rep.channel}
        if audit.bound_key(db) is None and audit.is_keyed(db):
            # the device key is lost (a failed TPM, a deleted key file): the data is erased
            # all the same, and no unkeyed row is added to the keyed chain
            rep.not_erased.append("no gate.decommission audit row: the device key is lost")
        else:
            audit.append(db, rep.by, "gate.decommission", rep.gate, details, now=now)


def _secret_refs(model: BaseModel, prefix: str) -> list[tuple[str, SecretRef]]:
    """Every SecretRef in a configuration model, with its dotted setting name."""
    found: list[tuple[str, SecretRef]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        values = value.items() if isinstance(value, dict) else [(None, value)]
        for key, item in values:
            where = f"{prefix}{name}" + (f".{key}" if key is not None else "")
            if isinstance(item, SecretRef):
                found.append((where, item))
            elif isinstance(item, BaseModel):
                found.extend(_secret_refs(item, where + "."))
    return found


def _key_files(cfg: GatewayConfig, rep: DecommissionReport) -> list[tuple[str, Path]]:
    """The files holding this gate's secrets; systemd credentials go to ``not_erased``."""
    files: list[tuple[str, Path]] = []
    for name, ref in _secret_refs(cfg, ""):
        if ref.file is None:
            rep.not_erased.append(
                f"{name}: systemd credential {ref.credential!r} (remove it from the "
                "credential store with systemd-creds / /etc/credstore)"
            )
            continue
        files += [(name, ref.file), (f"{name} (.new)", ref.file.with_name(ref.file.name + ".new"))]
    # the web console's self-signed key, made in the state directory when none is configured
    files.append(("web (self-signed key)", cfg.storage.state_dir / SELF_SIGNED_KEY))
    if cfg.keys.provider == "tpm":
        for name in ("public_blob", "private_blob"):
            blob: Path = getattr(cfg.keys, name)
            files += [
                (f"keys.{name}", blob),
                (f"keys.{name} (.new)", blob.with_name(blob.name + ".new")),
            ]
    return files


def _shred(path: Path) -> str:
    """Overwrite ``path`` with random bytes, flush it and unlink it; what happened."""
    try:
        path.stat()
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return f"failed: {exc.strerror}"
    try:
        overwrite_in_place(path)
        path.unlink()
    except OSError as exc:
        log.error("decommission: cannot erase %s: %s", path, exc.strerror)
        return f"failed: {exc.strerror}"
    return "erased"


def _write_report(path: Path, rep: DecommissionReport) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(rep.summary(), fh, indent=1)
            fh.write("\n")
    except OSError as exc:
        log.error("decommission: cannot write the report %s: %s", path, exc.strerror)
        rep.not_erased.append(f"report file not written: {exc.strerror}")
        rep.report_file = None
