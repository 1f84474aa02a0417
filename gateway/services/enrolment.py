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

import sqlite_utils

from gateway.errors import GatewayError
from gateway.privacy import consent, people
from gateway.privacy.enroll import EnrolmentResult, Progress, enroll_images
from gateway.privacy.vault import NullGallery, Vault

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
