"""``gateway consent``: argument parsing and printing; the operations are
:mod:`gateway.services.consent` and :mod:`gateway.services.withdrawal`."""

from __future__ import annotations

import argparse
import time

from gateway.cli import context as ctx
from gateway.privacy.consent import METHODS, SCOPES
from gateway.privacy.vault import NullGallery
from gateway.services import consent as svc
from gateway.services.withdrawal import withdraw


def _answer(args: argparse.Namespace) -> svc.ConsentAnswer:
    return svc.ConsentAnswer(
        args.person,
        method=args.method,
        recorded_by=args.recorded_by or args.actor,
        guardian_id=args.guardian,
        scope=getattr(args, "scope", "device"),
    )


def _grant(args: argparse.Namespace) -> int:
    done = svc.grant(ctx.open_db(args), ctx.notice_of(args), _answer(args))
    n = done.notice
    print(f"consent {done.consent_id} granted under notice {n.version} ({n.sha256[:12]}...)")
    return 0


def _decline(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    n = ctx.notice_of(args)
    svc.decline(db, n, _answer(args))
    print(f"declined under notice {n.version}; this person will not be asked again")
    return 0


def _withdraw(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    t0 = time.monotonic()
    receipt = withdraw(
        db, ctx.vault_of(args), NullGallery(), args.person, args.channel, actor=args.actor
    )
    print(
        f"withdrawn: {receipt.templates_erased} templates erased in "
        f"{time.monotonic() - t0:.2f} s; receipt {receipt.id}; card/PIN unaffected"
    )
    print(
        "the running daemon drops the person from its live gallery within a second and "
        "announces the withdrawal to the site's other gates, which erase their copies; "
        "if it is not running, it does so when it starts"
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    db = ctx.open_db(args, write=False)
    view = svc.show(db, args.person, grace_days=args.renotice_grace_days)
    for r in view.history:
        print(
            f"{r.id:5} {ctx.fmt_ts(r.created_at)} {r.status:9} notice {r.notice_version} "
            f"({r.notice_sha256[:12]}) {r.method:6} by {r.recorded_by} scope {r.scope}"
            f"{' guardian ' + r.guardian_id if r.guardian_id else ''}"
        )
    st = view.face
    print(f"face processing: {'allowed' if st.allowed else 'not allowed'} ({st.reason})")
    return 0


def _notice(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    flagged = svc.put_notice_in_force(db, ctx.notice_of(args), actor=args.actor)
    print(f"notice {args.notice_version} in force; {flagged} people flagged for re-notice")
    return 0


def register(subparsers: ctx.Sub[argparse.ArgumentParser]) -> None:
    """Add ``gateway consent``."""
    cp = subparsers.add_parser("consent", help="face-processing consent")
    cs = cp.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    for name, fn, helptext in (
        ("grant", _grant, "record consent given on the notice shown"),
        ("decline", _decline, "record that the person declined"),
    ):
        g = cs.add_parser(name, help=helptext)
        g.add_argument("person")
        g.add_argument("--method", choices=METHODS, required=True)
        g.add_argument("--recorded-by", help="who recorded it (default --actor)")
        g.add_argument("--guardian", help="guardian's person id (required for minors)")
        if name == "grant":
            g.add_argument("--scope", choices=SCOPES, default="device")
        ctx.common_options(g, notice=True)
        g.set_defaults(func=ctx.safe(fn))
    w = cs.add_parser("withdraw", help="withdraw consent and erase face data at once")
    w.add_argument("person")
    w.add_argument("--channel", default="cli")
    ctx.common_options(w, keys=True)
    w.set_defaults(func=ctx.safe(_withdraw))
    s = cs.add_parser("show", help="consent history and current state")
    s.add_argument("person")
    ctx.common_options(s)
    s.set_defaults(func=ctx.safe(_show))
    n = cs.add_parser("notice", help="put a new notice version in force (flags re-notice)")
    ctx.common_options(n, notice=True)
    n.set_defaults(func=ctx.safe(_notice))
