"""The enrolment page and API: photos in memory, per-photo verdicts before saving, only
encrypted templates stored; consent and a card or PIN first; bad photos get a clear 400;
the usual refusals (no session, no CSRF token, auditor, unknown person)."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp import FormData

from gateway.errors import GatewayError
from gateway.services import enrolment as svc
from gateway.web.enrol_pages import NOT_HERE
from tests.privacy.conftest import random_embedding
from tests.privacy.test_enroll import FakePipeline, _load_real_pipeline
from tests.web.console import Console, console
from tests.web.test_no_images import IMAGE_MARKS


def photo(code: int) -> bytes:
    """A PNG whose top-left pixel tells the fake pipeline its verdict (0 no face,
    1 several faces, 2 blurred, more: good)."""
    img = np.full((64, 64, 3), 128, np.uint8)
    img[0, 0] = code
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return bytes(buf)


def form(*photos: bytes, csrf: str = "") -> FormData:
    data = FormData()
    if csrf:
        data.add_field("csrf", csrf)
    for i, p in enumerate(photos):
        data.add_field("photos", p, filename=f"p{i}.png", content_type="image/png")
    return data


async def post(c: Console, path: str, data: Any, *, csrf: bool = True) -> tuple[int, Any]:
    resp = await c.client.post(path, data=data, headers=c.headers(csrf=csrf))
    raw = await resp.read()
    for mark in IMAGE_MARKS:
        assert mark not in raw, (path, mark)
    is_json = resp.content_type == "application/json"
    return resp.status, (await resp.json()) if is_json else raw.decode()


def run(tmp_path: Path, body: Any, **changes: Any) -> None:
    pipeline = FakePipeline()

    async def load() -> FakePipeline:
        return pipeline

    async def main() -> None:
        async with console(tmp_path, **({"face_pipeline": load} | changes)) as c:
            await body(c)

    asyncio.run(main())


async def _person(c: Console, *, consent: bool = True) -> str:
    await c.login("operator")
    _, made = await c.api("POST", "/api/people", {"name": "Lin Fang"})
    pid = str(made["id"])
    await c.api("POST", f"/api/people/{pid}/cards", {"number": "445566"})
    if consent:
        await c.api("POST", f"/api/people/{pid}/consent", {"decision": "grant"})
    return pid


def _templates(c: Console) -> int:
    return int(c.backend.db.execute("SELECT count(*) FROM templates").fetchone()[0])


def test_verdicts_first_then_only_templates_are_stored(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        pid = await _person(c)
        page = await c.client.get(f"/people/{pid}/enrol", headers=c.headers(csrf=False))
        html = await page.text()
        assert page.status == 200
        assert 'id="photos"' in html
        assert page.headers["Permissions-Policy"].startswith("camera=(self)")
        assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # no inline script
        other = await c.client.get(f"/people/{pid}", headers=c.headers(csrf=False))
        assert other.headers["Permissions-Policy"].startswith("camera=()")
        photos = [photo(0), photo(1), photo(2), photo(200), photo(201)]
        status, got = await post(c, f"/api/people/{pid}/enrol/check", form(*photos))
        assert status == 200, got
        assert [v["verdict"] for v in got["verdicts"]] == [
            "no_face",
            "several_faces",
            "low_quality:blurred",
            "ok",
            "ok",
        ]
        assert [v["text"] for v in got["verdicts"]][:3] == [
            "no face found",
            "several faces: one person per photo",
            "blurred: hold still",
        ]
        assert got["good"] == 2
        assert _templates(c) == 0
        status, got = await post(c, f"/api/people/{pid}/enrol", form(*photos))
        assert (status, got["stored"], got["error"]) == (200, 2, ""), got
        assert _templates(c) == 2
        actor = c.backend.db.execute(
            "SELECT actor FROM audit WHERE action = 'template.create' ORDER BY rowid DESC"
        ).fetchone()
        assert actor is not None
        assert actor[0] == "web:operator"
        status, got = await post(c, f"/api/people/{pid}/enrol", form(photo(0)))
        assert status == 400
        assert got["verdicts"][0]["verdict"] == "no_face"

    run(tmp_path, body)


def test_consent_is_needed_first(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        pid = await _person(c, consent=False)
        for path in (f"/api/people/{pid}/enrol/check", f"/api/people/{pid}/enrol"):
            status, got = await post(c, path, form(photo(200)))
            assert (status, "consent" in got["error"]) == (400, True), got
        assert _templates(c) == 0

    run(tmp_path, body)


def test_bad_photos_get_a_clear_error(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        pid = await _person(c)
        path = f"/api/people/{pid}/enrol/check"
        too_big = b"\x89PNG\r\n\x1a\n" + bytes(svc.MAX_UPLOAD_BYTES)
        huge = bytes(cv2.imencode(".png", np.zeros((6000, 7000), np.uint8))[1])  # 42 Mpx
        assert len(huge) < svc.MAX_UPLOAD_BYTES
        cases = [
            (form(b"hello, not an image"), "photo 1 is not a JPEG or PNG image"),
            (form(photo(200), b"\xff\xd8\xff" + b"junk" * 10), "photo 2 could not be decoded"),
            (form(too_big), "photo 1 is over 8 MiB"),
            (form(*[photo(200)] * 11), "at most 10 photos"),
            (form(huge), "photo 1 has too many pixels"),
            (form(b""), "no photo was given"),
            ({"photos": "x"}, "multipart/form-data"),
        ]
        for data, message in cases:
            status, got = await post(c, path, data)
            assert (status, message in got["error"]) == (400, True), (message, got)
        resp = await c.client.post(path, json={"photos": []}, headers=c.headers())
        assert resp.status == 400
        # a part whose headers are not HTTP (found by the API fuzz run): refused, not a 500
        raw = b'--b\r\nContent-Disposition: form-data; name="\x1bA"\r\n\r\nx\r\n--b--\r\n'
        multipart = {"Content-Type": "multipart/form-data; boundary=b"}
        resp = await c.client.post(path, data=raw, headers=c.headers() | multipart)
        assert (resp.status, (await resp.json())["error"]) == (
            400,
            "the multipart body is malformed",
        )
        assert _templates(c) == 0

    run(tmp_path, body)


def test_refusals(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        pid = await _person(c)
        path = f"/api/people/{pid}/enrol"
        assert (await post(c, path, form(photo(200)), csrf=False))[0] == 403
        assert (await post(c, path, form(photo(200), csrf="wrong"), csrf=False))[0] == 403
        # a multipart body is never parsed for its csrf field (aiohttp would spool the
        # photos to disk): even the right token there is refused, only the header counts
        assert (await post(c, path, form(photo(200), csrf=c.csrf), csrf=False))[0] == 403
        status, _ = await post(c, f"/api/people/{'0' * 32}/enrol/check", form(photo(200)))
        assert status in (400, 404)
        await c.login("auditor")
        assert (await post(c, path, form(photo(200))))[0] == 403
        page = await c.client.get(f"/people/{pid}/enrol", headers=c.headers(csrf=False))
        assert page.status == 403
        c.token = c.csrf = ""
        assert (await post(c, path, form(photo(200))))[0] == 401
        page = await c.client.get(f"/people/{pid}/enrol", allow_redirects=False)
        assert page.status == 303
        assert _templates(c) == 0

    run(tmp_path, body)


def test_without_a_face_pipeline_it_says_so(tmp_path: Path) -> None:
    async def body(c: Console) -> None:
        pid = await _person(c)
        page = await c.client.get(f"/people/{pid}/enrol", headers=c.headers(csrf=False))
        assert NOT_HERE in await page.text()
        status, got = await post(c, f"/api/people/{pid}/enrol", form(photo(200)))
        assert (status, got["error"]) == (400, NOT_HERE)

    run(tmp_path, body, face_pipeline=None)


class LivePipeline:
    """A pipeline with an anti-spoofing model: top-left pixel 3 is a spoof, 200+ live."""

    has_liveness = True
    settings = SimpleNamespace(liveness_threshold=0.5)

    def analyze(self, image: np.ndarray, *, liveness: bool = True) -> list[Any]:
        code = int(image[0, 0, 0])
        assert liveness
        return [
            SimpleNamespace(
                quality=SimpleNamespace(ok=True, reason=None),
                embedding=random_embedding(code),
                liveness=0.1 if code == 3 else 0.9,
            )
        ]


def test_a_spoof_is_suspected_when_the_model_is_installed(tmp_path: Path) -> None:
    pipeline = LivePipeline()

    async def load() -> LivePipeline:
        return pipeline

    async def body(c: Console) -> None:
        pid = await _person(c)
        status, got = await post(c, f"/api/people/{pid}/enrol/check", form(photo(3), photo(200)))
        assert status == 200
        assert [v["text"] for v in got["verdicts"]] == [
            "spoof suspected: a photo of a photo or a screen?",
            "good",
        ]
        status, got = await post(c, f"/api/people/{pid}/enrol", form(photo(3), photo(200)))
        assert (status, got["stored"]) == (200, 1)

    run(tmp_path, body, face_pipeline=load)


@pytest.mark.models
def test_real_pipeline_through_the_api(tmp_path: Path) -> None:
    """The real face pipeline judges uploaded photos: a face (JPEG), a blank frame and,
    with ../shared, a group photo."""
    from skimage import data

    from gateway.face.pipeline import FacePipeline

    pipeline = _load_real_pipeline(FacePipeline, tmp_path)
    face = cv2.cvtColor(np.asarray(data.astronaut()), cv2.COLOR_RGB2BGR)  # type: ignore[no-untyped-call]
    photos = [bytes(cv2.imencode(".jpg", face)[1]), photo(90)]
    expected = ["ok", "no_face"]
    group = Path(os.environ.get("GATEWAY_SHARED_DIR", "../shared")) / "faces/group/t1.jpg"
    if group.exists():
        photos.append(group.read_bytes())
        expected.append("several_faces")

    async def load() -> Any:
        return pipeline

    async def body(c: Console) -> None:
        pid = await _person(c)
        status, got = await post(c, f"/api/people/{pid}/enrol/check", form(*photos))
        assert status == 200
        assert [v["verdict"] for v in got["verdicts"]] == expected
        status, got = await post(c, f"/api/people/{pid}/enrol", form(*photos))
        assert (status, got["stored"]) == (200, 1)

    run(tmp_path, body, face_pipeline=load)


def test_the_models_run_off_the_database_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Save decodes and embeds its photos on a worker thread: the one database thread
    (shared with events, housekeeping and erasures) only checks consent and stores."""
    threads: dict[str, set[str]] = {"decode": set(), "embed": set(), "store": set()}
    db_thread = ThreadPoolExecutor(1, thread_name_prefix="gateway-db")

    async def run_db(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            db_thread, functools.partial(fn, *args, **kwargs)
        )

    def spy(step: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            threads[step].add(threading.current_thread().name)
            return fn(*args, **kwargs)

        return call

    class Recording(FakePipeline):
        def embed_image(self, image_bgr: np.ndarray) -> Any:
            threads["embed"].add(threading.current_thread().name)
            return super().embed_image(image_bgr)

    async def load() -> Recording:
        return Recording()

    monkeypatch.setattr(svc, "decode_uploads", spy("decode", svc.decode_uploads))
    monkeypatch.setattr(svc, "store_judged", spy("store", svc.store_judged))

    async def body(c: Console) -> None:
        pid = await _person(c)
        status, got = await post(c, f"/api/people/{pid}/enrol", form(photo(200), photo(0)))
        assert (status, got["stored"], got["error"]) == (200, 1, ""), got
        assert [v["verdict"] for v in got["verdicts"]] == ["ok", "no_face"]

    try:
        run(tmp_path, body, face_pipeline=load, run_db=run_db)
    finally:
        db_thread.shutdown()
    assert threads["store"], threads
    assert all(name.startswith("gateway-db") for name in threads["store"]), threads
    assert threads["decode"], threads
    assert threads["embed"], threads
    assert not any(name.startswith("gateway-db") for name in threads["decode"] | threads["embed"])
    assert "MainThread" not in threads["decode"] | threads["embed"]  # nor the event loop


def test_consent_withdrawn_while_the_photos_are_judged_stores_nothing(tmp_path: Path) -> None:
    """The store step checks consent again: a withdrawal that lands between the slow
    judging (worker thread) and the store refuses the enrolment, nothing stored."""

    async def body(c: Console) -> None:
        pid = await _person(c)
        judged = svc.judge_uploads(FakePipeline(), [svc.Upload(photo(200))])
        assert [v.verdict for v in judged.verdicts] == ["ok"]
        status, _ = await c.api("POST", f"/api/people/{pid}/withdraw", {"confirm": True})
        assert status == 200
        with pytest.raises(GatewayError, match="consent"):
            svc.store_judged_uploads(
                c.backend.db, c.backend.vault, pid, judged, actor="web:operator", grace_days=30.0
            )
        assert _templates(c) == 0

    run(tmp_path, body)
