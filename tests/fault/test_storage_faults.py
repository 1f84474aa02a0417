"""Fault suite: storage. The database write-locked, the database read-failing, a read-only
state directory at start and a full disk, each injected into the real daemon (own process)
beside the simulator and a real Mosquitto. Before each fault a card is revoked over MQTT
(the signed ``revoke_card`` command); during and after it the four invariants of
:mod:`tests.fault.invariants` must hold: the door relocks within ``unlock_seconds + 1 s``,
a valid card opens within 1 s, the revoked card never opens and no decision's event is lost.

The read-only and disk-full faults run the daemon in its own mount namespace
(``unshare -m``), which needs root (CAP_SYS_ADMIN); they skip with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.gate import provisioned_gate, started_with_revocation
from tests.mosquitto import Mosquitto

pytestmark = [pytest.mark.fault, pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.timeout(90)]

#: Every decision's event reaches the broker this long after the fault is cleared.
DELIVER_WITHIN_S = 10.0
#: The tmpfs that stands in for the SD card in the disk-full fault.
TMPFS_SIZE = "16m"

#: Holds exclusive POSIX locks on the five WAL read-mark bytes of the ``-shm`` file (the
#: unix VFS locks byte 120 + 3 + i for read mark i): no other process can start a read
#: transaction, so every read (and every write, which reads first) of the daemon waits
#: about 10 s and then fails with SQLITE_PROTOCOL ("locking protocol"), as a flaky SD card
#: or a stuck reader would make it. Released when stdin closes.
_READ_LOCKER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
for i in range(5):
    fcntl.lockf(fd, fcntl.LOCK_EX, 1, 123 + i, os.SEEK_SET)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


@contextlib.contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Another connection holds the write lock (BEGIN IMMEDIATE): every write of the daemon
    fails with "database is locked" after its busy timeout; reads still work (WAL)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.rollback()
        conn.close()


@contextlib.contextmanager
def reads_failing(db: Path) -> Iterator[None]:
    """Another process holds the WAL read marks: reads and writes of the daemon fail."""
    shm = Path(f"{db}-shm")
    assert shm.exists(), f"{shm} missing: the state database is not in WAL mode"
    proc = subprocess.Popen(
        [sys.executable, "-c", _READ_LOCKER, str(shm)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "locked", f"read locker failed: {line!r}"
        yield
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)


def namespace_problem() -> str | None:
    """Why the daemon cannot be run in its own mount namespace here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (unshare -m and mount need CAP_SYS_ADMIN)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "needs unshare(1) and mount(8) (util-linux)"
    with tempfile.TemporaryDirectory(prefix="fault-ns-") as d:
        script = (
            'set -e; mount -t tmpfs -o size=1m fault-probe "$1"; touch "$1/x"; '
            'mount --bind "$1" "$1"; mount -o remount,ro,bind "$1"; '
            'if touch "$1/y" 2>/dev/null; then exit 3; fi'
        )
        try:
            res = subprocess.run(
                ["unshare", "-m", "sh", "-c", script, "sh", d],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unshare -m failed: {exc}"
        if res.returncode != 0:
            return f"unshare -m / mount failed here (exit {res.returncode}): {res.stderr.strip()}"
    return None


def _needs_namespace() -> None:
    problem = namespace_problem()
    if problem is not None:
        pytest.skip(f"runs the daemon in a mount namespace: {problem}")


def readonly_launcher(state: Path) -> list[str]:
    """Run the daemon with ``state`` bind-mounted read-only (an SD card the kernel
    remounted read-only)."""
    script = 'set -e; mount --bind "$1" "$1"; mount -o remount,ro,bind "$1"; shift; exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(state)]


def tmpfs_launcher(state: Path, seed: Path) -> list[str]:
    """Run the daemon with ``state`` on a small tmpfs seeded from ``seed``."""
    script = (
        f'set -e; mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 fault-state "$1"; '
        'cp -a "$2/." "$1/"; shift 2; exec "$@"'
    )
    return ["unshare", "-m", "sh", "-c", script, "sh", str(state), str(seed)]


def fill(directory: Path) -> int:
    """Write zeros into ``directory/filler`` until the filesystem is full; bytes written."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with (directory / "filler").open("wb", buffering=0) as fh:
        while chunk:
            try:
                written += fh.write(chunk) or 0
            except OSError:
                chunk = chunk[: len(chunk) // 2]
    return written


def test_database_write_locked(broker: Mosquitto, tmp_path: Path) -> None:
    """Another process holds the write lock; a wrong PIN (its failure count cannot be
    written) puts the credential cache in charge: the revoked card must still be refused."""

    async def main() -> None:
        async with provisioned_gate(broker, tmp_path) as stack:
            inv = await started_with_revocation(stack)
            async with inv:
                await inv.round("healthy", revoked=False)
                with write_locked(stack.db_path):
                    await inv.round("write-locked", wrong_pin=True)
                await inv.round("lock released")
                await inv.no_event_lost(DELIVER_WITHIN_S)
            inv.assert_held()

    asyncio.run(main())


def test_database_read_failing(broker: Mosquitto, tmp_path: Path) -> None:
    """Reads of the state database stall and fail; decisions must come from memory within
    bounded waits, and stale memory must not let the revoked card in."""

    async def main() -> None:
        async with provisioned_gate(broker, tmp_path) as stack:
            inv = await started_with_revocation(stack)
            async with inv:
                await inv.round("healthy", revoked=False)
                with reads_failing(stack.db_path):
                    await inv.round("reads failing", wrong_pin=True)
                await inv.round("reads work again")
                await inv.no_event_lost(DELIVER_WITHIN_S)
            inv.assert_held()

    asyncio.run(main())


def test_readonly_filesystem_at_start(broker: Mosquitto, tmp_path: Path) -> None:
    """The daemon restarts with its state directory read-only: it must start (degraded)
    and still open for valid cards, never for the card revoked before."""
    _needs_namespace()

    async def main() -> None:
        async with provisioned_gate(broker, tmp_path) as stack:
            inv = await started_with_revocation(stack)
            async with inv:
                await inv.round("healthy", revoked=False)
                await inv.no_event_lost(DELIVER_WITHIN_S, label="healthy")
                await stack.stop_daemon()
                stack.launcher = readonly_launcher(stack.state_dir)
                try:
                    await stack.start_daemon()
                except RuntimeError as exc:
                    pytest.fail(f"the daemon did not start on a read-only state directory: {exc}")
                await inv.round("read-only state directory")
                await inv.no_event_lost(DELIVER_WITHIN_S)
            inv.assert_held()

    asyncio.run(main())


def test_disk_full(broker: Mosquitto, tmp_path: Path) -> None:
    """The state directory's filesystem fills up (a tmpfs in the daemon's mount namespace);
    a wrong PIN's failure count cannot be written; then space is freed again."""
    _needs_namespace()

    async def main() -> None:
        async with provisioned_gate(broker, tmp_path) as stack:
            seed = tmp_path / "state-seed"
            shutil.move(stack.state_dir, seed)
            stack.state_dir.mkdir(mode=0o700)
            stack.launcher = tmpfs_launcher(stack.state_dir, seed)
            inv = await started_with_revocation(stack)
            state = stack.in_daemon_namespace(stack.state_dir)
            async with inv:
                await inv.round("healthy", revoked=False)
                # Start from an empty WAL (as after the daemon's own checkpoint), so that
                # the next write needs new space and cannot reuse the WAL's old pages.
                with contextlib.closing(sqlite3.connect(state / "state.db")) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                await asyncio.to_thread(fill, state)
                await inv.round("disk full", wrong_pin=True)
                (state / "filler").unlink()
                await inv.round("space freed")
                await inv.no_event_lost(DELIVER_WITHIN_S)
            inv.assert_held()

    asyncio.run(main())
