"""Enrolment: images or live frames -> per-image verdicts -> encrypted templates only.

Consent is checked before any image is read. Images and frames stay in memory only for the
duration of one ``embed_image``/analysis call; only the embeddings of accepted samples are
kept, encrypted by the vault. Verdicts: ``ok``, ``no_face``, ``several_faces``,
``low_quality:<reason>``, ``unreadable`` (and for live frames ``not_live``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sqlite_utils

from gateway.errors import GatewayError, ModelError, PrivacyError
from gateway.privacy import audit
from gateway.privacy.consent import require_consent
from gateway.privacy.vault import GalleryLike, Vault
from gateway.store.tx import transaction

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

Progress = Callable[[int, int, str], None]


class EnrolmentError(PrivacyError):
    """Enrolment refused or failed; ``verdicts`` says what each input got."""

    def __init__(self, message: str, verdicts: Sequence[SampleVerdict] = ()) -> None:
        """Keep the per-sample verdicts for the caller to show."""
        super().__init__(message)
        self.verdicts = list(verdicts)


class EmbedsImages(Protocol):
    """What enrolment needs of :class:`gateway.face.pipeline.FacePipeline`."""

    def embed_image(self, image_bgr: np.ndarray) -> Any: ...


@dataclass(frozen=True)
class SampleVerdict:
    """The verdict for one input image or frame."""

    source: str
    verdict: str
    quality: float | None = None

    @property
    def ok(self) -> bool:
        """True when the sample was accepted."""
        return self.verdict == "ok"


@dataclass(frozen=True)
class EnrolmentResult:
    """Outcome of a successful enrolment (templates stored and in the gallery)."""

    person_id: str
    verdicts: list[SampleVerdict] = field(default_factory=list)
    stored: int = 0

    @property
    def rejected(self) -> int:
        """How many inputs were rejected."""
        return sum(1 for v in self.verdicts if not v.ok)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, Enum):
        v = v.value
    return str(v)


def interpret_sample(sample: Any) -> tuple[str, np.ndarray | None, float | None]:
    """Read (verdict, embedding, quality score) from an ``EnrolmentSample``.

    Accepts the face team's sample (``verdict``/``status`` string or enum, ``reason``,
    ``embedding``, ``quality``/``det_score``); ``low_quality`` gets ``:reason`` appended.
    """
    emb = getattr(sample, "embedding", None)
    verdict = _text(getattr(sample, "verdict", None)) or _text(getattr(sample, "status", None))
    reason = _text(getattr(sample, "reason", None))
    quality = getattr(sample, "quality", None)
    if reason is None and quality is not None and hasattr(quality, "reason"):
        reason = _text(quality.reason)
    if verdict is None:
        ok = getattr(sample, "ok", emb is not None)
        verdict = "ok" if ok else "low_quality"
    verdict = verdict.lower().replace("(", ":").rstrip(")")
    if verdict.startswith("low_quality") and ":" not in verdict:
        verdict = f"low_quality:{reason or 'unspecified'}"
    score: float | None = None
    if isinstance(quality, int | float):
        score = float(quality)
    elif isinstance(qs := getattr(quality, "score", None), int | float):
        score = float(qs)
    elif isinstance(getattr(sample, "det_score", None), int | float):
        score = float(sample.det_score)
    if verdict == "ok" and emb is None:
        verdict = "low_quality:no_embedding"
    if verdict != "ok":
        emb = None
    return verdict, (None if emb is None else np.asarray(emb, dtype=np.float32)), score


def collect_images(inputs: Iterable[Path]) -> list[Path]:
    """Expand directories into their image files (sorted); keep files as given."""
    out: list[Path] = []
    for p in inputs:
        if p.is_dir():
            for q in sorted(p.iterdir()):
                if q.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                if not q.is_file():  # a FIFO, device or directory named .jpg
                    log.warning("enrolment: skipping %s: not a regular file", q.name)
                    continue
                out.append(q)
        else:
            out.append(p)
    return out


def _read_image(path: Path) -> np.ndarray | None:
    """The decoded image, or None (logged with the reason) when the file is unusable:
    not a regular file, too large, an unknown format, a header claiming too many pixels,
    corrupt. One bad file never stops the others."""
    from gateway.face.image import ImageError, load_image

    try:
        return load_image(path)
    except ImageError as exc:
        log.warning("enrolment image %s unreadable: %s", path.name, str(exc).split(": ", 1)[-1])
        return None


def _store(
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    person_id: str,
    good: list[tuple[np.ndarray, float | None]],
    *,
    model: str,
    max_templates: int,
    actor: str,
    source: str,
    verdicts: list[SampleVerdict],
    now: float,
    min_good: tuple[int, str],
) -> EnrolmentResult:
    """Keep the best ``max_templates`` samples, encrypted, with their audit row; or raise
    :class:`EnrolmentError` (nothing stored) with fewer than ``min_good = (n, "image" |
    "frame")`` good samples."""
    if len(good) < min_good[0]:
        raise EnrolmentError(
            f"person {person_id}: {len(good)} good {min_good[1]}(s), at least {min_good[0]}"
            " needed; nothing stored",
            verdicts,
        )
    good.sort(key=lambda g: -(g[1] if g[1] is not None else 0.0))
    keep = good[:max_templates]
    embeddings = np.stack([g[0] for g in keep])
    qualities = [g[1] if g[1] is not None else float("nan") for g in keep]
    with transaction(db):
        site = vault.store_templates(db, person_id, embeddings, model=model, qualities=qualities)
        audit.append(
            db,
            actor,
            "template.create",
            person_id,
            {
                "count": len(keep),
                "model": model,
                "source": source,
                "rejected": sum(1 for v in verdicts if not v.ok),
            },
            now=now,
        )
    gallery.replace_person(person_id, site)
    log.info(
        "person %s enrolled from %s: %d templates, %d rejected",
        person_id,
        source,
        len(keep),
        sum(1 for v in verdicts if not v.ok),
    )
    return EnrolmentResult(person_id, verdicts, len(keep))


def enroll_images(  # noqa: PLR0917 - positional signature agreed with the lead
    db: sqlite_utils.Database,
    vault: Vault,
    pipeline: EmbedsImages,
    gallery: GalleryLike,
    person_id: str,
    paths: Sequence[Path],
    progress: Progress | None = None,
    *,
    min_good: int = 1,
    max_templates: int = 10,
    model: str = "sface",
    actor: str = "operator",
    grace_days: float = 30,
    now: float | None = None,
) -> EnrolmentResult:
    """Enrol a consenting person from image files; store templates only (never images).

    Raises :class:`gateway.privacy.consent.ConsentError` without a valid current consent
    (before any image is read) and :class:`EnrolmentError` when fewer than ``min_good``
    images are accepted (nothing is stored then).
    """
    now = time.time() if now is None else now
    require_consent(db, person_id, grace_days=grace_days, now=now)
    files = collect_images(paths)
    if not files:
        raise EnrolmentError("no image files given")

    def samples() -> Iterator[tuple[str, np.ndarray | None]]:
        for path in files:
            yield path.name, _read_image(path)

    return _enroll_samples(
        db,
        vault,
        pipeline,
        gallery,
        person_id,
        samples(),
        len(files),
        progress=progress,
        min_good=min_good,
        max_templates=max_templates,
        model=model,
        actor=actor,
        source="images",
        now=now,
    )


@dataclass(frozen=True)
class JudgedSamples:
    """Samples judged by the pipeline, nothing stored yet: each one's verdict and the
    embeddings (with their quality) of the good ones; the pixels are already zeroed."""

    verdicts: list[SampleVerdict]
    good: list[tuple[np.ndarray, float | None]]


def _judge(
    pipeline: EmbedsImages,
    samples: Iterable[tuple[str, np.ndarray | None]],
    total: int,
    progress: Progress | None,
) -> JudgedSamples:
    """Judge each image and zero its pixels after use (no database: any thread)."""
    verdicts: list[SampleVerdict] = []
    good: list[tuple[np.ndarray, float | None]] = []
    for i, (label, image) in enumerate(samples):
        if image is None:
            verdicts.append(SampleVerdict(label, "unreadable"))
        else:
            try:
                verdict, emb, score = interpret_sample(pipeline.embed_image(image))
            except ModelError:
                raise
            except (GatewayError, ValueError, TypeError) as exc:
                log.warning("enrolment image %s rejected: %s", label, exc)
                verdict, emb, score = "unreadable", None, None
            finally:
                image.fill(0)  # do not keep pixels in freed memory longer than needed
                del image
            verdicts.append(SampleVerdict(label, verdict, score))
            if emb is not None:
                good.append((emb, score))
        if progress is not None:
            progress(i + 1, total, label)
    return JudgedSamples(verdicts, good)


def _enroll_samples(  # noqa: PLR0917 - the shared core of the two public entry points
    db: sqlite_utils.Database,
    vault: Vault,
    pipeline: EmbedsImages,
    gallery: GalleryLike,
    person_id: str,
    samples: Iterable[tuple[str, np.ndarray | None]],
    total: int,
    *,
    progress: Progress | None,
    min_good: int,
    max_templates: int,
    model: str,
    actor: str,
    source: str,
    now: float,
) -> EnrolmentResult:
    """Judge each image, zero its pixels after use, and store the good templates."""
    judged = _judge(pipeline, samples, total, progress)
    return _store(
        db,
        vault,
        gallery,
        person_id,
        list(judged.good),
        model=model,
        max_templates=max_templates,
        actor=actor,
        source=source,
        verdicts=judged.verdicts,
        now=now,
        min_good=(min_good, "image"),
    )


def _frame_verdict(obs_list: Sequence[Any], min_liveness: float) -> tuple[str, Any]:
    if not obs_list:
        return "no_face", None
    if len(obs_list) > 1:
        return "several_faces", None
    obs = obs_list[0]
    q = getattr(obs, "quality", None)
    if q is not None and not getattr(q, "ok", True):
        return f"low_quality:{_text(getattr(q, 'reason', None)) or 'unspecified'}", None
    emb = getattr(obs, "embedding", None)
    if emb is None:
        return "low_quality:no_embedding", None
    live = getattr(obs, "liveness", None)
    if live is None or live < min_liveness:  # not measured = not accepted at the gate
        return "not_live", None
    if getattr(obs, "relief", None) is False:  # a camera pair's check failed (3-D or NIR)
        return "not_live", None
    return "ok", obs


async def enroll_from_frames(
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    person_id: str,
    observations: AsyncIterator[Any],
    *,
    needed: int = 3,
    min_good: int | None = None,
    max_frames: int = 150,
    timeout_s: float | None = 30.0,
    min_liveness: float = 0.5,
    model: str = "sface",
    actor: str = "gate",
    grace_days: float = 30,
    clock: Callable[[], float] = time.time,
) -> EnrolmentResult:
    """At-gate enrolment from the live camera, after a card or PIN identified the person.

    ``observations`` yields, per analysed (zone-masked) frame, the list of
    ``FaceObservation`` (or a single observation). Collects ``needed`` good frames (one face,
    quality ok, embedding present, MEASURED liveness >= ``min_liveness``), stopping after
    ``max_frames`` frames or ``timeout_s`` seconds. Consent is checked first.
    """
    require_consent(db, person_id, grace_days=grace_days, now=clock())
    min_good = needed if min_good is None else min_good
    verdicts: list[SampleVerdict] = []
    good: list[tuple[np.ndarray, float | None]] = []

    async def consume() -> None:
        n = 0
        async for item in observations:
            n += 1
            obs_list = list(item) if isinstance(item, list | tuple) else [item]
            verdict, obs = _frame_verdict(obs_list, min_liveness)
            score = getattr(obs, "det_score", None) if obs is not None else None
            verdicts.append(SampleVerdict(f"frame {n}", verdict, score))
            if obs is not None:
                good.append((np.asarray(obs.embedding, dtype=np.float32), score))
            del item, obs_list, obs
            if len(good) >= needed or n >= max_frames:
                return

    try:
        if timeout_s is None:
            await consume()
        else:
            async with asyncio.timeout(timeout_s):
                await consume()
    except TimeoutError:
        log.info("at-gate enrolment of %s timed out after %.0f s", person_id, timeout_s)
    return _store(
        db,
        vault,
        gallery,
        person_id,
        good,
        model=model,
        max_templates=max(needed, 1),
        actor=actor,
        source="camera",
        verdicts=verdicts,
        now=clock(),
        min_good=(min_good, "frame"),
    )


def enroll_arrays(  # noqa: PLR0917 - mirrors enroll_images
    db: sqlite_utils.Database,
    vault: Vault,
    pipeline: EmbedsImages,
    gallery: GalleryLike,
    person_id: str,
    images: Sequence[np.ndarray],
    *,
    min_good: int = 1,
    max_templates: int = 10,
    model: str = "sface",
    actor: str = "operator",
    source: str = "memory",
    grace_days: float = 30,
    now: float | None = None,
) -> EnrolmentResult:
    """Enrol from in-memory BGR images (kiosk, demo); same rules as :func:`enroll_images`.

    The caller's buffers are zeroed after use; nothing is written anywhere but templates.
    """
    now = time.time() if now is None else now
    require_consent(db, person_id, grace_days=grace_days, now=now)
    return _enroll_samples(
        db,
        vault,
        pipeline,
        gallery,
        person_id,
        ((f"image {i + 1}", image) for i, image in enumerate(images)),
        len(images),
        progress=None,
        min_good=min_good,
        max_templates=max_templates,
        model=model,
        actor=actor,
        source=source,
        now=now,
    )


def judge_arrays(pipeline: EmbedsImages, images: Sequence[np.ndarray]) -> JudgedSamples:
    """The first half of :func:`enroll_arrays`, for a caller that runs the slow part (the
    face models) off its database thread: judge the in-memory images, zero them; nothing
    stored, no database. :func:`store_judged` is the second half."""
    return _judge(
        pipeline, ((f"image {i + 1}", im) for i, im in enumerate(images)), len(images), None
    )


def store_judged(
    db: sqlite_utils.Database,
    vault: Vault,
    gallery: GalleryLike,
    person_id: str,
    judged: JudgedSamples,
    *,
    actor: str,
    source: str,
    grace_days: float,
) -> EnrolmentResult:
    """The second half of :func:`enroll_arrays` with its defaults (one good image, ten
    templates at most; quick: the database thread): consent checked again (it may have
    been withdrawn while the images were judged), then the good templates stored
    encrypted, or :class:`EnrolmentError` with too few."""
    now = time.time()
    require_consent(db, person_id, grace_days=grace_days, now=now)
    return _store(
        db, vault, gallery, person_id, list(judged.good), model="sface", max_templates=10,
        actor=actor, source=source, verdicts=judged.verdicts, now=now, min_good=(1, "image"),
    )  # fmt: skip
