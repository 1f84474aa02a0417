"""The zones page (admin): the camera's preview (zones blanked, passers-by's faces
blurred: the one image the console sends, to an admin only), no-capture polygons drawn
on it, the camera's space and signage; saving validates the whole configuration as
``gateway config validate`` does, writes it (atomically, backup kept), then reloads
(:mod:`gateway.services.zones`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError
from gateway.services import zones as svc
from gateway.web.backend import Backend
from gateway.web.i18n import N_
from gateway.web.ops import InputError, choice, text
from gateway.web.pages import render
from gateway.web.security import BACKEND, actor, allow

NOT_HERE = N_("zones are not available in this process (no configuration file)")
#: How the pages name each space (translated where shown).
SPACE_WORDS = {
    "public": N_("public space"),
    "semi_private": N_("semi-private space"),
    "private": N_("private space"),
}
MAX_ZONES = 20
MAX_VERTICES = 64


def _path(backend: Backend) -> Any:
    if backend.config_path is None:
        raise GatewayError(NOT_HERE)
    return backend.config_path


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InputError("each vertex must be two numbers [x, y]")
    return float(v)


def change_of(camera: str, data: Mapping[str, Any]) -> svc.CameraZones:
    """The change asked for, checked for shape only: the configuration's own rules (each
    vertex 0..1, at least 3 vertices, no private space) judge the values."""
    zones = data.get("zones", [])
    if not isinstance(zones, list) or len(zones) > MAX_ZONES:
        raise InputError(f"zones must be a list of at most {MAX_ZONES} zones")
    out = []
    for i, z in enumerate(zones):
        poly = z.get("polygon") if isinstance(z, dict) else None
        if not isinstance(poly, list) or len(poly) > MAX_VERTICES:
            raise InputError(f"zone {i}: polygon must be a list of at most {MAX_VERTICES} [x, y]")
        if not all(isinstance(p, list) and len(p) == 2 for p in poly):
            raise InputError(f"zone {i}: each vertex must be two numbers [x, y]")
        name = text(z, "name", required=False, default=f"zone {i + 1}")
        out.append({"name": name, "polygon": [[_number(x), _number(y)] for x, y in poly]})
    signage = data.get("signage_installed", False)
    if not isinstance(signage, bool):
        raise InputError("signage_installed must be true or false")
    return svc.CameraZones(
        camera,
        choice(data, "space", svc.SPACES, "public"),
        signage,
        text(data, "signage_recorded", required=False),
        out,
    )


async def save(backend: Backend, camera: str, data: Mapping[str, Any], who: str) -> dict[str, Any]:
    """Validate and write the camera's zones, audit, reload; what was done."""
    path = _path(backend)
    change = change_of(camera, data)
    await asyncio.to_thread(svc.save, path, change)
    await backend.run_db(svc.record_change, backend.db, change, actor=who)
    reloaded = None if backend.reload is None else await backend.reload()
    return {"saved": True, "reloaded": reloaded, "camera": asdict(change)}


@allow()
async def zones_page(request: web.Request) -> web.Response:
    """The cameras, each with its zones, space and signage."""
    backend = request.app[BACKEND]
    try:
        cams = await asyncio.to_thread(svc.cameras, _path(backend))
    except GatewayError as exc:
        return render(
            request, "zones.html", 400, cameras=[], cam=None, error=str(exc),
            space_words=SPACE_WORDS,
        )  # fmt: skip
    return render(request, "zones.html", cameras=cams, cam=None, space_words=SPACE_WORDS)


@allow()
async def camera_page(request: web.Request) -> web.Response:
    """One camera: the preview with its zones drawn, the form to change them."""
    backend = request.app[BACKEND]
    try:
        cam = await asyncio.to_thread(svc.camera, _path(backend), request.match_info["camera"])
    except GatewayError as exc:
        raise web.HTTPNotFound(text=str(exc), content_type="text/plain") from exc
    return render(
        request, "zones.html", cameras=[], cam=cam, zones_json=json.dumps(cam.zones),
        spaces=svc.SPACES, space_words=SPACE_WORDS,
    )  # fmt: skip


@allow()
async def preview(request: web.Request) -> web.Response:
    """The camera's frame as PNG: zones blanked, other faces blurred (admin only)."""
    backend = request.app[BACKEND]
    try:
        png = await asyncio.to_thread(_preview_png, backend, request.match_info["camera"])
    except GatewayError as exc:
        raise web.HTTPBadRequest(text=str(exc), content_type="text/plain") from exc
    return web.Response(
        body=png, content_type="image/png", headers={"Cache-Control": "no-store, private"}
    )


def _preview_png(backend: Backend, camera: str) -> bytes:
    """On a worker thread: building the detector hashes the model files and loads YuNet,
    far too slow for the event loop."""
    return svc.preview_png(_path(backend), camera, backend.preview_detector())


def _json_error(message: str, problems: list[str] | None = None) -> web.HTTPBadRequest:
    body = {"error": message} | ({"problems": problems} if problems else {})
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


@allow()
async def zones_api(request: web.Request) -> web.Response:
    """Every camera's zones, space and signage."""
    try:
        cams = await asyncio.to_thread(svc.cameras, _path(request.app[BACKEND]))
    except GatewayError as exc:
        raise _json_error(str(exc)) from exc
    return web.json_response([asdict(c) for c in cams])


@allow()
async def save_api(request: web.Request) -> web.Response:
    """``{"zones": [{"name", "polygon"}], "space", "signage_installed",
    "signage_recorded"}``: validated like ``config validate``, written, reloaded."""
    try:
        data = json.loads(await request.text() or "{}")
    except ValueError as exc:
        raise _json_error("the body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise _json_error("the body must be a JSON object")
    backend = request.app[BACKEND]
    try:
        done = await save(backend, request.match_info["camera"], data, actor(request))
    except svc.ZonesRefusedError as exc:
        raise _json_error(str(exc), exc.problems) from exc
    except GatewayError as exc:
        raise _json_error(str(exc)) from exc
    return web.json_response(done)


def routes() -> list[web.RouteDef]:
    """The zones pages, the preview and the API (admin only)."""
    return [
        web.get("/zones", zones_page),
        web.get("/zones/{camera}", camera_page),
        web.get("/zones/{camera}/preview.png", preview),
        web.get("/api/zones", zones_api),
        web.post("/api/zones/{camera}", save_api),
    ]
