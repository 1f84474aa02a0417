"""The services' common refusals show in Chinese on a Chinese page (and in the JSON API
asked in Chinese), the English original kept for the log; English pages unchanged. The
four required: a person not found, a bad PIN, a minor's consent without a guardian, a
zone polygon that crosses itself (validated like ``gateway config validate``)."""

# ruff: noqa: RUF001 -- Chinese text has its own punctuation

from __future__ import annotations

import asyncio
import logging
import re
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

import pytest

from gateway.config.cameras import PRIVATE_SPACE_RULE
from gateway.privacy.consent import CONSENT_RULE, RENOTICE_RULE
from gateway.privacy.minors import LAPSE_RULE
from gateway.privacy.people import GUARDIAN_RULE
from gateway.web import i18n, messages, pages
from tests.web.console import Console, console
from tests.web.test_i18n import EN, ZH
from tests.web.zones_config import CAMERA, zones_config

ZH_CATALOG = i18n.translations("zh")
HAN = re.compile(r"[\u4e00-\u9fff]")
BOWTIE = [[0.1, 0.1], [0.4, 0.4], [0.4, 0.1], [0.1, 0.4]]


@pytest.mark.parametrize(
    ("english", "chinese"),
    [
        ("no person '00ff' on record", "未登记编号为 '00ff' 的人员。"),
        ("a PIN must be 4 to 8 digits", "PIN 码必须为 4 到 8 位数字。"),
        (
            f"refused: {GUARDIAN_RULE}; no guardian named for this consent",
            "已拒绝：未满 14 周岁者需要一名已登记的成年人作为监护人；此次同意未指定监护人。",
        ),
        (
            (
                "cameras.north-cam.zones.0.polygon: zone 'bins' of camera 'north-cam' crosses "
                "itself (edges 1 and 3 meet): place its corners in order around the area "
                "(value: [(0.1, 0.1), (0.4, 0.4)])"
            ),
            (
                "cameras.north-cam.zones.0.polygon: 摄像头 'north-cam' 的禁拍区 'bins' 自相交"
                "（第 1 条边与第 3 条边相交）：请按顺序沿区域边缘放置角点。"
                " (值: [(0.1, 0.1), (0.4, 0.4)])"
            ),
        ),
    ],
)
def test_the_four_refusals_in_chinese(english: str, chinese: str) -> None:
    assert messages.translate(english, ZH_CATALOG) == chinese
    assert messages.shown(english, "en", "test") == english  # English stays as it was


def test_unknown_and_several_messages() -> None:
    assert messages.translate("something new went wrong", ZH_CATALOG) == "something new went wrong"
    both = "a.b: vertex (1.5, 0.2) is outside 0..1; x: display name must not be empty"
    assert messages.translate(both, ZH_CATALOG) == (
        "a.b: 角点 (1.5, 0.2) 超出图像范围（0..1）。; x: 显示名称不能为空"
    )


def test_the_known_texts_are_the_services_own() -> None:
    """A service that rewords a refusal fails here, not silently in English."""
    assert PRIVATE_SPACE_RULE in messages.KNOWN
    assert f"refused: {LAPSE_RULE}" in messages.KNOWN
    guardian = f"refused: {GUARDIAN_RULE}; no guardian named for this consent"
    assert messages.translate(guardian, ZH_CATALOG) != guardian
    for text in messages.KNOWN:
        assert ZH_CATALOG.gettext(text) != text, text


def _run(tmp_path: Path, body: Any, **changes: Any) -> None:
    async def main() -> None:
        async with console(tmp_path, **changes) as c:
            await body(c)

    asyncio.run(main())


def _alert(html: str) -> str:
    m = re.search(r'<p class="error" role="alert"( lang="en")?>([^<]*)</p>', html)
    assert m is not None, html[:2000]
    assert m.group(1) is None, "a translated refusal is not marked English"
    return m.group(2)


async def _post(c: Console, path: str, form: dict[str, str], lang: dict[str, str]) -> str:
    resp = await c.client.post(
        path, data={"csrf": c.csrf, **form}, headers=c.headers(csrf=False) | lang
    )
    assert resp.status in (400, 404), resp.status
    return await resp.text()


