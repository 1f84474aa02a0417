"""The dashboard's roster section: the view model (unit), and an office with two gates, one
behind with an unacknowledged revocation past the alert time, through the JSON API (as
the OpenAPI document describes it), the page (in Chinese), the live stream and chromium
(the row follows the gate catching up); a gate's and an instance without roster say what
applies."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.privacy.roster_crypto import (
    FORMAT,
    ack_public_b64,
    canonical,
    gate_ack_private,
    gate_private,
    public_b64,
    sign_manifest,
)
from gateway.services import credentials as creds_svc
from gateway.services import people as people_svc
from gateway.services import roster_office
from gateway.services.roster_publish import GateStatus, PendingErasure, RosterStatus
from gateway.web.backend import Backend, RosterRole
from gateway.web.openapi import ROSTER
from gateway.web.roster_view import gate_view, office_view
from tests.web.console import Console, console
from tests.web.test_browser import CHROMIUM, _browse, _log_in
from tests.web.test_i18n import ZH, _english_words
from tests.web.test_live import _next_sse

SITE = "green-court"
OFFICE = RosterRole("office", SITE, "office", alert_after_s=60.0)


def test_the_view_model_marks_lag_and_overdue_erasures() -> None:
    now = 10_000.0
    status = RosterStatus(
        gates=[
            GateStatus("north", 7, 7, 0, None, now - 5, None),
            GateStatus("south", 7, 4, 3, now - 90, now - 300, "chunk 5 missing"),
        ],
        changes=[],
        alerts=1,
    )
    pending = [
        PendingErasure("south", 11, 5, now - 90, True),  # past the 60 s alert time
        PendingErasure("south", 12, 7, now - 20, False),
        PendingErasure("north", 12, 4, now - 20, False),  # acknowledged since: not shown
    ]
    v = office_view(status, pending, alert_after_s=60.0, now=now)
    north, south = v["gates"]
    assert (north["applied"], north["behind"], north["behind_for_s"]) == (7, 0, None)
    assert (north["pending"], north["behind_since"], north["last_ack"]) == ([], None, now - 5)
    assert (south["version"], south["applied"], south["behind"]) == (7, 4, 3)
    assert (south["behind_for_s"], south["error"], south["overdue"]) == (90, "chunk 5 missing", 1)
    assert [(p["change"], p["age_s"], p["overdue"]) for p in south["pending"]] == [
        (11, 90, True),
        (12, 20, False),
    ]
    assert (v["behind"], v["pending"], v["overdue"], v["alerts"]) == (1, 2, 1, 1)
    assert gate_view("north", 7, now) == {
        "role": "gate",
        "gate": "north",
        "applied": 7,
        "applied_at": now,
    }


#: Each gate's roster root (its X25519 key and its ack-signing key derive from it).
ROOTS = {gate: os.urandom(32) for gate in ("north", "south")}


def _ack(db: Any, gate: str, now: float) -> None:
    """The gate's signed acknowledgement of the office's head for it."""
    version, hd = roster_office.head(db, SITE, gate)
    doc = {
        "format": FORMAT,
        "site": SITE,
        "gate": gate,
        "version": version,
        "head": hd,
        "applied_at": now,
    }
    signed = canonical(sign_manifest(doc, gate_ack_private(ROOTS[gate])))
    assert roster_office.record_ack(db, SITE, gate, signed, now)


def _office_with_two_gates(backend: Backend, then: float) -> str:
    """North and south; a person's card reaches both, its revocation only north."""
    db = backend.db
    for gate in ("north", "south"):
        root = ROOTS[gate]
        x_key, ack_key = public_b64(gate_private(root)), ack_public_b64(gate_ack_private(root))
        roster_office.add_gate(db, gate, x_key, actor="t", ack_key=ack_key)
    deps = roster_office.OfficeDeps(
        db, backend.vault, os.urandom(32), os.urandom(32), SITE, clock=lambda: then
    )
    pid = people_svc.add_person(db, people_svc.NewPerson("Li Wei", unit="3-402"), actor="t")
    creds = backend.credential_deps()
    creds_svc.add_card(creds, pid, (10, 4242), actor="t", channel="cli")
    assert roster_office.reconcile(deps) == 2
    _ack(db, "north", then)
    _ack(db, "south", then)
    creds_svc.revoke_card(creds, pid, actor="t", channel="cli", card=(10, 4242))
    assert roster_office.reconcile(deps) == 2
    _ack(db, "north", then + 1)
    return pid


