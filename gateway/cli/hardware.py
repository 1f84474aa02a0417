"""``gateway reader-probe``: connect to one reader and show what it sends (installer aid).

Card numbers and keys are never printed: a card shows as its format and bit count, a
key as ``*``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from gateway.errors import HardwareError
from gateway.hardware.events import CardRead, KeyPress, ReaderEvent
from gateway.hardware.readers import open_reader


def _describe(ev: ReaderEvent) -> str:
    if isinstance(ev, CardRead):
        return f"card read ({ev.fmt}, {ev.bits} bits)"
    if isinstance(ev, KeyPress):
        return "key *"
    return repr(ev)


async def _probe(url: str, scbk: bytes | None, install_mode: bool, seconds: float) -> int:
    reader = open_reader(url, "probe", scbk=scbk, install_mode=install_mode)
    await reader.start()

    async def show() -> None:
        async for ev in reader.events():
            print(_describe(ev), flush=True)

    task = asyncio.create_task(show())
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await reader.close()
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of ``reader-probe``."""
    scbk: bytes | None = None
    if args.scbk:
        try:
            scbk = bytes.fromhex(args.scbk)
        except ValueError:
            print("error: --scbk must be 32 hex digits")
            return 2
    try:
        return asyncio.run(_probe(args.url, scbk, args.install_mode, args.seconds))
    except HardwareError as exc:
        print(f"error: {exc}")
        return 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``reader-probe``."""
    p = subparsers.add_parser("reader-probe", help="show the events one reader sends")
    p.add_argument("url", help="reader URL, e.g. osdp+socket://127.0.0.1:7000?address=101")
    p.add_argument("--scbk", help="OSDP Secure Channel key, 32 hex digits")
    p.add_argument("--install-mode", action="store_true", help="allow OSDP install mode")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to listen")
    p.set_defaults(func=run)
