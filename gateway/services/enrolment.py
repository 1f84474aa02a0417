"""Office enrolment: a consenting person's face templates from image files.

The face pipeline is built from the :class:`~gateway.face.settings.FaceSettings` the caller
passes (the configured ones: see ``gateway.config``), never from defaults chosen here.
Templates are stored encrypted (:mod:`gateway.privacy.enroll`); no image is stored. The
running daemon picks the new templates up from the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlite_utils

from gateway.errors import GatewayError
from gateway.privacy import consent, people
from gateway.privacy.enroll import (
    EnrolmentResult,
    JudgedSamples,
    Progress,
    SampleVerdict,
    enroll_images,
    interpret_sample,
    judge_arrays,
    store_judged,
)
from gateway.privacy.enroll import _frame_verdict as frame_verdict
from gateway.privacy.vault import NullGallery, Vault
from gateway.store.tx import transaction

if TYPE_CHECKING:
    from gateway.face.settings import FaceSettings


@dataclass(frozen=True)
class EnrolmentRequest:
    """Who is enrolled from which images, and how many must pass."""

    person_id: str
    images: list[Path]
    min_good: int = 1
    max_templates: int = 10


def load_pipeline(model_dir: Path, settings: FaceSettings) -> Any:
    """The face pipeline from the installed models and the given settings."""
    try:
        from gateway.face.pipeline import FacePipeline
    except ImportError as exc:
        raise GatewayError(f"the face pipeline is not available in this build: {exc}") from exc
    return FacePipeline.load(model_dir, settings)


def check_may_enrol(db: sqlite_utils.Database, person_id: str, *, grace_days: float) -> None:
    """Refuse (before any model is loaded) without consent or without a card or PIN."""
    consent.require_consent(db, person_id, grace_days=grace_days)
    if not people.person_has_non_face_credential(db, person_id):
        raise GatewayError(
            f"person {person_id} has no card or PIN: face must never be the only way in "
            "(Art. 10); give them one first (gateway people add-card / people set-pin)"
        )


def enrol_from_images(
    db: sqlite_utils.Database,
    vault: Vault,
    pipeline: Any,
    request: EnrolmentRequest,
    *,
    actor: str,
    grace_days: float,
    progress: Progress | None = None,
) -> EnrolmentResult:
    """Enrol ``request.person_id``; :class:`~gateway.privacy.enroll.EnrolmentError` (with
    the per-image verdicts) when too few images pass. Audited."""
    check_may_enrol(db, request.person_id, grace_days=grace_days)
    return enroll_images(
        db,
        vault,
        pipeline,
        NullGallery(),
        request.person_id,
        request.images,
        progress,
        min_good=request.min_good,
        max_templates=request.max_templates,
        actor=actor,
        grace_days=grace_days,
    )


def erase_all_templates(db: sqlite_utils.Database, vault: Vault, *, actor: str) -> int:
    """Crypto-erase every stored template (before switching ``[privacy]
    template_protection``: every face is enrolled again); one transaction, audited; the
    mode record goes with them. Returns how many templates were erased."""
    from gateway.privacy import audit, protection_record
    from gateway.privacy.scrub import complete_pending

    with transaction(db):
        count = sum(vault.erase_person(db, pid, vacuum=False) for pid in vault.enrolled_people(db))
        db.conn.execute("DELETE FROM kv WHERE key = ?", (protection_record.MODE_KV,))
        audit.append(db, actor, "face.erase_all", "templates", {"template_count": count})
    complete_pending(db.conn, 0.5)
    return count


MAX_UPLOADS = 10
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 40_000_000
UPLOAD_TYPES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


def N_(text: str) -> str:  # noqa: N802 -- gettext's "extract, translate later" mark
    """Mark ``text`` for the console's catalog (the console translates it where shown)."""
    return text


#: The operator's words for each verdict (English; the console shows them translated).
VERDICT_TEXT = {
    "ok": N_("good"),
    "no_face": N_("no face found"),
    "several_faces": N_("several faces: one person per photo"),
    "unreadable": N_("not a readable image"),
    "low_quality:too_small": N_("face too small: come closer"),
    "low_quality:not_frontal": N_("not frontal: look straight at the camera"),
    "low_quality:blurred": N_("blurred: hold still"),
    "low_quality:underexposed": N_("too dark"),
    "low_quality:overexposed": N_("too bright"),
    "spoof": N_("spoof suspected: a photo of a photo or a screen?"),
}


