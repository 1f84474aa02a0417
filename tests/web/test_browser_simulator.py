"""The acceptance's live dashboard in a real browser against the real stack: the daemon
(its own process, its web console on), the hardware simulator and mosquitto. A resident
walks up to the simulator's camera; chromium, showing the dashboard, sees the face grant
appear live; the operator withdraws their consent on the person's page (confirmation,
receipt) and the face path refuses them on their next walk-up, live on the dashboard too.
Screenshots go to pytest's temporary directory only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.demo import console as web_console
from gateway.demo.run import PREFIX, DemoStack
from hw_sim.runner import format_report, run_scenarios_async
from tests.mosquitto import Mosquitto
from tests.support.demo import play_one

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.models,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


def test_a_resident_walking_up_appears_live_on_the_dashboard(tmp_path: Path) -> None:
    playwright = pytest.importorskip(
        "playwright.async_api", reason="needs the playwright package (pip install playwright)"
    )
    with Mosquitto() as mosq:
        stack = DemoStack(
            mqtt_url=f"mqtt://127.0.0.1:{mosq.port}",
            broker_control=None,
            workdir=tmp_path,
            print_events=False,
        )
        stack.start_sim()
        try:
            stack.load_pipeline()
            stack.console = web_console.plan()
            assert stack.console is not None
            stack.write_config()
            (tmp_path / "screenshots").mkdir()
            asyncio.run(_run(stack, playwright, tmp_path / "screenshots"))
        finally:
            asyncio.run(stack.stop_daemon())
            stack.stop_sim()
    shots = sorted(f.name for f in (tmp_path / "screenshots").iterdir())
    assert shots == [
        "card-presented.png",
        "dashboard-grant.png",
        "dashboard-refused.png",
        "withdrawn.png",
    ]


REFUSED = """name: face-refused-after-web-withdrawal
description: The resident whose consent was withdrawn on the web console walks up again.
requires: [face, osdp]
steps:
  - at: 0.5
    action: person-approaches
    args: {camera: main-cam, person: resident1, variant: live, linger_s: 4}
duration: 8
expect:
  - event: access.denied
    fields: {door: main-gate, reason: [unknown_face, no_consent]}
    within: [0.5, 8.0]
  - {absent: access.granted, fields: {method: face}, within: [0.0, 8.0]}
"""


async def _run(stack: DemoStack, playwright: Any, shots: Path) -> None:
    console = stack.console
    assert console is not None
    await stack.start_daemon()
    db = stack._db()
    try:
        web_console.add_admin(db, console)
    finally:
        db.close()
    await web_console.wait_up(console, stack.state_dir)
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await (await browser.new_context(ignore_https_errors=True)).new_page()
            await page.goto(console.url)
            await page.get_by_label("Account").fill(web_console.ACCOUNT)
            await page.get_by_label("Password").fill(console.password)
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_url(f"{console.url}dashboard")
            await page.get_by_text("Live updates: on").wait_for()
            assert "main-gate" in await page.locator("#doors").inner_text()
            await stack.settle()
            result = await play_one(stack, "resident-by-face")
            assert result.passed, format_report([result]) + "\n" + stack.daemon_log_tail(40)
            row = page.locator("#live-events tbody tr", has_text="access.granted")
            await row.first.wait_for(timeout=10_000)
            assert "face" in await row.first.inner_text()
            await page.screenshot(path=str(shots / "dashboard-grant.png"), full_page=True)
            await _present_a_card(stack, page, shots)
            await _withdraw_and_refuse(stack, page, shots)
        finally:
            await browser.close()


async def _present_a_card(stack: DemoStack, page: Any, shots: Path) -> None:
    """Add a person, give them the card presented at the simulator's entry reader and the
    PIN typed on its keypad, and see each open the gate, live."""
    console = stack.console
    assert console is not None
    await page.goto(f"{console.url}people")
    await page.get_by_label("Name", exact=True).fill("Card Holder")
    await page.get_by_role("button", name="Add", exact=True).click()
    await page.get_by_text("Person added.").wait_for()
    await page.get_by_label("Add a card by presenting it at").select_option("entry")

    async def present_soon() -> None:
        await asyncio.sleep(2.0)  # the console waits for the card by now
        await asyncio.to_thread(stack.sim.present_card, "entry", 55_555, 10)

    presenting = asyncio.create_task(present_soon())
    await page.get_by_role("button", name="Wait for the card").click()
    await presenting
    await page.get_by_text("Card added").wait_for(timeout=20_000)
    await page.screenshot(path=str(shots / "card-presented.png"), full_page=True)

    async def type_soon() -> None:
        await asyncio.sleep(2.0)
        await asyncio.to_thread(stack.sim.type_pin, "entry", "48151")

    typing = asyncio.create_task(type_soon())
    await page.get_by_label("Set a PIN typed by the resident on the keypad of").select_option(
        "entry"
    )
    await page.get_by_role("button", name="Wait for the PIN").click()
    await typing
    await page.get_by_text("PIN set (typed on the keypad").wait_for(timeout=20_000)
    assert "48151" not in await page.content()
    await page.goto(f"{console.url}dashboard")
    await page.get_by_text("Live updates: on").wait_for()
    await stack.settle()
    await asyncio.to_thread(stack.sim.present_card, "entry", 55_555, 10)
    row = page.locator("#live-events tbody tr", has_text="access.granted")
    await row.filter(has_text="card").first.wait_for(timeout=10_000)
    await stack.settle()
    await asyncio.to_thread(stack.sim.type_pin, "entry", "48151")
    await row.filter(has_text="pin").first.wait_for(timeout=10_000)


async def _withdraw_and_refuse(stack: DemoStack, page: Any, shots: Path) -> None:
    """Withdraw resident1's consent on their page; their next walk-up is refused, live."""
    console = stack.console
    assert console is not None
    pid = stack._people[stack.sim.corpus.resolve("resident1")]
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))  # "Withdraw consent …?"
    await page.goto(f"{console.url}people/{pid}")
    await page.get_by_label("Withdraw consent and erase the face data now").check()
    await page.get_by_role("button", name="Withdraw").click()
    await page.locator("#receipt").wait_for()
    assert "face template(s) erased" in await page.locator("#receipt").inner_text()
    assert "not allowed" in await page.locator("#face-state").inner_text()
    await page.screenshot(path=str(shots / "withdrawn.png"), full_page=True)
    await page.goto(f"{console.url}dashboard")
    await page.get_by_text("Live updates: on").wait_for()
    scenario = stack.workdir / "face-refused.yaml"
    await asyncio.to_thread(scenario.write_text, REFUSED)
    await stack.settle()
    (result,) = await run_scenarios_async(
        [scenario], stack.sim, stack.mqtt_url, PREFIX, harness=stack.harness
    )
    assert result.passed, format_report([result]) + "\n" + stack.daemon_log_tail(40)
    row = page.locator("#live-events tbody tr", has_text="access.denied")
    await row.first.wait_for(timeout=10_000)
    text = await row.first.inner_text()
    assert "unknown_face" in text or "no_consent" in text
    await page.screenshot(path=str(shots / "dashboard-refused.png"), full_page=True)
