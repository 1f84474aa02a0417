"""API tokens for a property-management platform: Bearer on /api/ only, no CSRF token
needed, the token's role enforced, revocable, only its hash stored, calls audited as
``web:token:<name>``; made by the admin (API) or ``gateway web add-token``."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main as gateway_main
from gateway.store import database as store
from gateway.web import tokens
from tests.web.console import Console, console


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        async with console(tmp_path) as c:
            await body(c)

    asyncio.run(main())


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_platform_token_works_on_the_api_with_its_role_only(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("admin")
        status, made = await c.api("POST", "/api/tokens", {"name": "pms", "role": "operator"})
        assert status == 200
        token = made["token"]
        h = _bearer(token)
        resp = await c.client.post("/api/people", json={"name": "Lin Hui"}, headers=h)
        assert resp.status == 200  # no CSRF token needed with a Bearer token
        pid = (await resp.json())["id"]
        actor = c.backend.db.execute(
            "SELECT actor FROM audit WHERE action = 'person.add' AND subject = ?", [pid]
        ).fetchone()[0]
        assert actor == "web:token:pms"
        assert (await c.client.get("/api/tokens", headers=h)).status == 403  # not admin
        assert (await c.client.get("/api/system", headers=h)).status == 403
        page = await c.client.get("/people", headers=h, allow_redirects=False)
        assert page.status == 401  # pages are for people, not tokens
        stored = c.backend.db.execute("SELECT token_sha256 FROM web_api_tokens").fetchone()[0]
        assert token not in stored
        _, listed = await c.api("GET", "/api/tokens")
        assert [(t["name"], t["role"]) for t in listed] == [("pms", "operator")]
        assert listed[0]["last_used"] is not None
        assert "token" not in listed[0]
        # revoked: refused at once
        status, _ = await c.api("POST", f"/api/tokens/{made['id']}/revoke")
        assert status == 200
        assert (await c.client.get("/api/people", headers=h)).status == 401
        assert (await c.api("POST", f"/api/tokens/{made['id']}/revoke"))[0] == 404

    run(tmp_path, body)


def test_an_auditor_token_cannot_change_and_bad_tokens_are_refused(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("admin")
        _, made = await c.api("POST", "/api/tokens", {"name": "auditor1", "role": "auditor"})
        h = _bearer(made["token"])
        assert (await c.client.get("/api/compliance", headers=h)).status == 200
        resp = await c.client.post("/api/people", json={"name": "X"}, headers=h)
        assert resp.status == 403
        for bad in ("Bearer gwt_forged", "Bearer ", "Basic YWRtaW46eA==", "Bearer " + "x" * 500):
            resp = await c.client.get("/api/me", headers={"Authorization": bad})
            assert resp.status == 401, bad
        for body_, message in (
            ({"name": "p", "role": "admin"}, "role is one of"),
            ({"name": "Bad Name", "role": "operator"}, "token name"),
            ({"name": "p"}, "the body must be"),
        ):
            status, err = await c.api("POST", "/api/tokens", body_)
            assert status == 400
            assert message in err["error"]
        # only the admin makes tokens, with the session's CSRF token
        resp = await c.client.post(
            "/api/tokens", json={"name": "q", "role": "operator"}, headers=c.headers(csrf=False)
        )
        assert resp.status == 403
        await c.login("operator")
        assert (await c.api("POST", "/api/tokens", {"name": "q", "role": "operator"}))[0] == 403
        n = c.backend.db.execute("SELECT count(*) FROM web_api_tokens").fetchone()[0]
        assert n == 1

    run(tmp_path, body)


def test_gateway_web_add_token_prints_it_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = tmp_path / "state.db"
    store.connect(db_path).conn.close()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args = ["web", "add-token", "pms", "--role", "operator", "--db", str(db_path)]
    assert gateway_main([*args, "--config", str(tmp_path / "none.toml")]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    db = store.connect(db_path)
    s = tokens.session_of(db, token)
    assert s is not None
    assert (s.account, s.role) == ("token:pms", "operator")
    db.conn.close()


def test_the_system_page_makes_shows_once_and_revokes_tokens(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("admin")
        h = c.headers(csrf=False)
        resp = await c.client.post(
            "/system/tokens", data={"csrf": c.csrf, "name": "<b>x", "role": "operator"}, headers=h
        )
        assert resp.status == 400
        assert "token name" in await resp.text()
        resp = await c.client.post(
            "/system/tokens", data={"csrf": c.csrf, "name": "pms", "role": "auditor"}, headers=h
        )
        html = await resp.text()
        token = html.split("<pre><code>", 1)[1].split("</code>", 1)[0]
        assert token.startswith(tokens.PREFIX)
        assert (await c.client.get("/api/compliance", headers=_bearer(token))).status == 200
        html = await (await c.client.get("/system", headers=h)).text()
        assert token not in html  # shown that once only
        assert "Revoke pms" in html
        tid = c.backend.db.execute("SELECT id FROM web_api_tokens").fetchone()[0]
        resp = await c.client.post(
            f"/system/tokens/{tid}/revoke", data={"csrf": c.csrf}, headers=h, allow_redirects=False
        )
        assert resp.headers["Location"] == "/system"
        assert (await c.client.get("/api/compliance", headers=_bearer(token))).status == 401
        await c.login("operator")
        resp = await c.client.post(
            "/system/tokens",
            data={"csrf": c.csrf, "name": "q", "role": "operator"},
            headers=c.headers(csrf=False),
        )
        assert resp.status == 403

    run(tmp_path, body)