@dataclass(frozen=True)
class Upload:
    """One uploaded or captured photo, in memory only (never written anywhere)."""

    data: bytes


def verdict_text(verdict: str) -> str:
    """The operator's words for a per-image verdict."""
    return VERDICT_TEXT.get(verdict, verdict.replace("low_quality:", "low quality: "))


def decode_uploads(uploads: list[Upload]) -> list[np.ndarray]:
    """Decode the photos in memory (JPEG or PNG, each under the size and pixel limits);
    :class:`GatewayError` naming the photo and what is wrong."""
    if not uploads:
        raise GatewayError("no photo was given")
    if len(uploads) > MAX_UPLOADS:
        raise GatewayError(f"at most {MAX_UPLOADS} photos at a time")
    import cv2

    out: list[np.ndarray] = []
    for i, up in enumerate(uploads, 1):
        if len(up.data) > MAX_UPLOAD_BYTES:
            raise GatewayError(f"photo {i} is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        if not any(up.data.startswith(magic) for magic in UPLOAD_TYPES):
            raise GatewayError(f"photo {i} is not a JPEG or PNG image")
        header = cv2.imdecode(np.frombuffer(up.data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if header is not None and header.size * 64 > MAX_PIXELS:
            raise GatewayError(f"photo {i} has too many pixels (at most {MAX_PIXELS:,})")
        image = cv2.imdecode(np.frombuffer(up.data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise GatewayError(f"photo {i} could not be decoded (damaged or not an image)")
        out.append(image)
    return out


@dataclass(frozen=True)
class _Judged:
    verdict: str
    embedding: Any = None
    quality: Any = None


class SpoofChecked:
    """The pipeline, with the passive anti-spoofing check on each photo when its model
    is installed (a photo judged not live gets ``spoof``); without it, unchanged."""

    def __init__(self, pipeline: Any) -> None:
        """Wrap ``pipeline`` (a FacePipeline or anything with ``embed_image``)."""
        self._p = pipeline

    def embed_image(self, image: np.ndarray) -> Any:
        """One photo's enrolment sample."""
        if not getattr(self._p, "has_liveness", False):
            return self._p.embed_image(image)
        threshold = float(self._p.settings.liveness_threshold)
        verdict, obs = frame_verdict(self._p.analyze(image, liveness=True), threshold)
        if verdict == "not_live":
            return _Judged("spoof")
        return _Judged(verdict, getattr(obs, "embedding", None), getattr(obs, "quality", None))


def check_uploads(pipeline: Any, uploads: list[Upload]) -> list[SampleVerdict]:
    """Each photo's verdict, nothing stored (the page shows them before saving)."""
    pipeline = SpoofChecked(pipeline)
    verdicts = []
    for i, image in enumerate(decode_uploads(uploads), 1):
        try:
            verdict, _, score = interpret_sample(pipeline.embed_image(image))
        finally:
            image.fill(0)
        verdicts.append(SampleVerdict(f"photo {i}", verdict, score))
    return verdicts


def judge_uploads(pipeline: Any, uploads: list[Upload]) -> JudgedSamples:
    """The slow step of a web enrolment: decode the photos, detect, embed and check them
    for spoofing (no database: run it on a worker thread, never the database thread);
    nothing stored. :func:`store_judged_uploads` is the second step."""
    return judge_arrays(SpoofChecked(pipeline), decode_uploads(uploads))


def store_judged_uploads(
    db: sqlite_utils.Database,
    vault: Vault,
    person_id: str,
    judged: JudgedSamples,
    *,
    actor: str,
    grace_days: float,
) -> EnrolmentResult:
    """The quick step (the database thread): consent and a card or PIN checked again, as
    :func:`enrol_from_images`, and the good templates stored encrypted, in one transaction."""
    with transaction(db):
        check_may_enrol(db, person_id, grace_days=grace_days)
        return store_judged(
            db, vault, NullGallery(), person_id, judged, actor=actor, source="web",
            grace_days=grace_days,
        )  # fmt: skip
