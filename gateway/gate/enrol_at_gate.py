"""At-gate enrolment: a resident identified by card or PIN enrols their face from the
door's camera (the keypad menu asks for it); the answer is a message for the reader."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from gateway.config.root import GatewayConfig
from gateway.errors import GatewayError
from gateway.face.gallery import Gallery
from gateway.gate.facepath import FacePath
from gateway.privacy.vault import Vault

log = logging.getLogger(__name__)


@dataclass(eq=False)
class GateEnrolment:
    """Enrol at the doors of one gate, from their running face paths."""

    cfg: GatewayConfig
    db: Any
    run_db: Callable[..., Awaitable[Any]]
    _: KW_ONLY
    vault: Vault
    gallery: Gallery
    face_paths: Mapping[str, FacePath]  # camera -> its face path, once the face paths run

    async def enrol(self, person_id: str, door: str) -> str:
        """Enrol a resident identified by card/PIN from the door's camera; a reader message."""
        from gateway.privacy.consent import face_status
        from gateway.privacy.enroll import enroll_from_frames

        cam = self.cfg.doors[door].camera
        path = self.face_paths.get(cam) if cam else None
        if path is None:
            return "Face enrolment is not available at this gate"
        status = await self.run_db(
            face_status, self.db, person_id, grace_days=self.cfg.privacy.renotice_grace_days
        )
        if not status.allowed:
            log.info("door %s: at-gate enrolment refused: %s", door, status.reason)
            return "No face consent on record: ask the management office"
        if await self.run_db(self.vault.has_face_data, self.db, person_id):
            # Never replace someone's face data at a gate: that is for the office, in person.
            log.info("door %s: at-gate enrolment refused: face data already on record", door)
            return "Face already enrolled: ask the management office to re-enrol"
        if not path.pipeline.has_liveness:
            log.info("door %s: at-gate enrolment refused: no anti-spoofing model", door)
            return "Face enrolment needs the liveness check: ask the management office"
        limit = self.cfg.privacy.gate_enrol_timeout_s
        try:
            result = await enroll_from_frames(
                self.db,
                self.vault,
                self.gallery,
                person_id,
                path.enrol_frames(limit),
                needed=self.cfg.privacy.gate_enrol_frames,
                timeout_s=limit,
                min_liveness=self.cfg.face.liveness_threshold,
                actor=f"gate:{door}",
                grace_days=self.cfg.privacy.renotice_grace_days,
            )
        except GatewayError as exc:
            log.info("door %s: at-gate enrolment failed: %s", door, exc)
            return "Face enrolment failed: please try again"
        log.info("door %s: face enrolled at the gate (%d templates)", door, result.stored)
        return "Face enrolled"
