"""The dashboard, the events page and their live stream (server-sent events), and the
audited pseudonym look-up: pages and JSON over :mod:`gateway.web.activity`.

Every role sees the dashboard and the anonymized events; only an operator (or admin)
may resolve a pseudonym to a name, with a reason, and the look-up is audited.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError
from gateway.web import activity, live, roster_view
from gateway.web.pages import render
from gateway.web.security import BACKEND, HEADERS, actor, allow

log = logging.getLogger(__name__)

STATUS_EVERY_S = 2.0
"""How often a stream checks the status for a change (doors, readers, counts): at most this
often whatever the events, so that a burst of events costs no query per event and browser."""
LATEST = 20
"""Events on the dashboard."""
STREAM_MAX_S = 300.0
"""A stream ends after this long; the browser reconnects through the session check (so a
logout or an expired session ends the live view within this time)."""


@allow("auditor", "operator")
async def dashboard_page(request: web.Request) -> web.Response:
    """Doors, readers, cameras, broker, outbox, today's counts; live."""
    backend = request.app[BACKEND]
    d = await activity.dashboard(backend)
    events = await activity.recent_events(backend, {}, LATEST)
    return render(request, "dashboard.html", d=d, events=events)


@allow("auditor", "operator")
async def dashboard_api(request: web.Request) -> web.Response:
    """The dashboard's snapshot as JSON."""
    return web.json_response(await activity.dashboard(request.app[BACKEND]))


@allow("auditor", "operator")
async def roster_api(request: web.Request) -> web.Response:
    """The roster's convergence (the dashboard's roster section) as JSON."""
    return web.json_response(await roster_view.roster(request.app[BACKEND], time.time()))


def _filters(request: web.Request) -> dict[str, str]:
    try:
        return activity.filters(request.query)
    except GatewayError as exc:
        if request.path.startswith("/api/"):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": str(exc)}), content_type="application/json"
            ) from exc
        raise web.HTTPBadRequest(text=str(exc), content_type="text/plain") from exc


@allow("auditor", "operator")
async def events_page(request: web.Request) -> web.Response:
    """Recent anonymized events with filters; live."""
    chosen = _filters(request)
    rows = await activity.recent_events(request.app[BACKEND], chosen)
    return render(
        request, "events.html", events=rows, f=chosen, types=activity.EVENT_TYPES, result=None
    )


@allow("auditor", "operator")
async def events_api(request: web.Request) -> web.Response:
    """Recent anonymized events (``?type=&door=&person=&since=``), newest first."""
    chosen = _filters(request)
    return web.json_response(await activity.recent_events(request.app[BACKEND], chosen))


@allow("operator")
async def resolve_page(request: web.Request) -> web.Response:
    """Resolve an event's pseudonym to a person (audited); shown on the events page."""
    backend = request.app[BACKEND]
    form = await request.post()
    try:
        result: dict[str, Any] = await activity.resolve_pseudonym(backend, form, actor(request))
        error, status = "", 200
    except GatewayError as exc:
        result, error, status = {}, str(exc), 400
    rows = await activity.recent_events(backend, {})
    return render(
        request,
        "events.html",
        status,
        events=rows,
        f=dict.fromkeys(activity.FILTERS, ""),
        types=activity.EVENT_TYPES,
        result=result or None,
        error=error,
    )


@allow("operator")
async def resolve_api(request: web.Request) -> web.Response:
    """``{"pseudonym", "ts", "reason"}`` -> ``{"found", "id", "name", "unit"}`` (audited)."""
    try:
        data = await request.json()
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return web.json_response(
            await activity.resolve_pseudonym(request.app[BACKEND], data, actor(request))
        )
    except (ValueError, GatewayError) as exc:
        msg = str(exc) if isinstance(exc, GatewayError) else "the body must be a JSON object"
        raise web.HTTPBadRequest(
            text=json.dumps({"error": msg}), content_type="application/json"
        ) from exc


async def _send(resp: web.StreamResponse, kind: str, data: Any) -> None:
    await resp.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())


@allow("auditor", "operator")
async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``status`` (the dashboard's snapshot, when it changes) and
    ``event`` (each event the gate publishes, anonymized)."""
    backend = request.app[BACKEND]
    resp = web.StreamResponse(headers=HEADERS | {"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    end = loop.time() + min(STREAM_MAX_S, backend.cfg.idle_minutes * 60.0)
    last: dict[str, Any] | None = None
    due = loop.time()  # the dashboard is computed at most every STATUS_EVERY_S, not per event
    try:
        with backend.feed.stream() as s:
            while loop.time() < end:
                if loop.time() >= due:
                    snap = await activity.dashboard(backend)
                    due = loop.time() + STATUS_EVERY_S
                    if snap != last:
                        await _send(resp, "status", snap)
                        last = snap
                item = await s.next(max(0.0, due - loop.time()))
                if live.closed(item):
                    break
                if item is not None:
                    await _send(resp, "event", item)
                else:
                    await resp.write(b": ping\n\n")
    except ConnectionResetError:
        log.debug("web: a live stream's browser went away")
    return resp


def routes() -> list[web.RouteDef]:
    """The dashboard's and the events page's routes."""
    return [
        web.get("/dashboard", dashboard_page),
        web.get("/api/dashboard", dashboard_api),
        web.get("/api/roster", roster_api),
        web.get("/events", events_page),
        web.get("/api/events", events_api),
        web.get("/api/stream", stream),
        web.post("/events/resolve", resolve_page),
        web.post("/api/events/resolve", resolve_api),
    ]
