"""The web console through aiohttp's test client: authentication, CSRF, roles, lockout,
escaping, security headers, and the operations reaching the services (audited)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.config.web import WebConfig
from gateway.web import accounts
from gateway.web.account_pages import routes as account_routes
from gateway.web.api import routes as api_routes
from gateway.web.live_pages import routes as live_routes
from gateway.web.pages import routes as page_routes
from gateway.web.security import COOKIE, LOGIN_COOKIE
from gateway.web.system_pages import routes as system_routes
from tests.web.console import PASSWORD, Console, console


def run(
    tmp_path: Path, body: Callable[[Console], Awaitable[None]], cfg: WebConfig | None = None
) -> None:
    async def main() -> None:
        async with console(tmp_path, cfg) as c:
            await body(c)

    asyncio.run(main())


def _paths() -> list[tuple[str, str]]:
    out = []
    for r in page_routes() + api_routes() + live_routes() + system_routes() + account_routes():
        raw: str = r.path  # type: ignore[attr-defined]
        path = raw.replace("{pid}", "0" * 32).replace("{tid}", "0" * 32)
        path = path.replace("{name}", "operator")
        if path not in ("/login", "/lang/{lang}"):  # public: the language switch too
            out.append((r.method, path))  # type: ignore[attr-defined]
    return out


def _audit(c: Console, action: str) -> list[tuple[str, str]]:
    rows = c.backend.db.execute("SELECT actor, subject FROM audit WHERE action = ?", [action])
    return [(str(a), str(s)) for a, s in rows.fetchall()]


@pytest.mark.parametrize(("method", "path"), _paths())
def test_every_route_refuses_an_unauthenticated_request(
    tmp_path: Path, method: str, path: str
) -> None:
    async def body(c: Console) -> None:
        resp = await c.client.request(method, path, allow_redirects=False)
        if method == "GET" and not path.startswith("/api/"):
            assert resp.status == 303
            assert resp.headers["Location"] == "/login"
        else:
            assert resp.status == 401
        bogus = {"Cookie": "__Host-gw_session=forged"}
        resp = await c.client.request(method, path, headers=bogus, allow_redirects=False)
        assert resp.status in (303, 401)

    run(tmp_path, body)


def test_a_change_without_the_csrf_token_is_refused(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("operator") == 303
        # form without the field, API without the header, and a wrong token
        resp = await c.client.post("/people", data={"name": "Li"}, headers=c.headers(csrf=False))
        assert resp.status == 403
        resp = await c.client.post(
            "/api/people", json={"name": "Li"}, headers=c.headers(csrf=False)
        )
        assert resp.status == 403
        h = c.headers() | {"X-CSRF-Token": "x" * 43}
        assert (await c.client.post("/api/people", json={"name": "Li"}, headers=h)).status == 403
        assert c.backend.db.execute("SELECT count(*) FROM people").fetchone()[0] == 0
        # the right token in the form works
        form = {"name": "Li", "csrf": c.csrf}
        h = c.headers(csrf=False)
        resp = await c.client.post("/people", data=form, headers=h, allow_redirects=False)
        assert resp.status == 303

    run(tmp_path, body)


def test_an_auditor_cannot_change_anything(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("auditor") == 303
        for method, path in _paths():
            if method != "POST" or path == "/logout" or "/records." in path:
                continue  # the records export: the auditor's, a POST since it is audited
            if path in (
                "/account/totp",
                "/account/totp/confirm",
                "/api/account/totp",
                "/api/account/totp/confirm",
            ):
                continue  # the auditor's own second factor (tests/web/test_totp.py)
            status, _ = await c.api("POST", path, {"name": "x", "confirm": "yes"})
            assert status == 403, path
        assert c.backend.db.execute("SELECT count(*) FROM people").fetchone()[0] == 0
        status, _ = await c.api("GET", "/api/people")
        assert status == 403  # names are the office's, not the auditor's
        status, rep = await c.api("GET", "/api/compliance")
        assert status == 200
        assert rep["audit"]["ok"] is True

    run(tmp_path, body)


def test_brute_force_locks_the_account_out(tmp_path: Path) -> None:
    cfg = WebConfig(login_max_failures=3, login_attempts_per_minute=100)

    async def body(c: Console) -> None:
        for _ in range(3):
            assert await c.login("operator", "wrong password!") == 401
        assert await c.login("operator") == 401  # the right password, but locked
        assert c.token == ""
        assert _audit(c, "web.account.locked") == [("web", "operator")]
        row = c.backend.db.execute(
            "SELECT locked_until FROM web_accounts WHERE name = 'operator'"
        ).fetchone()
        assert row[0] > time.time() + 60

    run(tmp_path, body, cfg)


def test_login_attempts_are_throttled_per_address(tmp_path: Path) -> None:
    cfg = WebConfig(login_attempts_per_minute=3, login_max_failures=50)

    async def body(c: Console) -> None:
        for _ in range(3):
            assert await c.login("nobody", "wrong password!") == 401
        assert await c.login("admin") == 429

    run(tmp_path, body, cfg)


def test_unknown_account_and_wrong_password_look_the_same(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("ghost", "x" * 12) == await c.login("admin", "x" * 12) == 401
        r1 = await c.client.post("/login", data={"account": "ghost", "password": "x" * 12})
        assert "wrong account name" not in await r1.text()  # no token: refused
        for name in ("ghost", "admin"):
            t = await c.login_form()
            form = {"account": name, "password": "x" * 12, "csrf": t}
            h = {"Cookie": f"{LOGIN_COOKIE}={t}"}
            resp = await c.client.post("/login", data=form, headers=h)
            assert "wrong account name" in await resp.text()


def test_a_login_without_its_form_token_is_refused(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        good = {"account": "admin", "password": PASSWORD}
        resp = await c.client.post("/login", data=good, allow_redirects=False)
        assert resp.status == 403
        assert COOKIE not in resp.headers.get("Set-Cookie", "").split("=")[0]
        t = await c.login_form()
        other = {"Cookie": f"{LOGIN_COOKIE}={'y' * 43}"}  # a forged form: another token
        resp = await c.client.post("/login", data=good | {"csrf": t}, headers=other)
        assert resp.status == 403
        assert c.backend.db.execute("SELECT count(*) FROM web_sessions").fetchone()[0] == 0

    run(tmp_path, body)


def test_a_script_name_renders_inert(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        name = '<script>alert("x")</script>'
        status, made = await c.api("POST", "/api/people", {"name": name, "unit": "<b>1</b>"})
        assert status == 200
        for path in ("/people", f"/people/{made['id']}"):
            page = await (await c.client.get(path, headers=c.headers())).text()
            assert "<script>alert" not in page
            assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
            assert "<b>1</b>" not in page

    run(tmp_path, body)


def test_security_headers_on_pages_errors_and_static(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        for path in ("/login", "/static/console.js", "/api/people", "/nowhere"):
            resp = await c.client.get(path, allow_redirects=False)
            csp = resp.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp
            assert "script-src 'self'" in csp
            assert "frame-ancestors 'none'" in csp
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert resp.headers["Referrer-Policy"] == "same-origin"
            assert resp.headers["X-Frame-Options"] == "DENY"
        page = await (await c.client.get("/login")).text()
        assert "<script>" not in page  # the only script is a file
        assert 'src="/static/console.js"' in page

    run(tmp_path, body)


def test_the_session_cookie_is_locked_down_and_logout_ends_it(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        t = await c.login_form()
        resp = await c.client.post(
            "/login",
            data={"account": "admin", "password": PASSWORD, "csrf": t},
            headers={"Cookie": f"{LOGIN_COOKIE}={t}"},
            allow_redirects=False,
        )
        cookie = resp.headers.getall("Set-Cookie")[0]
        assert cookie.startswith(f"{COOKIE}=")
        for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
            assert attr in cookie
        await c.login("admin")
        resp = await c.client.post(
            "/logout", data={"csrf": c.csrf}, headers=c.headers(csrf=False), allow_redirects=False
        )
        assert resp.status == 303
        status, _ = await c.api("GET", "/api/me")
        assert status == 401

    run(tmp_path, body)


def test_an_idle_session_expires(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("admin")
        c.backend.db.execute("UPDATE web_sessions SET last_seen = last_seen - 31 * 60")
        status, _ = await c.api("GET", "/api/me")
        assert status == 401

    run(tmp_path, body)


def test_people_consent_credentials_withdraw_delete_through_the_services(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        status, made = await c.api("POST", "/api/people", {"name": "Wang Fang", "unit": "3-201"})
        assert status == 200
        pid = made["id"]
        status, rows = await c.api("GET", "/api/people?q=wang")
        assert [r["id"] for r in rows] == [pid]
        assert (await c.api("GET", "/api/people?q=zhang"))[1] == []
        status, got = await c.api(
            "POST", f"/api/people/{pid}/consent", {"decision": "grant", "method": "paper"}
        )
        assert status == 200
        assert got["notice"] == "1"
        status, shown = await c.api("GET", f"/api/people/{pid}")
        assert [x["status"] for x in shown["consents"]] == ["granted"]
        assert shown["consents"][0]["recorded_by"] == "web:operator"
        assert (await c.api("POST", f"/api/people/{pid}/cards", {"number": "123456"}))[0] == 200
        status, err = await c.api("POST", f"/api/people/{pid}/cards", {"number": "12a"})
        assert status == 400
        assert "digits" in err["error"]
        assert (await c.api("POST", f"/api/people/{pid}/cards/revoke", {"number": "123456"}))[
            1
        ] == {"revoked": 1}
        assert (await c.api("POST", f"/api/people/{pid}/pins/revoke", {}))[1] == {"revoked": 0}
        status, receipt = await c.api("POST", f"/api/people/{pid}/withdraw", {"confirm": True})
        assert status == 200
        assert receipt["person_id"] == pid
        status, err = await c.api("POST", f"/api/people/{pid}/delete", {"confirm": "no"})
        assert status == 400
        status, done = await c.api("POST", f"/api/people/{pid}/delete", {"confirm": pid})
        assert status == 200
        assert done["cards"] == 1
        assert (await c.api("GET", f"/api/people/{pid}"))[0] == 404
        for action in (
            "person.add",
            "card.added",
            "card.revoked",
            "pin.revoked",
            "template.delete",
            "person.delete",
        ):
            assert ("web:operator", pid) in _audit(c, action), action
        assert ("web:operator", "operator") in _audit(c, "web.login")

    run(tmp_path, body)


def test_pages_post_redirect_get(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        h = c.headers(csrf=False)
        resp = await c.client.post(
            "/people", data={"name": "Zhao Lei", "csrf": c.csrf}, headers=h, allow_redirects=False
        )
        assert resp.status == 303
        where = resp.headers["Location"]
        pid = where.split("/")[2].split("?")[0]
        page = await (await c.client.get(where, headers=h)).text()
        assert "Person added." in page
        assert "Zhao Lei" in page
        form = {"decision": "grant", "method": "paper", "csrf": c.csrf}
        resp = await c.client.post(f"/people/{pid}/consent", data=form, headers=h)
        page = await resp.text()
        assert "Consent answer recorded." in page
        assert "granted" in page
        resp = await c.client.post(f"/people/{pid}/withdraw", data={"csrf": c.csrf}, headers=h)
        assert resp.status == 400  # not confirmed
        resp = await c.client.post(
            f"/people/{pid}/withdraw", data={"csrf": c.csrf, "confirm": "on"}, headers=h
        )
        assert "Withdrawal receipt" in await resp.text()
        page = await (await c.client.get("/notice", headers=h)).text()
        assert "Version 1" in page

    run(tmp_path, body)


def test_add_account_rules(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        db = c.backend.db
        with pytest.raises(accounts.AccountError, match="12 to 256"):
            accounts.add_account(db, "short", "operator", "x" * 11, actor="t")
        with pytest.raises(accounts.AccountError, match="role"):
            accounts.add_account(db, "boss", "root", "x" * 12, actor="t")
        with pytest.raises(accounts.AccountError, match="exists"):
            accounts.add_account(db, "admin", "admin", "x" * 12, actor="t")
        with pytest.raises(accounts.AccountError, match="account name"):
            accounts.add_account(db, "<b>", "admin", "x" * 12, actor="t")
        h = db.execute("SELECT password_hash FROM web_accounts WHERE name='admin'").fetchone()[0]
        assert h.startswith("$argon2id$")
        assert ("test", "admin") in _audit(c, "web.account.add")

    run(tmp_path, body)


def test_a_change_from_another_origin_is_refused(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        h = c.headers() | {"Origin": "https://evil.example"}
        resp = await c.client.post("/api/people", json={"name": "Li"}, headers=h)
        assert resp.status == 403
        assert c.backend.db.execute("SELECT count(*) FROM people").fetchone()[0] == 0
        h["Origin"] = str(c.client.make_url("")).rstrip("/")
        assert (await c.client.post("/api/people", json={"name": "Li"}, headers=h)).status == 200

    run(tmp_path, body)


def test_an_unexpected_failure_is_a_500_with_the_headers(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("auditor")
        c.backend.db.execute("DROP TABLE consents")  # the report cannot be computed
        resp = await c.client.get("/api/compliance", headers=c.headers())
        assert resp.status == 500
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert "consents" not in await resp.text()  # no internals in the answer

    run(tmp_path, body)


def test_validity_through_the_credential_service(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        pid = (await c.api("POST", "/api/people", {"name": "Sun Li"}))[1]["id"]
        period = {"valid_from": "2026-01-01", "valid_until": "2026-02-01T08:00"}
        status, got = await c.api("POST", f"/api/people/{pid}/validity", period)
        assert status == 200
        assert got == {"valid_from": 1767225600.0, "valid_until": 1769932800.0}
        bad = {"valid_from": "2026-02-01", "valid_until": "2026-01-01"}
        status, err = await c.api("POST", f"/api/people/{pid}/validity", bad)
        assert status == 400
        assert "after" in err["error"]
        assert (await c.api("POST", f"/api/people/{pid}/validity", {"valid_from": "soon"}))[
            0
        ] == 400
        assert (await c.api("POST", f"/api/people/{pid}/validity", {}))[1]["valid_until"] is None
        assert ("web:operator", pid) in _audit(c, "person.validity")

    run(tmp_path, body)


def test_processing_records_export_for_the_auditor(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        await c.api("POST", "/api/people", {"name": "Gao Min"})
        assert (await c.api("POST", "/api/compliance/records.json"))[0] == 403  # not the office
        await c.login("auditor")
        status, got = await c.api("POST", "/api/compliance/records.json")
        assert status == 200
        assert "records" in got
        form = {"csrf": c.csrf}
        resp = await c.client.post(
            "/compliance/records.csv", data=form, headers=c.headers(csrf=False)
        )
        assert resp.status == 200
        assert resp.content_type == "text/csv"
        assert "attachment" in resp.headers["Content-Disposition"]
        assert (await c.api("POST", "/api/compliance/records.xml"))[0] == 404
        exports = _audit(c, "export")
        assert ("web:auditor", "processing_records") in exports
        # the export writes an audit row (and a file): a GET, or a POST without the
        # session's CSRF token, exports nothing
        for path in ("/compliance/records.json", "/api/compliance/records.json"):
            assert (await c.client.get(path, headers=c.headers())).status == 405
            assert (await c.client.post(path, headers=c.headers(csrf=False))).status == 403
        assert _audit(c, "export") == exports

    run(tmp_path, body)
