"""Checks on every parsed command-line value, before any command runs.

Text arguments (names, units, ids, versions, ...) are bounded in length and may not hold
control characters (C0/C1, bidi overrides, line separators, undecodable bytes): a 100 kB
name or an ESC sequence would otherwise reach the database, the terminal and the logs.
Numbers must be finite (``--renotice-grace-days nan`` would compare false with everything).
A few arguments carry longer text on purpose (JSON command args, URLs) and have their own
bound; only the JSON args may span lines.
"""

from __future__ import annotations

import argparse
import math
import unicodedata
from collections.abc import Iterator
from typing import Any

MAX_TEXT = 256
"""Longest plain text argument (names, units, ids) in characters."""
LONG_TEXT = {
    "args": 64 * 1024,  # JSON args of a signed command (MAX_COMMAND_BYTES)
    "source": 4096,  # camera URL or file
    "url": 4096,
    "mqtt": 4096,
    "zones": 64 * 1024,
    "file": 4096,
}
MULTILINE = frozenset({"args"})
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_problem(value: str, *, limit: int = MAX_TEXT, multiline: bool = False) -> str | None:
    """Why ``value`` is not acceptable command-line text, or None."""
    if len(value) > limit:
        return f"{len(value)} characters, at most {limit} accepted"
    for i, ch in enumerate(value):
        if multiline and ch in "\n\r\t":
            continue
        kind = unicodedata.category(ch)
        if kind == "Cs":
            return f"not valid UTF-8 (at character {i + 1})"
        if kind in ("Cc", "Zl", "Zp") or ch in _BIDI:
            return f"control character U+{ord(ch):04X} at character {i + 1}"
    return None


def number_problem(value: float) -> str | None:
    """Why ``value`` is not an acceptable number, or None."""
    if not math.isfinite(value):
        return f"{value} is not a finite number"
    return None


def _option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> how the user wrote it (``--name`` or the positional's metavar)."""
    names: dict[str, str] = {}
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
                continue
            shown = action.option_strings[-1] if action.option_strings else action.dest
            names.setdefault(action.dest, shown)
    return names


def _values(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        yield from value
    else:
        yield value


def problems(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """``argument NAME: why`` for each unacceptable value in ``args``."""
    names = _option_names(parser)
    found: list[str] = []
    for dest, value in sorted(vars(args).items()):
        if dest not in names:
            continue
        for item in _values(value):
            why: str | None = None
            if isinstance(item, str):
                why = text_problem(
                    item, limit=LONG_TEXT.get(dest, MAX_TEXT), multiline=dest in MULTILINE
                )
            elif isinstance(item, float):
                why = number_problem(item)
            if why is not None:
                found.append(f"argument {names[dest]}: {why}")
                break
    return found


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with status 2 and a clear message (argparse style) on the first bad value."""
    found = problems(parser, args)
    if found:
        parser.error("; ".join(found))
