"""The demo's reading of the daemon log: only lines after the mark count."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.demo import daemon_log

TOOK_UP = r"gallery loaded: [1-9]\d* people"


def test_a_line_before_the_mark_or_with_nobody_loaded_does_not_count(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    assert daemon_log.read_since(log, 0) == ""
    log.write_text("x: gallery loaded: 2 people, 0 skipped\n")
    mark = daemon_log.log_size(log)
    with log.open("a") as fh:
        fh.write("x: gallery loaded: 0 people, 0 skipped\n")
    assert not asyncio.run(daemon_log.wait_for_line(log, mark, TOOK_UP, 0.3))


def test_a_line_written_while_waiting_is_seen(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    log.write_text("start\n")
    mark = daemon_log.log_size(log)

    async def later() -> bool:
        waiting = asyncio.create_task(daemon_log.wait_for_line(log, mark, TOOK_UP, 5.0))
        await asyncio.sleep(0.3)
        with log.open("a") as fh:
            fh.write("x: gallery loaded: 1 people, 0 skipped\n")
        return await waiting

    assert asyncio.run(later())
