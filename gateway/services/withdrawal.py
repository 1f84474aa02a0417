"""Withdrawal of face-processing consent: erase the person's face data at once.

Order: the person leaves the live gallery first (no further match), then the wrapped data key
is deleted (crypto-erase; templates cascade), a ``withdrawn`` consent row, a receipt (no
biometric) and an audit entry are written in one transaction, and the erased pages are scrubbed
(:mod:`gateway.privacy.scrub`: WAL checkpointed and truncated, with a bounded wait that never
blocks on a reader). Cards, PINs and the person record are untouched: they keep working.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from gateway.privacy import audit
from gateway.privacy.consent import record_withdrawal
from gateway.privacy.people import get_person
from gateway.privacy.scrub import complete_pending
from gateway.privacy.vault import GalleryLike, Vault
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

CHANNELS = ("cli", "mqtt", "gate", "app", "paper", "kiosk", "web", "operator", "compound")
"""``compound``: fanned out from another gate of the site (gateway.mqtt.fanout)."""


@dataclass(frozen=True)
class Receipt:
    """Proof of a withdrawal, stored in ``withdrawal_receipts``; holds no biometric."""

    id: str
    person_id: str
    channel: str
    templates_erased: int
    ts: float
    scrubbed: bool = True
    """False while a reader's old snapshot keeps the erased pages in the WAL (finished later)."""

    def event(self) -> dict[str, Any]:
        """Event-ready payload (no person id: the caller adds its rotating pseudonym)."""
        return {
            "type": "consent_withdrawn",
            "receipt_id": self.id,
            "channel": self.channel,
            "templates_erased": self.templates_erased,
            "ts": self.ts,
        }


def withdraw(
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    person_id: str,
    channel: str,
    *,
    actor: str | None = None,
    vacuum: bool = True,
    scrub_wait_s: float = 0.8,
    now: float | None = None,
) -> Receipt:
    """Withdraw consent and erase the person's face data; return the receipt.

    Idempotent: withdrawing again erases nothing more and writes another receipt.
    ``vacuum``: scrub the WAL here, waiting at most ``scrub_wait_s`` for old readers (the
    daemon passes False and scrubs from a worker thread: see :mod:`gateway.privacy.scrub`).
    :class:`gateway.privacy.people.PersonError` if the person is unknown.
    """
    now = time.time() if now is None else now
    if channel not in CHANNELS:
        raise ValueError(f"withdrawal channel {channel!r} is not one of {', '.join(CHANNELS)}")
    get_person(db, person_id)
    removed = gallery.remove_person(person_id)
    actor = actor or channel
    receipt_id = uuid.uuid4().hex
    with transaction(db):
        erased = vault.erase_person(db, person_id, vacuum=False)
        record_withdrawal(db, person_id, channel=channel, recorded_by=actor, now=now)
        db.execute(
            "INSERT INTO withdrawal_receipts (id, person_id, channel, templates_erased, ts)"
            " VALUES (?, ?, ?, ?, ?)",
            [receipt_id, person_id, channel, erased, now],
        )
        audit.append(
            db,
            actor,
            "template.delete",
            person_id,
            {
                "reason": "consent_withdrawn",
                "receipt_id": receipt_id,
                "channel": channel,
                "templates_erased": erased,
                "gallery_removed": removed,
            },
            now=now,
        )
    scrubbed = complete_pending(db.conn, scrub_wait_s) if vacuum else False
    log.info(
        "person %s withdrew consent via %s: %d templates erased, receipt %s",
        person_id,
        channel,
        erased,
        receipt_id,
    )
    return Receipt(receipt_id, person_id, channel, erased, now, scrubbed)


def pending_announcements(db: sqlite_utils.Database) -> list[Receipt]:
    """Withdrawals not yet announced (event + fan-out), oldest first, whoever recorded them."""
    rows = db.execute(
        "SELECT id, person_id, channel, templates_erased, ts FROM withdrawal_receipts"
        " WHERE announced = 0 ORDER BY ts, rowid"
    ).fetchall()
    return [Receipt(str(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]


def mark_announced(db: sqlite_utils.Database, receipt_id: str) -> None:
    """Record that the withdrawal ``receipt_id`` has been announced."""
    with transaction(db):
        db.execute("UPDATE withdrawal_receipts SET announced = 1 WHERE id = ?", [receipt_id])
