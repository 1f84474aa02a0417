"""A fake libgpiod v2 (the part ``gateway.hardware.io`` uses) for ``bench_loop.py --relay gpio``.

Each output write is recorded as (``time.monotonic()``, level) in :data:`WRITES` and, when the
environment names a file in ``FAKE_GPIOD_WRITES``, appended to that file as one line: so the
benchmark reads the writes of a daemon running as its own process (``PYTHONPATH`` holding this
folder), on the same clock (CLOCK_MONOTONIC is system-wide). Input lines read active (pull-up,
switch open). Never installed outside the benchmark.
"""

from __future__ import annotations

import os
import time
import types
from typing import Any

#: every output write of this process: (monotonic time, active)
WRITES: list[tuple[float, bool]] = []

line = types.SimpleNamespace(
    Direction=types.SimpleNamespace(OUTPUT="out", INPUT="in"),
    Value=types.SimpleNamespace(ACTIVE="active", INACTIVE="inactive"),
    Bias=types.SimpleNamespace(PULL_UP="pull-up"),
)
LineSettings = types.SimpleNamespace


class _Request:
    def set_value(self, offset: int, value: Any) -> None:
        now, active = time.monotonic(), value == line.Value.ACTIVE
        WRITES.append((now, active))
        path = os.environ.get("FAKE_GPIOD_WRITES")
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{now:.6f} {int(active)} {offset}\n".encode())
            finally:
                os.close(fd)

    def get_values(self, offsets: list[int]) -> list[str]:
        return [line.Value.ACTIVE] * len(offsets)

    def release(self) -> None:
        pass


def request_lines(chip: str, consumer: str, config: Any) -> _Request:
    """A request of ``config``'s lines on ``chip`` (nothing is opened)."""
    return _Request()
