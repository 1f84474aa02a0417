"""``gateway web add-user NAME --role ROLE``: a web console account (the password is read
from stdin, never from the command line); the operation is :mod:`gateway.web.accounts`.
``gateway web add-token NAME --role ROLE``: an API token, printed once
(:mod:`gateway.web.tokens`). ``gateway web reset-totp NAME``: remove an account's second
factor (:mod:`gateway.web.totp`, audited)."""

from __future__ import annotations

import argparse
import getpass
import sys

from gateway.cli import context as ctx
from gateway.web import accounts, tokens, totp


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise accounts.AccountError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _add_user(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    accounts.add_account(db, args.name, args.role, _read_password(), actor=args.actor)
    print(f"web console account {args.name} ({args.role}) created")
    return 0


def _add_token(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    made = tokens.create(db, args.name, args.role, actor=args.actor)
    print(f"API token {made.id} ({args.role}); send it as 'Authorization: Bearer <token>'.")
    print("It is shown this once (only its hash is kept):")
    print(made.token)
    return 0


def _reset_totp(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    if totp.reset(db, args.name, actor=args.actor):
        print(f"second factor of web console account {args.name} removed")
    else:
        print(f"web console account {args.name} had no second factor")
    return 0


def register(subparsers: ctx.Sub[argparse.ArgumentParser]) -> None:
    """Add ``gateway web``."""
    wp = subparsers.add_parser("web", help="web console accounts")
    ws = wp.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    a = ws.add_parser("add-user", help="create a web console account; password from stdin")
    a.add_argument("name", help="account name (a-z 0-9 _ . -, at most 32)")
    a.add_argument("--role", choices=accounts.ROLES, required=True)
    ctx.common_options(a)
    a.set_defaults(func=ctx.safe(_add_user))
    t = ws.add_parser("add-token", help="create an API token for a property-management platform")
    t.add_argument("name", help="token name (a-z 0-9 _ . -, at most 32)")
    t.add_argument("--role", choices=tokens.TOKEN_ROLES, required=True)
    ctx.common_options(t)
    t.set_defaults(func=ctx.safe(_add_token))
    r = ws.add_parser("reset-totp", help="remove a web console account's second factor")
    r.add_argument("name", help="account name")
    ctx.common_options(r)
    r.set_defaults(func=ctx.safe(_reset_totp))
