"""The console's languages: English and simplified Chinese (gettext catalogs, read with
Babel; templates use jinja2's i18n extension). The language is the ``lang`` cookie's (the
switch in the header), else the browser's ``Accept-Language`` (Chinese when it prefers
``zh``), else English. One template environment per language."""

from __future__ import annotations

import functools
import gettext
import io
from pathlib import Path

LANGS = ("en", "zh")
HTML_LANG = {"en": "en", "zh": "zh-CN"}
LABELS = {"en": "English", "zh": "中文"}
DEFAULT = "en"
COOKIE = "__Host-gw_lang"
LOCALE = Path(__file__).parent / "locale"
DOMAIN = "console"


def N_(text: str) -> str:  # noqa: N802 -- the gettext convention for "extract, translate later"
    """Mark ``text`` for the catalog; it is translated where it is shown."""
    return text


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalog of ``lang`` (English: the source strings themselves)."""
    po = LOCALE / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if lang == DEFAULT or not po.exists():
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo  # the web extra's: only where pages render
    from babel.messages.pofile import read_po
    from babel.support import Translations

    with po.open("rb") as f:
        catalog = read_po(f, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def negotiate(accept_language: str) -> str:
    """The language a browser's ``Accept-Language`` prefers among :data:`LANGS`."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.strip().lower().split("-", 1)[0]
        if primary in LANGS and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else DEFAULT


def choose(cookie: str | None, accept_language: str) -> str:
    """The cookie's language when valid, else the browser's."""
    return cookie if cookie in LANGS else negotiate(accept_language)


#: The gate's state words and roles as pages show them (translated where shown).
WORDS = (
    N_("locked"),
    N_("unlocked"),
    N_("open"),
    N_("held_open"),
    N_("forced_open"),
    N_("online"),
    N_("offline"),
    N_("connected"),
    N_("disconnected"),
    N_("not configured"),
    N_("ok"),
    N_("running"),
    N_("stopped"),
    N_("degraded"),
    N_("admin"),
    N_("operator"),
    N_("auditor"),
    N_("resident"),
    N_("visitor"),
    N_("staff"),
    N_("granted"),
    N_("declined"),
    N_("withdrawn"),
    N_("overdue"),
)


def words(lang: str) -> dict[str, str]:
    """:data:`WORDS` in ``lang`` (for the live dashboard's script)."""
    t = translations(lang)
    return {w: t.gettext(w) for w in WORDS}
