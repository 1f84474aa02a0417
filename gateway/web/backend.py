"""What the web console needs from its host: the database, the threads that may use it, and
the dependencies of the services (the same operations the CLI and MQTT commands call)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from gateway.config.web import WebConfig
from gateway.privacy.notice import Notice
from gateway.privacy.vault import GalleryLike, Vault
from gateway.services.compliance import ReportRequest
from gateway.services.credentials import CredentialDeps
from gateway.services.people import DeletionDeps
from gateway.web.live import EventFeed

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]
"""``await run(fn, *args, **kwargs)``: ``fn`` on the thread that owns the connection."""


@dataclass(frozen=True)
class RosterRole:
    """This instance's part in the compound roster (``[roster]``): ``off``, ``office``
    (the dashboard shows every gate's convergence) or ``gate`` (the version applied)."""

    role: str = "off"
    site: str = ""
    gate: str = ""
    alert_after_s: float = 300.0
    """An erasure or revocation not acknowledged within this time is highlighted."""


@dataclass(frozen=True)
class Backend:
    """The console's dependencies. ``run_db`` runs on ``db``'s thread, ``run_decide`` on
    the credential store's (the daemon's two database threads; tests run in place)."""

    cfg: WebConfig
    db: sqlite_utils.Database
    run_db: Runner
    run_decide: Runner
    credential_deps: Callable[[], CredentialDeps]
    vault: Vault
    gallery: GalleryLike
    notice: Callable[[], Notice]
    """The notice in force (GatewayError when none is configured)."""
    report_request: Callable[[], ReportRequest]
    grace_days: float
    withdraw: Callable[[str, str], Awaitable[dict[str, Any]]]
    """``(person_id, actor)``: the gate's withdrawal on the web channel (erase, announce to
    the site's other gates, scrub the WAL in the background); ``receipt_id`` and
    ``templates_erased``."""
    after_deletion: Callable[[], Awaitable[Any]]
    """After a deletion: announce its withdrawal receipt and scrub the WAL in the
    background (the deletion itself does not wait for old readers)."""
    read_only: str | None = None
    """Why the state database is read-only (the daemon runs DEGRADED), else None: changes
    and logins are then refused with 503, pages that only read keep working."""
    feed: EventFeed = field(default_factory=EventFeed)
    """The gate's events as published (anonymized), for the dashboard and the events page."""
    status: Callable[[], dict[str, Any]] = dict
    """The gate's live status: ``doors`` (name -> state), ``readers``, ``face`` (camera ->
    face path state), ``broker``, ``outbox``, ``services``, ``storage`` (no identities)."""
    pseudonym_key: bytes | None = None
    """The site's pseudonym key (resolving an event's pseudonym), None: not possible here."""
    pseudonym_epoch_s: int = 86_400
    reload: Callable[[], Awaitable[bool]] | None = None
    """Re-read, validate and apply the configuration (the daemon's reload), if available."""
    validate: Callable[[], list[str]] | None = None
    """The configuration file's problems (empty: valid), as ``gateway config validate``."""
    doctor: Callable[[], Awaitable[list[tuple[str, str, str]]]] | None = None
    """The ``gateway doctor`` table (check, PASS/WARN/FAIL/SKIP, detail), if available."""
    next_card: Callable[[str, float], Awaitable[tuple[int | None, int]]] | None = None
    """``(reader, timeout_s)``: the next card presented there, ``(facility, number)``
    (GatewayError when none came), if this process drives readers."""
    next_pin: Callable[[str, float], Awaitable[str]] | None = None
    """``(reader, timeout_s)``: the next PIN typed on that reader's keypad (never shown)."""
    readers: list[str] = field(default_factory=list)
    """The gate's readers (where a card may be presented)."""
    face_pipeline: Callable[[], Awaitable[Any]] | None = None
    """The face pipeline for office enrolment (the gate's, or loaded on first use), if
    this process has the face models."""
    config_path: Path | None = None
    """The configuration file the zones page reads and writes (None: not here)."""
    preview_detector: Callable[[], Any] = lambda: None
    """The face detector that blurs passers-by in the zones preview (None: the whole
    frame is blurred)."""
    roster: RosterRole = field(default_factory=RosterRole)
    """The roster role, for the dashboard's convergence section."""
    totp_key: bytes | None = None
    """The device key's ``WEB_TOTP`` subkey (accounts' second factors), None: none here
    (a login with an active second factor is then refused)."""

    def deletion_deps(self) -> DeletionDeps:
        """The people service's deletion dependencies, from the credential ones."""
        deps = self.credential_deps()
        return DeletionDeps(deps.credentials, self.vault, self.gallery, deps.cache)


async def run_here(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A runner that calls ``fn`` on the event loop's thread (tests, single-threaded use)."""
    return fn(*args, **kwargs)
