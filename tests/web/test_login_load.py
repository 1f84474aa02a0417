"""Logins cannot tie up the gate: the argon2 check runs on a thread of its own (never a
database thread), with a cap on the checks waiting; the per-address throttle counts an IPv6
/64 as one address and, when full, forgets the least recently seen addresses only."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.web import accounts
from gateway.web.security import LoginThrottle, throttle_key
from tests.web.console import Console, console


def test_the_password_check_runs_off_the_database_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real = accounts._verify

    def recording(pw_hash: str, password: str) -> bool:
        threads.append(threading.current_thread().name)
        return real(pw_hash, password)

    monkeypatch.setattr(accounts, "_verify", recording)

    async def main() -> None:
        async with console(tmp_path) as c:
            assert await c.login("operator") == 303
            assert await Console(c.client, c.backend).login("operator", "a wrong password") == 401

    asyncio.run(main())
    assert len(threads) == 2
    assert all(name.startswith("web-login") for name in threads)  # the tests' run_db: here


def test_logins_beyond_the_cap_are_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def slow(pw_hash: str, password: str) -> bool:
        release.wait(5.0)
        return False

    monkeypatch.setattr(accounts, "_verify", slow)

    async def main() -> list[int]:
        async with console(tmp_path) as c:
            forms = [Console(c.client, c.backend) for _ in range(6)]
            tasks = [asyncio.create_task(f.login("operator", "a wrong password")) for f in forms]
            done, _ = await asyncio.wait(tasks, timeout=3.0)
            early = sorted(t.result() for t in done)
            release.set()
            await asyncio.gather(*tasks)
            return early

    early = asyncio.run(main())
    assert early == [503, 503]  # four checks may wait; the other two are refused at once


def test_an_ipv6_64_is_one_address() -> None:
    t = LoginThrottle(3, clock=lambda: 0.0)
    for i in range(3):
        assert t.allow(f"2001:db8:1:2::{i + 1:x}")
    assert not t.allow("2001:db8:1:2:ffff::9")  # same /64
    assert t.allow("2001:db8:1:3::1")  # another /64
    assert throttle_key("192.0.2.7") == "192.0.2.7"
    assert throttle_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert throttle_key("unknown") == "unknown"


def test_a_spray_of_addresses_does_not_reset_a_throttled_one() -> None:
    now = [0.0]
    t = LoginThrottle(2, clock=lambda: now[0], max_tracked=100)
    assert t.allow("198.51.100.1")
    assert t.allow("198.51.100.1")
    assert not t.allow("198.51.100.1")
    for i in range(150):  # more addresses than tracked
        assert t.allow(f"203.0.113.{i}")
        if i % 40 == 0:
            assert not t.allow("198.51.100.1")  # still counted: recently seen
    assert not t.allow("198.51.100.1")


def test_parallel_wrong_logins_each_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four wrong logins in flight at once (from four addresses, past the per-address
    throttle) count four failures: each read its record before any check ended."""
    read = threading.Event()
    records: list[str] = []
    real_record = accounts.login_record

    def recording(db: Any, name: str) -> accounts.LoginRecord:
        records.append(name)
        if len(records) == 4:
            read.set()
        return real_record(db, name)

    def held(pw_hash: str, password: str) -> bool:
        assert read.wait(5.0)  # no check ends before all four records are read
        return False

    monkeypatch.setattr(accounts, "login_record", recording)
    monkeypatch.setattr(accounts, "_verify", held)

    async def main() -> int:
        async with console(tmp_path) as c:
            forms = [Console(c.client, c.backend) for _ in range(4)]
            statuses = await asyncio.gather(*(f.login("operator", "a wrong guess") for f in forms))
            assert statuses == [401] * 4
            row = c.backend.db.execute(
                "SELECT failures FROM web_accounts WHERE name = 'operator'"
            ).fetchone()
            return int(row[0])

    assert asyncio.run(main()) == 4