def test_a_chinese_page_shows_the_refusals_in_chinese(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def next_pin(reader: str, timeout_s: float) -> str:
        return "12"  # too short

    async def body(c: Console) -> None:
        assert await c.login("operator") == 303
        h = c.headers(csrf=False)
        # a person not found: page and API
        resp = await c.client.get(f"/people/{'0' * 32}", headers=h | ZH)
        assert resp.status == 404
        assert _alert(await resp.text()) == f"未登记编号为 &#39;{'0' * 32}&#39; 的人员。"
        resp = await c.client.get(f"/api/people/{'0' * 32}", headers=h | ZH)
        assert (resp.status, (await resp.json())["error"]) == (
            404,
            f"未登记编号为 '{'0' * 32}' 的人员。",
        )
        resp = await c.client.get(f"/api/people/{'0' * 32}", headers=h | EN)
        assert (await resp.json())["error"] == f"no person '{'0' * 32}' on record"
        # a PIN of the wrong format, typed on the keypad
        _, made = await c.api("POST", "/api/people", {"name": "He Yu", "unit": "3-101"})
        html = await _post(c, f"/people/{made['id']}/pins/typed", {"reader": "entry"}, ZH)
        assert _alert(html) == "PIN 码必须为 4 到 8 位数字。"
        html = await _post(c, f"/people/{made['id']}/pins/typed", {"reader": "entry"}, EN)
        assert "a PIN must be 4 to 8 digits" in html
        # a minor's consent without the guardian
        kid = {"name": "Li Xiaoming", "unit": "3-101", "minor": True, "guardian": made["id"]}
        _, child = await c.api("POST", "/api/people", kid)
        html = await _post(c, f"/people/{child['id']}/consent", {"decision": "grant"}, ZH)
        assert _alert(html).endswith("此次同意未指定监护人。")
        assert HAN.search(_alert(html))

    with caplog.at_level(logging.INFO, logger="gateway.web.messages"):
        _run(tmp_path, body, next_pin=next_pin, readers=["entry"])
    logged = caplog.text
    assert "a PIN must be 4 to 8 digits" in logged  # the English detail stays in the log
    assert "no guardian named for this consent" in logged


def test_a_crossing_zone_is_refused_on_the_zones_page_in_each_language(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("admin") == 303
        cfg = c.backend.config_path
        assert cfg is not None
        before = cfg.read_text(encoding="utf-8")
        change = {"zones": [{"name": "bins", "polygon": BOWTIE}], "signage_installed": True}
        got = {}
        for lang in (EN, ZH):
            resp = await c.client.post(
                f"/api/zones/{CAMERA}", json=change, headers=c.headers() | lang
            )
            assert resp.status == 400
            got[lang["Accept-Language"]] = await resp.json()
        en, zh = got[EN["Accept-Language"]], got[ZH["Accept-Language"]]
        assert (
            "zone 'bins' of camera 'north-cam' crosses itself (edges 1 and 3 meet)" in en["error"]
        )
        [problem] = zh["problems"]
        assert problem.startswith(
            f"cameras.{CAMERA}.zones.0.polygon: 摄像头 'north-cam' 的禁拍区 'bins' 自相交"
        )
        assert zh["error"] == problem
        change["signage_installed"] = False  # two problems: each line translated
        resp = await c.client.post(f"/api/zones/{CAMERA}", json=change, headers=c.headers() | ZH)
        two = (await resp.json())["problems"]
        assert two[0] == problem
        signage = "人脸处理需要在摄像头处设置明显标识（第十三条） (值: False)"
        assert two[1] == f"cameras.{CAMERA}.signage_installed: {signage}"
        assert cfg.read_text(encoding="utf-8") == before  # the file untouched
        page = await c.client.get(f"/zones/{CAMERA}", headers=c.headers(csrf=False) | ZH)
        assert page.status == 200  # the page's script shows the problems as received

    async def reload() -> bool:
        return True

    _run(tmp_path, body, config_path=zones_config(tmp_path), reload=reload)


def test_every_reason_of_the_face_rule_is_in_chinese() -> None:
    """Each reason face_status can give (a person's page shows it) has a translation;
    built from the services' own rule texts, so a reworded rule fails here."""
    consent = f"refused: {CONSENT_RULE}"
    reasons = [
        "granted",
        "granted; re-notice pending (grace period)",
        "person is outside their validity period",
        f"{consent}; no consent on record",
        *(f"{consent}; consent is {status}" for status in ("declined", "withdrawn")),
        f"refused: {GUARDIAN_RULE}",
        f"suspended: {LAPSE_RULE}",
        f"suspended: {RENOTICE_RULE}",
    ]
    for reason in reasons:  # each as a whole (not only some of its "; " parts)
        said = ZH_CATALOG.gettext(reason)
        assert said != reason, reason
        assert messages.translate(reason, ZH_CATALOG) == said
        assert not re.search(r"[A-Za-z]", said), said


def test_a_reason_translated_in_part_marks_its_english_part() -> None:
    said = pages.environment("zh").filters["said"]
    shown = str(said("granted; something the catalog does not know"))
    assert shown == '已同意; <span lang="en">something the catalog does not know</span>'
    assert str(said("<b>x</b>")) == '<span lang="en">&lt;b&gt;x&lt;/b&gt;</span>'
    assert str(pages.environment("en").filters["said"]("granted")) == "granted"


def test_a_person_page_gives_the_face_rule_in_the_page_language(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        assert await c.login("operator") == 303
        _, made = await c.api("POST", "/api/people", {"name": "Li Lei"})
        pid = str(made["id"])
        await c.api("POST", f"/api/people/{pid}/cards", {"number": "445567"})
        for lang, reason in (
            (ZH, "已拒绝：人脸信息处理需要本人单独、明确的同意；没有同意记录"),
            (EN, f"refused: {CONSENT_RULE}; no consent on record"),
        ):
            resp = await c.client.get(f"/people/{pid}", headers=c.headers(csrf=False) | lang)
            html = await resp.text()
            m = re.search(r'<dd id="face-state">[^(]*\((.*)\)</dd>', html)
            assert m is not None, html[:2000]
            assert html_unescape(m.group(1)) == reason  # translated: no lang="en" mark

    _run(tmp_path, body)
