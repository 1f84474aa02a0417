"""The console's guards: security headers, the session check, CSRF, roles, login throttle.

Every route needs a session except the login page and the static files; every change
(POST, PUT, PATCH, DELETE) needs the session's CSRF token (a form's ``csrf`` field or the
``X-CSRF-Token`` header); a route names the roles allowed to call it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from gateway.web import accounts, tokens
from gateway.web.accounts import Role, Session
from gateway.web.backend import Backend
from gateway.web.i18n import N_

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "__Host-gw_session"
"""``__Host-``: Secure, no Domain, path ``/`` (the browser enforces it)."""
LOGIN_COOKIE = "__Host-gw_login"
"""The login form's CSRF token (double-submit: cookie and form field must match)."""

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send Origin: null
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Strict-Transport-Security": "max-age=31536000",
    "Cache-Control": "no-store",
}
PUBLIC = ("/login", "/static/", "/lang/")
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

READ_ONLY = N_("storage is read-only: nothing can be changed now (the gate runs DEGRADED)")

BACKEND: web.AppKey[Backend] = web.AppKey("backend", Backend)
SEEN: web.AppKey[accounts.SeenInMemory] = web.AppKey("seen", accounts.SeenInMemory)
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("session", Session)
CAMERA_ALLOWED: web.RequestKey[bool] = web.RequestKey("camera", bool)
"""Set by a page that may use the browser's camera (the enrolment page only)."""
CAMERA_POLICY = "camera=(self), microphone=(), geolocation=()"


class LoginThrottle:
    """At most ``per_minute`` login attempts per client address (per /64 for IPv6: one host
    holds a whole /64) in any 60 s; at most ``max_tracked`` addresses tracked, the least
    recently seen forgotten first."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_tracked: int = 10_000,
    ) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._max_tracked = max_tracked
        self._seen: dict[str, deque[float]] = {}

    def allow(self, client: str) -> bool:
        """Count an attempt from ``client``; False when over the limit."""
        now = self._clock()
        key = throttle_key(client)
        q = self._seen.pop(key, None) or deque()
        self._seen[key] = q  # the most recently seen last
        while q and now - q[0] > 60.0:
            q.popleft()
        while len(self._seen) > self._max_tracked:  # bounded memory under a spray of addresses
            del self._seen[next(iter(self._seen))]
        if len(q) >= self._per_minute:
            return False
        q.append(now)
        return True


def throttle_key(client: str) -> str:
    """The address a login attempt counts against: an IPv6 address's /64, else itself."""
    try:
        ip = ipaddress.ip_address(client.split("%", 1)[0])
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)


class LoginBusyError(Exception):
    """Too many password checks are waiting already."""


class LoginHashing:
    """Password checks (argon2, slow on purpose) on one thread of their own, never on a
    database thread that card/PIN decisions or the console use; at most ``max_waiting``
    at a time, beyond that :class:`LoginBusyError`."""

    def __init__(self, max_waiting: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-login")
        self._max_waiting = max_waiting
        self._waiting = 0

    async def verify(self, record: accounts.LoginRecord, password: str) -> bool:
        """:func:`accounts.verify` on the hashing thread; LoginBusyError when full."""
        if self._waiting >= self._max_waiting:
            raise LoginBusyError()
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, accounts.verify, record, password)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        """Stop the hashing thread (checks not started are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("throttle", LoginThrottle)
HASHING: web.AppKey[LoginHashing] = web.AppKey("hashing", LoginHashing)


def session(request: web.Request) -> Session:
    """The request's session (set by :func:`guard` for every non-public route)."""
    try:
        return request[SESSION_KEY]
    except KeyError:
        raise web.HTTPUnauthorized() from None


def wants_json(request: web.Request) -> bool:
    """API routes answer in JSON, pages in HTML."""
    return request.path.startswith("/api/")


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The security headers, on every answer (errors included)."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    except Exception as exc:
        if isinstance(exc, sqlite3.Error) and _read_only_error(exc):
            log.warning("web: %s %s refused: %s", request.method, request.path, exc)
            resp = read_only_refusal(request)
        else:
            log.exception("web: %s %s failed", request.method, request.path)
            resp = web.Response(
                status=500, text="internal error (logged)", content_type="text/plain"
            )
    resp.headers.update(HEADERS)
    if request.get(CAMERA_ALLOWED):
        resp.headers["Permissions-Policy"] = CAMERA_POLICY
    return resp


def _read_only_error(exc: sqlite3.Error) -> bool:
    """A write refused because the database (or its storage) is read-only."""
    return getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY")


