"""The few lines that wire the credential cache and the storage state into the daemon
(kept out of :mod:`gateway.gate.app`)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.config.root import GatewayConfig
from gateway.mqtt import events as ev
from gateway.services.cache_follower import CacheFollower
from gateway.services.cache_state import CacheState

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials
    from gateway.gate.controller import AccessController

log = logging.getLogger(__name__)


def build_cache(cfg: GatewayConfig, credentials: Credentials) -> tuple[CacheState, CacheFollower]:
    """The cache state (loaded now when the store can be read) and its follower service."""
    state = CacheState()
    follower = CacheFollower(cfg.storage.database_path, credentials, state, name=cfg.site.gate)
    try:
        follower.load()  # on the follower's own read connection (set-up may block)
    except sqlite3.Error as exc:
        log.warning("gate %s: cache follower cannot read yet (%s)", cfg.site.gate, exc)
        try:
            state.load(credentials.db)
        except sqlite3.Error as exc2:
            log.error(
                "gate %s: people facts cannot be read at start (%s); card and PIN are "
                "refused from memory until they can",
                cfg.site.gate,
                exc2,
            )
    return state, follower


def storage_health(
    out: dict[str, Any],
    read_only: str | None,
    ctl: AccessController | None,
    state: CacheState | None,
) -> dict[str, Any]:
    """Status fields added to ``out``: read-only storage (DEGRADED, ``read_only`` says why),
    decisions from memory, the credential cache's currency."""
    out["storage_mode"] = f"DEGRADED: {read_only}" if read_only else "read-write"
    if ctl is not None:
        creds = ctl.credentials
        if creds.store_down and out.get("storage", "ok") == "ok":
            out["storage"] = creds.degraded  # decisions come from memory
        out["credential_cache"] = {
            "from_memory": creds.store_down,
            "proven_at": None if state is None else state.proven_at,
            "unknown_change": None if state is None else state.unknown_change,
        }
    return out


def announce_storage(
    cfg: GatewayConfig, read_only: str | None, emit: Callable[[ev.BaseEvent], None]
) -> None:
    """Say loudly, once at start, that the gate runs on read-only storage (``read_only``
    says why; the health and status carry it for as long as it lasts)."""
    if read_only is None:
        return
    log.error(
        "gate %s: DEGRADED (read-only storage): cards and PINs open from memory; changes "
        "and events cannot be stored",
        cfg.site.gate,
    )
    emit(ev.StorageDegraded(site=cfg.site.id, gate=cfg.site.gate, mode=ev.StorageMode.READ_ONLY))
