"""The console's HTML pages (jinja2, autoescaped): login, people, a person (consent and
credentials), the notice, compliance. Forms post with the session's CSRF token; each
change redirects back (post/redirect/get) with a message, or shows the refusal."""

from __future__ import annotations

import datetime as dt
import functools
import gettext
import logging
import sqlite3
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from gateway.errors import GatewayError
from gateway.web import accounts, i18n, messages, ops, totp
from gateway.web.i18n import N_
from gateway.web.messages import language
from gateway.web.security import (
    BACKEND,
    COOKIE,
    HASHING,
    LOGIN_COOKIE,
    READ_ONLY,
    SESSION_KEY,
    THROTTLE,
    LoginBusyError,
    actor,
    allow,
    client_address,
    login_token,
    login_token_ok,
    session,
    set_login_cookie,
    set_session_cookie,
)

log = logging.getLogger(__name__)

JINJA: web.AppKey[dict[str, jinja2.Environment]] = web.AppKey("jinja", dict)
"""One template environment per language (:mod:`gateway.web.i18n`)."""


def environment(lang: str = i18n.DEFAULT) -> jinja2.Environment:
    """Templates from the package, every value escaped, strings in ``lang``."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.filters["age"] = age
    env.filters["word"] = functools.partial(_word, i18n.translations(lang))
    env.filters["said"] = functools.partial(_said, i18n.translations(lang), lang)
    return env


def _said(catalog: gettext.NullTranslations, lang: str, value: object) -> Markup:
    """A service's message (e.g. the face rule's reason) in the page's language: as a
    whole where the catalog knows it, else each ``"; "`` part; a part left English is
    marked ``lang="en"`` for screen readers."""
    text = "" if value is None else str(value)
    if not text or lang == i18n.DEFAULT:
        return Markup.escape(text)
    whole = messages.translate_line(text, catalog)
    if whole != text:
        return Markup.escape(whole)
    shown = []
    for part in text.split("; "):
        said = messages.translate_line(part, catalog)
        shown.append(Markup('<span lang="en">%s</span>') % part if said == part else said)
    return Markup("; ").join(shown)


def _word(catalog: gettext.NullTranslations, value: object) -> str:
    """A state word, role or reason in the page's language (as it is when not in the
    catalog); a value that is not text as its text."""
    if isinstance(value, str):
        return catalog.gettext(value) if value else ""
    return "" if value is None else str(value)


def environments() -> dict[str, jinja2.Environment]:
    """An environment for each language."""
    return {lang: environment(lang) for lang in i18n.LANGS}


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def age(seconds: float | None) -> str:
    """A duration as ``h:mm:ss`` (the same in every language), ``-`` for none."""
    if seconds is None:
        return "-"
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


MESSAGES = {
    "added": N_("Person added."),
    "consent-recorded": N_("Consent answer recorded."),
    "card-added": N_("Card added (stored as a keyed hash only)."),
    "card-revoked": N_("Card(s) revoked."),
    "pin-revoked": N_("PIN(s) revoked."),
    "pin-set": N_("PIN set (typed on the keypad; stored as an argon2id hash only)."),
    "validity-set": N_("Validity period changed."),
    "edited": N_("Details saved."),
}


def _day(ts: float | None) -> str:
    """A bound as the value of a date-time field (UTC), or empty."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M")


