"""The console as the daemon serves it: registered by the gate's composition root only when
``[web] enabled``, over HTTPS with a self-signed certificate made at first start (key 0600,
fingerprint logged), the operations running on the daemon's database threads; and
``gateway web add-user`` (password from stdin)."""

from __future__ import annotations

import asyncio
import io
import logging
import ssl
from pathlib import Path

import aiohttp
import pytest

from gateway.cli.main import main as gateway_main
from gateway.daemon.supervisor import ServiceSpec
from gateway.store import database as store
from gateway.web import accounts
from gateway.web.security import COOKIE, LOGIN_COOKIE
from gateway.web.tls import CERT_NAME, KEY_NAME, fingerprint
from tests.conftest import built_gateway
from tests.support.net import free_port
from tests.web.console import login as console_login

PASSWORD = "office password 1"


def _enable(config: Path, port: int) -> None:
    config.write_text(
        config.read_text() + f'\n[web]\nenabled = true\nlisten = ["127.0.0.1"]\nport = {port}\n'
    )


def _web_service(gw: object) -> ServiceSpec | None:
    specs = [s for s in gw.daemon.services if s.name == "web-console"]  # type: ignore[attr-defined]
    return specs[0] if specs else None


def test_not_served_unless_enabled(minimal_config: Path) -> None:
    async def main() -> ServiceSpec | None:
        async with built_gateway(minimal_config) as gw:
            return _web_service(gw)

    assert asyncio.run(main()) is None


def test_served_over_https_on_the_daemons_threads(
    minimal_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    _enable(minimal_config, port)
    state = minimal_config.parent / "state"

    async def main() -> tuple[int, str]:
        async with built_gateway(minimal_config) as gw:
            accounts.add_account(gw.db, "office", "operator", PASSWORD, actor="test")
            spec = _web_service(gw)
            assert spec is not None
            assert not spec.critical  # the console never takes a door down
            task = asyncio.create_task(spec.run())
            try:
                return await _use(port, state / CERT_NAME)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="gateway.web"):
        status, pid = asyncio.run(main())
    assert status == 200
    cert = (state / CERT_NAME).read_bytes()
    assert (state / KEY_NAME).stat().st_mode & 0o777 == 0o600
    assert fingerprint(cert) in caplog.text
    assert f"https://127.0.0.1:{port}/" in caplog.text
    db = store.connect(state / "state.db")
    row = db.execute("SELECT display_name FROM people WHERE id = ?", [pid]).fetchone()
    assert row[0] == "Chen Jing"
    db.conn.close()


async def _use(port: int, cert: Path) -> tuple[int, str]:
    base = f"https://127.0.0.1:{port}"
    for _ in range(100):  # the certificate is made before the port is bound
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    tls = ssl.create_default_context(cafile=str(cert))
    tls.check_hostname = False  # the certificate names the host and 127.0.0.1 (SAN)
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base}/login", ssl=tls) as r:
            t = r.cookies[LOGIN_COOKIE].value
        form = {"account": "office", "password": PASSWORD, "csrf": t}
        h = {"Cookie": f"{LOGIN_COOKIE}={t}"}
        async with http.post(
            f"{base}/login", data=form, headers=h, ssl=tls, allow_redirects=False
        ) as r:
            assert r.status == 303
            token = r.cookies[COOKIE].value
        h = {"Cookie": f"{COOKIE}={token}"}
        async with http.get(f"{base}/api/me", headers=h, ssl=tls) as r:
            h["X-CSRF-Token"] = (await r.json())["csrf"]
        async with http.post(
            f"{base}/api/people", json={"name": "Chen Jing"}, headers=h, ssl=tls
        ) as r:
            return r.status, (await r.json())["id"]


def test_add_user_reads_the_password_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db_path = tmp_path / "state.db"
    store.connect(db_path).conn.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("a long admin password\n"))
    args = ["web", "add-user", "installer", "--role", "admin", "--db", str(db_path)]
    assert gateway_main([*args, "--config", str(tmp_path / "none.toml")]) == 0
    assert "installer (admin) created" in capsys.readouterr().out
    db = store.connect(db_path)
    token, s = console_login(
        db, "installer", "a long admin password", policy=accounts.LoginPolicy()
    )
    assert s.role == "admin"
    assert token
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert gateway_main([*args[:2], "other", *args[3:]]) == 1
    assert "12 to 256" in capsys.readouterr().err
    db.conn.close()


def test_the_daemon_gives_the_console_its_configuration_and_face_models(
    minimal_config: Path,
) -> None:
    """The zones page edits the daemon's own configuration file; office enrolment loads
    the configured face models on first use (a card/PIN gate without them: a clear error)."""
    _enable(minimal_config, free_port())
    from gateway.errors import GatewayError
    from gateway.services import zones

    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            spec = _web_service(gw)
            assert spec is not None
            backend = spec.run.args[0]  # type: ignore[attr-defined]
            assert backend.config_path == minimal_config
            assert zones.config_problems(backend.config_path) == []
            assert backend.face_pipeline is not None
            with pytest.raises(GatewayError, match=r"model"):
                await backend.face_pipeline()

    asyncio.run(main())
