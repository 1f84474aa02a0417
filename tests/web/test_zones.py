"""The zones page and API (admin only): cameras listed, the preview (the one image the
console sends), a change validated like ``gateway config validate`` then written with a
backup and reloaded, a bad polygon refused with its message and the file untouched."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from gateway.services import zones as svc
from tests.web.console import Console, console
from tests.web.zones_config import CAMERA, zones_config


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _exists(path: Path) -> bool:
    return path.exists()


def _left_over(cfg: Path) -> list[str]:
    """Temporary files the save left next to the configuration."""
    return sorted(p.name for p in cfg.parent.glob(".gateway.toml.*"))


SQUARE = [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3], [0.1, 0.3]]


def run(tmp_path: Path, body: Any, **changes: Any) -> list[str]:
    reloads: list[str] = []

    async def reload() -> bool:
        reloads.append("reload")
        return True

    async def main() -> None:
        cfg = zones_config(tmp_path)
        fields = {"config_path": cfg, "reload": reload} | changes
        async with console(tmp_path, **fields) as c:
            await body(c, cfg)

    asyncio.run(main())
    return reloads


def test_an_admin_saves_zones_space_and_signage(tmp_path: Path) -> None:
    async def body(c: Console, cfg: Path) -> None:
        await c.login("admin")
        status, cams = await c.api("GET", "/api/zones")
        assert status == 200
        assert [(k["camera"], len(k["zones"])) for k in cams] == [(CAMERA, 1)]
        page = await c.client.get(f"/zones/{CAMERA}", headers=c.headers(csrf=False))
        assert page.status == 200
        assert 'id="zones-canvas"' in await page.text()
        shot = await c.client.get(f"/zones/{CAMERA}/preview.png", headers=c.headers(csrf=False))
        assert (shot.status, shot.content_type) == (200, "image/png")
        assert (await shot.read()).startswith(b"\x89PNG")
        before = _text(cfg)
        change = {
            "zones": [{"name": "bins", "polygon": SQUARE}],
            "space": "semi_private",
            "signage_installed": True,
            "signage_recorded": "sign at the gate, 2026-12-01",
        }
        status, done = await c.api("POST", f"/api/zones/{CAMERA}", change)
        assert (status, done["saved"], done["reloaded"]) == (200, True, True), done
        assert _text(Path(f"{cfg}.bak")) == before
        now = svc.camera(cfg, CAMERA)
        assert (now.space, now.signage_recorded) == ("semi_private", "sign at the gate, 2026-12-01")
        assert now.zones == [{"name": "bins", "polygon": SQUARE}]
        assert "# The camera's login" in _text(cfg)  # comments kept
        assert svc.config_problems(cfg) == []
        actor = c.backend.db.execute(
            "SELECT actor FROM audit WHERE action = 'config.zones'"
        ).fetchone()[0]
        assert actor == "web:admin"

    assert run(tmp_path, body) == ["reload"]


def test_a_bad_polygon_is_refused_with_its_message(tmp_path: Path) -> None:
    async def body(c: Console, cfg: Path) -> None:
        await c.login("admin")
        before = _text(cfg)
        bad = [
            ({"zones": [{"name": "x", "polygon": [[0.1, 0.1], [0.2, 0.2]]}]}, "at least 3"),
            ({"zones": [{"name": "x", "polygon": [[0.1, 0.1], [1.5, 0.2], [0.3, 0.3]]}]}, "0..1"),
            ({"space": "private", "signage_installed": True}, "no face processing in private"),
            ({"zones": [{"polygon": [[0.1, "a"]]}]}, "two numbers"),
            ({"zones": "all"}, "zones must be a list"),
            ({"space": "garden"}, "space must be one of"),
        ]
        for change, message in bad:
            status, got = await c.api("POST", f"/api/zones/{CAMERA}", change)
            assert (status, message in got["error"]) == (400, True), (message, got)
        status, got = await c.api("POST", "/api/zones/nope", {})
        assert (status, "not in the configuration" in got["error"]) == (400, True)
        assert _text(cfg) == before
        assert not _exists(Path(f"{cfg}.bak"))
        assert _left_over(cfg) == []

    assert run(tmp_path, body) == []


def test_only_an_admin_touches_zones(tmp_path: Path) -> None:
    async def body(c: Console, cfg: Path) -> None:
        before = _text(cfg)
        change = {"zones": [{"name": "bins", "polygon": SQUARE}]}
        paths = ["/zones", f"/zones/{CAMERA}", f"/zones/{CAMERA}/preview.png", "/api/zones"]
        for role in ("operator", "auditor"):
            await c.login(role)
            for path in paths:
                resp = await c.client.get(path, headers=c.headers(csrf=False))
                assert resp.status == 403, (role, path)
            assert (await c.api("POST", f"/api/zones/{CAMERA}", change))[0] == 403
        await c.login("admin")
        resp = await c.client.post(
            f"/api/zones/{CAMERA}", json=change, headers=c.headers(csrf=False)
        )
        assert resp.status == 403  # no CSRF token
        c.token = c.csrf = ""
        for path in paths:
            resp = await c.client.get(path, allow_redirects=False)
            assert resp.status in (303, 401), path
        assert (await c.api("POST", f"/api/zones/{CAMERA}", change))[0] == 401
        assert _text(cfg) == before

    run(tmp_path, body)


def test_without_a_configuration_file_it_says_so(tmp_path: Path) -> None:
    async def body(c: Console, _: Path) -> None:
        await c.login("admin")
        page = await c.client.get("/zones", headers=c.headers(csrf=False))
        assert page.status == 400
        assert "no configuration file" in await page.text()
        status, got = await c.api("POST", f"/api/zones/{CAMERA}", {})
        assert (status, "no configuration file" in got["error"]) == (400, True)

    run(tmp_path, body, config_path=None)


def test_the_preview_detector_is_built_off_the_event_loop(tmp_path: Path) -> None:
    """Building the face detector (model files hashed, YuNet loaded) happens on the
    preview's worker thread, never on the event loop's."""
    built: list[str] = []

    def detector() -> None:
        built.append(threading.current_thread().name)

    async def body(c: Console, cfg: Path) -> None:
        await c.login("admin")
        shot = await c.client.get(f"/zones/{CAMERA}/preview.png", headers=c.headers(csrf=False))
        assert shot.status == 200
        built.append(f"loop:{threading.current_thread().name}")

    run(tmp_path, body, preview_detector=detector)
    assert len(built) == 2, built
    assert f"loop:{built[0]}" != built[1], built
