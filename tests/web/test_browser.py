"""The console in a real browser: Playwright drives Debian's chromium (no browser download)
over HTTPS: log in, add a person, record their consent, see them listed. Screenshots go to
pytest's temporary directory only. Skipped, with the reason, without chromium or playwright."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from gateway.config.web import WebConfig
from gateway.web.server import serve
from tests.support.net import free_port
from tests.web.console import PASSWORD, backend_for

CHROMIUM = Path("/usr/bin/chromium")

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


def test_log_in_add_a_person_record_consent_and_see_them_listed(tmp_path: Path) -> None:
    playwright = pytest.importorskip(
        "playwright.async_api", reason="needs the playwright package (pip install playwright)"
    )
    port = free_port()
    backend = backend_for(tmp_path, WebConfig(enabled=True, port=port))
    shots = tmp_path / "screenshots"

    async def browse() -> None:
        server = asyncio.create_task(serve(backend, tmp_path / "state"))
        try:
            await _wait_listening(port)
            async with playwright.async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
                try:
                    ctx = await browser.new_context(ignore_https_errors=True)
                    page = await ctx.new_page()
                    errors: list[str] = []
                    page.on(
                        "console", lambda m: errors.append(m.text) if m.type == "error" else None
                    )
                    page.on("response", lambda r: errors.append(r.url) if r.status == 404 else None)
                    await _scenario(page, f"https://127.0.0.1:{port}", shots)
                    assert errors == []  # no CSP violation, no script error
                finally:
                    await browser.close()
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)

    asyncio.run(browse())
    assert sorted(f.name for f in shots.iterdir()) == ["people.png", "person.png"]


async def _scenario(p: Any, base: str, shots: Path) -> None:
    """``p``: a playwright.async_api.Page."""
    await p.goto(f"{base}/people")
    assert p.url.endswith("/login")
    await p.get_by_label("Account").fill("operator")
    await p.get_by_label("Password").fill(PASSWORD)
    await p.get_by_role("button", name="Log in").click()
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
