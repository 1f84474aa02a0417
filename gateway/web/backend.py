"""What the web console needs from its host: the database, the threads that may use it, and
the dependencies of the services (the same operations the CLI and MQTT commands call)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlite_utils

from gateway.config.web import WebConfig
from gateway.privacy.notice import Notice
from gateway.privacy.vault import GalleryLike, Vault
from gateway.services.compliance import ReportRequest
from gateway.services.credentials import CredentialDeps
from gateway.services.people import DeletionDeps

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]
"""``await run(fn, *args, **kwargs)``: ``fn`` on the thread that owns the connection."""


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

    def deletion_deps(self) -> DeletionDeps:
        """The people service's deletion dependencies, from the credential ones."""
        deps = self.credential_deps()
        return DeletionDeps(deps.credentials, self.vault, self.gallery, deps.cache)


async def run_here(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A runner that calls ``fn`` on the event loop's thread (tests, single-threaded use)."""
    return fn(*args, **kwargs)
