"""The console's operations on the gate's activity: the dashboard's snapshot, the recent
events (filtered), and the audited look-up of a pseudonym (``services.events``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import time
from collections.abc import Mapping
from typing import Any

from gateway.errors import GatewayError
from gateway.mqtt.pseudonym import PSEUDONYM_PATTERN, epoch_of, resolve
from gateway.services import events as events_svc
from gateway.web import history, live, roster_view
from gateway.web.backend import Backend
from gateway.web.ops import InputError, text

FILTERS = ("type", "door", "person", "since")
EVENT_TYPES = ("access", "access.granted", "access.denied", "door", "reader", "camera", "tamper")
SHOWN = 200
"""Events listed on the events page at most."""


async def dashboard(backend: Backend) -> dict[str, Any]:
    """Each door's state, readers, cameras (face path), broker, outbox, services,
    storage, today's counts and the roster's convergence: no identities."""
    status = backend.status()
    counts = await backend.run_db(events_svc.today_counts, backend.db)
    roster = await roster_view.roster(backend, time.time())
    outbox = status.get("outbox")
    return {
        "doors": dict(status.get("doors", {})),
        "readers": dict(status.get("readers", {})),
        "cameras": dict(status.get("face", {})),
        "broker": str(status.get("broker", "not configured")),
        "outbox": None if outbox is None else int(outbox.get("pending", 0)),
        "storage": str(status.get("storage", status.get("storage_mode", "ok"))),
        "services": dict(status.get("services", {})),
        "today": dataclasses.asdict(counts),
        "roster": roster,
    }


def filters(query: Mapping[str, str]) -> dict[str, str]:
    """The events page's filters from a query string (unknown keys ignored)."""
    out = {k: text(query, k, required=False) for k in FILTERS}
    if out["type"] and out["type"] not in EVENT_TYPES:
        raise InputError(f"type must be one of {', '.join(EVENT_TYPES)}")
    if out["person"] and not re.fullmatch(PSEUDONYM_PATTERN, out["person"]):
        raise InputError("person must be a pseudonym (26 characters a-z, 2-7)")
    return out


async def recent_events(
    backend: Backend, chosen: Mapping[str, str], shown: int = SHOWN
) -> list[dict[str, Any]]:
    """The events passing ``chosen`` filters, newest first (at most ``shown``): those
    published since the feed started, then the stored ones from before (the access log,
    the outbox: :mod:`gateway.web.history`), so a restart does not empty the page."""
    out = [e for e in backend.feed.recent() if live.matches(e, chosen)][:shown]
    if len(out) < shown:
        stored = await backend.run_db(
            history.read, backend.db, backend, chosen, backend.feed.started, live.RECENT
        )
        out += [e for e in stored if live.matches(e, chosen)][: shown - len(out)]
    return out


async def resolve_pseudonym(
    backend: Backend, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Who an event's ``pseudonym`` (at the event's time ``ts``, RFC 3339) is, for the
    ``reason`` given: audited; ``{"found": False}`` when nobody on record matches."""
    pseudonym = text(data, "pseudonym")
    if not re.fullmatch(PSEUDONYM_PATTERN, pseudonym):
        raise InputError("pseudonym must be 26 characters a-z, 2-7")
    try:
        at = dt.datetime.fromisoformat(text(data, "ts").replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise InputError("ts must be the event's time (RFC 3339)") from exc
    key = backend.pseudonym_key
    if key is None:
        raise GatewayError("pseudonyms cannot be resolved here (no site key loaded)")
    epoch = epoch_of(at, backend.pseudonym_epoch_s)
    find = functools.partial(_find, pseudonym, key=key, epoch=epoch)
    reason = text(data, "reason")
    person = await backend.run_db(
        events_svc.resolve_pseudonym, backend.db, find, actor=actor, reason=reason, epoch=epoch
    )
    if person is None:
        return {"found": False, "pseudonym": pseudonym}
    return {
        "found": True,
        "pseudonym": pseudonym,
        "id": person.id,
        "name": person.display_name,
        "unit": person.unit,
    }


def _find(pseudonym: str, ids: list[str], *, key: bytes, epoch: int) -> str | None:
    return resolve(pseudonym, ids, key, epoch)
