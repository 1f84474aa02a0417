"""Editing a person (name, unit, role, access group) through the credential service, the
guardian's answer for an under-14, and the one-step withdrawal with its receipt."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from tests.web.console import Console, console


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        async with console(tmp_path) as c:
            await body(c)

    asyncio.run(main())


def _audit(c: Console, action: str) -> list[tuple[str, str, str]]:
    rows = c.backend.db.execute(
        "SELECT actor, subject, details FROM audit WHERE action = ?", [action]
    ).fetchall()
    return [(str(a), str(s), str(d)) for a, s, d in rows]


def test_edit_name_unit_role_group_audited_without_the_name(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "Zhao Lei", "unit": "1-101"})
        pid = made["id"]
        status, got = await c.api(
            "POST",
            f"/api/people/{pid}/edit",
            {"name": "Zhao Lei Jr", "unit": "2-202", "role": "staff", "group": "staff"},
        )
        assert status == 200
        assert (got["name"], got["unit"], got["role"], got["group"]) == (
            "Zhao Lei Jr",
            "2-202",
            "staff",
            "staff",
        )
        [(actor, subject, details)] = _audit(c, "person.edit")
        assert (actor, subject) == ("web:operator", pid)
        assert "display_name" in details
        assert "Zhao" not in details
        # an absent field is kept; nothing changed: no audit row
        assert (await c.api("POST", f"/api/people/{pid}/edit", {"unit": "2-202"}))[0] == 200
        assert len(_audit(c, "person.edit")) == 1
        for bad, message in (
            ({"role": "king"}, "role must be one of"),
            ({"group": " "}, "access group must not be empty"),
            ({"name": "x" * 200}, "at most 128"),
            ({"name": "a\u0000b"}, "control"),
        ):
            status, err = await c.api("POST", f"/api/people/{pid}/edit", bad)
            assert status == 400, bad
            assert message in err["error"]
        assert (await c.api("POST", f"/api/people/{'0' * 32}/edit", {"unit": "x"}))[0] == 404
        # the page's form: post/redirect/get with the message, the values shown escaped
        form = {
            "csrf": c.csrf,
            "name": "<script>x</script>",
            "unit": "",
            "role": "resident",
            "group": "residents",
        }
        resp = await c.client.post(
            f"/people/{pid}/edit", data=form, headers=c.headers(csrf=False), allow_redirects=False
        )
        assert resp.headers["Location"] == f"/people/{pid}?msg=edited"
        page = await (await c.client.get(resp.headers["Location"], headers=c.headers())).text()
        assert "Details saved." in page
        assert "<script>x" not in page
        assert "&lt;script&gt;x&lt;/script&gt;" in page

    run(tmp_path, body)


def test_the_auditor_cannot_edit_and_an_edit_needs_the_csrf_token(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "Sun Li"})
        path = f"/api/people/{made['id']}/edit"
        resp = await c.client.post(path, json={"unit": "9"}, headers=c.headers(csrf=False))
        assert resp.status == 403
        await c.login("auditor")
        assert (await c.api("POST", path, {"unit": "9"}))[0] == 403
        assert _audit(c, "person.edit") == []

    run(tmp_path, body)


def test_the_guardian_answers_for_an_under_14_in_person(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        _, mum = await c.api("POST", "/api/people", {"name": "Mother Li", "unit": "3-303"})
        _, other = await c.api("POST", "/api/people", {"name": "Neighbour", "unit": "4-404"})
        _, kid = await c.api(
            "POST",
            "/api/people",
            {"name": "Li Xiaoming", "unit": "3-303", "minor": True, "guardian": mum["id"]},
        )
        # the page names the guardian on record and asks for them in person
        page = await (await c.client.get(f"/people/{kid['id']}", headers=c.headers())).text()
        assert "Under 14: the guardian answers" in page
        assert "Mother Li" in page
        assert 'name="guardian_present"' in page
        grant = {"decision": "grant", "method": "paper"}
        status, err = await c.api("POST", f"/api/people/{kid['id']}/consent", grant)
        assert status == 400  # no guardian named
        status, err = await c.api(
            "POST", f"/api/people/{kid['id']}/consent", grant | {"guardian": mum["id"]}
        )
        assert status == 400
        assert "guardian_present" in err["error"]
        status, err = await c.api(
            "POST",
            f"/api/people/{kid['id']}/consent",
            grant | {"guardian": other["id"], "guardian_present": True},
        )
        assert status == 400
        assert "guardian on record" in err["error"]
        status, _ = await c.api(
            "POST",
            f"/api/people/{kid['id']}/consent",
            grant | {"guardian": mum["id"], "guardian_present": True},
        )
        assert status == 200
        _, shown = await c.api("GET", f"/api/people/{kid['id']}")
        assert shown["face_allowed"] is True
        assert shown["guardian_person"]["name"] == "Mother Li"

    run(tmp_path, body)


def test_withdrawal_in_one_step_with_confirmation_and_a_receipt(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        await c.login("operator")
        _, made = await c.api("POST", "/api/people", {"name": "Qian Wei"})
        pid = made["id"]
        await c.api("POST", f"/api/people/{pid}/consent", {"decision": "grant"})
        h = c.headers(csrf=False)
        page = await (await c.client.get(f"/people/{pid}", headers=h)).text()
        assert 'data-confirm="Withdraw consent' in page  # the browser asks before it goes
        resp = await c.client.post(f"/people/{pid}/withdraw", data={"csrf": c.csrf}, headers=h)
        assert resp.status == 400  # not confirmed: nothing done
        assert "confirm the withdrawal" in await resp.text()
        resp = await c.client.post(
            f"/people/{pid}/withdraw", data={"csrf": c.csrf, "confirm": "on"}, headers=h
        )
        html = await resp.text()
        assert resp.status == 200
        m = re.search(r"Receipt <code>([0-9a-f]{32})</code>", html)
        assert m is not None
        row = c.backend.db.execute(
            "SELECT person_id, channel FROM withdrawal_receipts WHERE id = ?", [m.group(1)]
        ).fetchone()
        assert tuple(row) == (pid, "web")
        _, shown = await c.api("GET", f"/api/people/{pid}")
        assert shown["face_allowed"] is False

    run(tmp_path, body)
