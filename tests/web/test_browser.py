"""The console in a real browser: Playwright drives Debian's chromium (no browser download)
over HTTPS: log in, add a person, record their consent, see them listed; the dashboard and
the events page updated live; a pseudonym resolved. No script error or CSP violation.
Screenshots go to pytest's temporary directory only. Skipped, with the reason, without
chromium or playwright."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config.web import WebConfig
from gateway.web.backend import Backend
from gateway.web.server import serve
from tests.support.net import free_port
from tests.web.console import PASSWORD, backend_for

CHROMIUM = Path("/usr/bin/chromium")
FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
"""Chromium's test camera (a moving pattern), allowed without a prompt."""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)


async def _wait_listening(port: int) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the console did not start listening")


Scenario = Callable[[Any, str, Path, Backend], Awaitable[None]]


def _browse(tmp_path: Path, scenario: Scenario, refused: int = 0, **changes: Any) -> Path:
    """Serve a console over a fresh database (``changes``: Backend fields to set); run
    ``scenario(page, base, shots, backend)`` in chromium (``refused``: how many 400
    answers the scenario expects); the screenshots' folder."""
    playwright = pytest.importorskip(
        "playwright.async_api", reason="needs the playwright package (pip install playwright)"
    )
    port = free_port()
    backend = dataclasses.replace(
        backend_for(tmp_path, WebConfig(enabled=True, port=port)), **changes
    )
    shots = tmp_path / "screenshots"
    shots.mkdir()

    async def browse() -> None:
        server = asyncio.create_task(serve(backend, tmp_path / "state"))
        try:
            await _wait_listening(port)
            async with playwright.async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=FAKE_CAMERA)
                try:
                    ctx = await browser.new_context(ignore_https_errors=True)
                    page = await ctx.new_page()
                    errors: list[str] = []
                    page.on(
                        "console", lambda m: errors.append(m.text) if m.type == "error" else None
                    )
                    page.on("response", lambda r: errors.append(r.url) if r.status == 404 else None)
                    await scenario(page, f"https://127.0.0.1:{port}", shots, backend)
                    bad = "Failed to load resource: the server responded with a status of 400"
                    assert [e for e in errors if not e.startswith(bad)] == []  # no CSP, no JS error
                    assert len(errors) == refused
                finally:
                    await browser.close()
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)

    asyncio.run(browse())
    return shots


async def _log_in(p: Any, base: str, account: str) -> None:
    """``p``: a playwright.async_api.Page."""
    await p.goto(f"{base}/people")
    assert p.url.endswith("/login")
    await p.get_by_label("Account").fill(account)
    await p.get_by_label("Password").fill(PASSWORD)
    await p.get_by_role("button", name="Log in").click()
    await p.wait_for_url(f"{base}/dashboard")


def test_log_in_add_a_person_record_consent_and_see_them_listed(tmp_path: Path) -> None:
    shots = _browse(tmp_path, _people_scenario)
    assert sorted(f.name for f in shots.iterdir()) == ["people.png", "person.png"]


async def _people_scenario(p: Any, base: str, shots: Path, _: Backend) -> None:
    await _log_in(p, base, "operator")
    await p.get_by_role("link", name="People").click()
    await p.wait_for_url(f"{base}/people")
    await p.get_by_label("Name", exact=True).fill("Liu Yang <script>")
    await p.get_by_label("Unit", exact=True).fill("5-302")
    await p.get_by_role("button", name="Add", exact=True).click()
    await p.get_by_text("Person added.").wait_for()
    await p.get_by_label("Given by").select_option("paper")
    await p.get_by_role("button", name="Record").click()
    await p.get_by_text("Consent answer recorded.").wait_for()
    consents = p.locator("#consents tbody")
    assert "granted" in await consents.inner_text()
    await p.screenshot(path=str(shots / "person.png"))
    await p.get_by_role("link", name="People").click()
    row = p.locator("#people tbody tr", has_text="Liu Yang <script>")
    await row.wait_for()
    assert "granted" in await row.inner_text()
    assert "5-302" in await row.inner_text()
    await p.screenshot(path=str(shots / "people.png"))


def test_a_grant_and_a_door_appear_live_on_the_dashboard(tmp_path: Path) -> None:
    shots = _browse(tmp_path, _dashboard_scenario)
    assert sorted(f.name for f in shots.iterdir()) == ["dashboard.png"]


async def _dashboard_scenario(p: Any, base: str, shots: Path, backend: Backend) -> None:
    from gateway.mqtt import events as ev

    await _log_in(p, base, "auditor")
    await p.get_by_text("Live updates: on").wait_for()
    doors = p.locator("#doors tbody")
    assert "locked" in await doors.inner_text()
    backend.status()["doors"]["front"] = "unlocked"
    backend.feed.publish(
        ev.AccessGranted(
            site="site-1",
            gate="gate-1",
            door="front",
            method=ev.AccessMethod.FACE,
            person="a" * 26,
        )
    )
    row = p.locator("#live-events tbody tr", has_text="access.granted")
    await row.wait_for(timeout=10_000)
    assert "face" in await row.inner_text()
    await p.locator("#doors tbody td", has_text="unlocked").wait_for(timeout=10_000)
    await p.screenshot(path=str(shots / "dashboard.png"))


def test_events_live_and_an_operator_resolves_a_pseudonym(tmp_path: Path) -> None:
    shots = _browse(tmp_path, _events_scenario)
    assert sorted(f.name for f in shots.iterdir()) == ["events.png"]


async def _events_scenario(p: Any, base: str, shots: Path, backend: Backend) -> None:
    from gateway.mqtt import events as ev
    from gateway.mqtt.pseudonym import Pseudonymizer
    from gateway.services.people import NewPerson, add_person

    pid = add_person(backend.db, NewPerson("Zhou Min", unit="7-701"), actor="test")
    assert backend.pseudonym_key is not None
    person = Pseudonymizer(backend.pseudonym_key, backend.pseudonym_epoch_s)(pid)
    await _log_in(p, base, "operator")
    await p.get_by_role("link", name="Events", exact=True).click()
    await p.get_by_text("Live updates: on").wait_for()
    backend.feed.publish(
        ev.AccessDenied(
            site="site-1",
            gate="gate-1",
            door="front",
            method=ev.AccessMethod.CARD,
            reason=ev.DenyReason.OUTSIDE_SCHEDULE,
            person=person,
        )
    )
    await p.locator("#events code.pseudonym", has_text=person or "").click()
    assert await p.get_by_label("Pseudonym to resolve").input_value() == person
    await p.get_by_label("Reason (audited)").fill("resident asked why the gate refused")
    await p.get_by_role("button", name="Resolve").click()
    await p.locator("#resolved", has_text="Zhou Min").wait_for()
    await p.screenshot(path=str(shots / "events.png"))


def test_the_admin_makes_an_api_token_on_the_system_page(tmp_path: Path) -> None:
    shots = _browse(tmp_path, _system_scenario)
    assert sorted(f.name for f in shots.iterdir()) == ["system.png"]


async def _system_scenario(p: Any, base: str, shots: Path, _: Backend) -> None:
    await _log_in(p, base, "admin")
    await p.get_by_role("link", name="System").click()
    await p.get_by_label("Token name (a-z 0-9 _ . -)").fill("pms")
    await p.get_by_label("Role").select_option("operator")
    await p.get_by_role("button", name="Make a token").click()
    shown = p.locator("#new-token code")
    assert (await shown.inner_text()).startswith("gwt_")
    assert "pms" in await p.locator("#tokens").inner_text()
    await p.screenshot(path=str(shots / "system.png"))
    assert await p.title() == "System · access gateway"
