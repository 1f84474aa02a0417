"""The access controller: credentials and faces in, door commands, feedback and events out.

It owns no policy of its own: identification comes from :mod:`gateway.credentials.store` and the
face gallery, the verdict from :class:`gateway.access.PolicyEngine`, the door from its
:class:`~gateway.hardware.door_controller.DoorController`. Events carry a rotating pseudonym,
never a name, card number, PIN, image, embedding or score.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import access
from gateway.access import (
    CardPresented,
    CredentialsPresented,
    Decision,
    PersonFacts,
    PinKind,
    PinPresented,
    PolicyEngine,
    Reason,
    Role,
)
from gateway.credentials.hashing import LockedOutError, LockoutEvent, PinMatch
from gateway.credentials.store import Credentials
from gateway.gate.event_mapping import (
    access_method,
    deny_reason,
    device_reason,
    unlock_cause,
    utc,
)
from gateway.gate.keypad_menu import KeypadMenu
from gateway.hardware import feedback
from gateway.hardware.door import DoorEvent, Step
from gateway.hardware.door_controller import DoorController
from gateway.hardware.events import (
    CardRead,
    CardReadError,
    InputChanged,
    KeyPress,
    ReaderEvent,
    ReaderOffline,
    ReaderOnline,
    Tamper,
)
from gateway.hardware.keypad import KeypadBuffer, PinEntered
from gateway.hardware.readers import Reader
from gateway.mqtt import events as ev
from gateway.services.cache_state import CacheState
from gateway.services.decision_reads import DecisionReads

log = logging.getLogger(__name__)

Emit = Callable[[ev.BaseEvent], None]
Pseudonym = Callable[[str | None], str | None]
#: the decision core's defaults (the freshness limit of face evidence)
_FUSION = access.FusionSettings()


@dataclass
class DoorRuntime:
    """What the controller keeps per door."""

    name: str
    controller: DoorController
    reader: str | None
    camera: str | None
    unlock_s: float
    held_open_s: float
    grants_since_unlock: int = 0
    faces_seen: int = 0


TIMINGS_KEPT = 1000


@dataclass
class ControllerStats:
    """Counters for status and benchmarks."""

    decisions: int = 0
    grants: int = 0
    denials: int = 0
    storage_errors: int = 0
    last_decision_ms: float | None = None
    timings: deque[float] = field(default_factory=lambda: deque(maxlen=TIMINGS_KEPT))
    """Capture-to-grant times of the latest TIMINGS_KEPT grants (bounded: a daemon runs
    for months)."""


class AccessController:
    """Turn reader events and face outcomes into decisions, door commands and events."""

    def __init__(
        self,
        *,
        site: str,
        gate: str,
        db: Any,
        credentials: Credentials,
        engine: PolicyEngine,
        doors: Mapping[str, DoorRuntime],
        readers: Mapping[str, Reader],
        emit: Emit,
        pseudonym: Pseudonym,
        renotice_grace_days: float = 30,
        max_decision_age_ms: float = _FUSION.max_decision_age_ms,
        pin_timeout_s: float = 5.0,
        on_withdraw: Callable[[str, str], Any] | None = None,
        on_enrol: Callable[[str, str], Awaitable[str]] | None = None,
        run_db: Callable[..., Awaitable[Any]] | None = None,
        clock: Callable[[], float] = time.time,
        cache_state: CacheState | None = None,
        run_decide: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.site = site
        self.gate = gate
        self.db = db
        self.credentials = credentials
        self.engine = engine
        self.doors = dict(doors)
        self.readers = dict(readers)
        self.emit_raw = emit
        self.pseudonym = pseudonym
        self.grace_days = renotice_grace_days
        self.max_age_ms = max_decision_age_ms
        self.clock = clock
        self.run_db: Callable[..., Awaitable[Any]] = run_db or asyncio.to_thread
        # Credential and person reads run where the credential store's connection lives
        # (its own thread in the daemon: never queued behind housekeeping on run_db).
        self.run_decide: Callable[..., Awaitable[Any]] = run_decide or self.run_db
        self.reads = DecisionReads(
            credentials, self.run_decide, cache=cache_state, gate=gate, run_db=self.run_db
        )
        self.stats = ControllerStats()
        self.storage_degraded: str | None = None
        self.reader_door = {d.reader: d.name for d in self.doors.values() if d.reader}
        self.keypads = {
            name: KeypadBuffer(name, inter_digit_s=pin_timeout_s, min_len=1, max_len=8)
            for name in self.readers
        }
        self.menu = KeypadMenu(
            credentials=credentials,
            run_decide=self.run_decide,
            reader_door=self.reader_door,
            text=self._text,
            show=self._feedback,
            storage_error=self._storage_error,
            on_withdraw=on_withdraw,
            on_enrol=on_enrol,
        )
        self._lock = asyncio.Lock()
        credentials.on_lockout = self._on_lockout

    # -- events -----------------------------------------------------------------------
    def emit(self, model: type[ev.BaseEvent], **fields: Any) -> None:
        """Build and publish one event (never raises)."""
        try:
            event = model(site=self.site, gate=self.gate, **fields)
        except Exception:
            log.exception("gate %s: cannot build %s event", self.gate, model.__name__)
            return
        self.emit_raw(event)

    def on_door_event(self, de: DoorEvent) -> None:
        """Map a door transition to its MQTT event."""
        door = self.doors.get(de.door)
        if de.kind == "unlocked":
            self.emit(
                ev.DoorUnlocked,
                door=de.door,
                cause=unlock_cause(de.reason),
                seconds=door.unlock_s if door else None,
            )
        elif de.kind == "relocked":
            self.emit(ev.DoorLocked, door=de.door)
            if door is not None:
                self._check_tailgating(door)
        elif de.kind == "opened":
            self.emit(ev.DoorOpened, door=de.door)
        elif de.kind == "closed":
            self.emit(ev.DoorClosed, door=de.door)
        elif de.kind == "held_open":
            self.emit(ev.DoorHeldOpen, door=de.door, seconds=door.held_open_s if door else 0.0)
        elif de.kind == "forced_open":
            self.emit(ev.DoorForced, door=de.door)

    def _check_tailgating(self, door: DoorRuntime) -> None:
        verdict = access.assess_tailgating(
            door.faces_seen, 1, unlocks=max(1, door.grants_since_unlock)
        )
        if door.grants_since_unlock and verdict.suspected:
            self.emit(
                ev.TailgatingSuspected,
                door=door.name,
                people_seen=door.faces_seen,
                grants=door.grants_since_unlock,
            )
        door.grants_since_unlock = 0
        door.faces_seen = 0

    def _on_lockout(self, le: LockoutEvent) -> None:
        door = self.reader_door.get(le.subject) if le.scope == "reader" else None
        if door is None and le.scope == "reader":
            return
        self.emit(
            ev.Lockout,
            door=door or next(iter(self.doors)),
            scope=ev.LockoutScope.READER if le.scope == "reader" else ev.LockoutScope.PIN,
            until=utc(le.locked_until),
        )

    # -- readers ------------------------------------------------------------------------
    async def on_reader_event(self, reader: str, event: ReaderEvent) -> None:
        """Handle one event from a card reader / keypad."""
        if isinstance(event, ReaderOnline):
            self.emit(ev.ReaderOnline, reader=reader)
        elif isinstance(event, ReaderOffline):
            self.emit(ev.ReaderOffline, reader=reader, reason=device_reason(event.reason))
        elif isinstance(event, Tamper):
            self.emit(ev.Tamper, device=reader, active=event.active)
        elif isinstance(event, InputChanged):
            for door in self.doors.values():
                if door.controller.inputs.role(event) is not None and self._inputs_from(
                    door, reader
                ):
                    await door.controller.handle(event)
        elif isinstance(event, CardRead):
            await self._card(reader, event)
        elif isinstance(event, CardReadError):
            log.info("reader %s: unreadable card (%s)", reader, event.reason)
            await self._feedback(reader, feedback.Outcome.DENIED)
        elif isinstance(event, KeyPress):
            entry = self.keypads[reader].key(event.key, self.clock())
            if isinstance(entry, PinEntered):
                await self._pin(reader, entry.pin)

    def _inputs_from(self, door: DoorRuntime, reader: str) -> bool:
        bound: set[str] = getattr(door.controller, "input_readers", set())
        return reader in bound if bound else door.reader == reader

    async def tick(self) -> None:
        """Periodic work: keypad timeouts, second-factor timeouts, menus."""
        now = self.clock()
        for pad in self.keypads.values():
            pad.tick(now)
        for decision in self.engine.poll(now):
            await self._act(decision, reader=self._reader_of(decision.door))
        self.menu.expire(now)

    def _reader_of(self, door: str) -> str | None:
        d = self.doors.get(door)
        return d.reader if d else None

    async def _card(self, reader: str, card: CardRead) -> None:
        door = self.reader_door.get(reader)
        if door is None:
            log.warning("reader %s: card presented at a reader without a door", reader)
            return
        now = self.clock()
        try:
            person = await self.reads.call("card lookup", self.credentials.identify_card, card)
        except sqlite3.Error as exc:
            self._storage_error("card lookup", exc)
            person = None
        if person is not None:
            self.menu.open(reader, person, now, by_card=True)
        presented = CredentialsPresented(card=CardPresented(person), reader=reader)
        await self._decide(door, presented, person, reader=reader, started=now)

    async def _pin(self, reader: str, pin: str) -> None:
        door = self.reader_door.get(reader)
        if door is None:
            return
        now = self.clock()
        if await self.menu.entry(reader, pin, now):
            return
        if len(pin) < 4:
            await self._feedback(reader, feedback.Outcome.DENIED)
            return
        pending = self.engine.pending_for(door, reader, now)
        claimed = pending.person_id if pending is not None else None
        locked = False
        match: PinMatch | None = None
        try:
            if claimed is not None:
                match = await self.reads.call(
                    "PIN check",
                    self.credentials.verify_pin_for,
                    claimed,
                    pin,
                    reader=reader,
                    now=now,
                )
            else:
                match = await self.reads.call(
                    "PIN lookup", self.credentials.identify_pin, pin, reader=reader, now=now
                )
        except LockedOutError:
            locked = True
        except sqlite3.Error as exc:
            self._storage_error("PIN lookup", exc)
        if match is not None:
            self.menu.open(reader, match.person_id, now)
        pin_p = PinPresented(
            match.person_id if match else None,
            kind=PinKind(match.kind) if match else PinKind.NORMAL,
            expires_at=match.expires_at if match else None,
            uses_left=match.uses_left if match else None,
            ref=match.pin_id if match else None,
        )
        presented = CredentialsPresented(pin=pin_p, reader=reader, locked_out=locked)
        await self._decide(
            door, presented, match.person_id if match else None, reader=reader, started=now
        )

    # -- faces ----------------------------------------------------------------------------
    async def on_face_outcome(self, camera: str, outcome: access.FusionOutcome) -> None:
        """Handle one fused face outcome of a camera's approach tracker."""
        door_rt = next((d for d in self.doors.values() if d.camera == camera), None)
        if door_rt is None:
            return
        door = door_rt.name
        reader = door_rt.reader
        now = self.clock()
        if isinstance(outcome, access.Recognised):
            door_rt.faces_seen = max(door_rt.faces_seen, outcome.faces_in_approach)
            pending = self.engine.pending_for(door, reader or "", now) if reader else None
            claimed = pending.person_id if pending is not None else None
            face = access.as_presented(outcome, claimed=claimed)
            if face is None:
                return
            presented = CredentialsPresented(face=face, reader=reader or "")
            person = face.person_id
            await self._decide(door, presented, person, reader=reader, started=outcome.frame_ts)
        elif isinstance(outcome, access.UnknownFace):
            self._deny_event(door, ev.AccessMethod.FACE, ev.DenyReason.UNKNOWN_FACE)
            await self._feedback(reader, feedback.Outcome.DENIED)
        elif isinstance(outcome, access.SpoofSuspected) and outcome.after_grant:
            # One decision per person and approach: nobody refused, the office told.
            log.warning(
                "door %s: a face recognised in this approach later failed liveness; no new "
                "decision (the approach stays closed to other faces)",
                door,
            )
            self.emit(ev.LivenessFailedAfterGrant, door=door)
        elif isinstance(outcome, access.SpoofSuspected):
            self._deny_event(door, ev.AccessMethod.FACE, ev.DenyReason.SPOOF_SUSPECTED)
            await self._feedback(reader, feedback.Outcome.DENIED)
        elif isinstance(outcome, access.LowQuality):
            # A face that is still far away ("too_small") is not an attempt yet; a blurred,
            # dark or turned face is, and the resident is told why nothing happened.
            if outcome.reason != "too_small":
                self._deny_event(door, ev.AccessMethod.FACE, ev.DenyReason.LOW_QUALITY)
        elif isinstance(outcome, access.OfferFallback):
            log.info("door %s: face not recognised; offering PIN or card", door)
            await self._feedback(reader, feedback.Outcome.USE_PIN_OR_CARD)

    def note_faces(self, camera: str, count: int) -> None:
        """Remember how many faces an approach showed (tailgating)."""
        for d in self.doors.values():
            if d.camera == camera:
                d.faces_seen = max(d.faces_seen, count)

    # -- decisions ------------------------------------------------------------------------
    def _facts(self, person_id: str | None, now: float) -> PersonFacts | None:
        if person_id is None:
            return None
        from gateway.privacy.consent import face_status
        from gateway.privacy.people import find_person

        if not self.credentials.may_try_store():  # down, or answering from memory only
            return self.reads.facts_from_cache(person_id, now)
        db = self.credentials.db  # on the decision thread, with the credential store
        try:
            person = find_person(db, person_id)
            if person is None:
                return None
            consent = face_status(db, person_id, grace_days=self.grace_days, now=now)
            locked = self.credentials.locked_for("person", person_id, now) > 0
        except sqlite3.Error as exc:
            self._storage_error("person lookup", exc)
            self.credentials.mark_store_down(f"person lookup: {type(exc).__name__}")
            return self.reads.facts_from_cache(person_id, now)
        return PersonFacts(
            person_id=person_id,
            role=Role(person.role),
            access_group=person.access_group,
            valid_from=person.valid_from,
            valid_until=person.valid_until,
            face_consent=consent.allowed,
            locked_out=locked,
        )

    async def _decide(
        self,
        door: str,
        presented: CredentialsPresented,
        person_id: str | None,
        *,
        reader: str | None,
        started: float,
    ) -> Decision:
        async with self._lock:
            now = self.clock()
            facts = await self.reads.call("person lookup", self._facts, person_id, now)
            if presented.face is None and self.reads.refuse_from_memory(person_id, door):
                facts = None  # fail closed: the cache cannot vouch for this credential
            decision = self.engine.decide(door, presented, facts, now)
            opening = await self._act(decision, reader=reader, started=started)
        if opening is not None:
            # the relay's acknowledgement (up to the OSDP timeout) is awaited here, off the
            # decision lock: a slow reader at this door never delays the other doors
            await DoorController.applied(opening)
        return decision

    async def _act(
        self, decision: Decision, *, reader: str | None, started: float | None = None
    ) -> asyncio.Task[Step] | None:
        """Act on a decision; a grant returns the queued release (not yet acknowledged)."""
        door_rt = self.doors.get(decision.door)
        if door_rt is None:
            return None
        now = self.clock()
        if decision.reason is Reason.SECOND_FACTOR_REQUIRED:
            need = feedback.Outcome.NEED_PIN
            if access.Factor.CARD in decision.expects:
                need = feedback.Outcome.NEED_CARD
            elif access.Factor.FACE in decision.expects:
                need = feedback.Outcome.NEED_PIN  # the LED asks to look at the camera
                await self._text(reader, "Look at the camera")
            await self._feedback(reader, need)
            return None
        self.stats.decisions += 1
        method = access_method(decision)
        if decision.granted and not access.is_fresh(decision, now, self.max_age_ms):
            decision = _stale(decision)
        if decision.granted:
            opening = door_rt.controller.grant_nowait()
            await asyncio.sleep(0)  # the release reaches the relay before the feedback
            self.engine.commit(decision, now)
            door_rt.grants_since_unlock += 1
            self.stats.grants += 1
            if started is not None:
                ms = (now - started) * 1000
                self.stats.last_decision_ms = ms
                self.stats.timings.append(ms)
            person = self.pseudonym(decision.person_id)
            confidence = ev.Confidence.HIGH if method and "face" in method.value else None
            self.emit(
                ev.AccessGranted,
                door=decision.door,
                method=method,
                person=person,
                confidence=confidence,
            )
            if decision.duress:
                self.emit(ev.Duress, door=decision.door, method=method, person=person)
            # the relay and the reader's feedback first; then the (bounded) store writes
            await self._feedback(reader, feedback.Outcome.GRANTED)
            if decision.consume_visitor_use and decision.visitor_pin_ref is not None:
                ref = decision.visitor_pin_ref
                await self.reads.call("visitor PIN use", self.credentials.consume_use, ref)
            await self.reads.bookkeeping(self._record_grant, decision, method, now)
            return opening
        self.stats.denials += 1
        deny = deny_reason(decision.reason)
        self._deny_event(decision.door, method, deny, person=decision.person_id)
        if decision.duress:
            self.emit(
                ev.Duress,
                door=decision.door,
                method=method or ev.AccessMethod.PIN,
                person=self.pseudonym(decision.person_id),
            )
        await self._feedback(
            reader,
            feedback.Outcome.LOCKED_OUT
            if decision.reason is Reason.LOCKED_OUT
            else feedback.Outcome.DENIED,
        )
        await self.reads.bookkeeping(self._log_access, decision, method, now)
        return None

    def _deny_event(
        self,
        door: str,
        method: ev.AccessMethod | None,
        reason: ev.DenyReason,
        *,
        person: str | None = None,
    ) -> None:
        # A denied person is referenced only when the credential was theirs (e.g. outside
        # schedule); unknown faces and unknown cards never carry a reference.
        self.emit(
            ev.AccessDenied,
            door=door,
            method=method,
            reason=reason,
            person=self.pseudonym(person) if person else None,
        )

    def _record_grant(self, decision: Decision, method: ev.AccessMethod | None, now: float) -> None:
        from gateway.privacy.people import touch_last_seen

        try:
            if decision.person_id is not None:
                touch_last_seen(self.db, decision.person_id, now)
        except sqlite3.Error as exc:
            self._storage_error("grant bookkeeping", exc)
        self._log_access(decision, method, now)

    def _log_access(self, decision: Decision, method: ev.AccessMethod | None, now: float) -> None:
        from gateway.privacy import access_log

        try:
            access_log.record(
                self.db,
                ts=now,
                door=decision.door,
                method=method.value if method else "none",
                granted=decision.granted,
                reason=decision.reason.value,
                person_id=decision.person_id,  # stored only as a keyed pseudonym
            )
        except sqlite3.Error as exc:
            self._storage_error("access log", exc)
        else:
            if self.storage_degraded:
                log.warning("gate %s: storage works again", self.gate)
                self.storage_degraded = None

    def _storage_error(self, what: str, exc: Exception) -> None:
        self.stats.storage_errors += 1
        if self.storage_degraded is None:
            log.error(
                "gate %s: storage failure during %s (%s); decisions continue, events are "
                "buffered in memory",
                self.gate,
                what,
                exc,
            )
        self.storage_degraded = f"{what}: {exc}"

    # -- remote ----------------------------------------------------------------------------
    async def remote_unlock(self, door: str, seconds: float | None = None) -> None:
        """Momentary unlock by a signed command."""
        rt = self.doors[door]
        # queued for this door's relay: the MQTT loop does not wait for the acknowledgement
        # (a failed release is logged and retried by the door, as for a card)
        rt.controller.grant_nowait(reason="remote", seconds=seconds)
        await asyncio.sleep(0)  # the release is on its way before the reply
        log.info("door %s: remote unlock for %s s", door, seconds or rt.unlock_s)

    # -- feedback ---------------------------------------------------------------------------
    async def _feedback(self, reader: str | None, outcome: feedback.Outcome) -> None:
        if reader is None or reader not in self.readers:
            return
        await feedback.show(self.readers[reader], outcome)

    async def _text(self, reader: str | None, message: str) -> None:
        if reader is None or reader not in self.readers:
            return
        try:
            await self.readers[reader].text(message)
        except Exception as exc:  # noqa: BLE001 - feedback must never break a decision
            log.debug("reader %s: text failed: %s", reader, exc)


def _stale(decision: Decision) -> Decision:
    import dataclasses

    return dataclasses.replace(decision, granted=False, reason=Reason.STALE_DECISION)
