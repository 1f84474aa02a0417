"""The account page (every role): the optional TOTP second factor -- set up (the secret
shown once, as an ``otpauth://`` URI and text), confirmed with a code before it is active;
and for an admin, resetting another account's factor (audited)."""

from __future__ import annotations

import logging

from aiohttp import web
from markupsafe import Markup

from gateway.web import totp
from gateway.web.accounts import AccountError, Role
from gateway.web.pages import render
from gateway.web.security import BACKEND, actor, allow, session

log = logging.getLogger(__name__)
EVERYONE: tuple[Role, ...] = ("operator", "auditor")


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


def routes() -> list[web.RouteDef]:
    """The account routes."""
    return [
        web.get("/account", account),
        web.post("/account/totp", totp_begin),
        web.post("/account/totp/confirm", totp_confirm),
        web.post("/account/totp/reset", totp_reset),
    ]
