"""Rate limit for the audit (and log) trail of rejected commands (and failing MQTT messages).

Anyone who can publish on the command topic can send forged commands; auditing each one
made 2,000 forged commands 2,000 audit rows (4.6 MB in 0.8 s), a disk-filling attack. Per
window of ``window_s`` the first ``individual`` rejections are audited and logged one by
one (so a single mistake keeps its detail); the rest are only counted per reason and
written as ONE ``command.rejected.aggregated`` audit row when the window ends. The audit
growth under attack is therefore at most ``individual + 1`` rows per window, whatever the
message rate. Accepted commands are never limited. :class:`~gateway.mqtt.client.MqttService`
uses the same limiter for its log lines about messages whose handling failed.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WINDOW_S = 60.0
DEFAULT_INDIVIDUAL = 10


@dataclass(frozen=True)
class RejectionSummary:
    """Rejections counted but not audited one by one during one window."""

    started: float
    ended: float
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Number of suppressed rejections."""
        return sum(self.counts.values())

    def details(self) -> dict[str, Any]:
        """The audit row's details (no payload content, only reason codes and counts)."""
        return {
            "suppressed": self.total,
            "by_reason": dict(sorted(self.counts.items())),
            "from": _iso(self.started),
            "to": _iso(self.ended),
        }


@dataclass
class RejectionLimiter:
    """Decides which rejections are audited individually; aggregates the others."""

    window_s: float = DEFAULT_WINDOW_S
    individual: int = DEFAULT_INDIVIDUAL
    _start: float | None = None
    _seen: int = 0
    _suppressed: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.individual < 0:
            raise ValueError("rejection limiter needs window_s > 0 and individual >= 0")

    def admit(self, reason: str, now: float) -> bool:
        """True: audit and log this rejection itself; False: it was counted for the summary.

        Call :meth:`flush` first so that an ended window is summarised before a new one.
        """
        if self._start is None:
            self._start = now
        self._seen += 1
        if self._seen <= self.individual:
            return True
        self._suppressed[reason] += 1
        return False

    def flush(self, now: float, *, force: bool = False) -> RejectionSummary | None:
        """End the window if it is over (or ``force``); its summary when anything was held."""
        if self._start is None or (not force and now < self._start + self.window_s):
            return None
        summary = None
        if self._suppressed:
            summary = RejectionSummary(self._start, now, dict(self._suppressed))
        self._start = None
        self._seen = 0
        self._suppressed = Counter()
        return summary

    @property
    def pending(self) -> int:
        """Rejections counted in the current window and not yet written."""
        return sum(self._suppressed.values())


def _iso(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")
