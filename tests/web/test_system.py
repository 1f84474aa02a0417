"""The system page (admin only): the doctor's table, validation, an audited reload; and
``gateway doctor`` showing the console's certificate fingerprint."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.cli.doctor import check_web
from gateway.config.root import load_config
from gateway.config.web import WebConfig
from gateway.web.tls import CERT_NAME, fingerprint, self_signed
from tests.web.console import Console, console


class FakeDaemon:
    """The daemon's side: validation problems, reload outcomes, the doctor's rows."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.reloads = 0

    def validate(self) -> list[str]:
        return list(self.problems)

    async def reload(self) -> bool:
        self.reloads += 1
        return True

    async def doctor(self) -> list[tuple[str, str, str]]:
        return [("storage", "PASS", "state.db"), ("camera <b>", "FAIL", "<script>x</script>")]


def run(tmp_path: Path, body: Any, daemon: FakeDaemon | None) -> None:
    changes = {}
    if daemon is not None:
        changes = {"validate": daemon.validate, "reload": daemon.reload, "doctor": daemon.doctor}

    async def main() -> None:
        async with console(tmp_path, **changes) as c:
            await body(c)

    asyncio.run(main())


def _audit(c: Console) -> list[tuple[str, str]]:
    rows = c.backend.db.execute(
        "SELECT actor, details FROM audit WHERE action = 'config.reload'"
    ).fetchall()
    return [(str(a), str(d)) for a, d in rows]


def test_only_the_admin_sees_the_system_page_or_reloads(tmp_path: Path) -> None:
    daemon = FakeDaemon()

    async def body(c: Console) -> None:
        for role in ("operator", "auditor"):
            await c.login(role)
            assert (await c.api("GET", "/api/system"))[0] == 403
            assert (await c.api("POST", "/api/system/reload"))[0] == 403
            page = await c.client.get("/system", headers=c.headers(csrf=False))
            assert page.status == 403
        await c.login("admin")
        resp = await c.client.post("/api/system/reload", headers=c.headers(csrf=False))
        assert resp.status == 403  # no CSRF token
        assert daemon.reloads == 0
        assert _audit(c) == []

    run(tmp_path, body, daemon)


def test_the_doctor_table_and_validation_for_the_admin(tmp_path: Path) -> None:
    daemon = FakeDaemon()

    async def body(c: Console) -> None:
        await c.login("admin")
        status, state = await c.api("GET", "/api/system")
        assert (status, state["config_valid"], state["doctor"]) == (200, True, None)
        _, state = await c.api("GET", "/api/system?doctor=1")
        assert state["doctor"][1] == {
            "check": "camera <b>",
            "status": "FAIL",
            "detail": "<script>x</script>",
        }
        html = await (await c.client.get("/system?doctor=1", headers=c.headers())).text()
        assert "&lt;script&gt;x&lt;/script&gt;" in html
        assert "<script>x" not in html
        daemon.problems = ["web.port: must be at most 65535"]
        html = await (await c.client.get("/system", headers=c.headers())).text()
        assert "web.port: must be at most 65535" in html

    run(tmp_path, body, daemon)


def test_a_reload_is_validated_first_and_audited(tmp_path: Path) -> None:
    daemon = FakeDaemon()

    async def body(c: Console) -> None:
        await c.login("admin")
        daemon.problems = ["doors.front.reader: unknown reader 'x'"]
        status, done = await c.api("POST", "/api/system/reload")
        assert (status, done["accepted"]) == (400, False)
        assert done["problems"] == daemon.problems
        assert daemon.reloads == 0  # an invalid file never reaches the daemon
        daemon.problems = []
        status, done = await c.api("POST", "/api/system/reload")
        assert (status, done["accepted"], daemon.reloads) == (200, True, 1)
        assert [a for a, _ in _audit(c)] == ["web:admin", "web:admin"]
        assert '"accepted":false' in _audit(c)[0][1]
        resp = await c.client.post(
            "/system/reload", data={"csrf": c.csrf}, headers=c.headers(csrf=False)
        )
        assert "Configuration accepted" in await resp.text()

    run(tmp_path, body, daemon)


def test_without_the_daemon_the_page_says_what_is_not_available(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("admin")
        html = await (await c.client.get("/system", headers=c.headers())).text()
        assert "run <code>gateway doctor</code> on the gate" in html
        status, done = await c.api("POST", "/api/system/reload")
        assert (status, done["accepted"]) == (400, False)
        assert "not available" in done["error"]

    run(tmp_path, body, None)


def test_gateway_doctor_shows_the_consoles_certificate_fingerprint(minimal_config: Path) -> None:
    cfg = load_config(minimal_config)
    assert check_web(cfg).status == "SKIP"
    cfg = cfg.model_copy(update={"web": WebConfig(enabled=True, port=9443)})
    first = check_web(cfg)
    assert (first.status, "made at first start" in first.detail) == ("PASS", True)
    cert, _ = self_signed(cfg.storage.state_dir, cfg.web.listen, "gate")
    assert cert.name == CERT_NAME
    shown = check_web(cfg)
    assert shown.status == "PASS"
    assert fingerprint(cert.read_bytes()) in shown.detail
    assert "https://127.0.0.1:9443/" in shown.detail
