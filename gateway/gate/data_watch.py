"""Follow the changes other processes (the CLI, the office) make to face data and consent:
the people count published for Art. 15, the live gallery, the withdrawals to announce."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.config.root import GatewayConfig

if TYPE_CHECKING:
    from gateway.face.gallery import Gallery
    from gateway.privacy.vault import Vault

log = logging.getLogger(__name__)


def data_version(db: Any) -> tuple[int, ...]:
    """Changes whenever face data or consent changes (cheap: four index lookups)."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM face_keys), (SELECT coalesce(max(id), 0) FROM templates),"
        " (SELECT coalesce(max(id), 0) FROM consents),"
        " (SELECT coalesce(sum(needs_renotice), 0) FROM people)"
    ).fetchone()
    return tuple(int(v) for v in row)


class DataWatch:
    """The ``data-watch`` service; what it saw survives restarts of the service."""

    def __init__(
        self,
        cfg: GatewayConfig,
        db: Any,
        run_db: Callable[..., Awaitable[Any]],
        *,
        announce_withdrawals: Callable[[], Awaitable[bool]],
        count_changed: Callable[[], None] | None,
        live_gallery: tuple[Vault, Gallery] | None,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.run_db = run_db
        self.announce_withdrawals = announce_withdrawals
        self.count_changed = count_changed  # the status document carries the count
        self.live_gallery = live_gallery  # on a gate whose face path runs
        self.enrolled_count: int | None = None
        self.seen: tuple[int, ...] | None = None  # the last data version

    async def run(self) -> None:
        """Follow changes within ~250 ms: the people count published for Art. 15, on a
        face gate the live gallery, and on every gate the withdrawals still to announce to
        the site's other gates."""
        retry_at: float | None = None  # withdrawals left to announce: try again then
        while True:
            try:
                version = await self.run_db(data_version, self.db)
            except sqlite3.Error as exc:
                log.warning("gate %s: cannot read the data version: %s", self.cfg.site.gate, exc)
                await asyncio.sleep(5.0)
                continue
            last = self.seen
            due = retry_at is not None and time.monotonic() >= retry_at
            if version != last or due:
                if version[0] != self.enrolled_count:  # count(*) of face_keys
                    self.enrolled_count = version[0]
                    if self.count_changed is not None:
                        self.count_changed()
                if last is not None and version != last and self.live_gallery is not None:
                    await self.sync_gallery(*self.live_gallery)
                self.seen = version
                # Withdrawals recorded by any process (the CLI too, or while this daemon
                # was down), on every gate, face path or not.
                ok = await self.announce_withdrawals()
                retry_at = None if ok else time.monotonic() + 5.0
            await asyncio.sleep(0.25)

    async def sync_gallery(self, vault: Vault, gallery: Gallery) -> None:
        """The live gallery to the people with face data and consent now."""
        from gateway.privacy.consent import face_allowed
        from gateway.privacy.vault import load_gallery

        allowed = face_allowed(self.db, grace_days=self.cfg.privacy.renotice_grace_days)

        def wanted_people() -> set[str]:
            return {p for p in vault.enrolled_people(self.db) if allowed(p)}

        wanted = await self.run_db(wanted_people)
        for gone in gallery.people() - wanted:
            gallery.remove_person(gone)
            log.info("gate %s: a person's face data left the live gallery", self.cfg.site.gate)
        await self.run_db(load_gallery, self.db, vault, gallery, allowed=allowed)
