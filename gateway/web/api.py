"""The JSON API: the same operations as the pages (:mod:`gateway.web.ops`), the same
session and roles; a change carries the session's CSRF token in ``X-CSRF-Token``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError
from gateway.privacy.people import PersonError
from gateway.web import openapi as openapi_doc
from gateway.web import ops
from gateway.web.security import BACKEND, actor, allow, session

MAX_BODY = 64 * 1024


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (400 naming the problem; 413 over ``MAX_BODY``)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY, request.content_length)
    try:
        data = json.loads(await request.text() or "{}")
    except ValueError as exc:
        raise json_error("the body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise json_error("the body must be a JSON object")
    return data


def json_error(
    message: str, status: type[web.HTTPException] = web.HTTPBadRequest
) -> web.HTTPException:
    """``{"error": message}`` with ``status`` (400 by default)."""
    return status(text=json.dumps({"error": message}), content_type="application/json")


async def call_json(fn: Callable[[], Awaitable[Any]]) -> web.Response:
    """``fn``'s result as JSON; a service's refusal as 400 (404: no such person)."""
    try:
        return web.json_response(await fn())
    except PersonError as exc:
        raise json_error(str(exc), web.HTTPNotFound) from exc
    except GatewayError as exc:
        raise json_error(str(exc)) from exc


async def me(request: web.Request) -> web.Response:
    """The session's account, role and CSRF token (for a script calling the API)."""
    s = session(request)
    return web.json_response({"account": s.account, "role": s.role, "csrf": s.csrf})


@allow("operator")
async def people_list(request: web.Request) -> web.Response:
    """People on record (``?q=`` filters by name, unit or id)."""
    q = request.query.get("q", "")[: ops.MAX_TEXT]
    return await call_json(lambda: ops.list_people(request.app[BACKEND], q))


@allow("operator")
async def people_add(request: web.Request) -> web.Response:
    """Add a person: ``{"name", "unit", "role", "group", "minor", "guardian"}``."""
    data = await json_body(request)

    async def add() -> dict[str, str]:
        return {"id": await ops.add_person(request.app[BACKEND], data, actor(request))}

    return await call_json(add)


@allow("operator")
async def person(request: web.Request) -> web.Response:
    """One person with their consent history."""
    return await call_json(lambda: ops.show_person(request.app[BACKEND], request.match_info["pid"]))


def _change(op: Any) -> Any:
    @allow("operator")
    async def change(request: web.Request) -> web.Response:
        data = await json_body(request)
        pid = request.match_info["pid"]
        return await call_json(lambda: op(request.app[BACKEND], pid, data, actor(request)))

    change.__name__ = op.__name__
    return change


@allow("operator")
async def notice(request: web.Request) -> web.Response:
    """The notice in force."""

    async def get() -> dict[str, str]:
        return ops.notice(request.app[BACKEND])

    return await call_json(get)


@allow("auditor")
async def compliance(request: web.Request) -> web.Response:
    """The compliance report and the audit chain check."""
    return await call_json(lambda: ops.compliance_report(request.app[BACKEND]))


async def openapi(request: web.Request) -> web.Response:
    """The API's OpenAPI document."""
    session(request)
    return web.json_response(openapi_doc.document())


def routes() -> list[web.RouteDef]:
    """The API routes."""
    return [
        web.get("/api/me", me),
        web.get("/api/people", people_list),
        web.post("/api/people", people_add),
        web.get("/api/people/{pid}", person),
        web.post("/api/people/{pid}/delete", _change(ops.delete_person)),
        web.post("/api/people/{pid}/consent", _change(ops.answer_consent)),
        web.post("/api/people/{pid}/withdraw", _change(ops.withdraw_consent)),
        web.post("/api/people/{pid}/cards", _change(ops.add_card)),
        web.post("/api/people/{pid}/cards/present", _change(ops.add_presented_card)),
        web.post("/api/people/{pid}/pins/typed", _change(ops.set_typed_pin)),
        web.post("/api/people/{pid}/cards/revoke", _change(ops.revoke_card)),
        web.post("/api/people/{pid}/pins/revoke", _change(ops.revoke_pin)),
        web.post("/api/people/{pid}/validity", _change(ops.set_validity)),
        web.post("/api/people/{pid}/edit", _change(ops.edit_person)),
        web.get("/api/notice", notice),
        web.get("/api/compliance", compliance),
        web.get("/api/openapi.json", openapi),
    ]
