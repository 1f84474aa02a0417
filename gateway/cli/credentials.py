"""``gateway people revoke-card | revoke-pin | set-validity``: argument parsing and printing;
the change itself is :mod:`gateway.services.credentials` (the same code the signed MQTT
commands run), audited there. A running daemon on the same database picks the change up
within a fraction of a second (:mod:`gateway.services.cache_follower`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gateway.cli import context as pc
from gateway.errors import GatewayError
from gateway.services import credentials as svc

_MAX_CARD_DIGITS = 20


def _deps(args: argparse.Namespace) -> svc.CredentialDeps:
    db = pc.open_db(args)
    return svc.CredentialDeps(pc.credentials_of(args, db))


def _revoke_card(args: argparse.Namespace) -> int:
    deps = _deps(args)
    card: tuple[int | None, int] | None = None
    if not args.all:
        number = sys.stdin.readline().strip()  # never on the command line (shell history, ps)
        if not number.isascii() or not number.isdigit() or len(number) > _MAX_CARD_DIGITS:
            raise GatewayError(
                "the card number (on stdin) must be 1 to 20 digits; use --all to revoke "
                "every card of the person"
            )
        card = (args.facility, int(number))
    n = svc.revoke_card(deps, args.person, actor=args.actor, channel="cli", card=card)
    if card is not None and n == 0:
        print(f"no active card of {args.person} with that number", file=sys.stderr)
        return 1
    print(f"{n} card(s) of {args.person} revoked")
    return 0


def _revoke_pin(args: argparse.Namespace) -> int:
    deps = _deps(args)
    n = svc.revoke_pin(deps, args.person, actor=args.actor, channel="cli", kind=args.kind)
    print(f"{n} PIN(s) of {args.person} revoked")
    return 0


def _bound(value: str | None) -> Any:
    """An ISO time, ``none`` (clears the bound) or None (flag absent: keep)."""
    if value is None:
        return svc._KEEP
    if value.strip().lower() in ("none", "-", ""):
        return None
    return pc.parse_ts(value)


def _set_validity(args: argparse.Namespace) -> int:
    if args.valid_from is None and args.valid_until is None:
        raise GatewayError("give --from and/or --until (an ISO date/time, or 'none')")
    deps = _deps(args)
    person = svc.set_validity(
        deps,
        args.person,
        actor=args.actor,
        channel="cli",
        valid_from=_bound(args.valid_from),
        valid_until=_bound(args.valid_until),
    )
    print(
        f"{person.id} valid from {pc.fmt_ts(person.valid_from)} "
        f"until {pc.fmt_ts(person.valid_until)}"
    )
    return 0


def register(people: Any) -> None:
    """Add the credential subcommands to ``gateway people``."""
    rc = people.add_parser(
        "revoke-card", help="revoke a person's card (number on stdin) or all their cards"
    )
    rc.add_argument("person")
    rc.add_argument("--facility", type=int, default=None, help="facility code, if any")
    rc.add_argument("--all", action="store_true", help="revoke every card of the person")
    pc.common_options(rc, keys=True)
    rc.set_defaults(func=pc.safe(_revoke_card))
    rp = people.add_parser("revoke-pin", help="revoke a person's PINs (all, or one kind)")
    rp.add_argument("person")
    rp.add_argument("--kind", choices=("normal", "duress", "visitor"), default=None)
    pc.common_options(rp, keys=True)
    rp.set_defaults(func=pc.safe(_revoke_pin))
    sv = people.add_parser("set-validity", help="change when a person's access is valid")
    sv.add_argument("person")
    sv.add_argument("--from", dest="valid_from", help="ISO date/time, or 'none'")
    sv.add_argument("--until", dest="valid_until", help="ISO date/time, or 'none'")
    pc.common_options(sv, keys=True)
    sv.set_defaults(func=pc.safe(_set_validity))
