"""Serve the console over HTTPS on the configured addresses until cancelled."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

from aiohttp import web

from gateway.web.app import make_app
from gateway.web.backend import Backend
from gateway.web.tls import server_context

log = logging.getLogger(__name__)


async def serve(backend: Backend, state_dir: Path) -> None:
    """Run the console (a supervised service of the daemon): bind every configured
    address, log the URL and the certificate fingerprint, wait until cancelled."""
    cfg = backend.cfg
    ssl_ctx, fp = server_context(cfg, state_dir, socket.gethostname())
    runner = web.AppRunner(make_app(backend), access_log=None)
    await runner.setup()
    try:
        for addr in cfg.listen:
            await web.TCPSite(runner, addr, cfg.port, ssl_context=ssl_ctx).start()
            host = f"[{addr}]" if ":" in addr else addr
            log.info("web console on https://%s:%d/", host, cfg.port)
        log.info("web console certificate SHA-256 fingerprint %s", fp)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
