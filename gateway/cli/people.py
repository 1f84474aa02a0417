"""``gateway people``: argument parsing and printing; the operations are
:mod:`gateway.services.people` and :mod:`gateway.services.credentials`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gateway.cli import context as ctx
from gateway.errors import GatewayError
from gateway.privacy.people import ROLES
from gateway.privacy.vault import NullGallery
from gateway.services import credentials as creds_svc
from gateway.services import people as svc


def _add(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    new = svc.NewPerson(
        args.name,
        unit=args.unit,
        role=args.role,
        access_group=args.group,
        valid_from=ctx.parse_ts(args.valid_from),
        valid_until=ctx.parse_ts(args.valid_until),
        is_minor=args.minor,
        birth_month=args.birth,
        guardian_id=args.guardian,
    )
    print(svc.add_person(db, new, actor=args.actor))
    return 0


def _list(args: argparse.Namespace) -> int:
    db = ctx.open_db(args, write=False)
    print(f"{'id':32}  {'role':9} {'unit':8} {'face':4} {'consent':9} name")
    for row in svc.list_people(db):
        p = row.person
        print(
            f"{p.id:32}  {p.role:9} {p.unit:8} {'yes' if row.face_enrolled else 'no':4} "
            f"{row.consent_status or '-':9} {p.display_name}{' (minor)' if p.is_minor else ''}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    db = ctx.open_db(args, write=False)
    d = svc.show_person(db, args.person, grace_days=args.renotice_grace_days)
    p, st = d.person, d.face
    print(f"id:            {p.id}\nname:          {p.display_name}\nunit:          {p.unit}")
    print(f"role:          {p.role}\ngroup:         {p.access_group}")
    print(f"valid:         {ctx.fmt_ts(p.valid_from)} .. {ctx.fmt_ts(p.valid_until)}")
    print(f"minor:         {'yes, guardian ' + str(p.guardian_id) if p.is_minor else 'no'}")
    print(f"templates:     {d.templates}")
    print(f"face allowed:  {'yes' if st.allowed else 'no'} ({st.reason})")
    print(f"card/PIN:      {'yes' if d.has_card_or_pin else 'NO'}")
    print(f"last seen:     {ctx.fmt_ts(p.last_seen_at)}")
    return 0


def _add_card(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    number = args.number
    if number is None:
        number = sys.stdin.readline().strip()
    if not str(number).isdigit():
        raise GatewayError("the card number must be digits (from --number or stdin)")
    deps = creds_svc.CredentialDeps(ctx.credentials_of(args, db))
    card = (args.facility, int(number))
    creds_svc.add_card(deps, args.person, card, actor=args.actor, channel="cli")
    print(f"card added for {args.person} (stored as a keyed hash only)")
    return 0


def _set_pin(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    pin = sys.stdin.readline().strip()  # never on the command line (shell history, ps)
    deps = creds_svc.CredentialDeps(ctx.credentials_of(args, db))
    creds_svc.set_pin(deps, args.person, pin, actor=args.actor, channel="cli", kind=args.kind)
    print(f"{args.kind} PIN set for {args.person} (stored as an argon2id hash only)")
    return 0


def _export_bundle(args: argparse.Namespace) -> int:
    keys = ctx.keys_of(args)
    sync_args = svc.export_bundle(
        ctx.open_db(args),
        ctx.vault_of(args, keys),  # the configured template protection
        args.person,
        keys.gates_root,
        seal_key=keys.site,
        actor=args.actor,
        grace_days=args.renotice_grace_days,
    )
    data = (json.dumps(sync_args, indent=1) + "\n").encode("utf-8")
    fd = os.open(args.out, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    args.out.chmod(0o600)
    print(
        f"{sync_args['bundle']['count']} templates of {args.person} exported (encrypted for "
        f"this site) -> {args.out}; send it as the args of a signed sync_person command"
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not args.yes:
        raise GatewayError(f"deleting {args.person} erases them for good: add --yes")
    db = ctx.open_db(args)
    deps = svc.DeletionDeps(ctx.credentials_of(args, db), ctx.vault_of(args), NullGallery())
    done = svc.delete_person(deps, args.person, actor=args.actor, channel="cli")
    print(
        f"{done.person_id} deleted: {done.templates_erased} templates, {done.cards} card(s), "
        f"{done.pins} PIN(s), {done.consents} consent record(s); receipt {done.receipt_id}"
    )
    print(
        "the running daemon announces the erasure to the site's other gates, which erase "
        "their copies of the face data; the audit log keeps the record of the deletion"
    )
    return 0


def _add_parser(ps: ctx.Sub[argparse.ArgumentParser]) -> None:
    a = ps.add_parser("add", help="add a person; prints the new id")
    a.add_argument("name")
    a.add_argument("--unit", default="")
    a.add_argument("--role", choices=ROLES, default="resident")
    a.add_argument("--group", default="residents", help="access group")
    a.add_argument("--valid-from", help="ISO date/time")
    a.add_argument("--valid-until", help="ISO date/time")
    a.add_argument("--minor", action="store_true", help="under 14: needs --guardian")
    a.add_argument(
        "--birth",
        metavar="YYYY-MM",
        help="birth year and month: under 14 needs --guardian, and guardian consent "
        "lapses at 14 (own consent then needed)",
    )
    a.add_argument("--guardian", help="guardian's person id (an adult on record)")
    ctx.common_options(a)
    a.set_defaults(func=ctx.safe(_add))


def register(subparsers: ctx.Sub[argparse.ArgumentParser]) -> None:
    """Add ``gateway people``."""
    pp = subparsers.add_parser("people", help="people on record (no biometrics)")
    ps = pp.add_subparsers(dest="people_command", metavar="ACTION", required=True)
    _add_parser(ps)
    lst = ps.add_parser("list", help="list people")
    ctx.common_options(lst)
    lst.set_defaults(func=ctx.safe(_list))
    ac = ps.add_parser("add-card", help="give a person a card (stored as a keyed hash only)")
    ac.add_argument("person")
    ac.add_argument("--number", help="card number (default: read from stdin)")
    ac.add_argument("--facility", type=int, default=None, help="facility code, if any")
    ctx.common_options(ac, keys=True)
    ac.set_defaults(func=ctx.safe(_add_card))
    sp = ps.add_parser("set-pin", help="set a person's PIN, read from stdin (argon2id hash only)")
    sp.add_argument("person")
    sp.add_argument("--kind", choices=("normal", "duress"), default="normal")
    ctx.common_options(sp, keys=True)
    sp.set_defaults(func=ctx.safe(_set_pin))
    from gateway.cli.credentials import register as register_credentials

    register_credentials(ps)
    sh = ps.add_parser("show", help="show one person")
    sh.add_argument("person")
    ctx.common_options(sh)
    sh.set_defaults(func=ctx.safe(_show))
    xb = ps.add_parser(
        "export-bundle",
        help="write a person's encrypted template bundle (sync_person args; scope compound)",
    )
    xb.add_argument("person")
    xb.add_argument("--out", type=Path, required=True, help="JSON file to write (mode 0600)")
    ctx.common_options(xb, keys=True)
    xb.set_defaults(func=ctx.safe(_export_bundle))
    dl = ps.add_parser(
        "delete",
        help="erase a person (PIPL Art. 47): face data on every gate, cards, PINs, consent",
    )
    dl.add_argument("person")
    dl.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    ctx.common_options(dl, keys=True)
    dl.set_defaults(func=ctx.safe(_delete))
