"""The services' refusals in the page's language.

The services speak English (the CLI, the logs, the MQTT replies). The console shows their
common refusals translated: a message that is a catalog entry as a whole, one of the known
patterns below (its values, such as an id or a zone's name, kept as they are), each line
of a configuration problem list (``key.path: message (value: ...)``). Anything else stays
English (the page marks it ``lang="en"``). The English original is logged whenever a
refusal is shown translated, so the log keeps the detail.
"""

from __future__ import annotations

import gettext
import json
import logging
import re

from aiohttp import web

from gateway.web import i18n
from gateway.web.i18n import N_
from gateway.web.security import Handler

log = logging.getLogger(__name__)

_Q = r"(?:'[^']*'|\"[^\"]*\")"  # a repr()'d value: an id, a zone's or a camera's name
_GUARDIAN = (
    r"refused: a person under 14 needs a guardian who is an adult person on record "
    r"\(guardian consent for minors' face data\)"
)

#: (English pattern, the catalog's text with the pattern's groups as %(name)s)
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"^{p}$"), t)
    for p, t in (
        (rf"no person (?P<id>{_Q}) on record", N_("No person %(id)s on record.")),
        (
            r"a PIN must be (?P<low>\d+) to (?P<high>\d+) digits",
            N_("A PIN must be %(low)s to %(high)s digits."),
        ),
        (
            rf"{_GUARDIAN}; no guardian named for this consent",
            N_(
                "Refused: a person under 14 needs a guardian who is an adult on record; "
                "no guardian was named for this consent."
            ),
        ),
        (
            rf"{_GUARDIAN}; (?P<id>{_Q}) is not an adult person on record",
            N_(
                "Refused: a person under 14 needs a guardian who is an adult on record; "
                "%(id)s is not an adult person on record."
            ),
        ),
        (
            rf"{_GUARDIAN}; (?P<id>{_Q}) is not this minor's guardian on record",
            N_(
                "Refused: a person under 14 needs a guardian who is an adult on record; "
                "%(id)s is not this minor's guardian on record."
            ),
        ),
        (
            rf"{_GUARDIAN}; guardian (?P<id>{_Q}) is not one",
            N_(
                "Refused: a person under 14 needs a guardian who is an adult on record; "
                "%(id)s is not one."
            ),
        ),
        (
            (
                rf"zone (?P<zone>{_Q}) of camera (?P<camera>{_Q}) crosses itself \(edges "
                r"(?P<a>\d+) and (?P<b>\d+) meet\): place its corners in order around the area"
            ),
            N_(
                "Zone %(zone)s of camera %(camera)s crosses itself (edges %(a)s and %(b)s "
                "meet): place its corners in order around the area."
            ),
        ),
        (
            r"vertex \((?P<x>[^,()]+), (?P<y>[^,()]+)\) is outside 0\.\.1",
            N_("Corner (%(x)s, %(y)s) is outside the image (0..1)."),
        ),
        (
            r"List should have at least (?P<n>\d+) items? after validation, not (?P<got>\d+)",
            N_("At least %(n)s items are needed, not %(got)s."),
        ),
    )
)

