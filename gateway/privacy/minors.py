"""Minors by birth month: guardian consent for face processing lapses at 14.

A person's birth is recorded as year and month (``YYYY-MM``, nothing finer). With month
precision the 14th birthday falls somewhere in the birth month, so both edges are taken on the
private side:

* guardian consent lapses at the START of the birth month 14 years on (the earliest possible
  birthday): from then the person's face path is suspended (dropped from the live gallery,
  not erased) until their own consent is recorded;
* the person's own consent is accepted only from the start of the FOLLOWING month, when they
  are 14 for certain. In between (at most one month) face processing is suspended; card and
  PIN work throughout.

A person without a birth month keeps the ``is_minor`` flag of the record (the old behaviour).
"""

from __future__ import annotations

import datetime as dt
import re

from gateway.errors import PrivacyError

AGE_OF_CONSENT = 14
_FORMAT = re.compile(r"^(\d{4})-(\d{2})$")

LAPSE_RULE = "guardian consent for face processing lapses at 14: the person's own consent is needed"


def parse_birth_month(value: str, *, now: float | None = None) -> str:
    """Validate ``YYYY-MM`` (a real month, not in the future); return it normalised."""
    m = _FORMAT.match(value.strip())
    if m is None:
        raise PrivacyError(f"birth month {value!r} is not YYYY-MM (year and month only)")
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12 or year < 1900:
        raise PrivacyError(f"birth month {value!r} is not a real month")
    if now is not None:
        today = dt.datetime.fromtimestamp(now, tz=dt.UTC).date()
        if (year, month) > (today.year, today.month):
            raise PrivacyError(f"birth month {value!r} is in the future")
    return f"{year:04d}-{month:02d}"


def _month_start(year: int, month: int) -> float:
    while month > 12:
        year, month = year + 1, month - 12
    return dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp()


def guardian_lapses_at(birth_month: str) -> float:
    """When guardian consent stops counting: the start of the 14th birthday's month."""
    year, month = (int(x) for x in birth_month.split("-"))
    return _month_start(year + AGE_OF_CONSENT, month)


def own_consent_from(birth_month: str) -> float:
    """When the person is 14 for certain: the start of the month after the birthday's."""
    year, month = (int(x) for x in birth_month.split("-"))
    return _month_start(year + AGE_OF_CONSENT, month + 1)


def is_minor_at(birth_month: str | None, is_minor_flag: bool, now: float) -> bool:
    """Whether the person cannot (yet) consent for themselves at ``now``."""
    if birth_month is None:
        return is_minor_flag
    return now < own_consent_from(birth_month)


def guardian_lapsed(birth_month: str | None, now: float) -> bool:
    """Whether a guardian's consent no longer covers the person at ``now``."""
    return birth_month is not None and now >= guardian_lapses_at(birth_month)
