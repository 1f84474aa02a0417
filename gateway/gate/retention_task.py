"""The ``retention`` service: WAL scrub and the retention purge, at the configured interval."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.config.root import GatewayConfig

if TYPE_CHECKING:
    from gateway.face.gallery import Gallery
    from gateway.privacy.vault import Vault

log = logging.getLogger(__name__)


async def run_retention(
    cfg: GatewayConfig,
    db: Any,
    run_db: Callable[..., Awaitable[Any]],
    vault: Vault,
    gallery: Gallery,
) -> None:
    """Scrub the WAL (its own connection), then purge what is past its retention period."""
    from gateway.privacy.retention import run_purge
    from gateway.privacy.scrub import scrub_in_background
    from gateway.services.compliance import retention_policy

    policy = retention_policy(cfg)
    while True:
        await scrub_in_background(cfg.storage.database_path, budget_s=1.0)
        report = await run_db(run_purge, db, vault, gallery, policy, time.time())
        log.info("gate %s: retention purge done: %s", cfg.site.gate, report)
        await asyncio.sleep(cfg.retention.purge_interval_s)
