"""``gateway roster``: the compound roster (issue 15). Parsing and printing; the operations
are :mod:`gateway.services.roster_office` / ``roster_publish``, the agents
:mod:`gateway.gate.roster_agent`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from gateway.cli import context as ctx
from gateway.errors import GatewayError
from gateway.privacy.roster_crypto import (
    ack_public_b64,
    gate_ack_private,
    gate_private,
    public_b64,
)
from gateway.services import roster_office, roster_publish

Sub = Any


def _cfg(args: argparse.Namespace) -> Any:
    cfg = ctx.config_of(args)
    if cfg is None:
        raise GatewayError("gateway roster needs --config (the site, the broker, the role)")
    return cfg


def _gate_key(args: argparse.Namespace) -> int:
    root = ctx.keys_of(args).roster_root
    print(public_b64(gate_private(root)), ack_public_b64(gate_ack_private(root)))
    return 0


def _add_gate(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    new = roster_office.add_gate(
        db, args.name, args.public_key, actor=args.actor, ack_key=args.ack_key
    )
    print(f"gate {args.name} {'registered' if new else 'already registered (keys kept/updated)'}")
    row = db.execute("SELECT ack_key FROM roster_gates WHERE name = ?", [args.name]).fetchone()
    if row is None or row[0] is None:
        print("WARNING: " + roster_office.NO_ACK_KEY.format(gate=args.name), file=sys.stderr)
        return 4
    return 0


def _remove_gate(args: argparse.Namespace) -> int:
    cfg = _cfg(args)
    if args.name in cfg.roster.gates:
        raise GatewayError(
            f"gate {args.name} is in roster.gates of {args.config}: remove it there first "
            "(the office registers every configured gate when it starts)"
        )
    with _locked(cfg, "the office daemon publishes to the gate"):
        db = ctx.open_db(args)
        unacked = len([e for e in roster_publish.pending_erasures(db) if e.gate == args.name])
        dropped = roster_office.remove_gate(db, args.name, actor=args.actor)
    print(f"gate {args.name} removed from the roster ({dropped} changes for it dropped)")
    if unacked:
        print(
            f"WARNING: {unacked} erasures it never acknowledged are dropped with it: what it "
            "holds is out of the office's reach (wipe the gate if it is found)",
            file=sys.stderr,
        )
    return 0


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _status(args: argparse.Namespace) -> int:
    from gateway.keys import key_id

    db = ctx.open_db(args, write=False)
    st = roster_publish.status(db, _cfg(args).site.id, recent=args.recent)
    if args.json:
        print(json.dumps(asdict(st), indent=2))
        return 0
    try:
        site: str | None = key_id(ctx.keys_of(args).site)
    except GatewayError:  # the keys are not readable here: the rest still prints
        site = None
    stale = [g.gate for g in st.gates if site and g.site_key and g.site_key != site]
    now = dt.datetime.now(dt.UTC).timestamp()
    print(f"{'gate':16} {'version':>7} {'acked':>7} {'behind':>6} {'for':>8}  last ack / error")
    for g in st.gates:
        since = f"{now - g.behind_since:.0f}s" if g.behind and g.behind_since else "-"
        tail = _when(g.last_ack) + (f"  ERROR {g.error}" if g.error else "")
        print(f"{g.gate:16} {g.version:>7} {g.acked:>7} {g.behind:>6} {since:>8}  {tail}")
    print(f"\n{'change':>6} {'when':20} {'kind':8} applied / behind")
    for c in st.changes:
        kind = "erasure" if c.erasure else "update"
        behind = f" / behind: {', '.join(c.behind)}" if c.behind else " / all applied"
        print(f"{c.change_id:>6} {_when(c.created_at):20} {kind:8} {', '.join(c.applied)}{behind}")
    print(f"\nalerts raised: {st.alerts}")
    if stale:
        print(
            f"not on the site key {site} yet (restarting, or refused: see their audit): "
            + ", ".join(stale)
        )
    return 0 if all(g.behind == 0 for g in st.gates) and not stale else 3


def _gates(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    gates = None if args.all else args.gate
    roster_office.set_person_gates(db, args.person, gates, actor=args.actor)
    print(f"{args.person} may use {'every gate' if gates is None else ', '.join(gates)}")
    return 0


def _narrow(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    roster_office.narrow_face_scope(
        db, ctx.notice_of(args), args.person, args.gate, actor=args.actor, method=args.method
    )
    print(f"face of {args.person} narrowed to {', '.join(args.gate)}; other gates erase it")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway.gate.roster_wiring import run_standalone

    cfg = _cfg(args)
    with _locked(cfg, "the daemon runs the roster agent already"):
        keys = ctx.keys_of(args)
        db = ctx.open_db(args)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_standalone(cfg, keys, db))
    return 0


@contextlib.contextmanager
def _locked(cfg: Any, why: str) -> Iterator[None]:
    """The state directory's lock (the daemon's, a key rotation's) held for the block."""
    from gateway.keys import StateLockedError, state_lock

    try:
        with state_lock(cfg.storage.state_dir):
            yield
    except StateLockedError as exc:
        raise GatewayError(f"{exc} ({why}): stop it first") from exc


def register(subparsers: Sub) -> None:
    """Add ``gateway roster ...``."""
    roster = subparsers.add_parser("roster", help="the compound roster: office and gates")
    sub = roster.add_subparsers(dest="roster_command", metavar="ACTION")
    sub.required = True
    key = sub.add_parser(
        "gate-key", help="print this gate's X25519 key and ack-signing key (register both)"
    )
    add = sub.add_parser("add-gate", help="office: register a gate and its public keys")
    add.add_argument("name", help="the gate's site.gate name")
    add.add_argument("public_key", help="the first key `gateway roster gate-key` printed")
    add.add_argument(
        "ack_key",
        nargs="?",
        help="the second key it printed (Ed25519: the gate's acks are refused without it)",
    )
    remove = sub.add_parser(
        "remove-gate",
        help="office: take a gate out of the roster (decommissioned, stolen, storage leaked)",
    )
    remove.add_argument("name", help="the gate's site.gate name")
    status = sub.add_parser("status", help="office: which gates applied which change")
    status.add_argument("--recent", type=int, default=20, help="changes listed")
    status.add_argument("--json", action="store_true", help="machine-readable")
    gates = sub.add_parser("gates", help="office: the gates a person may use")
    gates.add_argument("person")
    group = gates.add_mutually_exclusive_group(required=True)
    group.add_argument("--gate", action="append", help="a gate (repeat)")
    group.add_argument("--all", action="store_true", help="every gate")
    narrow = sub.add_parser("narrow", help="office: narrow a face consent to some gates")
    narrow.add_argument("person")
    narrow.add_argument("--gate", action="append", required=True, help="a gate (repeat)")
    narrow.add_argument("--method", default="paper", help="how the person said so")
    serve = sub.add_parser("serve", help="run this instance's roster agent (office or gate)")
    for p, fn in (
        (key, _gate_key),
        (add, _add_gate),
        (remove, _remove_gate),
        (status, _status),
        (gates, _gates),
        (narrow, _narrow),
        (serve, _serve),
    ):
        ctx.common_options(p, keys=True, notice=p is narrow)
        p.set_defaults(func=ctx.safe(fn))
