"""The system page (admin): the ``gateway doctor`` table, the configuration validated as
``gateway config validate`` does, and a reload (the daemon's: a valid, changed
configuration restarts the gate in place; an invalid one is refused and the running one
kept). The reload is audited. And the API tokens: listed, made (shown once), revoked."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError
from gateway.services import system as system_svc
from gateway.web import tokens
from gateway.web.backend import Backend
from gateway.web.pages import render
from gateway.web.security import BACKEND, actor, allow

NOT_HERE = "not available in this process (the console runs without the daemon)"


async def system_state(backend: Backend, *, doctor: bool) -> dict[str, Any]:
    """The configuration's problems and (when ``doctor``) the doctor's table."""
    problems = None if backend.validate is None else await asyncio.to_thread(backend.validate)
    rows = None
    if doctor and backend.doctor is not None:
        rows = [{"check": c, "status": s, "detail": d} for c, s, d in await backend.doctor()]
    return {
        "tokens": await backend.run_db(tokens.listing, backend.db),
        "config_valid": None if problems is None else not problems,
        "problems": problems or [],
        "doctor": rows,
        "doctor_available": backend.doctor is not None,
        "reload_available": backend.reload is not None,
    }


async def reload_config(backend: Backend, who: str) -> dict[str, Any]:
    """Validate, then ask the daemon to apply the configuration; audited."""
    if backend.reload is None:
        return {"accepted": False, "error": f"reload {NOT_HERE}"}
    problems = [] if backend.validate is None else await asyncio.to_thread(backend.validate)
    accepted = not problems and await backend.reload()
    await backend.run_db(
        system_svc.record_reload, backend.db, actor=who, accepted=accepted, channel="web"
    )
    return {"accepted": accepted, "problems": problems}


@allow()
async def system_page(request: web.Request) -> web.Response:
    """The doctor's table (``?doctor=1`` runs it: it takes seconds) and validation."""
    return await _page(request, doctor=request.query.get("doctor") == "1")


async def _page(
    request: web.Request, status: int = 200, *, doctor: bool = False, **shown: Any
) -> web.Response:
    state = await system_state(request.app[BACKEND], doctor=doctor)
    shown = {"reloaded": None, "new_token": None, "error": ""} | shown
    return render(request, "system.html", status, s=state, not_here=NOT_HERE, **shown)


@allow()
async def token_add_page(request: web.Request) -> web.Response:
    """Make an API token; the page shows it this once."""
    backend = request.app[BACKEND]
    form = await request.post()
    name, role = str(form.get("name", ""))[:64], str(form.get("role", ""))
    try:
        made = await backend.run_db(tokens.create, backend.db, name, role, actor=actor(request))
    except GatewayError as exc:
        return await _page(request, 400, error=str(exc))
    return await _page(request, new_token={"id": made.id, "token": made.token, "name": name})


@allow()
async def token_revoke_page(request: web.Request) -> web.StreamResponse:
    """Revoke an API token, then show the page."""
    backend = request.app[BACKEND]
    await backend.run_db(tokens.revoke, backend.db, request.match_info["tid"], actor=actor(request))
    raise web.HTTPSeeOther("/system")


@allow()
async def system_api(request: web.Request) -> web.Response:
    """The system state as JSON; ``?doctor=1`` includes the doctor's table."""
    state = await system_state(request.app[BACKEND], doctor=request.query.get("doctor") == "1")
    return web.json_response(state)


@allow()
async def reload_page(request: web.Request) -> web.Response:
    """Reload the configuration; show the outcome."""
    backend = request.app[BACKEND]
    done = await reload_config(backend, actor(request))
    return await _page(request, 200 if done["accepted"] else 400, reloaded=done)


@allow()
async def reload_api(request: web.Request) -> web.Response:
    """Reload the configuration: ``{"accepted", "problems"}`` (400 when refused)."""
    done = await reload_config(request.app[BACKEND], actor(request))
    return web.Response(
        text=json.dumps(done),
        status=200 if done["accepted"] else 400,
        content_type="application/json",
    )


def _json_error(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


@allow()
async def tokens_list(request: web.Request) -> web.Response:
    """The API tokens (never the token itself)."""
    backend = request.app[BACKEND]
    return web.json_response(await backend.run_db(tokens.listing, backend.db))


@allow()
async def token_add(request: web.Request) -> web.Response:
    """``{"name", "role"}`` -> ``{"id", "token"}``: the token is shown this once."""
    backend = request.app[BACKEND]
    try:
        data = await request.json()
        name, role = str(data["name"]), str(data["role"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _json_error('the body must be {"name": ..., "role": ...}') from exc
    try:
        made = await backend.run_db(tokens.create, backend.db, name, role, actor=actor(request))
    except GatewayError as exc:
        raise _json_error(str(exc)) from exc
    return web.json_response({"id": made.id, "token": made.token})


@allow()
async def token_revoke(request: web.Request) -> web.Response:
    """Revoke a token."""
    backend = request.app[BACKEND]
    tid = request.match_info["tid"]
    done = await backend.run_db(tokens.revoke, backend.db, tid, actor=actor(request))
    if not done:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "no live token with that id"}),
            content_type="application/json",
        )
    return web.json_response({"revoked": tid})


def routes() -> list[web.RouteDef]:
    """The system page's routes (admin only)."""
    return [
        web.get("/api/tokens", tokens_list),
        web.post("/system/tokens", token_add_page),
        web.post("/system/tokens/{tid}/revoke", token_revoke_page),
        web.post("/api/tokens", token_add),
        web.post("/api/tokens/{tid}/revoke", token_revoke),
        web.get("/system", system_page),
        web.get("/api/system", system_api),
        web.post("/system/reload", reload_page),
        web.post("/api/system/reload", reload_api),
    ]
