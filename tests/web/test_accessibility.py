"""Accessibility checks on every main page (both languages): every form control has a
label (``<label for>``, a wrapping ``<label>`` or ``aria-label``), the page has a skip link
to ``<main id="main">`` and a language, and the stylesheet's colour pairs meet WCAG 2.x AA
contrast (4.5:1 for text) with a visible focus outline."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from gateway.web.app import STATIC
from tests.privacy.test_enroll import FakePipeline
from tests.web.console import Console, console
from tests.web.zones_config import CAMERA, zones_config

CONTROLS = frozenset({"input", "select", "textarea"})


def run(tmp_path: Path, body: Any, **changes: Any) -> None:
    async def main() -> None:
        async with console(tmp_path, **changes) as c:
            await body(c)

    asyncio.run(main())


class _Controls(HTMLParser):
    """Form controls and whether each has a label."""

    def __init__(self) -> None:
        super().__init__()
        self.label_for: set[str] = set()
        self.in_label = 0
        self.controls: list[tuple[str, str, bool]] = []  # (tag, id or name, wrapped/aria)
        self.ids: set[str] = set()
        self.skip_to = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "a" and "skip" in (a.get("class") or "") and not self.skip_to:
            self.skip_to = str(a.get("href"))
        if tag == "label":
            self.in_label += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        if tag in CONTROLS and a.get("type") not in ("hidden", "submit"):
            named = bool(a.get("aria-label") or a.get("aria-labelledby"))
            self.controls.append(
                (tag, str(a.get("id") or a.get("name")), named or self.in_label > 0)
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self.in_label:
            self.in_label -= 1

    def unlabelled(self) -> list[str]:
        return [f"{t}#{i}" for t, i, ok in self.controls if not ok and i not in self.label_for]


def test_every_control_has_a_label_and_every_page_a_skip_link(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        page = await (await c.client.get("/login")).text()
        assert await c.login("admin") == 303
        h = c.headers(csrf=False)
        pid = ""
        for form in (
            {"name": "Ann", "unit": "3-101"},
            {"name": "Bo", "unit": "3-101", "minor": "on", "guardian": "<Ann>"},
        ):
            data = {k: v.replace("<Ann>", pid) for k, v in form.items()} | {"csrf": c.csrf}
            resp = await c.client.post("/people", data=data, headers=h, allow_redirects=False)
            pid = resp.headers["Location"].split("/people/", 1)[1].split("?", 1)[0]
        pages = {"/login": page}
        for path in ("/dashboard", "/events", "/people", f"/people/{pid}", "/notice"):
            pages[path] = await (await c.client.get(path, headers=h)).text()
        for path in ("/compliance", "/system", "/account", f"/people/{pid}/enrol"):
            pages[path] = await (await c.client.get(path, headers=h)).text()
        for lang in ("en", "zh"):  # the zones pages: the list and one camera's editor
            for path in ("/zones", f"/zones/{CAMERA}"):
                got = await c.client.get(path, headers=h | {"Accept-Language": lang})
                pages[f"{path} {lang}"] = await got.text()
        made = await c.client.post("/account/totp", data={"csrf": c.csrf}, headers=h)
        pages["/account (set-up)"] = await made.text()
        for lang in ("en", "zh"):
            zh = {"Accept-Language": lang}
            pages[f"/people {lang}"] = await (await c.client.get("/people", headers=h | zh)).text()
        assert 'id="photos"' in pages[f"/people/{pid}/enrol"]  # the form, not a refusal
        assert 'id="zones-canvas"' in pages[f"/zones/{CAMERA} zh"]
        counted = 0
        for path, html in pages.items():
            p = _Controls()
            p.feed(html)
            assert p.unlabelled() == [], path
            assert p.skip_to == "#main", path
            assert "main" in p.ids, path
            assert re.search(r'<html lang="(en|zh-CN)">', html), path
            counted += len(p.controls)
        assert counted > 40  # the walk saw the forms

    run(tmp_path, body, config_path=zones_config(tmp_path), face_pipeline=_pipeline)


async def _pipeline() -> FakePipeline:
    return FakePipeline()


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _full(c: str) -> str:
    return c if len(c) == 7 else "#" + "".join(ch * 2 for ch in c[1:])


def _background(css: str, selector: str) -> str:
    m = re.search(selector + r" \{[^}]*background: (#[0-9a-fA-F]{3,6})", css)
    assert m is not None, selector
    return _full(m.group(1))


def test_the_stylesheet_colours_meet_aa_contrast_and_focus_is_visible() -> None:
    css = (STATIC / "console.css").read_text()
    var = {k: _full(v) for k, v in re.findall(r"--(\w+):\s*(#[0-9a-fA-F]{3,6})", css)}
    header, message = _background(css, "header"), _background(css, r"\.message")
    pairs = {
        "text": (var["fg"], var["bg"]),
        "links": (var["accent"], var["bg"]),
        "links in the header": (var["accent"], header),
        "text in the header": (var["fg"], header),
        "buttons": ("#ffffff", var["accent"]),
        "danger buttons": ("#ffffff", var["danger"]),
        "errors": (var["danger"], var["bg"]),
        "messages": (var["fg"], message),
    }
    for what, (fg, bg) in pairs.items():
        assert _contrast(fg, bg) >= 4.5, what
    assert re.search(r":focus-visible \{ outline: 3px solid", css)
    assert ".skip:focus" in css