def render(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    """A page: the template ``name`` with the session (if any) and a message."""
    s = request.get(SESSION_KEY)
    lang = language(request)
    catalog = i18n.translations(lang)
    error = str(values.get("error") or "")
    values["error"] = messages.shown(error, lang, f"{request.method} {request.path}")
    # a service's message not in the catalog stays English: said so for screen readers
    values["error_lang"] = "en" if error and lang != "en" and values["error"] == error else ""
    env = request.app[JINJA][lang]
    message = MESSAGES.get(request.query.get("msg", ""), "")
    body = env.get_template(name).render(
        session=s,
        message=catalog.gettext(message) if message else "",
        lang=lang,
        html_lang=i18n.HTML_LANG[lang],
        langs=i18n.LABELS,
        words=i18n.words(lang),
        here=request.path_qs if request.method == "GET" else "/",  # a form's answer: home
        **values,
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


async def login_page(request: web.Request) -> web.Response:
    """The login form (with its CSRF token)."""
    return _login_form(request, 200, "")


def _login_form(request: web.Request, status: int, error: str) -> web.Response:
    token = login_token(request)
    resp = render(request, "login.html", status, error=error, login_csrf=token)
    set_login_cookie(resp, token)
    return resp


async def login_post(request: web.Request) -> web.StreamResponse:
    """Check the password (throttled per address, locked per account); start a session."""
    if not request.app[THROTTLE].allow(client_address(request)):
        return _login_form(request, 429, N_("too many attempts; wait a minute"))
    form = await request.post()
    if not login_token_ok(request, str(form.get("csrf", ""))):
        return _login_form(request, 403, N_("the login form expired; try again"))
    name, password = str(form.get("account", ""))[:64], str(form.get("password", ""))
    backend = request.app[BACKEND]
    if backend.read_only is not None:  # a login writes its session
        return _login_form(request, 503, READ_ONLY)
    cfg = backend.cfg
    policy = accounts.LoginPolicy(cfg.login_max_failures, cfg.lockout_minutes * 60.0)
    try:
        record = await backend.run_db(accounts.login_record, backend.db, name)
        ok = await request.app[HASHING].verify(record, password)  # not on a database thread
        if ok and record.role is not None:  # a code is looked at only after the password
            code = str(form.get("code", ""))[:16]
            ok = await backend.run_db(totp.login_ok, backend.db, backend.totp_key, name, code)
        token, _ = await backend.run_db(
            accounts.finish_login, backend.db, record, ok, policy=policy
        )
    except LoginBusyError:
        return _login_form(request, 503, N_("too many logins at once; try again in a moment"))
    except accounts.AccountError as exc:
        return _login_form(request, 401, str(exc))
    resp = web.Response(status=303, headers={"Location": "/"})
    set_session_cookie(resp, token, cfg.session_minutes * 60)
    resp.del_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session."""
    backend = request.app[BACKEND]
    try:
        await backend.run_db(accounts.logout, backend.db, request.cookies.get(COOKIE, ""))
    except sqlite3.Error as exc:  # read-only storage: the browser forgets the cookie anyway
        log.warning("web: a session could not be ended in the database: %s", exc)
    resp = web.Response(status=303, headers={"Location": "/login"})
    resp.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return resp


async def home(request: web.Request) -> web.StreamResponse:
    """The start page: the dashboard."""
    session(request)
    raise web.HTTPSeeOther("/dashboard")


@allow("operator")
async def people(request: web.Request) -> web.Response:
    """Everyone on record, searchable; the add form."""
    q = request.query.get("q", "")[: ops.MAX_TEXT]
    rows = await ops.list_people(request.app[BACKEND], q)
    return render(request, "people.html", people=rows, q=q)


@allow("operator")
async def people_add(request: web.Request) -> web.StreamResponse:
    """Add a person, then show them."""
    try:
        pid = await ops.add_person(request.app[BACKEND], await request.post(), actor(request))
    except GatewayError as exc:
        rows = await ops.list_people(request.app[BACKEND])
        return render(request, "people.html", 400, people=rows, q="", error=str(exc))
    raise web.HTTPSeeOther(f"/people/{pid}?msg=added")


@allow("operator")
async def person(request: web.Request) -> web.Response:
    """One person: details, consent (with the notice in force), credentials, delete."""
    return await _person_page(request)


async def _person_page(
    request: web.Request, status: int = 200, error: str = "", receipt: Any = None
) -> web.Response:
    backend = request.app[BACKEND]
    try:
        p = await ops.show_person(backend, request.match_info["pid"])
    except GatewayError as exc:  # no such person: the list, with the refusal
        rows = await ops.list_people(backend)
        return render(request, "people.html", 404, people=rows, q="", error=str(exc))
    try:
        notice: dict[str, str] | None = ops.notice(backend)
    except GatewayError:
        notice = None
    return render(
        request,
        "person.html",
        status,
        p=p,
        notice=notice,
        error=error,
        receipt=receipt,
        readers=backend.readers,
        present=backend.next_card is not None and bool(backend.readers),
        typed=backend.next_pin is not None and bool(backend.readers),
    )


def _person_change(action: str, op: Any) -> Any:
    """A person's change: call ``op``; redirect with ``action`` done, or show the refusal."""

    @allow("operator")
    async def change(request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]
        try:
            result = await op(request.app[BACKEND], pid, await request.post(), actor(request))
        except GatewayError as exc:
            return await _person_page(request, 400, error=str(exc))
        if action == "deleted":
            return render(request, "deleted.html", done=result)
        if action == "withdrawn":
            return await _person_page(request, receipt=result)
        raise web.HTTPSeeOther(f"/people/{pid}?msg={action}")

    change.__name__ = f"person_{action}"
    return change


@allow("operator")
async def notice_page(request: web.Request) -> web.Response:
    """The notice in force, as shown to the person before consent."""
    try:
        n: dict[str, str] | None = ops.notice(request.app[BACKEND])
    except GatewayError:
        n = None
    return render(request, "notice.html", notice=n)


@allow("auditor")
async def compliance(request: web.Request) -> web.Response:
    """The compliance report and the audit chain check."""
    return render(request, "compliance.html", c=await ops.compliance_report(request.app[BACKEND]))


@allow("auditor")
async def records(request: web.Request) -> web.Response:
    """The processing records as a download (``records.json`` or ``records.csv``)."""
    fmt = request.match_info["fmt"]
    try:
        data = await ops.export_records(request.app[BACKEND], fmt, actor(request))
    except ops.InputError as exc:
        raise web.HTTPNotFound(text=str(exc), content_type="text/plain") from exc
    return web.Response(
        body=data,
        content_type=ops.EXPORT_TYPES[fmt],
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="processing-records.{fmt}"'},
    )


async def switch_language(request: web.Request) -> web.StreamResponse:
    """``/lang/{lang}?next=/path``: keep the language in a cookie, then go back."""
    lang = request.match_info["lang"]
    if lang not in i18n.LANGS:
        raise web.HTTPNotFound(text="no such language", content_type="text/plain")
    nxt = request.query.get("next", "/")
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        nxt = "/"  # only a path of this console: never another site
    resp = web.Response(status=303, headers={"Location": nxt})
    resp.set_cookie(
        i18n.COOKIE,
        lang,
        max_age=365 * 86400,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )
    return resp


def routes() -> list[web.RouteDef]:
    """The page routes."""
    return [
        web.get("/login", login_page),
        web.get("/lang/{lang}", switch_language),
        web.post("/login", login_post),
        web.post("/logout", logout),
        web.get("/", home),
        web.get("/people", people),
        web.post("/people", people_add),
        web.get("/people/{pid}", person),
        web.post("/people/{pid}/delete", _person_change("deleted", ops.delete_person)),
        web.post("/people/{pid}/consent", _person_change("consent-recorded", ops.answer_consent)),
        web.post("/people/{pid}/withdraw", _person_change("withdrawn", ops.withdraw_consent)),
        web.post("/people/{pid}/cards", _person_change("card-added", ops.add_card)),
        web.post(
            "/people/{pid}/cards/present", _person_change("card-added", ops.add_presented_card)
        ),
        web.post("/people/{pid}/pins/typed", _person_change("pin-set", ops.set_typed_pin)),
        web.post("/people/{pid}/cards/revoke", _person_change("card-revoked", ops.revoke_card)),
        web.post("/people/{pid}/pins/revoke", _person_change("pin-revoked", ops.revoke_pin)),
        web.post("/people/{pid}/validity", _person_change("validity-set", ops.set_validity)),
        web.post("/people/{pid}/edit", _person_change("edited", ops.edit_person)),
        web.get("/notice", notice_page),
        web.get("/compliance", compliance),
        web.post("/compliance/records.{fmt}", records),  # audited, so a change (CSRF token)
        web.post("/api/compliance/records.{fmt}", records),
    ]
