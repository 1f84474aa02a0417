"""The dashboard, the events page and their live stream (server-sent events), and the
audited pseudonym look-up, through aiohttp's test client."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from gateway.mqtt import events as ev
from gateway.mqtt.pseudonym import Pseudonymizer
from gateway.privacy import access_log
from gateway.services import events as events_svc
from gateway.web import live_pages
from tests.web.console import Console, console


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        async with console(tmp_path) as c:
            await body(c)

    asyncio.run(main())


def _granted(c: Console, person_id: str | None, door: str = "front") -> ev.AccessGranted:
    assert c.backend.pseudonym_key is not None
    pseudonym = Pseudonymizer(c.backend.pseudonym_key, c.backend.pseudonym_epoch_s)
    return ev.AccessGranted(
        site="site-1",
        gate="gate-1",
        door=door,
        method=ev.AccessMethod.CARD,
        person=pseudonym(person_id),
    )


async def _next_sse(resp: ClientResponse, kind: str) -> dict[str, Any]:
    """The data of the next server-sent event of ``kind``."""
    current = ""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if line.startswith("event: "):
            current = line[7:]
        elif line.startswith("data: ") and current == kind:
            data: dict[str, Any] = json.loads(line[6:])
            return data


def test_the_dashboard_shows_doors_readers_cameras_broker_outbox_and_todays_counts(
    tmp_path: Path,
) -> None:
    async def body(c: Console) -> None:
        now = time.time()
        for granted in (True, True, False):
            access_log.record(
                c.backend.db,
                ts=now,
                door="front",
                method="card",
                granted=granted,
                reason="ok",
                person_id=None,
            )
        access_log.record(  # yesterday's does not count
            c.backend.db,
            ts=now - 2 * 86_400,
            door="front",
            method="card",
            granted=True,
            reason="ok",
            person_id=None,
        )
        c.backend.status()["doors"]["back"] = "held_open"
        c.backend.status()["outbox"]["pending"] = 7
        await c.login("auditor")
        status, d = await c.api("GET", "/api/dashboard")
        assert status == 200
        assert d["doors"] == {"front": "locked", "back": "held_open"}
        assert d["readers"] == {"front-reader": "online"}
        assert d["cameras"] == {"cam-front": "running"}
        assert (d["broker"], d["outbox"], d["today"]) == (
            "connected",
            7,
            {"granted": 2, "denied": 1},
        )
        page = await c.client.get("/dashboard", headers=c.headers(csrf=False))
        html = await page.text()
        assert page.status == 200
        assert "held_open" in html
        assert 'data-stream="/api/stream"' in html
        assert '<dd id="granted">2</dd>' in html

    run(tmp_path, body)


def test_the_live_stream_carries_status_changes_and_events_anonymized(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "Wang Fang"})
        resp = await c.client.get("/api/stream", headers=c.headers(csrf=False))
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        first = await _next_sse(resp, "status")
        assert first["doors"] == {"front": "locked"}
        c.backend.status()["doors"]["front"] = "unlocked"
        c.backend.feed.publish(_granted(c, made["id"]))
        got = await _next_sse(resp, "event")
        assert got["type"] == "access.granted"
        assert got["door"] == "front"
        assert len(got["person"]) == 26
        changed = await _next_sse(resp, "status")
        assert changed["doors"] == {"front": "unlocked"}
        raw = json.dumps(got)
        assert made["id"] not in raw
        assert "Wang" not in raw
        c.backend.feed.close()  # the server stopping ends the stream
        assert await asyncio.wait_for(resp.content.read(), 10) is not None
        resp.close()

    run(tmp_path, body)


def test_events_page_filters(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("auditor")
        feed = c.backend.feed
        feed.publish(_granted(c, "a" * 32, door="front"))
        feed.publish(_granted(c, "b" * 32, door="back"))
        feed.publish(ev.DoorForced(site="site-1", gate="gate-1", door="back"))
        status, rows = await c.api("GET", "/api/events")
        assert status == 200
        assert [r["type"] for r in rows] == ["door.forced", "access.granted", "access.granted"]
        _, rows = await c.api("GET", "/api/events?type=access&door=back")
        assert [(r["type"], r["door"]) for r in rows] == [("access.granted", "back")]
        person = rows[0]["person"]
        _, rows = await c.api("GET", f"/api/events?person={person}")
        assert [r["person"] for r in rows] == [person]
        _, rows = await c.api("GET", "/api/events?since=2999-01-01T00:00:00Z")
        assert rows == []
        status, err = await c.api("GET", "/api/events?type=bogus")
        assert status == 400
        assert "type must be one of" in err["error"]
        page = await c.client.get("/events?type=door", headers=c.headers(csrf=False))
        html = await page.text()
        table = html[html.index('<table id="events"') :]
        assert '<td translate="no">door.forced</td>' in table
        assert "access.granted</td>" not in table
        assert 'id="resolve"' not in html  # an auditor is not offered the look-up

    run(tmp_path, body)


def test_an_operator_resolves_a_pseudonym_and_the_look_up_is_audited(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "<script>alert(1)</script>"})
        e = _granted(c, made["id"])
        c.backend.feed.publish(e)
        ts = e.model_dump(mode="json")["ts"]
        form = {"pseudonym": e.person, "ts": ts, "reason": "complaint 42", "csrf": c.csrf}
        page = await c.client.post("/events/resolve", data=form, headers=c.headers(csrf=False))
        html = await page.text()
        assert page.status == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert" not in html
        status, got = await c.api(
            "POST", "/api/events/resolve", {"pseudonym": e.person, "ts": ts, "reason": "x"}
        )
        assert (status, got["found"], got["id"]) == (200, True, made["id"])
        rows = c.backend.db.execute(
            "SELECT actor, subject, details FROM audit WHERE action = 'pseudonym.resolve'"
        ).fetchall()
        assert [(r[0], r[1]) for r in rows] == [("web:operator", made["id"])] * 2
        assert "complaint 42" in rows[0][2]
        # another epoch's pseudonym of the same person names nobody (and is audited too)
        status, got = await c.api(
            "POST",
            "/api/events/resolve",
            {"pseudonym": e.person, "ts": "2020-01-01T00:00:00Z", "reason": "x"},
        )
        assert (status, got["found"]) == (200, False)
        for bad, message in (
            ({"pseudonym": "NOPE", "ts": ts, "reason": "x"}, "pseudonym must be"),
            ({"pseudonym": e.person, "ts": "yesterday", "reason": "x"}, "ts must be"),
            ({"pseudonym": e.person, "ts": ts}, "reason is required"),
        ):
            status, err = await c.api("POST", "/api/events/resolve", bad)
            assert status == 400
            assert message in err["error"]

    run(tmp_path, body)


def test_the_auditor_may_not_resolve_and_a_resolve_needs_the_csrf_token(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        e = _granted(c, "c" * 32)
        data = {"pseudonym": e.person, "ts": "2026-01-01T00:00:00Z", "reason": "x"}
        await c.login("auditor")
        assert (await c.api("POST", "/api/events/resolve", data))[0] == 403
        await c.login("operator")
        resp = await c.client.post("/api/events/resolve", json=data, headers=c.headers(csrf=False))
        assert resp.status == 403
        n = c.backend.db.execute(
            "SELECT count(*) FROM audit WHERE action = 'pseudonym.resolve'"
        ).fetchone()[0]
        assert n == 0

    run(tmp_path, body)


def test_a_burst_of_events_does_not_query_the_counts_per_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream computes the dashboard (today's counts: a query on the database thread)
    at most every STATUS_EVERY_S, however many events come: a burst of 60 events over two
    open streams costs a few count queries, not 120."""
    queries: list[float] = []
    real = events_svc.today_counts

    def counting(db: Any) -> Any:
        queries.append(time.monotonic())
        return real(db)

    monkeypatch.setattr(events_svc, "today_counts", counting)

    async def body(c: Console) -> None:
        await c.login("operator")
        streams = [await c.client.get("/api/stream", headers=c.headers(csrf=False)) for _ in "ab"]
        for resp in streams:
            await _next_sse(resp, "status")
        start, before = time.monotonic(), len(queries)
        for _ in range(60):
            c.backend.feed.publish(_granted(c, None))
        for resp in streams:
            for _ in range(60):
                await _next_sse(resp, "event")
        elapsed = time.monotonic() - start
        during = len(queries) - before
        bound = 2 * (1 + int(elapsed / live_pages.STATUS_EVERY_S))  # per stream: one per period
        assert during <= bound, (during, elapsed)
        c.backend.feed.close()
        for resp in streams:
            resp.close()

    run(tmp_path, body)
