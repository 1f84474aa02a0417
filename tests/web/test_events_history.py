"""After a restart the events page is not empty: the decisions in the access log and the
events still in the outbox are shown as the events the gate published (the person under
the event's rotating pseudonym, nothing new stored), with the page's filters; what the
live feed holds is not shown twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from pathlib import Path

from gateway.mqtt import events as ev
from gateway.mqtt.pseudonym import Pseudonymizer
from gateway.privacy import access_log
from gateway.services import people as people_svc
from gateway.web.live import EventFeed
from tests.web.console import Console, console

TOPIC = "gw/site-1/gate-1"


def _outbox(c: Console, event: ev.BaseEvent, topic: str, at: float) -> None:
    c.backend.db.execute(
        "INSERT INTO outbox (id, topic, payload, retain, created_at) VALUES (?, ?, ?, 0, ?)",
        [str(event.id), topic, event.to_json(), at],
    )


def _at(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def _before_the_restart(c: Console, pid: str, start: float) -> None:
    """What the previous daemon left: three decisions, a forced door still queued, a
    granted event queued too (the access log has it), a status message."""
    db = c.backend.db
    access_log.record(db, ts=start - 300, door="front", method="card", granted=True,
                      reason="granted", person_id=pid)  # fmt: skip
    access_log.record(db, ts=start - 200, door="back", method="face", granted=False,
                      reason="unknown_face", person_id=None)  # fmt: skip
    access_log.record(db, ts=start - 100, door="front", method="pin", granted=False,
                      reason="outside_schedule", person_id=pid)  # fmt: skip
    forced = ev.DoorForced(site="site-1", gate="gate-1", door="back", ts=_at(start - 150))
    _outbox(c, forced, f"{TOPIC}/events/door.forced", start - 150)
    granted = ev.AccessGranted(
        site="site-1", gate="gate-1", door="front", method="card", ts=_at(start - 300)
    )
    _outbox(c, granted, f"{TOPIC}/events/access.granted", start - 300)
    other = ev.ReaderOnline(site="site-1", gate="gate-1", reader="entry", ts=_at(start - 140))
    _outbox(c, other, f"{TOPIC}/status", start - 140)  # not an event topic: not shown


def test_the_events_page_shows_stored_events_after_a_restart(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)

    async def body(c: Console) -> None:
        db = c.backend.db
        access_log.bind_key(db, key)
        try:
            pid = people_svc.add_person(db, people_svc.NewPerson("Li Wei"), actor="t")
            start = c.backend.feed.started
            _before_the_restart(c, pid, start)
            await check(c, pid, start)
        finally:
            access_log.bind_key(db, None)

    async def check(c: Console, pid: str, start: float) -> None:
        assert await c.login("operator") == 303
        status, rows = await c.api("GET", "/api/events")
        assert status == 200
        assert [(e["type"], e.get("door")) for e in rows] == [
            ("access.denied", "front"),
            ("door.forced", "back"),
            ("access.denied", "back"),
            ("access.granted", "front"),
        ]
        assert all(e["stored"] for e in rows)
        assert c.backend.pseudonym_key is not None
        key, epoch_s = c.backend.pseudonym_key, c.backend.pseudonym_epoch_s
        person = Pseudonymizer(key, epoch_s, lambda: start - 100)(pid)
        earlier = Pseudonymizer(key, epoch_s, lambda: start - 300)(pid)  # its own epoch
        denied, _, unknown, granted = rows
        assert (granted["method"], granted["person"]) == ("card", earlier)
        assert (denied["reason"], denied["method"], denied["person"]) == (
            "outside_schedule",
            "pin",
            person,
        )
        assert (unknown["reason"], unknown["person"]) == ("unknown_face", None)
        assert pid not in str(rows)
        assert "Li Wei" not in str(rows)
        # the same filters as for live events
        _, rows = await c.api("GET", "/api/events?type=access.denied")
        assert [e["door"] for e in rows] == ["front", "back"]
        _, rows = await c.api("GET", "/api/events?type=door")
        assert [e["type"] for e in rows] == ["door.forced"]
        _, rows = await c.api("GET", "/api/events?door=back")
        assert [e["type"] for e in rows] == ["door.forced", "access.denied"]
        _, rows = await c.api("GET", f"/api/events?person={person}")
        same_epoch = person == earlier  # unless a new epoch began in between
        assert [e["type"] for e in rows] == ["access.denied"] + ["access.granted"] * same_epoch
        since = rows[0]["ts"]
        _, rows = await c.api("GET", f"/api/events?since={since}")
        assert [e["type"] for e in rows] == ["access.denied"]
        page = await c.client.get("/events?type=access", headers=c.headers(csrf=False))
        html = await page.text()
        assert html.count('<code class="pseudonym"') == 2
        assert "No recent event" not in html
        # after the start, the live feed has the events: the access log is not read twice
        now = time.time()
        access_log.record(c.backend.db, ts=now, door="front", method="card", granted=True,
                          reason="granted", person_id=pid)  # fmt: skip
        c.backend.feed.publish(
            ev.AccessGranted(site="site-1", gate="gate-1", door="front", method="card")
        )
        _, rows = await c.api("GET", "/api/events?type=access.granted")
        assert [e.get("stored", False) for e in rows] == [False, True]
        # the dashboard's latest events too
        dash = await c.client.get("/dashboard", headers=c.headers(csrf=False))
        assert "door.forced" in await dash.text()

    async def main() -> None:
        async with console(tmp_path, feed=EventFeed()) as c:
            await body(c)

    asyncio.run(main())


def test_without_a_stored_event_the_page_says_so(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("auditor") == 303
        _outbox(c, ev.DoorForced(site="site-1", gate="gate-1", door="x"), "gw/s/g/events/x", 0)
        c.backend.db.execute("UPDATE outbox SET payload = ?", [b"{not json"])
        status, rows = await c.api("GET", "/api/events")
        assert (status, rows) == (200, [])  # an unreadable queued payload is skipped
        html = await (await c.client.get("/events", headers=c.headers(csrf=False))).text()
        assert "No recent event." in html

    async def run() -> None:
        async with console(tmp_path) as c:
            await body(c)

    asyncio.run(run())
