"""No response of the console carries a face image: every GET page and API call, for
every role, over a database with a person, consent, a card and events, and a configured
camera; the one exception is the zones preview (zones blanked, faces blurred), to an admin."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from gateway.mqtt import events as ev
from gateway.web.api import routes as api_routes
from gateway.web.enrol_pages import routes as enrol_routes
from gateway.web.live_pages import routes as live_routes
from gateway.web.pages import routes as page_routes
from gateway.web.system_pages import routes as system_routes
from gateway.web.zones_pages import routes as zones_routes
from tests.web.console import ROLES, Console, console
from tests.web.zones_config import CAMERA, zones_config

PREVIEW = f"/zones/{CAMERA}/preview.png"
IMAGE_MARKS = (b"\xff\xd8\xff", b"\x89PNG", b"data:image", b"/9j/", b"iVBORw0KGgo")
"""JPEG and PNG, raw or base64, and data URLs."""


def _gets(pid: str) -> list[str]:
    paths = []
    for r in (
        page_routes()
        + api_routes()
        + live_routes()
        + system_routes()
        + enrol_routes()
        + zones_routes()
    ):
        path = r.path  # type: ignore[attr-defined]
        if r.method == "GET" and path not in ("/login", "/api/stream"):  # type: ignore[attr-defined]
            paths.append(path.replace("{pid}", pid).replace("{camera}", CAMERA))
    return paths


def test_no_response_carries_an_image(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "Guo Jing", "unit": "8-801"})
        pid = made["id"]
        await c.api("POST", f"/api/people/{pid}/consent", {"decision": "grant"})
        await c.api("POST", f"/api/people/{pid}/cards", {"number": "778899"})
        c.backend.feed.publish(
            ev.AccessGranted(
                site="s", gate="g", door="front", method=ev.AccessMethod.FACE, person="b" * 26
            )
        )
        seen = 0
        for role in ROLES:
            await c.login(role)
            for path in _gets(pid):
                resp = await c.client.get(path, headers=c.headers(csrf=False))
                raw = await resp.read()
                if path == PREVIEW:
                    assert (resp.status == 200) == (role == "admin"), (role, path)
                    continue  # the one image: the admin's zones preview
                assert not resp.content_type.startswith("image/"), path
                for mark in IMAGE_MARKS:
                    assert mark not in raw, (role, path, mark)
                if path != f"/zones/{CAMERA}" or role != "admin":  # the preview's page
                    assert not re.search(rb"<img\b", raw), (role, path)
                seen += resp.status == 200
        assert seen >= 12

    async def main() -> None:
        async with console(tmp_path, config_path=zones_config(tmp_path)) as c:
            await body(c)

    asyncio.run(main())
