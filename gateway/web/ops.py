"""The console's operations: checked input in, the services (the CLI's and the MQTT
commands' own operations) called on the right database thread, plain results out.

Pages (:mod:`gateway.web.pages`) render these results, the JSON API
(:mod:`gateway.web.api`) returns them. Input is bounded printable text; every refusal is a
:class:`gateway.errors.GatewayError` with a message meant for the operator.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
import time
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.privacy.consent import METHODS, SCOPES
from gateway.privacy.people import ROLES as PERSON_ROLES
from gateway.privacy.people import Person
from gateway.services import compliance as compliance_svc
from gateway.services import consent as consent_svc
from gateway.services import credentials as creds_svc
from gateway.services import people as people_svc
from gateway.web.backend import Backend

MAX_TEXT = 128
MAX_CARD_DIGITS = 20
PIN_KINDS = ("normal", "duress", "visitor")


class InputError(GatewayError):
    """A form or JSON field is missing or not acceptable."""


def text(data: Mapping[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    """A bounded single-line printable text field."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise InputError(f"{key} is required")
        return default
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InputError(f"{key} must be text of at most {MAX_TEXT} characters")
    if any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise InputError(f"{key} must not hold control or format characters")
    return value.strip()


def choice(data: Mapping[str, Any], key: str, options: tuple[str, ...], default: str) -> str:
    """One of ``options`` (``default`` when absent)."""
    value = text(data, key, required=False, default=default)
    if value not in options:
        raise InputError(f"{key} must be one of {', '.join(options)}")
    return value


def flag(data: Mapping[str, Any], key: str) -> bool:
    """A checkbox (``on``/``yes``/``true``) or a JSON boolean."""
    value = data.get(key)
    return value is True or (isinstance(value, str) and value.lower() in ("on", "yes", "true"))


def card(data: Mapping[str, Any]) -> tuple[int | None, int]:
    """``(facility, number)`` from the ``number`` (digits) and optional ``facility`` fields."""
    number = text(data, "number")
    facility = text(data, "facility", required=False)
    for name, value in (("number", number), ("facility", facility)):
        if value and not (value.isascii() and value.isdigit() and len(value) <= MAX_CARD_DIGITS):
            raise InputError(f"the card {name} must be 1 to {MAX_CARD_DIGITS} digits")
    return (int(facility) if facility else None, int(number))


def _person(p: Person) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.display_name,
        "unit": p.unit,
        "role": p.role,
        "group": p.access_group,
        "minor": p.is_minor,
    }


def person_row(row: people_svc.PersonRow) -> dict[str, Any]:
    """One line of the people list."""
    return _person(row.person) | {
        "face_enrolled": row.face_enrolled,
        "consent": row.consent_status,
    }


async def list_people(backend: Backend, query: str = "") -> list[dict[str, Any]]:
    """Everyone on record whose name, unit or id contains ``query`` (case-insensitive)."""
    rows = await backend.run_db(people_svc.list_people, backend.db)
    q = query.casefold()
    out = [person_row(r) for r in rows]
    return [
        r for r in out if not q or any(q in str(r[k]).casefold() for k in ("name", "unit", "id"))
    ]


async def add_person(backend: Backend, data: Mapping[str, Any], actor: str) -> str:
    """Record a person (``services.people.add_person``); the new id."""
    new = people_svc.NewPerson(
        text(data, "name"),
        unit=text(data, "unit", required=False),
        role=choice(data, "role", PERSON_ROLES, "resident"),
        access_group=text(data, "group", required=False, default="residents"),
        is_minor=flag(data, "minor"),
        birth_month=text(data, "birth_month", required=False) or None,
        guardian_id=text(data, "guardian", required=False) or None,
    )
    return str(await backend.run_db(people_svc.add_person, backend.db, new, actor=actor))