def _check(schema: dict[str, Any], value: Any, where: str = "roster") -> None:
    """``value`` has exactly the properties the document requires (recursively)."""
    if "oneOf" in schema:
        branch = [s for s in schema["oneOf"] if s["properties"]["role"]["const"] == value["role"]]
        assert len(branch) == 1, where
        schema = branch[0]
    if schema.get("type") == "object":
        assert set(value) == set(schema["required"]), where
        for key, sub in schema["properties"].items():
            _check(sub, value[key], f"{where}.{key}")
    elif schema.get("type") == "array":
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{where}[{i}]")


def test_an_office_sees_each_gate_applied_behind_and_overdue(tmp_path: Path) -> None:
    then = time.time() - 600

    async def body(c: Console) -> None:
        pid = _office_with_two_gates(c.backend, then)
        assert await c.login("auditor") == 303
        status, r = await c.api("GET", "/api/roster")
        assert status == 200
        _check(ROSTER, r)
        north, south = r["gates"]
        assert (north["gate"], north["version"], north["applied"], north["behind"]) == (
            "north",
            2,
            2,
            0,
        )
        assert (north["pending"], north["behind_for_s"]) == ([], None)
        assert (south["gate"], south["version"], south["applied"], south["behind"]) == (
            "south",
            2,
            1,
            1,
        )
        assert 590 <= south["behind_for_s"] <= 700
        assert south["last_ack"] == then
        [pending] = south["pending"]
        assert (pending["version"], pending["overdue"]) == (2, True)
        assert 590 <= pending["age_s"] <= 700
        assert (r["behind"], r["pending"], r["overdue"]) == (1, 1, 1)
        assert pid not in json.dumps(r)
        assert "Li Wei" not in json.dumps(r)
        _, d = await c.api("GET", "/api/dashboard")
        assert [g["behind"] for g in d["roster"]["gates"]] == [0, 1]

        resp = await c.client.get("/dashboard", headers=c.headers(csrf=False) | ZH)
        html = await resp.text()
        assert resp.status == 200
        assert "名册同步" in html
        assert '<tr data-key="south" class="overdue">' in html
        assert "(已超时)" in html
        lang, left = _english_words(html)
        assert (lang, left) == ("zh-CN", [])

        stream = await c.client.get("/api/stream", headers=c.headers(csrf=False))
        live = await _next_sse(stream, "status")
        assert [g["behind"] for g in live["roster"]["gates"]] == [0, 1]
        stream.close()

    async def main() -> None:
        async with console(tmp_path, roster=OFFICE) as c:
            await body(c)

    asyncio.run(main())


def test_a_gate_shows_the_version_it_applied_and_off_shows_nothing(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        c.backend.db.execute(
            "INSERT INTO roster_state (id, version, head, applied_at) VALUES (1, 42, 'h', ?)",
            [1_700_000_000.0],
        )
        assert await c.login("auditor") == 303
        status, r = await c.api("GET", "/api/roster")
        assert (status, r) == (
            200,
            {"role": "gate", "gate": "north", "applied": 42, "applied_at": 1_700_000_000.0},
        )
        _check(ROSTER, r)
        html = await (await c.client.get("/dashboard", headers=c.headers(csrf=False))).text()
        assert "This gate follows the office's roster." in html
        assert '<span id="roster-applied">42</span>' in html

    async def main() -> None:
        async with console(tmp_path / "gate", roster=RosterRole("gate", SITE, "north")) as c:
            await body(c)
        async with console(tmp_path / "off") as c:
            assert await c.login("auditor") == 303
            status, r = await c.api("GET", "/api/roster")
            assert (status, r) == (200, {"role": "off"})
            html = await (await c.client.get("/dashboard", headers=c.headers(csrf=False))).text()
            assert 'id="roster"' not in html

    (tmp_path / "gate").mkdir()
    (tmp_path / "off").mkdir()
    asyncio.run(main())


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_the_dashboard_follows_a_gate_catching_up_live_in_chromium(tmp_path: Path) -> None:
    async def scenario(p: Any, base: str, shots: Path, backend: Backend) -> None:
        _office_with_two_gates(backend, time.time() - 600)
        await _log_in(p, base, "auditor")
        south = p.locator('#roster-gates tr[data-key="south"]')
        assert await south.get_attribute("class") == "overdue"
        assert "(overdue)" in await south.inner_text()
        _ack(backend.db, "south", time.time())  # south applies the revocation
        await p.locator('#roster-gates tr[data-key="south"]:not(.overdue)').wait_for()
        cells = await south.locator("td").all_inner_texts()
        assert cells[:5] == ["south", "2", "2", "0", "-"]
        assert cells[6] == "-"
        await p.screenshot(path=str(shots / "roster.png"))

    shots = _browse(tmp_path, scenario, roster=OFFICE)
    assert sorted(f.name for f in shots.iterdir()) == ["roster.png"]
