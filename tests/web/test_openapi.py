"""The OpenAPI document matches the JSON API's routes, and a schemathesis run over it (an
admin's session, CSRF token given) finds no server error."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config.web import WebConfig
from gateway.web import accounts
from gateway.web.app import make_app
from gateway.web.openapi import OPERATIONS, document
from gateway.web.security import COOKIE
from tests.support.net import free_port
from tests.web.console import backend_for

schemathesis = pytest.importorskip("schemathesis", reason="needs schemathesis (pip install)")
from hypothesis import HealthCheck, settings  # noqa: E402

SCHEMA = schemathesis.openapi.from_dict(document()).exclude(path="/api/stream")


def _api_routes(tmp_path: Path) -> set[tuple[str, str]]:
    backend = backend_for(tmp_path)
    try:
        app = make_app(backend)
        return {
            (r.method, r.resource.canonical)
            for r in app.router.routes()
            if r.resource is not None
            and r.resource.canonical.startswith("/api/")
            and r.method != "HEAD"
        }
    finally:
        backend.db.conn.close()


def test_the_document_lists_every_api_route_and_no_other(tmp_path: Path) -> None:
    assert _api_routes(tmp_path) == set(OPERATIONS)
    doc = document()
    assert doc["openapi"].startswith("3.1")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (method, path)
            assert "Roles:" in op["description"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The console on a free port, on its own thread and loop; an admin's headers."""
    port = free_port()
    ready: queue.Queue[Any] = queue.Queue()
    stopper: queue.Queue[Any] = queue.Queue()

    async def serve() -> None:
        backend = backend_for(tmp_path_factory.mktemp("fuzz"), WebConfig(enabled=True, port=port))
        record = accounts.login_record(backend.db, "admin")
        token, s = accounts.finish_login(backend.db, record, True, policy=accounts.LoginPolicy())
        runner = web.AppRunner(make_app(backend), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ended = asyncio.Event()
        stopper.put((asyncio.get_running_loop(), ended))
        ready.put({"Cookie": f"{COOKIE}={token}", "X-CSRF-Token": s.csrf})
        await ended.wait()
        await runner.cleanup()
        backend.db.conn.close()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    headers = ready.get(timeout=30)
    try:
        yield f"http://127.0.0.1:{port}", headers
    finally:
        loop, ended = stopper.get()
        loop.call_soon_threadsafe(ended.set)
        thread.join(10)


@SCHEMA.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_fuzzing_the_api_finds_no_server_error(
    case: Any, served: tuple[str, dict[str, str]]
) -> None:
    base, headers = served
    resp = case.call(base_url=base, headers=headers)
    assert resp.status_code < 500, (case.method, case.path, resp.status_code, resp.text[:300])
