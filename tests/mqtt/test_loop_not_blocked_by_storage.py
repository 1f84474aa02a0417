"""Issue #18 item 5: a locked or hanging database must never stall the event loop (the
readers and doors run there). The outbox's write-back of its memory buffer and the signed
commands' nonce and audit writes wait for SQLite on threads of their own."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.mqtt import sign
from gateway.mqtt.commands import CommandProcessor
from gateway.mqtt.events import DoorOpened
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.topics import Topics
from gateway.privacy import audit
from gateway.store import database as store
from tests.mqtt.test_mqtt_commands import GATE, SITE, Recorder, env_bytes

TOPICS = Topics("access", "site1", "gate1")
HOLD_S = 1.0
#: The longest the loop may go without running a callback (far below the 1 s hold).
MAX_GAP_S = 0.3


async def _max_gap_while(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """Run ``work`` while a ticker measures the longest pause of the event loop."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # the ticker runs before the work starts
    try:
        result = await work()
    finally:
        done.set()
        await tick
    return max(gaps, default=0.0), result


def test_outbox_write_back_waits_off_the_event_loop(tmp_path: Path) -> None:
    """A put holds the outbox lock while SQLite hangs (here: held for 1 s by a thread);
    the periodic write-back of the memory buffer must not wait for it on the loop."""
    outbox = Outbox(store.connect(tmp_path / "state.db"), TOPICS, retry_db_s=0.05)
    with outbox._lock:
        outbox._set_degraded("test: database failing")
    outbox.put(DoorOpened(site="site1", gate="gate1", door="d"))  # into memory
    holding = threading.Event()

    def hold() -> None:
        with outbox._lock:
            holding.set()
            time.sleep(HOLD_S)

    async def main() -> float:
        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait()
        loop_task = asyncio.create_task(outbox.persist_loop())

        async def until_persisted() -> None:
            while outbox.stats().in_memory:  # noqa: ASYNC110 - polls another thread's work
                await asyncio.sleep(0.02)

        gap, _ = await _max_gap_while(lambda: asyncio.wait_for(until_persisted(), 10))
        loop_task.cancel()
        holder.join()
        return gap

    gap = asyncio.run(main())
    assert gap < MAX_GAP_S, f"the event loop stalled {gap:.2f} s"
    assert outbox.degraded is None


def test_command_nonce_and_audit_writes_wait_off_the_event_loop(tmp_path: Path) -> None:
    """Another process holds the write lock: the command's nonce write waits its busy
    timeout (1 s here) -- on the processor's thread, not on the loop."""
    db_path = tmp_path / "state.db"
    db = store.connect(db_path, busy_timeout_ms=int(HOLD_S * 1000))
    key = sign.generate()
    kid = sign.key_id_of(key.public_key())
    now = time.time()
    proc = CommandProcessor(
        db,
        {kid: sign.public_b64(key.public_key())},
        window_s=60,
        site=SITE,
        gate=GATE,
        audit=audit.appender(db),
    )
    proc.register("unlock", Recorder().unlock)
    env = sign.sign_envelope(
        "unlock", {"door": "main"}, key, ts=sign.now_rfc3339(now), site=SITE, gate=GATE
    )
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def main() -> tuple[float, Any]:
        return await _max_gap_while(lambda: proc.process("unlock", env_bytes(env)))

    try:
        gap, result = asyncio.run(main())
    finally:
        holder.rollback()
        holder.close()
    assert gap < MAX_GAP_S, f"the event loop stalled {gap:.2f} s"
    assert not result.ok
    assert result.error == "storage_error"  # no nonce recorded: refused, as before
