"""A web console over a fresh state database, for the tests: three accounts (one per role),
the services' real dependencies (credential store, vault, notice), an aiohttp test client
that carries the session cookie by hand (the cookie is ``Secure``; the test server is plain
HTTP) and the session's CSRF token."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.config.web import WebConfig
from gateway.credentials.hashing import PinHashParams
from gateway.credentials.store import Credentials
from gateway.privacy import audit, compliance, retention
from gateway.privacy.notice import Notice
from gateway.privacy.vault import NullGallery, Vault
from gateway.services import withdrawal
from gateway.services.compliance import ReportRequest
from gateway.services.credentials import CredentialDeps
from gateway.store import database as store
from gateway.web import accounts
from gateway.web.app import make_app
from gateway.web.backend import Backend, run_here
from gateway.web.security import COOKIE, LOGIN_COOKIE
from tests.privacy.conftest import NOTICE_EN

FAST = PinHashParams(time_cost=1, memory_kib=1024, parallelism=1)
PASSWORD = "correct horse battery"
ROLES = ("admin", "operator", "auditor")


@dataclass
class Console:
    """The client, the backend and the logged-in session (token, CSRF)."""

    client: TestClient[web.Request, web.Application]
    backend: Backend
    token: str = ""
    csrf: str = ""

    def headers(self, *, csrf: bool = True) -> dict[str, str]:
        """The session cookie (and the CSRF header) of the logged-in account."""
        h = {"Cookie": f"{COOKIE}={self.token}"} if self.token else {}
        if csrf and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        return h

    async def login(self, name: str, password: str = PASSWORD, code: str = "") -> int:
        """Log in through the form (``code``: the second factor's); keep the session; the
        HTTP status."""
        form = await self.login_form()
        resp = await self.client.post(
            "/login",
            data={"account": name, "password": password, "code": code, "csrf": form},
            headers={"Cookie": f"{LOGIN_COOKIE}={form}"},
            allow_redirects=False,
        )
        cookie = resp.headers.get("Set-Cookie", "")
        m = re.search(rf"{re.escape(COOKIE)}=([^;]+)", cookie)
        if m:
            self.token = m.group(1)
            me = await self.client.get("/api/me", headers=self.headers(csrf=False))
            self.csrf = (await me.json())["csrf"]
        return resp.status

    async def login_form(self) -> str:
        """Open the login page; its CSRF token (also set as the login cookie)."""
        resp = await self.client.get("/login")
        m = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
        assert m is not None
        assert f"{LOGIN_COOKIE}={m.group(1)}" in resp.headers["Set-Cookie"]
        return m.group(1)

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """A JSON API call with the session and its CSRF token."""
        resp = await self.client.request(method, path, json=body, headers=self.headers())
        text = await resp.text()
        is_json = resp.content_type == "application/json"
        import json

        return resp.status, json.loads(text) if is_json else text


GATE_STATUS: dict[str, Any] = {
    "doors": {"front": "locked"},
    "readers": {"front-reader": "online"},
    "face": {"cam-front": "running"},
    "broker": "connected",
    "outbox": {"pending": 0},
    "storage": "ok",
}
"""A gate's status as the daemon reports it (a copy per backend; tests change theirs)."""


def backend_for(tmp_path: Path, cfg: WebConfig | None = None) -> Backend:
    """A backend over a new database in ``tmp_path`` (keyed audit chain); its gate status
    is ``backend.status()``, a dict the test may change."""
    device, site = secrets.token_bytes(32), secrets.token_bytes(32)
    db = store.connect(tmp_path / "state.db")
    audit.bind_key(db, audit.ChainKey.from_device(device))
    creds = Credentials(db, device, hash_params=FAST)
    for role in ROLES:
        accounts.add_account(db, role, role, PASSWORD, actor="test")

    vault, gallery = Vault.from_root_keys(device, site), NullGallery()

    async def withdraw(person_id: str, actor: str) -> dict[str, Any]:
        r = withdrawal.withdraw(db, vault, gallery, person_id, "web", actor=actor, vacuum=False)
        return {"receipt_id": r.id, "templates_erased": r.templates_erased}

    async def after_deletion() -> None:
        return None

    status = copy.deepcopy(GATE_STATUS)
    return Backend(
        cfg=cfg or WebConfig(),
        db=db,
        run_db=run_here,
        run_decide=run_here,
        credential_deps=lambda: CredentialDeps(creds),
        vault=vault,
        gallery=gallery,
        notice=lambda: Notice("1", NOTICE_EN),
        report_request=lambda: ReportRequest(
            gate="gate-1",
            today=dt.date(2026, 1, 5),
            thresholds=compliance.Thresholds(),
            retention=retention.RetentionPolicy(),
        ),
        grace_days=30.0,
        withdraw=withdraw,
        after_deletion=after_deletion,
        status=lambda: status,
        pseudonym_key=secrets.token_bytes(32),
        totp_key=secrets.token_bytes(32),
    )


@contextlib.asynccontextmanager
async def console(
    tmp_path: Path, cfg: WebConfig | None = None, **changes: Any
) -> AsyncIterator[Console]:
    """A running console (test server) over a fresh database (``changes``: Backend fields
    to set, such as the daemon's reload)."""
    backend = dataclasses.replace(backend_for(tmp_path, cfg), **changes)
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(make_app(backend)), cookie_jar=DummyCookieJar()
    )
    await client.start_server()
    try:
        yield Console(client, backend)
    finally:
        await client.close()
        audit.bind_key(backend.db, None)
        backend.db.conn.close()


def login(
    db: sqlite_utils.Database,
    name: str,
    password: str,
    *,
    policy: accounts.LoginPolicy,
    now: float | None = None,
) -> tuple[str, accounts.Session]:
    """The three steps of a login in one call (``login_record``, ``verify``,
    ``finish_login``), as the console runs them on their threads."""
    record = accounts.login_record(db, name)
    ok = accounts.verify(record, password)
    return accounts.finish_login(db, record, ok, policy=policy, now=now)
