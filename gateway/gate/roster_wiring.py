"""Builds the roster agents from the configuration: the office's publisher (``[roster] role
= "office"``) and a gate's follower (``role = "gate"``), for the daemon and for
``gateway roster serve`` / ``follow`` (the same agents, without doors)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import sqlite_utils

from gateway.config.root import GatewayConfig
from gateway.daemon.supervisor import ServiceSpec
from gateway.errors import ConfigError
from gateway.gate.roster_agent import GateRosterAgent, OfficeRosterAgent, OfficeSettings, RunDb
from gateway.keys import Keys, key_id
from gateway.mqtt.client import MqttSettings
from gateway.mqtt.fleet import settings_from_config
from gateway.mqtt.roster_topics import RosterTopics
from gateway.mqtt.sign import load_private
from gateway.privacy.vault import GalleryLike, Vault
from gateway.services import roster_gate, roster_office, site_rotation

if TYPE_CHECKING:
    from gateway.credentials.store import Credentials
    from gateway.services.cache_state import CacheState

log = logging.getLogger(__name__)
T = TypeVar("T")


def _broker(cfg: GatewayConfig) -> MqttSettings:
    settings = settings_from_config(cfg)
    if settings is None:
        raise ConfigError([("mqtt.url", "None", "the roster needs a broker: set mqtt.url")])
    return settings


def topics_of(cfg: GatewayConfig) -> RosterTopics:
    """The site's roster topics."""
    return RosterTopics(cfg.mqtt.topic_prefix, cfg.site.id)


def trusted_keys(cfg: GatewayConfig) -> dict[str, str]:
    """The office keys a gate trusts: ``roster.office_keys``, else ``mqtt.command_keys``."""
    trusted = dict(cfg.roster.office_keys or cfg.mqtt.command_keys)
    if not trusted:
        raise ConfigError(
            [("roster.office_keys", "{}", "a roster gate needs the office's public key")]
        )
    return trusted


def office_agent(
    cfg: GatewayConfig, keys: Keys, db: sqlite_utils.Database, vault: Vault, run_db: RunDb
) -> OfficeRosterAgent:
    """The office's publisher (its configured gates registered)."""
    r = cfg.roster
    if r.signing_key is None:
        raise ConfigError([("roster.signing_key", "None", "the office signs its manifests")])
    deps = roster_office.office_deps(cfg, keys, db, vault)
    roster_office.ensure_gates(db, {g: (c.public_key, c.ack_key) for g, c in r.gates.items()})
    settings = OfficeSettings(r.chunk_bytes, r.max_pending_changes, r.erasure_ack_s, r.poll_s)
    key = load_private(r.signing_key)
    return OfficeRosterAgent(deps, key, _broker(cfg), topics_of(cfg), run_db, settings=settings)


def gate_agent(
    cfg: GatewayConfig,
    keys: Keys,
    db: sqlite_utils.Database,
    vault: Vault,
    *,
    gallery: GalleryLike,
    run_db: RunDb,
    credentials: Credentials | None = None,
    cache: CacheState | None = None,
    restart: Callable[[str], None] | None = None,
) -> GateRosterAgent:
    """A gate's follower; the office's card key it keeps is given to ``credentials``; it
    adopts the site key the roster carries (:func:`site_rotation.adopt_from_roster`), then
    ``restart`` (the daemon's restart in place), when it can (:func:`site_key_status`)."""
    status = site_key_status(cfg, keys, restart)
    deps = roster_gate.GateDeps(
        db,
        vault,
        gallery,
        keys.roster_root,
        cfg.site.id,
        cfg.site.gate,
        trusted_keys(cfg),
        credentials=credentials,
        cache=cache,
        carried=keys.carried,
        adopt_keys=functools.partial(site_rotation.adopt_from_roster, db, keys, cfg, status=status)
        if restart is not None
        else None,
        site_key=status,
    )
    if credentials is not None:
        card_key = roster_gate.load_card_key(db, keys.roster_root)
        if card_key is not None:
            credentials.add_card_key(card_key)
    return GateRosterAgent(
        deps,
        _broker(cfg),
        topics_of(cfg),
        run_db,
        fetch_wait_s=cfg.roster.fetch_wait_s,
        restart=restart,
    )


def site_key_status(
    cfg: GatewayConfig, keys: Keys, restart: Callable[[str], None] | None
) -> dict[str, Any]:
    """What the gate's acks tell the office of its site key: its fingerprint, whether it
    adopts a new one from the roster, and why not (the office rotates only when every
    registered gate does: :func:`roster_office.site_rotation_blockers`)."""
    ref = cfg.privacy.site_key
    why = ""
    if restart is None:
        why = "followed without the daemon (gateway roster follow): it cannot restart"
    elif ref is None or ref.file is None:
        why = "its privacy.site_key is a systemd credential, which the gateway cannot rewrite"
    elif not os.access(ref.file.parent, os.W_OK):
        why = f"the gateway cannot write the directory of its site key ({ref.file.parent})"
    elif keys.gates is None:
        why = (
            "the site key stands in for its gates key: give it its own first "
            "(gateway keys rotate --what transform)"
        )
    return {"id": key_id(keys.site), "adopts": not why, "why": why}


def single_thread_runner() -> tuple[RunDb, Callable[[], None]]:
    """A ``run_db`` on one worker thread (for the standalone commands) and its closer."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="roster-db")

    async def run_db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))

    return run_db, lambda: pool.shutdown(wait=True)


async def run_standalone(cfg: GatewayConfig, keys: Keys, db: sqlite_utils.Database) -> None:
    """``gateway roster serve`` / ``follow``: this instance's roster agent, until cancelled."""
    from gateway.credentials.store import Credentials
    from gateway.face.gallery import Gallery

    run_db, close = single_thread_runner()
    vault = Vault.from_keys(keys, protection=cfg.privacy.template_protection)
    try:
        if cfg.roster.role == "office":
            await office_agent(cfg, keys, db, vault, run_db).run()
        elif cfg.roster.role == "gate":
            creds = Credentials(
                db, keys.device, index_key=keys.pin_index_site, carried=keys.carried
            )
            await gate_agent(
                cfg, keys, db, vault, gallery=Gallery(vault.dim), run_db=run_db, credentials=creds
            ).run()
        else:
            raise ConfigError([("roster.role", "off", "set office or gate to run the roster")])
    finally:
        close()


def add_roster(
    cfg: GatewayConfig,
    keys: Keys,
    db: sqlite_utils.Database,
    vault: Vault,
    *,
    gallery: GalleryLike,
    run_db: RunDb,
    add_service: Callable[[ServiceSpec], None],
    credentials: Credentials | None = None,
    cache: CacheState | None = None,
    restart: Callable[[str], None] | None = None,
) -> GateRosterAgent | None:
    """The daemon's roster service for ``[roster] role``; the gate's agent (None otherwise:
    an office's publisher or no roster)."""
    role = cfg.roster.role
    if role == "office":
        office = office_agent(cfg, keys, db, vault, run_db)
        add_service(ServiceSpec("roster-office", office.run))
        return None
    if role != "gate":
        return None
    agent = gate_agent(
        cfg,
        keys,
        db,
        vault,
        gallery=gallery,
        run_db=run_db,
        credentials=credentials,
        cache=cache,
        restart=restart,
    )
    add_service(ServiceSpec("roster-gate", agent.run))
    return agent
