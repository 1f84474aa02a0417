"""``gateway web add-user NAME --role ROLE``: a web console account (the password is read
from stdin, never from the command line); the operation is :mod:`gateway.web.accounts`."""

from __future__ import annotations

import argparse
import getpass
import sys

from gateway.cli import context as ctx
from gateway.web import accounts


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


def register(subparsers: ctx.Sub[argparse.ArgumentParser]) -> None:
    """Add ``gateway web``."""
    wp = subparsers.add_parser("web", help="web console accounts")
    ws = wp.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    a = ws.add_parser("add-user", help="create a web console account; password from stdin")
    a.add_argument("name", help="account name (a-z 0-9 _ . -, at most 32)")
    a.add_argument("--role", choices=accounts.ROLES, required=True)
    ctx.common_options(a)
    a.set_defaults(func=ctx.safe(_add_user))
