"""Access decisions (pure, clock injected): policy engine, multi-frame fusion, tailgating."""

from __future__ import annotations

from .antipassback import AntiPassbackMode, AntiPassbackPair, AntiPassbackState
from .decision import (
    FLAG_ANTI_PASSBACK,
    FLAG_LIVENESS_ADVISORY,
    FLAG_TAILGATING,
    Decision,
    Factor,
    LivenessPolicy,
    Method,
    Reason,
    is_fresh,
)
from .fusion import (
    ApproachTracker,
    FaceMatch,
    FusionOutcome,
    FusionSettings,
    LowQuality,
    OfferFallback,
    Recognised,
    SingleFrameRule,
    SpoofSuspected,
    UnknownFace,
    as_presented,
    near,
)
from .pending import PendingFactor, PendingFactors
from .policy import DoorPolicy, FaceMode, PersonFacts, PolicyEngine, Role
from .presented import (
    CardPresented,
    CredentialsPresented,
    FacePresented,
    FaceResult,
    PinKind,
    PinPresented,
)
from .schedule import (
    AccessGroup,
    Holiday,
    TimeRange,
    WeeklySchedule,
    parse_holidays,
    parse_weekly,
)
from .tailgating import TailgatingVerdict, assess_tailgating, flag_tailgating

__all__ = [
    "FLAG_ANTI_PASSBACK",
    "FLAG_LIVENESS_ADVISORY",
    "FLAG_TAILGATING",
    "AccessGroup",
    "AntiPassbackMode",
    "AntiPassbackPair",
    "AntiPassbackState",
    "ApproachTracker",
    "CardPresented",
    "CredentialsPresented",
    "Decision",
    "DoorPolicy",
    "FaceMatch",
    "FaceMode",
    "FacePresented",
    "FaceResult",
    "Factor",
    "FusionOutcome",
    "FusionSettings",
    "Holiday",
    "LivenessPolicy",
    "LowQuality",
    "Method",
    "OfferFallback",
    "PendingFactor",
    "PendingFactors",
    "PersonFacts",
    "PinKind",
    "PinPresented",
    "PolicyEngine",
    "Reason",
    "Recognised",
    "Role",
    "SingleFrameRule",
    "SpoofSuspected",
    "TailgatingVerdict",
    "TimeRange",
    "UnknownFace",
    "WeeklySchedule",
    "as_presented",
    "assess_tailgating",
    "flag_tailgating",
    "is_fresh",
    "near",
    "parse_holidays",
    "parse_weekly",
]