async def show_person(backend: Backend, person_id: str) -> dict[str, Any]:
    """One person, their consent history and face-processing state."""
    d = await backend.run_db(
        people_svc.show_person, backend.db, person_id, grace_days=backend.grace_days
    )
    view = await backend.run_db(
        consent_svc.show, backend.db, person_id, grace_days=backend.grace_days
    )
    guardian, candidates = None, []
    if d.person.is_minor and d.person.guardian_id is None:  # adults of the same unit
        rows = await backend.run_db(people_svc.list_people, backend.db)
        candidates = [
            _person(r.person)
            for r in rows
            if not r.person.is_minor and d.person.unit and r.person.unit == d.person.unit
        ]
    if d.person.guardian_id is not None:
        g = await backend.run_db(people_svc.find_person, backend.db, d.person.guardian_id)
        guardian = None if g is None else _person(g)
    return _person(d.person) | {
        "guardian": d.person.guardian_id,
        "guardian_person": guardian,
        "guardian_candidates": candidates,
        "birth_month": d.person.birth_month,
        "valid_from": d.person.valid_from,
        "valid_until": d.person.valid_until,
        "templates": d.templates,
        "face_allowed": d.face.allowed,
        "face_reason": d.face.reason,
        "card_or_pin": d.has_card_or_pin,
        "consents": [
            {
                "id": r.id,
                "status": r.status,
                "notice_version": r.notice_version,
                "method": r.method,
                "recorded_by": r.recorded_by,
                "scope": r.scope,
                "at": r.created_at,
            }
            for r in view.history
        ],
    }


