"""The enrolment page (operator): photos uploaded or captured with the browser's camera,
each photo's verdict shown before saving, then only encrypted templates stored
(:mod:`gateway.services.enrolment`, as ``gateway enroll --images``). Photos are read into
memory only, decoded and judged off the event loop, and never written, logged or sent back."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import GatewayError
from gateway.privacy.enroll import EnrolmentError, SampleVerdict
from gateway.privacy.people import PersonError
from gateway.services import enrolment as svc
from gateway.web import i18n, ops
from gateway.web.api import json_error
from gateway.web.backend import Backend
from gateway.web.i18n import N_
from gateway.web.messages import language
from gateway.web.pages import render
from gateway.web.security import BACKEND, CAMERA_ALLOWED, actor, allow

NOT_HERE = N_("face enrolment is not available in this process (no face pipeline: models missing?)")


async def read_photos(request: web.Request) -> list[svc.Upload]:
    """The ``photos`` parts of a multipart body, each read up to the size limit."""
    if not request.content_type.startswith("multipart/"):
        raise GatewayError("send the photos as multipart/form-data (field photos)")
    try:
        return await _parts(await request.multipart())
    except (HttpProcessingError, ValueError) as exc:  # a part's headers are not HTTP
        raise GatewayError("the multipart body is malformed") from exc


async def _parts(reader: MultipartReader) -> list[svc.Upload]:
    out: list[svc.Upload] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != "photos":
            continue  # the csrf field: checked by the guard
        if len(out) == svc.MAX_UPLOADS:
            raise GatewayError(f"at most {svc.MAX_UPLOADS} photos at a time")
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > svc.MAX_UPLOAD_BYTES:
                raise GatewayError(
                    f"photo {len(out) + 1} is over {svc.MAX_UPLOAD_BYTES // (1024 * 1024)} MiB"
                )
        if data:
            out.append(svc.Upload(bytes(data)))
    return out


def _verdicts(verdicts: list[SampleVerdict]) -> list[dict[str, Any]]:
    return [
        {"photo": v.source, "verdict": v.verdict, "text": svc.verdict_text(v.verdict), "ok": v.ok}
        for v in verdicts
    ]


async def _pipeline(backend: Backend) -> Any:
    if backend.face_pipeline is None:
        raise GatewayError(NOT_HERE)
    return await backend.face_pipeline()


async def check(backend: Backend, person_id: str, photos: list[svc.Upload]) -> dict[str, Any]:
    """Each photo's verdict (consent and a card or PIN checked first); nothing stored."""
    await backend.run_db(svc.check_may_enrol, backend.db, person_id, grace_days=backend.grace_days)
    pipeline = await _pipeline(backend)
    verdicts = await asyncio.to_thread(svc.check_uploads, pipeline, photos)
    return {"verdicts": _verdicts(verdicts), "good": sum(v.ok for v in verdicts)}


async def save(
    backend: Backend, person_id: str, photos: list[svc.Upload], who: str
) -> dict[str, Any]:
    """Enrol from the photos: templates stored encrypted, the verdicts and counts back. The
    models run on a worker thread; the database thread only checks consent and stores."""
    await backend.run_db(svc.check_may_enrol, backend.db, person_id, grace_days=backend.grace_days)
    pipeline = await _pipeline(backend)
    judged = await asyncio.to_thread(svc.judge_uploads, pipeline, photos)
    try:
        res = await backend.run_db(
            svc.store_judged_uploads, backend.db, backend.vault, person_id, judged,
            actor=who, grace_days=backend.grace_days,
        )  # fmt: skip
    except EnrolmentError as exc:
        return {"stored": 0, "error": str(exc), "verdicts": _verdicts(list(exc.verdicts))}
    return {"stored": res.stored, "error": "", "verdicts": _verdicts(res.verdicts)}


@allow("operator")
async def enrol_page(request: web.Request) -> web.Response:
    """The enrolment page of one person (camera allowed on this page only)."""
    backend = request.app[BACKEND]
    try:
        p = await ops.show_person(backend, request.match_info["pid"])
    except GatewayError as exc:
        raise web.HTTPNotFound(text=str(exc), content_type="text/plain") from exc
    request[CAMERA_ALLOWED] = True
    return render(
        request,
        "enrol.html",
        p=p,
        available=backend.face_pipeline is not None,
        not_here=NOT_HERE,
        max_photos=svc.MAX_UPLOADS,
        max_mib=svc.MAX_UPLOAD_BYTES // (1024 * 1024),
    )


def _api(op: Any) -> Any:
    @allow("operator")
    async def call(request: web.Request) -> web.Response:
        backend = request.app[BACKEND]
        pid = request.match_info["pid"]
        try:
            photos = await read_photos(request)
            if op is save:
                done = await save(backend, pid, photos, actor(request))
            else:
                done = await check(backend, pid, photos)
        except PersonError as exc:
            raise json_error(str(exc), web.HTTPNotFound) from exc
        except GatewayError as exc:
            raise json_error(str(exc)) from exc
        catalog = i18n.translations(language(request))  # the verdicts in the page's language
        for v in done["verdicts"]:
            v["text"] = catalog.gettext(v["text"])
        return web.json_response(done, status=400 if done.get("error") else 200)

    call.__name__ = f"enrol_{op.__name__}"
    return call


def routes() -> list[web.RouteDef]:
    """The enrolment page and its two API calls (multipart ``photos``)."""
    return [
        web.get("/people/{pid}/enrol", enrol_page),
        web.post("/api/people/{pid}/enrol/check", _api(check)),
        web.post("/api/people/{pid}/enrol", _api(save)),
    ]
