"""The optional TOTP second factor: set up on the account page (secret shown once,
active only after a code), then required at login; a wrong code counts as a failed login
(lockout); a used code is refused within its window; an admin (page or
``gateway web reset-totp``) removes it, audited; the secret is stored sealed."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest

from gateway.cli.main import main as gateway_main
from gateway.store import database as store
from gateway.web import accounts, tokens, totp
from tests.web.console import PASSWORD, Console, console


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        async with console(tmp_path) as c:
            await body(c)

    asyncio.run(main())


async def _enrol(c: Console) -> pyotp.TOTP:
    """Turn the logged-in account's factor on through the page; its generator."""
    h = c.headers(csrf=False)
    begun = await c.client.post("/account/totp", data={"csrf": c.csrf}, headers=h)
    html = await begun.text()
    m = re.search(r'id="totp-secret" readonly value="([A-Z2-7]+)"', html)
    assert m is not None
    assert "otpauth://totp/" in html
    # the QR code: inline SVG (never a file or URL), named for screen readers, not cached
    qr = re.search(r'<figure class="qr" role="img" aria-label="([^"]+)"><svg .*?</svg>', html)
    assert qr is not None
    assert qr.group(1) == "QR code of the set-up link"
    assert "href" not in qr.group(0)
    assert "style" not in qr.group(0)
    assert "no-store" in begun.headers["Cache-Control"]
    gen = pyotp.TOTP(m.group(1))
    assert not totp.enabled(c.backend.db, "operator")  # pending until confirmed
    bad = await c.client.post(
        "/account/totp/confirm", data={"csrf": c.csrf, "code": "000000"}, headers=h
    )
    assert bad.status == 400
    ok = await c.client.post(
        "/account/totp/confirm", data={"csrf": c.csrf, "code": gen.now()}, headers=h
    )
    assert ok.status == 200
    assert "Second factor on" in await ok.text()
    page = await (await c.client.get("/account", headers=h)).text()
    assert m.group(1) not in page  # shown that once
    assert "<svg" not in page
    return gen


