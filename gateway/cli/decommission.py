"""``gateway decommission --confirm GATE``: crypto-erase every key and template of this gate
(:mod:`gateway.services.decommission`); the daemon must be stopped (the state lock)."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from gateway.cli import context as ctx
from gateway.errors import GatewayError
from gateway.keys import state_lock
from gateway.services import decommission as svc


def _decommission(args: argparse.Namespace) -> int:
    cfg = ctx.config_of(args)
    if cfg is None:
        raise GatewayError(
            "gateway decommission needs --config: it erases the key files the configuration names"
        )
    svc.check_confirmation(cfg, args.confirm)
    path = ctx.db_path(args)
    if path.exists():
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            mark = svc.is_decommissioned(conn)
        finally:
            conn.close()
        if mark is not None:
            raise GatewayError(f"gate {cfg.site.gate} is already decommissioned: {mark}")
    with state_lock(cfg.storage.state_dir):  # refused while the daemon runs
        db = ctx.open_db(args, write=False)  # also when the device key is lost
        try:
            rep = svc.decommission(
                cfg, db, actor=args.actor, channel="cli", report_path=args.report
            )
        finally:
            db.close()
    print(json.dumps(rep.summary(), indent=1))
    failed = [f for f in rep.files if f["result"].startswith("failed")]
    for line in rep.not_erased:
        print(f"NOT ERASED: {line}")
    return 1 if failed or rep.report_file is None else 0


def register(subparsers: ctx.Sub[argparse.ArgumentParser]) -> None:
    """Add ``gateway decommission``."""
    p = subparsers.add_parser(
        "decommission",
        help="crypto-erase every key and template of this gate and write a report",
    )
    p.add_argument(
        "--confirm", required=True, metavar="GATE", help="this gate's id (site.gate), to confirm"
    )
    p.add_argument(
        "--report",
        type=Path,
        help="report file (default: <state_dir>/decommission-report-<time>.json)",
    )
    ctx.common_options(p)
    p.set_defaults(func=ctx.safe(_decommission))
