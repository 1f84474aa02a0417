"""Withdrawals and deletions from the console as the daemon wires them: a withdrawal runs the
gate's own withdrawal (erase, announce, WAL scrub in the background, audited as
``web:<account>``), and a deletion never waits on the card/PIN decision thread for old
readers of the WAL: the scrub runs on its own thread afterwards."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.privacy import consent, people
from gateway.privacy.notice import Notice
from gateway.privacy.scrub import is_pending
from gateway.web import accounts
from gateway.web.app import make_app
from gateway.web.backend import Backend
from tests.conftest import built_gateway
from tests.privacy.conftest import NOTICE_EN, random_embedding
from tests.support.net import free_port
from tests.web.console import PASSWORD, Console


def _enable(config: Path) -> None:
    config.write_text(
        config.read_text()
        + f'\n[web]\nenabled = true\nlisten = ["127.0.0.1"]\nport = {free_port()}\n'
    )


def _backend(gw: Any) -> Backend:
    """The backend the composition root built for the console's service."""
    spec = next(s for s in gw.daemon.services if s.name == "web-console")
    backend = spec.run.args[0]
    assert isinstance(backend, Backend)
    return backend


def _enrolled(gw: Any, backend: Backend) -> str:
    pid = people.add_person(gw.db, "Resident")
    consent.grant(
        gw.db, pid, Notice("1", NOTICE_EN), method="paper", recorded_by="o", scope="device"
    )
    embeddings = np.stack([random_embedding(i) for i in range(3)])
    backend.vault.store_templates(gw.db, pid, embeddings, model="m")
    return pid


async def _scrubbed(db_path: Path, within_s: float = 3.0) -> bool:
    conn = sqlite3.connect(str(db_path))
    try:
        deadline = time.monotonic() + within_s
        while is_pending(conn):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True
    finally:
        conn.close()


async def _console(gw: Any, backend: Backend) -> Console:
    accounts.add_account(gw.db, "office", "operator", PASSWORD, actor="test")
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(backend)), cookie_jar=DummyCookieJar()
    )
    await client.start_server()
    c = Console(client, backend)
    assert await c.login("office") == 303
    return c


def test_a_web_withdrawal_is_the_gates_withdrawal_and_scrubs_the_wal(
    minimal_config: Path,
) -> None:
    _enable(minimal_config)

    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            backend = _backend(gw)
            pid = _enrolled(gw, backend)
            c = await _console(gw, backend)
            try:
                status, receipt = await c.api(
                    "POST", f"/api/people/{pid}/withdraw", {"confirm": True}
                )
            finally:
                await c.client.close()
            assert status == 200, receipt
            assert receipt["templates_erased"] == 3
            assert receipt["person_id"] == pid
            assert await _scrubbed(Path(gw.cfg.storage.database_path))
            row = gw.db.execute(
                "SELECT actor FROM audit WHERE action = 'template.delete' AND subject = ?", [pid]
            ).fetchone()
            assert row[0] == "web:office"
            assert consent.latest(gw.db, pid).method == "web"  # type: ignore[union-attr]

    asyncio.run(main())


def test_a_web_deletion_does_not_wait_for_old_readers(minimal_config: Path) -> None:
    _enable(minimal_config)

    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            backend = _backend(gw)
            pid = _enrolled(gw, backend)
            db_path = Path(gw.cfg.storage.database_path)
            c = await _console(gw, backend)
            reader = sqlite3.connect(str(db_path), isolation_level=None, check_same_thread=False)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM templates").fetchone()  # pins the WAL
            try:
                t0 = time.monotonic()
                status, done = await c.api("POST", f"/api/people/{pid}/delete", {"confirm": pid})
                elapsed = time.monotonic() - t0
            finally:
                await c.client.close()
                reader.execute("COMMIT")
                reader.close()
            assert status == 200, done
            assert done["templates_erased"] == 3
            assert elapsed < 0.5  # the old code waited 0.8 s on the decision thread
            assert await _scrubbed(db_path)  # by the background scrub, once the reader left

    asyncio.run(main())