def test_login_needs_the_code_once_on_and_refuses_a_replay(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("operator") == 303  # no factor: password alone
        gen = await _enrol(c)
        row = c.backend.db.execute("SELECT secret_sealed FROM web_totp").fetchone()
        assert gen.secret.encode() not in row[0]  # sealed, never in clear
        assert await c.login("operator") == 401  # no code
        assert await c.login("operator", code="123456") == 401  # wrong code
        code = gen.at(time.time() + 30)  # the next step: not used yet
        assert await c.login("operator", code=code) == 303
        assert await c.login("operator", code=code) == 401  # replay refused
        assert await c.login("operator", "wrong password!!", gen.now()) == 401
        assert await c.login("auditor") == 303  # other accounts unaffected
        actions = [r[0] for r in c.backend.db.execute("SELECT action FROM audit")]
        assert "web.totp.begin" in actions
        assert "web.totp.on" in actions

    run(tmp_path, body)


def test_wrong_codes_lock_the_account_like_wrong_passwords(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        gen = await _enrol(c)
        for _ in range(c.backend.cfg.login_max_failures):
            assert await c.login("operator", code="999999") == 401
        row = c.backend.db.execute(
            "SELECT locked_until FROM web_accounts WHERE name = 'operator'"
        ).fetchone()
        assert row[0] is not None
        assert row[0] > time.time()
        assert await c.login("operator", code=gen.at(time.time() + 30)) == 401  # locked

    run(tmp_path, body)


def test_the_admin_resets_a_factor_and_others_may_not(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        await _enrol(c)
        h = c.headers(csrf=False)
        refused = await c.client.post(
            "/account/totp/reset", data={"csrf": c.csrf, "account": "operator"}, headers=h
        )
        assert refused.status == 403
        assert await c.login("admin") == 303
        h = c.headers(csrf=False)
        resp = await c.client.post(
            "/account/totp/reset", data={"csrf": c.csrf, "account": "operator"}, headers=h
        )
        assert resp.status == 200
        assert "was removed" in await resp.text()
        row = c.backend.db.execute(
            "SELECT actor FROM audit WHERE action = 'web.totp.reset'"
        ).fetchone()
        assert row[0] == "web:admin"
        assert await c.login("operator") == 303  # password alone again
        resp = await c.client.post(
            "/account/totp/reset", data={"csrf": "", "account": "nobody"}, headers=h
        )
        assert resp.status == 403  # no CSRF token

    run(tmp_path, body)


def test_without_the_device_key_a_login_with_a_factor_fails_closed(tmp_path: Path) -> None:
    db = store.connect(tmp_path / "state.db")
    accounts.add_account(db, "ann", "operator", PASSWORD, actor="test")
    key = b"k" * 32
    made = totp.begin(db, key, "ann", actor="test")
    totp.confirm(db, key, "ann", pyotp.TOTP(made.secret).now())
    code = pyotp.TOTP(made.secret).at(time.time() + 30)
    assert not totp.login_ok(db, None, "ann", code)
    assert not totp.login_ok(db, b"x" * 32, "ann", code)  # another device key
    assert totp.login_ok(db, key, "ann", code)
    db.conn.close()


def test_gateway_web_reset_totp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = tmp_path / "state.db"
    db = store.connect(db_path)
    accounts.add_account(db, "ann", "operator", PASSWORD, actor="test")
    totp.begin(db, b"k" * 32, "ann", actor="test")
    db.conn.close()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    cfg = ["--db", str(db_path), "--config", str(tmp_path / "none.toml")]
    assert gateway_main(["web", "reset-totp", "ann", *cfg]) == 0
    assert "removed" in capsys.readouterr().out
    db = store.connect(db_path)
    assert db.execute("SELECT count(*) FROM web_totp").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit WHERE action = 'web.totp.reset'").fetchone()[0]
    db.conn.close()
    assert gateway_main(["web", "reset-totp", "nobody", *cfg]) != 0


def test_without_segno_the_set_up_shows_the_link_and_key_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "segno", None)  # "import segno" raises ImportError

    async def body(c: Console) -> None:
        assert await c.login("operator") == 303
        h = c.headers(csrf=False)
        resp = await c.client.post("/account/totp", data={"csrf": c.csrf}, headers=h)
        html = await resp.text()
        assert resp.status == 200
        assert 'id="totp-secret"' in html
        assert "otpauth://totp/" in html
        assert "<svg" not in html

    run(tmp_path, body)
    assert "segno is not installed" in caplog.text


def test_the_second_factor_through_the_json_api(tmp_path: Path) -> None:
    """The account API: set up (secret shown once, not cached), confirmed with a code, then
    needed at login; an admin resets it; an API token has no second factor; a change
    without the session's CSRF token is refused."""

    async def body(c: Console) -> None:
        assert await c.login("operator") == 303
        assert await c.api("GET", "/api/account") == (
            200,
            {"account": "operator", "role": "operator", "totp": False, "totp_available": True},
        )
        no_csrf = await c.client.post("/api/account/totp", headers=c.headers(csrf=False))
        assert no_csrf.status == 403
        resp = await c.client.post("/api/account/totp", headers=c.headers())
        assert resp.status == 200
        assert "no-store" in resp.headers["Cache-Control"]
        made = await resp.json()
        assert made["uri"].startswith("otpauth://totp/access-gateway:operator?")
        gen = pyotp.TOTP(made["secret"])
        assert not totp.enabled(c.backend.db, "operator")  # pending until confirmed
        status, err = await c.api("POST", "/api/account/totp/confirm", {"code": "000000"})
        assert status == 400
        assert "wrong code" in err["error"]
        assert await c.api("POST", "/api/account/totp/confirm", {"code": gen.now()}) == (
            200,
            {"totp": True},
        )
        status, err = await c.api("POST", "/api/account/totp", {})
        assert status == 400
        assert "on already" in err["error"]
        assert await c.login("operator") == 401  # the code is needed now
        assert await c.login("operator", code=gen.at(time.time() + 30)) == 303

        made_token = tokens.create(c.backend.db, "pms", "operator", actor="test")
        bearer = {"Authorization": f"Bearer {made_token.token}"}
        mine = await c.client.get("/api/account", headers=bearer)
        assert (await mine.json())["totp"] is False
        refused = await c.client.post("/api/account/totp", headers=bearer)
        assert refused.status == 403
        assert "its own credential" in (await refused.json())["error"]
        zh = await c.client.post(
            "/api/account/totp", headers=bearer | {"Accept-Language": "zh-CN,zh;q=0.9"}
        )
        assert (await zh.json())["error"].startswith("API 令牌本身即是凭据")
        assert c.backend.db.execute(
            "SELECT COUNT(*) FROM web_totp WHERE account LIKE 'token:%'"
        ).fetchone() == (0,)

        status, _ = await c.api("POST", "/api/accounts/operator/totp/reset", {})
        assert status == 403  # an operator may not
        assert await c.login("admin") == 303
        assert await c.api("POST", "/api/accounts/operator/totp/reset", {}) == (
            200,
            {"reset": True},
        )
        assert await c.api("POST", "/api/accounts/operator/totp/reset", {}) == (
            200,
            {"reset": False},
        )
        status, err = await c.api("POST", "/api/accounts/nobody/totp/reset", {})
        assert (status, err) == (400, {"error": "no account nobody"})
        assert await c.login("operator") == 303  # the password alone again
        actions = [r[0] for r in c.backend.db.execute("SELECT action FROM audit")]
        assert actions.count("web.totp.reset") == 1
        assert "web.totp.on" in actions

    run(tmp_path, body)
