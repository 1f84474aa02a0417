"""The dashboard's live stream as the daemon wires it: the gate's real doors and its
events (each one the gate publishes reaches the open streams, anonymized)."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from gateway.mqtt import events as ev
from gateway.web import accounts
from gateway.web.security import COOKIE, LOGIN_COOKIE
from gateway.web.tls import CERT_NAME
from tests.conftest import built_gateway
from tests.support.net import free_port
from tests.web.test_served_by_daemon import _enable, _web_service

PASSWORD = "office password 1"


async def _sse(resp: aiohttp.ClientResponse, kind: str) -> dict[str, Any]:
    current = ""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if line.startswith("event: "):
            current = line[7:]
        elif line.startswith("data: ") and current == kind:
            data: dict[str, Any] = json.loads(line[6:])
            return data


async def _session(http: aiohttp.ClientSession, base: str, tls: ssl.SSLContext) -> str:
    async with http.get(f"{base}/login", ssl=tls) as r:
        t = r.cookies[LOGIN_COOKIE].value
    form = {"account": "guard", "password": PASSWORD, "csrf": t}
    async with http.post(
        f"{base}/login",
        data=form,
        headers={"Cookie": f"{LOGIN_COOKIE}={t}"},
        ssl=tls,
        allow_redirects=False,
    ) as r:
        return r.cookies[COOKIE].value


def test_the_gates_doors_and_events_reach_the_dashboard_live(minimal_config: Path) -> None:
    port = free_port()
    _enable(minimal_config, port)
    state = minimal_config.parent / "state"

    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            accounts.add_account(gw.db, "guard", "auditor", PASSWORD, actor="test")
            spec = _web_service(gw)
            assert spec is not None
            task = asyncio.create_task(spec.run())
            try:
                await _watch(gw, f"https://127.0.0.1:{port}", state / CERT_NAME)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


async def _watch(gw: Any, base: str, cert: Path) -> None:
    port = int(base.rsplit(":", 1)[1])
    for _ in range(200):  # the certificate is made before the port is bound
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    tls = ssl.create_default_context(cafile=str(cert))
    tls.check_hostname = False
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        token = await _session(http, base, tls)
        h = {"Cookie": f"{COOKIE}={token}"}
        async with http.get(f"{base}/api/stream", headers=h, ssl=tls) as resp:
            first = await _sse(resp, "status")
            assert first["doors"] == {"main": "locked"}
            assert "entry" in first["readers"]
            assert first["broker"] == "not configured"
            door = gw.controller.doors["main"].controller
            await door.grant()
            person = gw.pseudonym("f" * 32)
            gw.emit(
                ev.AccessGranted(
                    site=gw.cfg.site.id,
                    gate=gw.cfg.site.gate,
                    door="main",
                    method=ev.AccessMethod.CARD,
                    person=person,
                )
            )
            got = await _sse(resp, "event")
            while got["type"] != "access.granted":  # the door's own events come first
                got = await _sse(resp, "event")
            assert (got["type"], got["door"], got["person"]) == ("access.granted", "main", person)
        async with http.get(f"{base}/api/dashboard", headers=h, ssl=tls) as r:
            assert (await r.json())["doors"] == {"main": "unlocked"}
