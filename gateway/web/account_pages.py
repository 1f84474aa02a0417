"""The account page (every role): the optional TOTP second factor -- set up (the secret
shown once, as an ``otpauth://`` URI and text), confirmed with a code before it is active;
and for an admin, resetting another account's factor (audited). The same in the JSON API
(``/api/account``, ``/api/account/totp``, ``…/confirm``, ``/api/accounts/{name}/totp/reset``)
for a logged-in account; an API token is its own credential and has no second factor."""

from __future__ import annotations

import logging

from aiohttp import web
from markupsafe import Markup

from gateway.web import totp
from gateway.web.accounts import AccountError, Role
from gateway.web.api import call_json, json_body, json_error
from gateway.web.i18n import N_
from gateway.web.pages import render
from gateway.web.security import BACKEND, actor, allow, session

log = logging.getLogger(__name__)
EVERYONE: tuple[Role, ...] = ("operator", "auditor")
NO_FACTOR_FOR_TOKENS = N_(
    "an API token is its own credential: it has no second factor (log in as an account)"
)


async def _page(
    request: web.Request,
    status: int = 200,
    *,
    error: str = "",
    done: str = "",
    enrolment: totp.Enrolment | None = None,
) -> web.Response:
    backend = request.app[BACKEND]
    on = await backend.run_db(totp.enabled, backend.db, session(request).account)
    qr = None
    if enrolment is not None:  # segno's SVG: numbers and paths only, nothing of ours in it
        try:
            qr = Markup(totp.qr_svg(enrolment.uri))  # noqa: S704 - no text of a user in it
        except ImportError:  # an install without segno: the link and the key still work
            log.warning("web: segno is not installed: the TOTP set-up shows no QR code")
    return render(
        request,
        "account.html",
        status,
        totp_on=on,
        enrolment=enrolment,
        qr=qr,
        error=error,
        done=done,
        available=backend.totp_key is not None,
    )


@allow(*EVERYONE)
async def account(request: web.Request) -> web.Response:
    """The account's second factor."""
    return await _page(request)


@allow(*EVERYONE)
async def totp_begin(request: web.Request) -> web.Response:
    """A new secret, shown this once; pending until confirmed."""
    backend = request.app[BACKEND]
    name = session(request).account
    try:
        made = await backend.run_db(
            totp.begin, backend.db, backend.totp_key, name, actor=actor(request)
        )
    except AccountError as exc:
        return await _page(request, 400, error=str(exc))
    return await _page(request, enrolment=made)


@allow(*EVERYONE)
async def totp_confirm(request: web.Request) -> web.Response:
    """Turn the pending factor on with a code."""
    backend = request.app[BACKEND]
    code = str((await request.post()).get("code", ""))[:16]
    try:
        await backend.run_db(
            totp.confirm, backend.db, backend.totp_key, session(request).account, code
        )
    except AccountError as exc:
        return await _page(request, 400, error=str(exc))
    return await _page(request, done="on")


@allow()
async def totp_reset(request: web.Request) -> web.Response:
    """An admin removes an account's second factor (audited)."""
    backend = request.app[BACKEND]
    name = str((await request.post()).get("account", ""))[:64]
    try:
        gone = await backend.run_db(totp.reset, backend.db, name, actor=actor(request))
    except AccountError as exc:
        return await _page(request, 400, error=str(exc))
    return await _page(request, done="reset" if gone else "none")


def _own_account(request: web.Request) -> str:
    """The session's account; an API token has none to protect with a second factor."""
    name = session(request).account
    if name.startswith("token:"):
        raise json_error(NO_FACTOR_FOR_TOKENS, web.HTTPForbidden)
    return name


@allow(*EVERYONE)
async def account_api(request: web.Request) -> web.Response:
    """``{"account", "role", "totp", "totp_available"}``."""
    backend = request.app[BACKEND]
    s = session(request)
    on = await backend.run_db(totp.enabled, backend.db, s.account)
    return web.json_response(
        {
            "account": s.account,
            "role": s.role,
            "totp": on,
            "totp_available": backend.totp_key is not None,
        }
    )


@allow(*EVERYONE)
async def totp_begin_api(request: web.Request) -> web.Response:
    """``{"secret", "uri"}``: a new secret, shown this once (not stored by the browser:
    ``Cache-Control: no-store``), pending until confirmed."""
    backend = request.app[BACKEND]
    name = _own_account(request)

    async def begin() -> dict[str, str]:
        made = await backend.run_db(
            totp.begin, backend.db, backend.totp_key, name, actor=actor(request)
        )
        return {"secret": made.secret, "uri": made.uri}

    return await call_json(begin)


@allow(*EVERYONE)
async def totp_confirm_api(request: web.Request) -> web.Response:
    """``{"code"}`` -> ``{"totp": true}``: the pending factor on."""
    backend = request.app[BACKEND]
    name = _own_account(request)
    code = str((await json_body(request)).get("code", ""))[:16]

    async def confirm() -> dict[str, bool]:
        await backend.run_db(totp.confirm, backend.db, backend.totp_key, name, code)
        return {"totp": True}

    return await call_json(confirm)


@allow()
async def totp_reset_api(request: web.Request) -> web.Response:
    """An admin removes an account's second factor: ``{"reset": bool}`` (audited)."""
    backend = request.app[BACKEND]
    name = request.match_info["name"][:64]

    async def reset() -> dict[str, bool]:
        return {"reset": await backend.run_db(totp.reset, backend.db, name, actor=actor(request))}

    return await call_json(reset)


def routes() -> list[web.RouteDef]:
    """The account routes."""
    return [
        web.get("/account", account),
        web.post("/account/totp", totp_begin),
        web.post("/account/totp/confirm", totp_confirm),
        web.post("/account/totp/reset", totp_reset),
        web.get("/api/account", account_api),
        web.post("/api/account/totp", totp_begin_api),
        web.post("/api/account/totp/confirm", totp_confirm_api),
        web.post("/api/accounts/{name}/totp/reset", totp_reset_api),
    ]
