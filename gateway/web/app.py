"""The console's aiohttp application: middlewares (headers outermost, then the session and
CSRF guard), the page and API routes, the static files."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.web import (
    account_pages,
    accounts,
    api,
    enrol_pages,
    live_pages,
    messages,
    pages,
    system_pages,
    zones_pages,
)
from gateway.web.backend import Backend
from gateway.web.security import (
    BACKEND,
    HASHING,
    SEEN,
    THROTTLE,
    LoginHashing,
    LoginThrottle,
    guard,
    headers,
)

STATIC = Path(__file__).parent / "static"
MAX_REQUEST = 256 * 1024


def make_app(backend: Backend) -> web.Application:
    """The console over ``backend``."""
    app = web.Application(
        middlewares=[headers, guard, messages.refusals], client_max_size=MAX_REQUEST
    )
    app[BACKEND] = backend
    app[SEEN] = accounts.SeenInMemory()
    app[THROTTLE] = LoginThrottle(backend.cfg.login_attempts_per_minute)
    app[HASHING] = hashing = LoginHashing()
    app[pages.JINJA] = pages.environments()

    async def stop_hashing(_: web.Application) -> None:
        hashing.close()

    async def end_streams(_: web.Application) -> None:
        backend.feed.close()  # open live streams end before the server waits for handlers

    app.on_cleanup.append(stop_hashing)
    app.on_shutdown.append(end_streams)
    app.add_routes(pages.routes())
    app.add_routes(api.routes())
    app.add_routes(live_pages.routes())
    app.add_routes(system_pages.routes())
    app.add_routes(enrol_pages.routes())
    app.add_routes(zones_pages.routes())
    app.add_routes(account_pages.routes())
    app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    return app