#: Fixed refusals of the services, translated as they are (each is the service's text).
KNOWN = (
    N_(
        "no face processing in private spaces (Art. 13): rooms, bathrooms, changing rooms and "
        "toilets may not have a face camera; no role can override this"
    ),
    N_(
        "refused: guardian consent for face processing lapses at 14: the person's own "
        "consent is needed"
    ),
    N_("face processing needs visible signage at the camera (Art. 13)"),
    N_("a guardian only gives consent for a minor"),
    N_("a guardian link is only recorded for minors (use --minor)"),
    N_("display name must not be empty"),
    N_("validity period ends before it starts"),
    N_("valid_until must be after valid_from"),
    N_("this card is already enrolled"),
    N_("this PIN is already in use; choose another"),
    # the face rule's reasons (gateway.privacy.consent.face_status), on every person's page
    N_("granted"),
    N_("granted; re-notice pending (grace period)"),
    N_("person is outside their validity period"),
    N_(
        "refused: face processing needs the person's separate, explicit consent; "
        "no consent on record"
    ),
    N_(
        "refused: face processing needs the person's separate, explicit consent; "
        "consent is declined"
    ),
    N_(
        "refused: face processing needs the person's separate, explicit consent; "
        "consent is withdrawn"
    ),
    N_(
        "refused: a person under 14 needs a guardian who is an adult person on record "
        "(guardian consent for minors' face data)"
    ),
    N_(
        "suspended: guardian consent for face processing lapses at 14: the person's own "
        "consent is needed"
    ),
    N_("suspended: the notice changed and the renotice grace period is over: consent again"),
)
_VALUE = N_("value")
_LINE = re.compile(r"^(?P<path>[\w.\-]+): (?P<msg>.+?)(?: \(value: (?P<value>.*)\))?$")


def _one(message: str, catalog: gettext.NullTranslations) -> str:
    """A single message translated (itself when unknown)."""
    whole = catalog.gettext(message)
    if whole != message:
        return whole
    for pattern, text in PATTERNS:
        m = pattern.match(message)
        if m:
            return catalog.gettext(text) % m.groupdict()
    return message


def _line(line: str, catalog: gettext.NullTranslations) -> str:
    """A message, or a configuration problem ``key.path: message (value: v)``."""
    said = _one(line, catalog)
    if said != line:
        return said
    m = _LINE.match(line)
    if m is None:
        return line
    msg = _one(m["msg"], catalog)
    if msg == m["msg"]:
        return line
    value = "" if m["value"] is None else f" ({catalog.gettext(_VALUE)}: {m['value']})"
    return f"{m['path']}: {msg}{value}"


def translate_line(message: str, catalog: gettext.NullTranslations) -> str:
    """``message`` translated as a whole (a catalog entry, a pattern, or a configuration
    problem line); itself otherwise."""
    return _line(message, catalog)


def translate(message: str, catalog: gettext.NullTranslations) -> str:
    """``message`` (a refusal, or several problems joined by ``"; "``) in the catalog's
    language where known; itself otherwise."""
    if not message:
        return message
    said = _line(message, catalog)
    if said != message or "; " not in message:
        return said
    return "; ".join(_line(part, catalog) for part in message.split("; "))


def shown(message: str, lang: str, where: str) -> str:
    """``message`` as the page in ``lang`` shows it; the English original logged when it
    is shown translated (``where``: the request, for the log)."""
    if lang == i18n.DEFAULT:
        return message
    said = translate(message, i18n.translations(lang))
    if said != message:
        log.info("web: %s refused: %s", where, message)
    return said


def language(request: web.Request) -> str:
    """The request's language: the switch's cookie, else the browser's preference."""
    return i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("Accept-Language", ""))


def _json_refusal(resp: web.Response, request: web.Request) -> None:
    """Translate a JSON refusal's ``error`` and ``problems`` in place."""
    lang = language(request)
    if lang == i18n.DEFAULT or resp.content_type != "application/json" or not resp.text:
        return
    try:
        body = json.loads(resp.text)
    except ValueError:
        return
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return
    where = f"{request.method} {request.path}"

    def said(message: str) -> str:
        return shown(message, lang, where)

    body["error"] = said(body["error"])
    if isinstance(body.get("problems"), list):
        body["problems"] = [said(p) if isinstance(p, str) else p for p in body["problems"]]
    resp.text = json.dumps(body)


@web.middleware
async def refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every JSON refusal (4xx with ``{"error"}``) in the request's language."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        if 400 <= exc.status < 500:
            _json_refusal(exc, request)
        raise
    if isinstance(resp, web.Response) and 400 <= resp.status < 500:
        _json_refusal(resp, request)
    return resp