async def edit_person(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Change name, unit, role or access group (``services.credentials.edit_person``);
    an absent field is kept."""

    def given(key: str) -> str | None:
        return text(data, key, required=False) if key in data else None

    edit = creds_svc.PersonEdit(
        name=given("name"),
        unit=given("unit"),
        role=choice(data, "role", PERSON_ROLES, "") if data.get("role") else None,
        access_group=given("group"),
    )
    p = await _credential_change(backend, creds_svc.edit_person, person_id, actor, edit=edit)
    return _person(p)


async def delete_person(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Erase a person (``services.people.delete_person``): needs ``confirm`` = their id."""
    if text(data, "confirm", required=False) != person_id:
        raise InputError("to delete, confirm by typing the person's id")
    done = await backend.run_decide(
        people_svc.delete_person,
        backend.deletion_deps(),
        person_id,
        actor=actor,
        channel="web",
        scrub_wait_s=0,  # card/PIN decisions share this thread: the scrub runs on its own
    )
    await backend.after_deletion()
    return dataclasses.asdict(done)  # counts and the receipt id: no biometric, no card


def notice(backend: Backend) -> dict[str, str]:
    """The notice in force: version, SHA-256 and text."""
    n = backend.notice()
    return {"version": n.version, "sha256": n.sha256, "text": n.text}


async def answer_consent(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Record a grant or a decline on the notice in force (``services.consent``)."""
    decision = choice(data, "decision", ("grant", "decline"), "")
    guardian = text(data, "guardian", required=False) or None
    if guardian is not None and not flag(data, "guardian_present"):
        raise InputError("a guardian answers in person: confirm guardian_present")
    answer = consent_svc.ConsentAnswer(
        person_id,
        method=choice(data, "method", METHODS, "web"),
        recorded_by=actor,
        guardian_id=guardian,
        scope=choice(data, "scope", SCOPES, "device"),
    )
    n = backend.notice()
    if decision == "grant":
        done = await backend.run_db(consent_svc.grant, backend.db, n, answer)
        return {"decision": "grant", "consent_id": done.consent_id, "notice": n.version}
    await backend.run_db(consent_svc.decline, backend.db, n, answer)
    return {"decision": "decline", "notice": n.version}


async def withdraw_consent(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Withdraw face consent and erase the face data at once (the gate's withdrawal, as the
    MQTT command runs it: ``services.withdrawal``, the announcement, the WAL scrub); needs
    ``confirm``; the receipt."""
    if not flag(data, "confirm"):
        raise InputError("confirm the withdrawal: it erases the face data at once")
    done = await backend.withdraw(person_id, actor)
    return {
        "id": done["receipt_id"],
        "person_id": person_id,
        "channel": "web",
        "templates_erased": done["templates_erased"],
        "at": time.time(),
    }


async def add_card(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Give a person a typed card (``services.credentials.add_card``; keyed hash only)."""
    c = card(data)
    card_id = await backend.run_decide(
        creds_svc.add_card, backend.credential_deps(), person_id, c, actor=actor, channel="web"
    )
    return {"card_id": card_id}


PRESENT_TIMEOUT_S = 30.0


async def add_presented_card(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Give a person the next card presented at ``reader`` (within 30 s): the number never
    reaches the browser; stored as a keyed hash (``services.credentials.add_card``)."""
    if backend.next_card is None or not backend.readers:
        raise InputError("presenting a card needs the gate's readers: type the number instead")
    reader = choice(data, "reader", tuple(backend.readers), backend.readers[0])
    await backend.run_db(people_svc.show_person, backend.db, person_id, grace_days=0.0)
    c = await backend.next_card(reader, PRESENT_TIMEOUT_S)
    card_id = await backend.run_decide(
        creds_svc.add_card, backend.credential_deps(), person_id, c, actor=actor, channel="web"
    )
    return {"card_id": card_id, "reader": reader}


async def set_typed_pin(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Set a person's PIN as they type it on ``reader``'s keypad (digits, then ``#``,
    within 60 s): the operator never sees it (``services.credentials.set_pin``)."""
    if backend.next_pin is None or not backend.readers:
        raise InputError("a PIN is typed on the gate's keypad: this console has no reader")
    reader = choice(data, "reader", tuple(backend.readers), backend.readers[0])
    kind = choice(data, "kind", ("normal", "duress"), "normal")
    await backend.run_db(people_svc.show_person, backend.db, person_id, grace_days=0.0)
    pin = await backend.next_pin(reader, PIN_TIMEOUT_S)
    pin_id = await _credential_change(
        backend, creds_svc.set_pin, person_id, actor, pin=pin, kind=kind
    )
    return {"pin_id": pin_id, "kind": kind, "reader": reader}


PIN_TIMEOUT_S = 60.0


async def _credential_change(
    backend: Backend, fn: Callable[..., Any], person_id: str, actor: str, **kwargs: Any
) -> Any:
    """``fn`` of :mod:`gateway.services.credentials` on the credential store's thread."""
    deps = backend.credential_deps()
    return await backend.run_decide(fn, deps, person_id, actor=actor, channel="web", **kwargs)


async def revoke_card(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Revoke one typed card, or every card with ``all``."""
    c = None if flag(data, "all") else card(data)
    n = await _credential_change(backend, creds_svc.revoke_card, person_id, actor, card=c)
    return {"revoked": n}


async def revoke_pin(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Revoke a person's PINs (one kind, or all when ``kind`` is empty)."""
    kind = text(data, "kind", required=False)
    if kind and kind not in PIN_KINDS:
        raise InputError(f"kind must be one of {', '.join(PIN_KINDS)}")
    n = await _credential_change(backend, creds_svc.revoke_pin, person_id, actor, kind=kind or None)
    return {"revoked": n}


def _bound(data: Mapping[str, Any], key: str) -> float | None:
    """An ISO date or date-time (UTC when no zone is given), or None when empty."""
    value = text(data, key, required=False)
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{key} must be an ISO date (YYYY-MM-DD[THH:MM])") from exc
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


async def set_validity(
    backend: Backend, person_id: str, data: Mapping[str, Any], actor: str
) -> dict[str, Any]:
    """Set when a person's access is valid (``services.credentials.set_validity``); an
    empty bound is cleared."""
    start, end = _bound(data, "valid_from"), _bound(data, "valid_until")
    p = await _credential_change(
        backend, creds_svc.set_validity, person_id, actor, valid_from=start, valid_until=end
    )
    return {"valid_from": p.valid_from, "valid_until": p.valid_until}


async def compliance_report(backend: Backend) -> dict[str, Any]:
    """The compliance report (``services.compliance.report``) and the audit chain check."""
    rep = await backend.run_db(compliance_svc.report, backend.db, backend.report_request())
    res = await backend.run_db(compliance_svc.verify_audit, backend.db)
    return {
        "report": rep,
        "filing_required": compliance_svc.filing_required(rep),
        "audit": {"ok": res.ok, "rows": res.rows, "broken_seq": res.broken_seq},
    }


EXPORT_TYPES = {"json": "application/json", "csv": "text/csv"}


async def export_records(backend: Backend, fmt: str, actor: str) -> bytes:
    """The processing records as ``json`` or ``csv`` (``services.compliance.export_records``,
    audited as ``export``), written in a private temporary directory and removed at once."""
    if fmt not in EXPORT_TYPES:
        raise InputError("the export format is json or csv")

    def export() -> bytes:
        with tempfile.TemporaryDirectory(prefix="gw-export-") as tmp:  # mode 0700
            out = Path(tmp) / f"records.{fmt}"
            compliance_svc.export_records(backend.db, fmt, out, actor=actor)
            return out.read_bytes()

    data: bytes = await backend.run_db(export)
    return data
