"""The decision core's vocabulary mapped onto the event vocabulary, member by member.

Both mappings are total (a test iterates the enums): a new ``Reason`` or ``Method`` must be
given its event code here, it never falls back to a catch-all silently.
"""

from __future__ import annotations

import datetime as dt
import logging

from gateway.access import Decision, Method, Reason
from gateway.mqtt import events as ev

log = logging.getLogger(__name__)

#: the ``access.denied`` reason of each decision reason; None: the reason is not a denial
DENY_REASONS: dict[Reason, ev.DenyReason | None] = {
    Reason.GRANTED: None,
    Reason.UNKNOWN_FACE: ev.DenyReason.UNKNOWN_FACE,
    Reason.UNKNOWN_CARD: ev.DenyReason.UNKNOWN_CARD,
    Reason.INVALID_PIN: ev.DenyReason.INVALID_PIN,
    Reason.LOW_QUALITY: ev.DenyReason.LOW_QUALITY,
    Reason.SPOOF_SUSPECTED: ev.DenyReason.SPOOF_SUSPECTED,
    Reason.OUTSIDE_SCHEDULE: ev.DenyReason.OUTSIDE_SCHEDULE,
    Reason.HOLIDAY: ev.DenyReason.HOLIDAY,
    Reason.NOT_YET_VALID: ev.DenyReason.NOT_YET_VALID,
    Reason.EXPIRED: ev.DenyReason.EXPIRED,
    Reason.NO_CONSENT: ev.DenyReason.NO_CONSENT,
    Reason.METHOD_NOT_ALLOWED: ev.DenyReason.METHOD_NOT_ALLOWED,
    Reason.LOCKED_OUT: ev.DenyReason.LOCKED_OUT,
    Reason.ANTI_PASSBACK: ev.DenyReason.ANTI_PASSBACK,
    Reason.FACE_MISMATCH: ev.DenyReason.FACE_MISMATCH,
    Reason.CREDENTIAL_MISMATCH: ev.DenyReason.CREDENTIAL_MISMATCH,
    Reason.NOT_PERMITTED: ev.DenyReason.NOT_PERMITTED,
    Reason.STALE_DECISION: ev.DenyReason.STALE_DECISION,
    Reason.VISITOR_PIN_USED_UP: ev.DenyReason.VISITOR_PIN_USED_UP,
    Reason.SECOND_FACTOR_REQUIRED: None,  # a prompt for the second factor, no verdict yet
    Reason.SECOND_FACTOR_TIMEOUT: ev.DenyReason.SECOND_FACTOR_TIMEOUT,
    Reason.DURESS: None,  # a grant (with the silent alarm)
}

#: the event method of each way through a door
ACCESS_METHODS: dict[Method, ev.AccessMethod] = {
    Method.FACE: ev.AccessMethod.FACE,
    Method.CARD: ev.AccessMethod.CARD,
    Method.PIN: ev.AccessMethod.PIN,
    Method.CARD_PIN: ev.AccessMethod.CARD_PIN,
    Method.FACE_CARD: ev.AccessMethod.FACE_CARD,
    Method.FACE_PIN: ev.AccessMethod.FACE_PIN,
}

#: door-release reasons that are not an access grant
_UNLOCK_CAUSES = {
    "exit": ev.UnlockCause.EXIT_BUTTON,
    "exit_request": ev.UnlockCause.EXIT_BUTTON,
    "remote": ev.UnlockCause.REMOTE,
}


def deny_reason(reason: Reason) -> ev.DenyReason:
    """The ``access.denied`` reason of a refused decision."""
    deny = DENY_REASONS[reason]
    if deny is None:  # a decision refused with a grant's reason: a bug, reported loudly
        log.error("decision reason %s is not a denial; reported as invalid_credential", reason)
        return ev.DenyReason.INVALID_CREDENTIAL
    return deny


def access_method(decision: Decision) -> ev.AccessMethod | None:
    """The event method of a decision (None when no method was recognised)."""
    return None if decision.method is None else ACCESS_METHODS[decision.method]


def unlock_cause(reason: str) -> ev.UnlockCause:
    """Why a door was released, from the door controller's reason."""
    return _UNLOCK_CAUSES.get(reason, ev.UnlockCause.ACCESS)


def device_reason(reason: str) -> ev.DeviceReason:
    """The event code of a reader driver's free-text offline reason."""
    text = reason.lower()
    if "secure" in text:
        return ev.DeviceReason.SECURE_CHANNEL_FAILED
    if "timeout" in text:
        return ev.DeviceReason.TIMEOUT
    if "closed" in text or "disconnect" in text or "refused" in text or "lost" in text:
        return ev.DeviceReason.DISCONNECTED
    if "shutdown" in text:
        return ev.DeviceReason.SHUTDOWN
    return ev.DeviceReason.UNKNOWN


def utc(ts: float) -> dt.datetime:
    """An epoch timestamp as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(ts, dt.UTC)
