"""The JSON API's OpenAPI 3.1 document (served at ``/api/openapi.json``). Each operation
is listed here with its request body's schema; a test keeps the document and the routes
in step, and a schemathesis run fuzzes the API from it."""

from __future__ import annotations

import re
from typing import Any

TEXT = {"type": "string", "maxLength": 128}
CARD = {"type": "string", "pattern": "^[0-9]{1,20}$"}
PSEUDONYM = {"type": "string", "pattern": "^[a-z2-7]{26}$"}
WHEN = {"type": "string", "maxLength": 40, "description": "ISO date or date-time (UTC)"}


def _obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


BODIES: dict[str, dict[str, Any]] = {
    "person": _obj(
        ["name"],
        name=TEXT,
        unit=TEXT,
        role={"enum": ["resident", "visitor", "staff"]},
        group=TEXT,
        minor={"type": "boolean"},
        guardian=TEXT,
        birth_month={"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
    ),
    "edit": _obj(name=TEXT, unit=TEXT, role={"enum": ["resident", "visitor", "staff"]}, group=TEXT),
    "consent": _obj(
        ["decision"],
        decision={"enum": ["grant", "decline"]},
        method={"enum": ["paper", "kiosk", "app", "web"]},
        scope={"enum": ["device", "compound"]},
        guardian=TEXT,
        guardian_present={"type": "boolean"},
    ),
    "withdraw": _obj(["confirm"], confirm={"type": "boolean"}),
    "card": _obj(["number"], number=CARD, facility=CARD),
    "present": _obj(reader=TEXT),
    "typed_pin": _obj(reader=TEXT, kind={"enum": ["normal", "duress"]}),
    "revoke_card": _obj(number=CARD, facility=CARD, all={"type": "boolean"}),
    "revoke_pin": _obj(kind={"enum": ["", "normal", "duress", "visitor"]}),
    "validity": _obj(valid_from=WHEN, valid_until=WHEN),
    "delete": _obj(["confirm"], confirm=TEXT),
    "resolve": _obj(["pseudonym", "ts", "reason"], pseudonym=PSEUDONYM, ts=WHEN, reason=TEXT),
    "token": _obj(["name", "role"], name=TEXT, role={"enum": ["operator", "auditor"]}),
    "totp_code": _obj(["code"], code={"type": "string", "pattern": "^[0-9]{6}$"}),
    "none": _obj(),
    "zones": _obj(
        zones={
            "type": "array",
            "maxItems": 20,
            "items": _obj(
                ["polygon"],
                name=TEXT,
                polygon={
                    "type": "array",
                    "maxItems": 64,
                    "items": {
                        "type": "array",
                        "items": {"type": "number"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                },
            ),
        },
        space={"enum": ["public", "semi_private", "private"]},
        signage_installed={"type": "boolean"},
        signage_recorded=TEXT,
    ),
    "photos": _obj(
        ["photos"],
        photos={
            "type": "array",
            "maxItems": 10,
            "items": {"type": "string", "format": "binary", "description": "JPEG or PNG"},
        },
    ),
}

PID = {"name": "pid", "in": "path", "required": True, "schema": {"type": "string"}}

_INT = {"type": "integer", "minimum": 0}
_TS = {"type": ["number", "null"], "description": "Unix time"}
_SECONDS = {"type": ["integer", "null"], "minimum": 0}
ROSTER = {
    "description": "The roster's convergence: `off`, a `gate` (version applied), or the "
    "`office` (each gate's lag and unacknowledged erasures; no identity).",
    "oneOf": [
        _obj(["role"], role={"const": "off"}),
        _obj(
            ["role", "gate", "applied", "applied_at"],
            role={"const": "gate"},
            gate=TEXT,
            applied=_INT,
            applied_at=_TS,
        ),
        _obj(
            ["role", "alert_after_s", "gates", "behind", "pending", "overdue", "alerts"],
            role={"const": "office"},
            alert_after_s={"type": "number"},
            behind=_INT,
            pending=_INT,
            overdue=_INT,
            alerts=_INT,
            gates={
                "type": "array",
                "items": _obj(
                    [
                        *("gate", "version", "applied", "behind", "behind_since"),
                        *("behind_for_s", "last_ack", "error", "pending", "overdue"),
                    ],
                    gate=TEXT,
                    version=_INT,
                    applied=_INT,
                    behind=_INT,
                    behind_since=_TS,
                    behind_for_s=_SECONDS,
                    last_ack=_TS,
                    error={"type": ["string", "null"]},
                    overdue=_INT,
                    pending={
                        "type": "array",
                        "items": _obj(
                            ["change", "version", "created_at", "age_s", "overdue"],
                            change=_INT,
                            version=_INT,
                            created_at={"type": "number"},
                            age_s=_INT,
                            overdue={"type": "boolean"},
                        ),
                    },
                ),
            },
        ),
    ],
}
#: (method, path) -> the schema of a 200 answer, where the document describes it
RESPONSES: dict[tuple[str, str], dict[str, Any]] = {("GET", "/api/roster"): ROSTER}

# (method, path) -> (summary, roles, body kind or None, query parameters)
OPERATIONS: dict[tuple[str, str], tuple[str, str, str | None, list[dict[str, Any]]]] = {
    ("GET", "/api/me"): ("The session's account, role and CSRF token", "any", None, []),
    ("GET", "/api/people"): (
        "People on record",
        "operator",
        None,
        [{"name": "q", "in": "query", "schema": TEXT}],
    ),
    ("POST", "/api/people"): ("Add a person", "operator", "person", []),
    ("GET", "/api/people/{pid}"): ("One person with their consent history", "operator", None, []),
    ("POST", "/api/people/{pid}/edit"): ("Edit name, unit, role, group", "operator", "edit", []),
    ("POST", "/api/people/{pid}/delete"): ("Erase a person", "operator", "delete", []),
    ("POST", "/api/people/{pid}/consent"): ("Record a consent answer", "operator", "consent", []),
    ("POST", "/api/people/{pid}/withdraw"): ("Withdraw face consent", "operator", "withdraw", []),
    ("POST", "/api/people/{pid}/cards"): ("Add a typed card", "operator", "card", []),
    ("POST", "/api/people/{pid}/cards/present"): (
        "Add the next card presented at a reader (waits up to 30 s)",
        "operator",
        "present",
        [],
    ),
    ("POST", "/api/people/{pid}/pins/typed"): (
        "Set the PIN the person types on a reader's keypad (waits up to 60 s)",
        "operator",
        "typed_pin",
        [],
    ),
    ("POST", "/api/people/{pid}/cards/revoke"): ("Revoke cards", "operator", "revoke_card", []),
    ("POST", "/api/people/{pid}/pins/revoke"): ("Revoke PINs", "operator", "revoke_pin", []),
    ("POST", "/api/people/{pid}/validity"): ("Set the validity", "operator", "validity", []),
    ("POST", "/api/people/{pid}/enrol/check"): (
        "Each photo's enrolment verdict, nothing stored (multipart photos)",
        "operator",
        "photos",
        [],
    ),
    ("POST", "/api/people/{pid}/enrol"): (
        "Enrol from photos: encrypted templates stored, never a photo (multipart photos)",
        "operator",
        "photos",
        [],
    ),
    ("GET", "/api/notice"): ("The notice in force", "operator", None, []),
    ("GET", "/api/compliance"): ("The compliance report and audit check", "auditor", None, []),
    ("POST", "/api/compliance/records.{fmt}"): (
        "Processing records export (audited)",
        "auditor",
        None,
        [{"name": "fmt", "in": "path", "required": True, "schema": {"enum": ["json", "csv"]}}],
    ),
    ("GET", "/api/dashboard"): (
        "Doors, readers, cameras, broker, counts, roster convergence",
        "auditor",
        None,
        [],
    ),
    ("GET", "/api/roster"): (
        "Roster convergence: each gate's version, lag and unacknowledged erasures",
        "auditor",
        None,
        [],
    ),
    ("GET", "/api/events"): (
        "Recent anonymized events",
        "auditor",
        None,
        [{"name": k, "in": "query", "schema": TEXT} for k in ("type", "door", "person", "since")],
    ),
    ("POST", "/api/events/resolve"): ("Resolve a pseudonym (audited)", "operator", "resolve", []),
    ("GET", "/api/stream"): ("Server-sent events: status and events", "auditor", None, []),
    ("GET", "/api/system"): (
        "Configuration validity and the doctor's table",
        "admin",
        None,
        [{"name": "doctor", "in": "query", "schema": {"enum": ["0", "1"]}}],
    ),
    ("POST", "/api/system/reload"): ("Validate and reload the configuration", "admin", None, []),
    ("GET", "/api/zones"): ("Every camera's zones, space and signage", "admin", None, []),
    ("POST", "/api/zones/{camera}"): (
        "Save a camera's zones, space and signage (validated like config validate, reloaded)",
        "admin",
        "zones",
        [{"name": "camera", "in": "path", "required": True, "schema": TEXT}],
    ),
    ("GET", "/api/openapi.json"): ("This document", "any", None, []),
    ("GET", "/api/account"): (
        "The session's account, role and whether its second factor is on",
        "any",
        None,
        [],
    ),
    ("POST", "/api/account/totp"): (
        (
            "Set up the account's second factor: the secret and its otpauth link, shown once"
            " (an API token has none: 403)"
        ),
        "any",
        None,
        [],
    ),
    ("POST", "/api/account/totp/confirm"): (
        "Turn the second factor on with a code from the authenticator",
        "any",
        "totp_code",
        [],
    ),
    ("POST", "/api/accounts/{name}/totp/reset"): (
        "Remove an account's second factor (audited)",
        "admin",
        None,
        [{"name": "name", "in": "path", "required": True, "schema": TEXT}],
    ),
    ("GET", "/api/tokens"): ("The API tokens (never the token)", "admin", None, []),
    ("POST", "/api/tokens"): ("Make an API token (shown once)", "admin", "token", []),
    ("POST", "/api/tokens/{tid}/revoke"): (
        "Revoke an API token",
        "admin",
        None,
        [{"name": "tid", "in": "path", "required": True, "schema": {"type": "string"}}],
    ),
}

ERRORS = {
    "400": "refused input (the message names what is wrong)",
    "401": "no live session",
    "403": "the role may not, or no CSRF token on a change",
    "404": "no such person",
    "503": "storage is read-only (changes refused)",
}


def _operation(method: str, path: str) -> dict[str, Any]:
    summary, roles, body, params = OPERATIONS[(method, path)]
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Roles: {roles} (admin always).",
        "operationId": method.lower() + re.sub(r"[^a-z0-9]+", "_", path),
        "parameters": ([PID] if "{pid}" in path else []) + params,
        "responses": {
            "200": {
                "description": "done",
                "content": {"application/json": {"schema": RESPONSES.get((method, path), {})}},
            },
            **{code: {"description": text} for code, text in ERRORS.items()},
        },
    }
    if method == "POST":
        op["security"] = [{"session": [], "csrf": []}, {"token": []}]
        op["requestBody"] = {
            "required": body is not None,
            "content": {
                "multipart/form-data" if body == "photos" else "application/json": {
                    "schema": BODIES[body or "none"]
                }
            },
        }
    return op


def document() -> dict[str, Any]:
    """The OpenAPI document of the JSON API."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "access-gateway web console API", "version": "1"},
        "paths": paths,
        "security": [{"session": []}, {"token": []}],
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "__Host-gw_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "token": {"type": "http", "scheme": "bearer", "description": "an API token"},
            }
        },
    }
