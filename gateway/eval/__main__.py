"""``python -m gateway.eval eval pairs ...`` / ``calibrate ...`` without the full gateway CLI."""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.eval.commands import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.eval")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
