"""The console's languages and second factor in a real browser (Debian's chromium, as in
``test_browser.py``): a browser that prefers Chinese gets Chinese pages (``<html lang>``,
labels, the live dashboard's words), the first Tab reaches the skip link, the switch turns
the pages English; an account turns its TOTP second factor on (its QR code decodes to the
set-up link) and logs in with a code."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyotp

from gateway.web.backend import Backend
from tests.web.console import PASSWORD
from tests.web.test_browser import _browse, pytestmark  # noqa: F401 -- the same skip

ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}


async def _chinese_then_english(p: Any, base: str, shots: Path, _: Backend) -> None:
    await p.set_extra_http_headers(ZH)
    await p.goto(f"{base}/login")
    assert await p.get_attribute("html", "lang") == "zh-CN"
    await p.keyboard.press("Tab")
    assert await p.evaluate("document.activeElement.className") == "skip"
    await p.get_by_label("账户").fill("auditor")
    await p.get_by_label("密码").fill(PASSWORD)
    await p.get_by_role("button", name="登录").click()
    await p.get_by_role("heading", name="总览").wait_for()
    live = p.locator("#live-state")  # the script's words come from the page
    await live.filter(has_text="实时更新").filter(has_text="已开启").wait_for()
    await p.locator("#doors td.state", has_text="已上锁").wait_for()
    await p.screenshot(path=str(shots / "dashboard-zh.png"))
    await p.get_by_role("link", name="English").click()
    await p.get_by_role("heading", name="Dashboard").wait_for()
    assert await p.get_attribute("html", "lang") == "en"


def test_a_chinese_browser_gets_chinese_and_switches_to_english(tmp_path: Path) -> None:
    assert (_browse(tmp_path, _chinese_then_english) / "dashboard-zh.png").exists()


async def _second_factor(p: Any, base: str, shots: Path, _: Backend) -> None:
    async def login(code: str) -> None:
        await p.goto(f"{base}/login")
        await p.get_by_label("Account").fill("operator")
        await p.get_by_label("Password").fill(PASSWORD)
        await p.get_by_label("One-time code").fill(code)
        await p.get_by_role("button", name="Log in").click()

    await login("")
    await p.get_by_role("link", name="Account").click()
    await p.get_by_role("button", name="Set up a second factor").click()
    secret = await p.get_by_label("Secret key").input_value()
    uri = await p.get_by_label("Set-up link", exact=True).input_value()
    assert uri.startswith("otpauth://totp/")
    # what a phone's camera sees: the QR code as chromium draws it decodes to the link
    png = await p.get_by_role("img", name="QR code of the set-up link").screenshot()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert cv2.QRCodeDetector().detectAndDecode(image)[0] == uri
    await p.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    await p.get_by_role("button", name="Turn on").click()
    await p.get_by_text("Second factor on").wait_for()
    await p.get_by_role("button", name="Log out").click()
    # (a refused login answers 401, which the browser logs as an error: test_totp.py)
    await login(pyotp.TOTP(secret).at(time.time() + 30))
    await p.get_by_role("heading", name="Dashboard").wait_for()
    await p.screenshot(path=str(shots / "after-totp.png"))


def test_an_account_turns_its_second_factor_on_and_logs_in_with_a_code(tmp_path: Path) -> None:
    assert (_browse(tmp_path, _second_factor) / "after-totp.png").exists()
