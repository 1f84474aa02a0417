"""What the demo learns from the daemon's log: where it ends, and whether a line came."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path


def log_size(path: Path) -> int:
    """The log's length now (a mark to read on from)."""
    return path.stat().st_size if path.exists() else 0


def read_since(path: Path, mark: int) -> str:
    """The log written after ``mark`` ("" when there is no log yet)."""
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(mark)
        return fh.read().decode(errors="replace")


async def wait_for_line(path: Path, mark: int, pattern: str, limit_s: float) -> bool:
    """Wait until a line matching ``pattern`` is logged after ``mark``; False at the limit."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if re.search(pattern, read_since(path, mark)):
            return True
        await asyncio.sleep(0.1)
    return False
