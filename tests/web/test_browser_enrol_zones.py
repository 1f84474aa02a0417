"""The enrolment and zones pages in chromium (Playwright): an operator enrols a consenting
person from photos set on the file input, sees each photo's verdict, then saves, and has
two photos taken with the browser's camera judged (chromium's test camera); an admin
draws a zone on the camera preview, sees bad polygons (too few corners, a corner outside,
a zone crossing itself) refused with their message, then saves a good one. Screenshots
go to pytest's temporary directory only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.web.backend import Backend
from tests.privacy.test_enroll import FakePipeline
from tests.web.test_browser import _browse, _log_in
from tests.web.test_enrol import photo
from tests.web.zones_config import CAMERA, zones_config


def test_enrol_from_images(tmp_path: Path) -> None:
    pipeline = FakePipeline()

    async def load() -> FakePipeline:
        return pipeline

    shots = _browse(tmp_path, _enrol_scenario, face_pipeline=load)
    assert sorted(f.name for f in shots.iterdir()) == ["enrol.png"]


async def _enrol_scenario(p: Any, base: str, shots: Path, backend: Backend) -> None:
    files = []
    for name, code in (("good.png", 200), ("noface.png", 0), ("blurred.png", 2)):
        (f := shots.parent / name).write_bytes(photo(code))
        files.append(str(f))
    await _log_in(p, base, "operator")
    await p.goto(f"{base}/people")
    await p.get_by_label("Name", exact=True).fill("Zhao Min")
    await p.get_by_role("button", name="Add", exact=True).click()
    await p.get_by_text("Person added.").wait_for()
    await p.get_by_role("button", name="Record").click()
    await p.get_by_text("Consent answer recorded.").wait_for()
    await p.locator("#add-card input[name=number]").fill("123456")
    await p.locator("#add-card button[type=submit]").click()
    await p.get_by_text("Card added (stored as a keyed hash only).").wait_for()
    await p.get_by_role("link", name="Face enrolment (photos or camera)").click()
    await p.locator("#photos").set_input_files(files)
    await p.get_by_role("button", name="Check the photos").click()
    rows = p.locator("#verdicts tbody tr")
    await p.get_by_text("1 good photo(s)").wait_for()
    assert [await r.inner_text() for r in await rows.all()] == [
        "photo 1\tgood",
        "photo 2\tno face found",
        "photo 3\tblurred: hold still",
    ]
    assert backend.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 0
    await p.get_by_role("button", name="Save templates").click()
    await p.get_by_text("1 template(s) stored (encrypted); no photo kept").wait_for()
    assert backend.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 1
    await p.screenshot(path=str(shots / "enrol.png"))
    await p.get_by_role("button", name="Start the camera").click()
    take = p.get_by_role("button", name="Take a photo")
    await take.and_(p.locator(":enabled")).wait_for()
    video = p.locator("#camera-view")
    for _ in range(100):  # wait_for_function would eval a string: the CSP forbids it
        if await video.evaluate("v => v.videoWidth") > 0:
            break
        await p.wait_for_timeout(100)
    await take.click()
    await take.click()
    await p.get_by_text("2 photos taken").wait_for()
    await p.locator("#photos").set_input_files([])
    await p.get_by_role("button", name="Check the photos").click()
    await p.locator("#verdicts tbody tr", has_text="photo 2").wait_for()
    assert await rows.count() == 2  # the camera's two photos, judged (nothing stored)
    assert backend.db.execute("SELECT count(*) FROM templates").fetchone()[0] == 1


def test_draw_a_zone_and_see_a_bad_polygon_refused(tmp_path: Path) -> None:
    cfg = zones_config(tmp_path)
    shots = _browse(tmp_path, _zones_scenario, refused=3, config_path=cfg)
    assert sorted(f.name for f in shots.iterdir()) == ["zones.png"]
    assert "kiosk corner" in cfg.read_text(encoding="utf-8")


async def _zones_scenario(p: Any, base: str, shots: Path, _: Backend) -> None:
    await _log_in(p, base, "admin")
    await p.get_by_role("link", name="Zones").click()
    await p.get_by_role("link", name=CAMERA).click()
    await p.wait_for_url(f"{base}/zones/{CAMERA}")
    assert await p.locator("#zones-preview").evaluate("i => i.naturalWidth") == 320
    canvas = p.locator("#zones-canvas")
    await p.get_by_label("Name of the zone being drawn").fill("too thin")
    for x, y in ((20, 20), (120, 40)):
        await canvas.click(position={"x": x, "y": y})
    await p.get_by_role("button", name="Finish zone").click()
    await p.get_by_role("button", name="Save zones").click()
    refused = p.get_by_role("alert").filter(has_text="Not saved")
    await refused.wait_for()
    assert "List should have at least 3 items" in await refused.inner_text()
    await p.get_by_role("button", name="Remove last zone").click()
    await p.get_by_label("Name of the zone being drawn").fill("typed")
    for corner in ("0.1, 0.1", "1.5, 0.1", "0.2, 0.3"):  # by keyboard; one corner outside
        await p.get_by_label("Or type a corner").fill(corner)
        await p.get_by_label("Or type a corner").press("Tab")
        await p.keyboard.press("Enter")
    await p.get_by_role("button", name="Finish zone").click()
    await p.get_by_role("button", name="Save zones").click()
    await p.get_by_role("alert").filter(has_text="outside 0..1").wait_for()
    await p.get_by_role("button", name="Remove last zone").click()
    await p.get_by_label("Name of the zone being drawn").fill("crossed")
    for x, y in ((20, 20), (120, 100), (120, 20), (20, 100)):  # a bow tie
        await canvas.click(position={"x": x, "y": y})
    await p.get_by_role("button", name="Finish zone").click()
    await p.get_by_role("button", name="Save zones").click()
    crossed = f"zone 'crossed' of camera '{CAMERA}' crosses itself"
    await p.get_by_role("alert").filter(has_text=crossed).wait_for()
    await p.get_by_role("button", name="Remove last zone").click()
    await p.get_by_label("Name of the zone being drawn").fill("kiosk corner")
    for x, y in ((20, 20), (120, 20), (120, 100)):
        await canvas.click(position={"x": x, "y": y})
    await p.get_by_role("button", name="Finish zone").click()
    await p.get_by_role("button", name="Save zones").click()
    await p.get_by_text("Saved: 2 zone(s).").wait_for()
    await p.screenshot(path=str(shots / "zones.png"))