def read_only_refusal(request: web.Request) -> web.Response:
    """503: the storage is read-only (JSON for the API, text otherwise)."""
    if wants_json(request):
        return web.json_response({"error": READ_ONLY}, status=503)
    return web.Response(status=503, text=READ_ONLY, content_type="text/plain")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a request without a live session, or a change without its CSRF token."""
    if request.path in ("/login",) or request.path.startswith(("/static/", "/lang/")):
        return await handler(request)
    backend = request.app[BACKEND]
    if "Authorization" in request.headers:
        return await _with_api_token(request, handler, backend)
    token = request.cookies.get(COOKIE)
    s = None
    if token:
        policy = _session_policy(backend)
        seen = request.app[SEEN]
        s = await backend.run_db(accounts.session_of, backend.db, token, policy=policy, seen=seen)
    if s is None:
        if wants_json(request) or request.method != "GET":
            raise web.HTTPUnauthorized(text="log in first", content_type="text/plain")
        raise web.HTTPSeeOther("/login")
    if request.method in CHANGES:
        _same_origin(request)
        given = request.headers.get("X-CSRF-Token")
        if given is None and request.content_type == "application/x-www-form-urlencoded":
            # a multipart body (photos) is never parsed here: aiohttp would spool its files
            # to disk; it must carry the X-CSRF-Token header (the enrolment page's script)
            given = str((await request.post()).get("csrf", ""))
        if not accounts.csrf_matches(s, given):
            log.warning("web: a change without a valid CSRF token was refused")
            raise web.HTTPForbidden(text="missing or wrong CSRF token", content_type="text/plain")
        if backend.read_only is not None and request.path != "/logout":
            return read_only_refusal(request)
    request[SESSION_KEY] = s
    return await handler(request)


async def _with_api_token(
    request: web.Request, handler: Handler, backend: Backend
) -> web.StreamResponse:
    """An API call with ``Authorization: Bearer <token>`` (no CSRF token: a browser never
    sends this header by itself); pages refuse it."""
    scheme, _, given = request.headers["Authorization"].partition(" ")
    if not wants_json(request) or scheme.lower() != "bearer":
        raise web.HTTPUnauthorized(
            text="API tokens are for /api/ (Bearer)", content_type="text/plain"
        )
    s = await backend.run_db(tokens.session_of, backend.db, given.strip())
    if s is None:
        log.warning("web: an unknown or revoked API token was refused")
        raise web.HTTPUnauthorized(text="unknown or revoked API token", content_type="text/plain")
    if request.method in CHANGES and backend.read_only is not None:
        return read_only_refusal(request)
    request[SESSION_KEY] = s
    return await handler(request)


def _same_origin(request: web.Request) -> None:
    """A change whose ``Origin`` (when the browser sends one) is another site is refused."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        log.warning("web: a change from another origin was refused")
        raise web.HTTPForbidden(text="cross-origin change refused", content_type="text/plain")


def _session_policy(backend: Backend) -> accounts.SessionPolicy:
    return accounts.SessionPolicy(
        backend.cfg.session_minutes * 60.0, backend.cfg.idle_minutes * 60.0
    )


def allow(*roles: Role) -> Callable[[Handler], Handler]:
    """Only these roles (``admin`` always) may call the decorated handler."""
    allowed = set(roles) | {"admin"}

    def wrap(fn: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            if session(request).role not in allowed:
                raise web.HTTPForbidden(text="your role may not do this", content_type="text/plain")
            return await fn(request)

        checked.__name__ = fn.__name__
        checked.__doc__ = fn.__doc__
        return checked

    return wrap


def actor(request: web.Request) -> str:
    """The audit actor of this request: ``web:<account>``."""
    return f"web:{session(request).account}"


def set_session_cookie(resp: web.StreamResponse, token: str, max_age_s: int) -> None:
    """The session cookie: HttpOnly, Secure, SameSite=Strict, host-only."""
    resp.set_cookie(
        COOKIE,
        token,
        max_age=max_age_s,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def login_token(request: web.Request) -> str:
    """The login form's CSRF token: the browser's, or a new one."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    return token if 32 <= len(token) <= 64 else secrets.token_urlsafe(32)


def login_token_ok(request: web.Request, given: str) -> bool:
    """Whether the login form carries the token of its cookie (a cross-site form does not)."""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), given.encode())


def set_login_cookie(resp: web.StreamResponse, token: str) -> None:
    """The login form's token cookie (HttpOnly, Secure, SameSite=Strict, 10 minutes)."""
    resp.set_cookie(
        LOGIN_COOKIE, token, max_age=600, path="/", secure=True, httponly=True, samesite="Strict"
    )


def client_address(request: web.Request) -> str:
    """The peer address (no proxy headers are trusted)."""
    peer: Any = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else "unknown"
