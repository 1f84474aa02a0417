"""System operations of the console and the commands: the record of a configuration
reload asked for by someone (who, and whether the new configuration was accepted)."""

from __future__ import annotations

import sqlite_utils

from gateway.privacy import audit
from gateway.store.tx import transaction


def record_reload(db: sqlite_utils.Database, *, actor: str, accepted: bool, channel: str) -> None:
    """Audit a configuration reload (``config.reload``) and its outcome."""
    with transaction(db):
        audit.append(db, actor, "config.reload", "-", {"accepted": accepted, "channel": channel})
