"""The few lines that wire the credential cache and the storage state into the daemon
(kept out of :mod:`gateway.gate.app`)."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from gateway.services.cache_follower import CacheFollower
from gateway.services.cache_state import CacheState

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials

log = logging.getLogger(__name__)


def build_cache(gw: Any, credentials: Credentials) -> tuple[CacheState, CacheFollower]:
    """The cache state (loaded now when the store can be read) and its follower service."""
    state = CacheState()
    follower = CacheFollower(
        gw.cfg.storage.database_path, credentials, state, name=gw.cfg.site.gate
    )
    try:
        follower.load()  # on the follower's own read connection (set-up may block)
    except sqlite3.Error as exc:
        log.warning("gate %s: cache follower cannot read yet (%s)", gw.cfg.site.gate, exc)
        try:
            state.load(credentials.db)
        except sqlite3.Error as exc2:
            log.error(
                "gate %s: people facts cannot be read at start (%s); card and PIN are "
                "refused from memory until they can",
                gw.cfg.site.gate,
                exc2,
            )
    return state, follower


def storage_health(gw: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Status fields added to ``out``: read-only storage (DEGRADED), decisions from memory,
    the credential cache's currency."""
    read_only = getattr(gw.daemon, "storage_read_only", None)
    out["storage_mode"] = f"DEGRADED: {read_only}" if read_only else "read-write"
    ctl = gw.controller
    state: CacheState | None = gw.cache_state
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


def announce_storage(gw: Any) -> None:
    """Say loudly, once at start, that the gate runs on read-only storage (the health and
    status carry it for as long as it lasts)."""
    from gateway.mqtt import events as ev

    reason = getattr(gw.daemon, "storage_read_only", None)
    if reason is None:
        return
    log.error(
        "gate %s: DEGRADED (read-only storage): cards and PINs open from memory; changes "
        "and events cannot be stored",
        gw.cfg.site.gate,
    )
    gw.emit(
        ev.StorageDegraded(
            site=gw.cfg.site.id, gate=gw.cfg.site.gate, mode=ev.StorageMode.READ_ONLY
        )
    )
