"""The console on read-only storage (the daemon runs DEGRADED): pages that only read keep
working for a logged-in session (its activity kept in memory), every change and every login
is refused with a clear 503, never a 500 with a traceback."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.store.readonly import connect_read_only
from gateway.web import accounts
from gateway.web.app import make_app
from gateway.web.security import READ_ONLY
from tests.web.console import Console, console
from tests.web.console import login as console_login


@pytest.mark.parametrize("reason", ["state database is read-only (test)", None])
def test_read_only_storage_reads_work_changes_and_logins_are_refused(
    tmp_path: Path, reason: str | None
) -> None:
    """``reason``: the daemon knew at start; None: the storage became read-only later."""

    async def main() -> None:
        async with console(tmp_path) as c:
            assert await c.login("operator") == 303
            status, _ = await c.api("POST", "/api/people", {"name": "Li Wei"})
            assert status == 200
            ro_db = connect_read_only(tmp_path / "state.db")
            backend = dataclasses.replace(c.backend, db=ro_db, read_only=reason)
            client: TestClient[web.Request, web.Application] = TestClient(
                TestServer(make_app(backend)), cookie_jar=DummyCookieJar()
            )
            await client.start_server()
            ro = Console(client, backend, c.token, c.csrf)
            try:
                status, rows = await ro.api("GET", "/api/people")
                assert status == 200
                assert [r["name"] for r in rows] == ["Li Wei"]
                page = await client.get("/people", headers=ro.headers(csrf=False))
                assert page.status == 200
                assert "Li Wei" in await page.text()
                status, body = await ro.api("POST", "/api/people", {"name": "Chen Jing"})
                assert status == 503
                assert body == {"error": READ_ONLY}
                resp = await client.post(
                    "/people", data={"name": "Chen Jing", "csrf": ro.csrf}, headers=ro.headers()
                )
                assert resp.status == 503
                assert "read-only" in await resp.text()
                for password in ("correct horse battery", "a wrong password"):
                    assert await Console(client, backend).login("admin", password) == 503
            finally:
                await client.close()
                ro_db.conn.close()

    asyncio.run(main())


def test_session_activity_is_kept_in_memory_when_it_cannot_be_written(tmp_path: Path) -> None:
    async def main() -> None:
        async with console(tmp_path) as c:
            db = c.backend.db
            token, _ = console_login(
                db, "operator", "correct horse battery", policy=accounts.LoginPolicy()
            )
            ro_db = connect_read_only(tmp_path / "state.db")
            seen = accounts.SeenInMemory()
            policy = accounts.SessionPolicy(lifetime_s=3600.0, idle_s=100.0)
            try:
                t0 = db.execute("SELECT last_seen FROM web_sessions").fetchone()[0]
                for dt in (90.0, 180.0):  # each within the idle time of the one before
                    s = accounts.session_of(ro_db, token, policy=policy, now=t0 + dt, seen=seen)
                    assert s is not None
                assert (
                    accounts.session_of(ro_db, token, policy=policy, now=t0 + 290.0, seen=seen)
                    is None
                )
            finally:
                ro_db.conn.close()

    asyncio.run(main())
