"""Consent withdrawal fanned out from gate to gate (the Measures: erase "on every gate").

When a person withdraws at one gate (keypad, MQTT command, CLI), that gate publishes on
``{prefix}/{site}/{gate}/withdrawal`` a message naming the person only by a keyed hash,
authenticated with ``Purpose.WITHDRAWAL_FANOUT`` of the gates key (``gateway.keys``: only
the site's gates can make or read one):

    {"v": 2, "gate": ORIGIN, "salt": 16 hex, "subject": HMAC(k, "person:" + salt + "|" + id)
     [:32 hex], "ts": UNIX_SECONDS, "nonce": 16 hex,
     "mac": HMAC(k, "v2|gate|salt|subject|ts|nonce") hex}

The salt is fresh per message, so two withdrawals of the same person (or a withdrawal and
the event beside it) carry no common subject. Version 1 messages (no salt: a subject stable
for ever) from gates not upgraded yet are still accepted.

Every gate subscribes to ``{prefix}/{site}/+/withdrawal``, checks the MAC, the time window
and the nonce, finds which of its own people the subject is, and erases that person's face
data at once (channel ``compound``; never fanned out again). A forged or replayed message is
refused and logged; nothing is erased.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.errors import ProtocolError
from gateway.mqtt.payload import PayloadError, loads_bounded

WINDOW_S = 600.0
MAX_BYTES = 1024
"""A fan-out message is ~200 bytes; anything much larger is refused unparsed."""


def subject_of(key: bytes, person_id: str, salt: str = "") -> str:
    """The person's keyed hash (32 hex digits) as carried in a fan-out message (version 1
    without a salt)."""
    text = b"person:" + (f"{salt}|" if salt else "").encode() + person_id.encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()[:32]


def _mac(key: bytes, gate: str, subject: str, ts: int, nonce: str, *, salt: str = "") -> str:
    text = (
        f"v2|{gate}|{salt}|{subject}|{ts}|{nonce}" if salt else f"v1|{gate}|{subject}|{ts}|{nonce}"
    )
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def build(key: bytes, origin_gate: str, person_id: str, *, now: float | None = None) -> bytes:
    """The message announcing that ``person_id`` withdrew at ``origin_gate``."""
    ts = int(time.time() if now is None else now)
    nonce, salt = secrets.token_hex(8), secrets.token_hex(8)
    subject = subject_of(key, person_id, salt)
    doc = {
        "v": 2,
        "gate": origin_gate,
        "salt": salt,
        "subject": subject,
        "ts": ts,
        "nonce": nonce,
        "mac": _mac(key, origin_gate, subject, ts, nonce, salt=salt),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Withdrawal:
    """A verified fan-out message."""

    origin_gate: str
    subject: str
    salt: str = ""


class FanoutReceiver:
    """Verifies fan-out messages: MAC, time window, one use per nonce."""

    def __init__(self, key: bytes, own_gate: str, window_s: float = WINDOW_S) -> None:
        """``key``: ``Keys.subkey(Purpose.WITHDRAWAL_FANOUT)``."""
        self.key = key
        self.own_gate = own_gate
        self.window_s = window_s
        self._seen: dict[str, float] = {}

    def accept(self, payload: bytes, now: float | None = None) -> Withdrawal | None:
        """The withdrawal, None for our own message; ProtocolError names what is wrong."""
        now = time.time() if now is None else now
        try:
            doc: Any = loads_bounded(payload, max_bytes=MAX_BYTES)
        except PayloadError as exc:
            raise ProtocolError(f"withdrawal fan-out refused ({exc.reason}): {exc}") from None
        if not isinstance(doc, dict) or doc.get("v") not in (1, 2):
            raise ProtocolError("withdrawal fan-out: not a version 1 or 2 message")
        salt = doc.get("salt", "") if doc["v"] == 2 else ""
        gate, subject, ts, nonce, mac = (
            doc.get("gate"),
            doc.get("subject"),
            doc.get("ts"),
            doc.get("nonce"),
            doc.get("mac"),
        )
        if not (
            isinstance(gate, str)
            and isinstance(subject, str)
            and isinstance(ts, int)
            and not isinstance(ts, bool)
            and isinstance(nonce, str)
            and isinstance(mac, str)
            and isinstance(salt, str)
            and (doc["v"] == 1 or len(salt) == 16)
        ):
            raise ProtocolError("withdrawal fan-out: missing or mistyped fields")
        if not hmac.compare_digest(mac, _mac(self.key, gate, subject, ts, nonce, salt=salt)):
            raise ProtocolError(f"withdrawal fan-out from {gate!r}: bad MAC (not this site's)")
        if abs(now - ts) > self.window_s:
            raise ProtocolError(f"withdrawal fan-out from {gate!r}: stale ({now - ts:.0f} s)")
        for old in [n for n, t in self._seen.items() if now - t > 2 * self.window_s]:
            del self._seen[old]
        if nonce in self._seen:
            raise ProtocolError(f"withdrawal fan-out from {gate!r}: replayed")
        self._seen[nonce] = now
        if gate == self.own_gate:
            return None
        return Withdrawal(gate, subject, salt)


def find_person(key: bytes, subject: str, people: Iterable[str], salt: str = "") -> str | None:
    """Which of ``people`` the subject (made with ``salt``) names (None: not one of ours)."""
    for pid in people:
        if hmac.compare_digest(subject_of(key, pid, salt), subject):
            return pid
    return None
