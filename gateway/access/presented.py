"""What was presented at a reader or camera, already resolved to people (no secrets here).

The caller resolves card HMACs, PIN hashes and face matches to person ids before building
these records; card numbers, PINs and embeddings never reach the access layer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from .decision import Factor


class FaceResult(StrEnum):
    """The fused face verdict (see ``gateway.access.fusion``)."""

    MATCH = "match"
    NO_MATCH = "no_match"
    SPOOF = "spoof"
    LOW_QUALITY = "low_quality"


class PinKind(StrEnum):
    """Kinds of PIN (same values as the ``pins.kind`` column)."""

    NORMAL = "normal"
    DURESS = "duress"
    VISITOR = "visitor"


@dataclass(frozen=True, slots=True)
class FacePresented:
    """A fused face result.

    ``one_to_one=False``: a 1:N identification, ``person_id`` is who was found (None when
    unknown). ``one_to_one=True``: a 1:1 verification against the claimed person
    ``person_id``; ``MATCH`` means confirmed, ``NO_MATCH`` means it is someone else.
    ``frame_ts`` is the newest contributing frame; ``liveness_flagged`` says passive liveness
    failed but the camera's policy let the result through (advisory).
    """

    result: FaceResult
    frame_ts: float
    person_id: str | None = None
    one_to_one: bool = False
    liveness_flagged: bool = False


@dataclass(frozen=True, slots=True)
class CardPresented:
    """A card read, resolved: ``person_id`` None for an unknown or revoked card."""

    person_id: str | None


@dataclass(frozen=True, slots=True)
class PinPresented:
    """A PIN entry, resolved: ``person_id`` None when no PIN matched.

    For visitor PINs give ``expires_at``/``uses_left`` from the ``pins`` row and its id as
    ``ref`` so a grant can say which row to decrement.
    """

    person_id: str | None
    kind: PinKind = PinKind.NORMAL
    expires_at: float | None = None
    uses_left: int | None = None
    ref: int | None = None


@dataclass(frozen=True, slots=True)
class CredentialsPresented:
    """The factors presented at one door reader in one go.

    ``reader`` keys pending second factors (a door with several readers keeps one pending
    state per reader). ``locked_out`` is the reader/credential lockout state (too many
    failures at this keypad), checked before anything else.
    """

    face: FacePresented | None = None
    card: CardPresented | None = None
    pin: PinPresented | None = None
    reader: str = ""
    locked_out: bool = False

    @property
    def factors(self) -> frozenset[Factor]:
        """Which kinds of factor are present."""
        out: set[Factor] = set()
        if self.face is not None:
            out.add(Factor.FACE)
        if self.card is not None:
            out.add(Factor.CARD)
        if self.pin is not None:
            out.add(Factor.PIN)
        return frozenset(out)

    def merge(self, later: CredentialsPresented) -> CredentialsPresented:
        """These factors plus those of ``later`` (``later`` wins a clash; its lockout too)."""
        return replace(
            self,
            face=later.face if later.face is not None else self.face,
            card=later.card if later.card is not None else self.card,
            pin=later.pin if later.pin is not None else self.pin,
            locked_out=later.locked_out,
        )
