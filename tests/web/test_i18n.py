"""Simplified Chinese and English: Chinese for a browser that prefers zh, English
otherwise, the switch's cookie over both, ``<html lang>`` to match; every page walked in
Chinese shows no English outside data (names, ids, codes: ``translate="no"``, ``<code>``,
``<pre>``) and service messages marked ``lang="en"``; the catalog is complete and in step
with the templates; a ``<script>`` name stays inert in Chinese."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po

from gateway.web import i18n
from tests.privacy.test_enroll import FakePipeline
from tests.web.console import Console, console
from tests.web.test_enrol import form, photo
from tests.web.zones_config import CAMERA, zones_config

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
EN = {"Accept-Language": "en-US,en;q=0.9"}
PO = i18n.LOCALE / "zh" / "LC_MESSAGES" / "console.po"
#: Latin words a Chinese page may show: units, standards, formats, product terms.
ALLOWED = {
    "UTC",
    "PIN",
    "CSV",
    "JSON",
    "API",
    "SHA",
    "RFC",
    "YYYY",
    "MM",
    "argon2id",
    "English",
    "JPEG",
    "PNG",
    "MiB",
}


def run(tmp_path: Path, body: Any, **changes: Any) -> None:
    async def main() -> None:
        async with console(tmp_path, **changes) as c:
            await body(c)

    asyncio.run(main())


class _Visible(HTMLParser):
    """The text a reader sees, minus data and text marked English."""

    SKIP = frozenset({"script", "style", "code", "pre", "title"})
    VOID = frozenset({"input", "br", "meta", "link", "img", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.texts: list[str] = []
        self.lang = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang") or ""
        for name in ("aria-label", "data-confirm", "data-prompt", "placeholder"):
            if a.get(name) and not any(self.stack):
                self.texts.append(str(a[name]))
        if tag in self.VOID:
            return
        skip = tag in self.SKIP or a.get("translate") == "no" or a.get("lang") == "en"
        self.stack.append(skip)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not any(self.stack) and data.strip():
            self.texts.append(data.strip())


def _english_words(html: str) -> tuple[str, list[str]]:
    p = _Visible()
    p.feed(html)
    words = [w for t in p.texts for w in re.findall(r"[A-Za-z][A-Za-z0-9]{2,}", t)]
    return p.lang, [w for w in words if w not in ALLOWED]


async def _get(c: Console, path: str, lang: dict[str, str]) -> str:
    resp = await c.client.get(path, headers=c.headers(csrf=False) | lang)
    assert resp.status == 200, path
    return await resp.text()


def test_the_browser_language_chooses_and_the_switch_overrides() -> None:
    assert i18n.negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert i18n.negotiate("en-US,en;q=0.9,zh;q=0.8") == "en"
    assert i18n.negotiate("fr-FR, zh-TW;q=0.5, en;q=0.4") == "zh"
    assert i18n.negotiate("de, fr") == "en"
    assert i18n.negotiate("zh;q=0, en") == "en"
    assert i18n.negotiate("zh;q=oops") == "en"
    assert i18n.choose("en", "zh-CN") == "en"
    assert i18n.choose("xx", "zh-CN") == "zh"


def test_login_page_in_each_language_and_the_switch(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        zh = await (await c.client.get("/login", headers=ZH)).text()
        assert '<html lang="zh-CN">' in zh
        assert "登录" in zh
        en = await (await c.client.get("/login", headers=EN)).text()
        assert '<html lang="en">' in en
        assert "Log in" in en
        assert "登录" not in en
        resp = await c.client.get("/lang/zh?next=/people", allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == "/people"
        assert f"{i18n.COOKIE}=zh" in resp.headers["Set-Cookie"]
        assert "HttpOnly" in resp.headers["Set-Cookie"]
        for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            r = await c.client.get("/lang/en", params={"next": evil}, allow_redirects=False)
            assert r.headers["Location"] == "/", evil
        assert (await c.client.get("/lang/fr", allow_redirects=False)).status == 404
        cookie = {"Cookie": f"{i18n.COOKIE}=en"}
        page = await (await c.client.get("/login", headers=ZH | cookie)).text()
        assert "Log in" in page  # the switch beats the browser

    run(tmp_path, body)


def test_every_page_in_chinese_has_no_english_left(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("admin") == 303
        h = c.headers(csrf=False) | ZH
        form = {"csrf": c.csrf, "name": "李雷", "unit": "3-101", "role": "resident"}
        resp = await c.client.post("/people", data=form, headers=h, allow_redirects=False)
        pid = resp.headers["Location"].split("/people/", 1)[1].split("?", 1)[0]
        pages = ["/dashboard", "/events", "/people", f"/people/{pid}", f"/people/{pid}?msg=added"]
        pages += ["/notice", "/compliance", "/system", "/account", f"/people/{pid}/enrol"]
        pages += ["/zones", f"/zones/{CAMERA}"]
        for path in pages:
            lang, left = _english_words(await _get(c, path, ZH))
            assert lang == "zh-CN", path
            assert left == [], (path, left)
        lang, left = _english_words(await (await c.client.get("/login", headers=ZH)).text())
        assert left == []
        for path in pages:  # and English stays English
            html = await _get(c, path, EN)
            assert '<html lang="en">' in html
            assert not re.search(r"[\u4e00-\u9fff]", html.replace("中文", "").replace("李雷", ""))

    run(tmp_path, body, config_path=zones_config(tmp_path), face_pipeline=_pipeline)


async def _pipeline() -> FakePipeline:
    return FakePipeline()


def test_the_enrolment_verdicts_come_in_the_page_language(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("operator") == 303
        _, made = await c.api("POST", "/api/people", {"name": "李雷"})
        pid = str(made["id"])
        await c.api("POST", f"/api/people/{pid}/cards", {"number": "445566"})
        await c.api("POST", f"/api/people/{pid}/consent", {"decision": "grant"})
        texts = {}
        for lang in (ZH, EN):
            resp = await c.client.post(
                f"/api/people/{pid}/enrol/check",
                data=form(photo(0), photo(2), photo(200)),
                headers=c.headers() | lang,
            )
            assert resp.status == 200
            texts[lang["Accept-Language"]] = [v["text"] for v in (await resp.json())["verdicts"]]
        assert texts[ZH["Accept-Language"]] == ["未找到人脸", "模糊：请保持不动", "合格"]  # noqa: RUF001
        assert texts[EN["Accept-Language"]] == ["no face found", "blurred: hold still", "good"]

    run(tmp_path, body, face_pipeline=_pipeline)


def test_a_script_in_a_name_is_inert_in_chinese(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("operator") == 303
        h = c.headers(csrf=False) | ZH
        form = {"csrf": c.csrf, "name": "<script>alert(1)</script>", "role": "resident"}
        resp = await c.client.post("/people", data=form, headers=h, allow_redirects=False)
        pid = resp.headers["Location"].split("/people/", 1)[1].split("?", 1)[0]
        for path in (f"/people/{pid}", "/people"):
            html = await _get(c, path, ZH)
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            assert "<script>alert" not in html

    run(tmp_path, body)


def test_the_catalog_is_complete_and_in_step_with_the_sources(tmp_path: Path) -> None:
    with PO.open("rb") as f:
        catalog = read_po(f)
    ids = {m.id for m in catalog if m.id}
    assert all(m.string for m in catalog if m.id), "untranslated entries in the zh catalog"
    pybabel = Path(sys.executable).parent / "pybabel"
    if not pybabel.exists():
        pytest.skip("pybabel is not installed next to this Python")
    pot = tmp_path / "console.pot"
    web = Path(i18n.__file__).parent
    cfg = str(web / "locale" / "babel.cfg")
    verdicts = str(web.parent / "services" / "enrolment.py")  # the verdicts operators see
    args = ["extract", "-F", cfg, "-k", "N_", "--no-location", "-o", str(pot), str(web), verdicts]
    subprocess.run([str(pybabel), *args], check=True, capture_output=True)
    with pot.open("rb") as f:
        extracted = {m.id for m in read_po(f) if m.id}
    assert extracted - ids == set(), "strings missing from the zh catalog (pybabel update)"
    assert ids - extracted == set(), "stale strings in the zh catalog"
