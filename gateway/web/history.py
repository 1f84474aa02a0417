"""The events the console shows from before the daemon started: what the gate already
stores, read back as the events it published (anonymized, nothing new stored).

The access log gives the access decisions (``access.granted`` / ``access.denied``, the
person under the rotating pseudonym of the event's epoch, as published); the outbox gives
the other events not yet acknowledged by the broker (door, reader, camera, tamper...).
Rows written since the feed started are in the feed itself and are not read twice.
Stored events carry ``"stored": true`` (they have no event id: the access log keeps none).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from typing import Any

import sqlite_utils

from gateway.mqtt import events as ev
from gateway.mqtt.pseudonym import epoch_of, pseudonym
from gateway.services import events as events_svc
from gateway.web.backend import Backend

log = logging.getLogger(__name__)

ACCESS = ("access", "access.granted", "access.denied")


def _rfc3339(ts: float) -> str:
    when = dt.datetime.fromtimestamp(ts, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _since(value: str) -> float | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None  # compared as text by the filter, as for live events
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _deny_reason(reason: str) -> str:
    try:
        return ev.DenyReason(reason).value
    except ValueError:  # as the gate reports a refusal with a grant's reason
        return ev.DenyReason.INVALID_CREDENTIAL.value


def access_event(row: events_svc.StoredAccess) -> dict[str, Any]:
    """An access-log row as the event the gate published for it."""
    item: dict[str, Any] = {
        "type": "access.granted" if row.granted else "access.denied",
        "ts": _rfc3339(row.ts),
        "door": row.door,
        "stored": True,
    }
    if row.method != "none":
        item["method"] = row.method
    if not row.granted:
        item["reason"] = _deny_reason(row.reason)
    item["person"] = row.person
    return item


def outbox_event(topic: str, payload: bytes) -> dict[str, Any] | None:
    """A queued publication as its event, when it is one of the gate's events other than
    an access decision (those come from the access log); None otherwise."""
    if "/events/" not in topic:
        return None
    try:
        item = ev.parse_event(payload).model_dump(mode="json")
    except ValueError:
        log.warning("web: a queued event could not be read back (topic %s)", topic)
        return None
    if str(item["type"]).startswith("access."):
        return None
    return item | {"stored": True}


def _person(key: bytes | None, epoch_s: int, person_id: str, ts: float) -> str | None:
    return None if key is None else pseudonym(person_id, key, epoch_of(ts, epoch_s))


def read(
    db: sqlite_utils.Database,
    backend: Backend,
    chosen: Mapping[str, str],
    before: float,
    limit: int,
) -> list[dict[str, Any]]:
    """Stored events before ``before`` (newest first, at most ``limit`` of each source),
    narrowed by the filters the database can apply; the caller applies them all."""
    kind, door = chosen.get("type", ""), chosen.get("door", "")
    since = _since(chosen.get("since", ""))
    out: list[dict[str, Any]] = []
    if not kind or kind in ACCESS:
        person = functools.partial(_person, backend.pseudonym_key, backend.pseudonym_epoch_s)
        granted = {"access.granted": True, "access.denied": False}.get(kind)
        rows = events_svc.stored_access(
            db, person, before=before, limit=limit, door=door, granted=granted, since=since
        )
        out += [access_event(r) for r in rows]
    if kind not in ACCESS:
        for topic, payload in events_svc.pending_publications(db, before=before, limit=limit):
            item = outbox_event(topic, payload)
            if item is not None:
                out.append(item)
    out.sort(key=lambda e: str(e["ts"]), reverse=True)
    return out
