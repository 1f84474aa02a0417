"""What a scenario run observed and how it is judged: the MQTT messages seen, each
expectation checked against them and the sampled hardware state, and the readable
expected-vs-observed report."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hw_sim.corpus import FaceCorpus
from hw_sim.scenario import (
    AbsentExpect,
    EventExpect,
    HardwareExpect,
    NeverPublishedExpect,
    Scenario,
    SequenceExpect,
    Status,
    Window,
)

DECISION_EVENTS = ("access.granted", "access.denied")
TRIGGER_ACTIONS = ("present-card", "type-pin", "press-keys", "person-approaches")


# --------------------------------------------------------------------------- observed


@dataclass(frozen=True)
class Observed:
    """One MQTT message seen by the runner (``t`` monotonic seconds)."""

    t: float
    topic: str
    type: str
    payload: dict[str, Any]
    raw: str


def _leak(needles: Sequence[str], text: str) -> str | None:
    """The first of ``needles`` found in ``text`` as a token of its own, with its context.

    Not inside a longer run of letters and digits, nor a number's other digits across a
    decimal point: a card number "4242" counts in ``"card":4242``, ``/4242/``, ``"4242"`` or
    at the end of a sentence ("card 4242."), a name in ``Colin_Powell.jpg``; not inside a
    signature's hex, a UUID or a number such as ``0.14242`` (where 4 digits turn up by
    chance: a substring match failed a CI run that had leaked nothing). A number glued to
    letters (``ID4242``) reads as part of another token, as hex does: the wire-capture test
    (``tests/support/mqtt_capture.py``) is the strict check for real identities.
    """
    for n in needles:
        if not n:
            continue
        m = re.search(
            rf"(?<![0-9A-Za-z])(?<![0-9]\.){re.escape(n)}(?!\.?[0-9])(?![A-Za-z0-9])", text
        )
        if m:
            return repr(text[max(0, m.start() - 20) : m.end() + 20])
    return None


# --------------------------------------------------------------------------- results


@dataclass
class Check:
    """One expectation: what was expected, what was observed, and whether it held."""

    expected: str
    observed: str
    ok: bool


@dataclass
class ScenarioResult:
    name: str
    path: str
    status: Status
    checks: list[Check] = field(default_factory=list)
    time_to_decision_s: float | None = None
    duration_s: float = 0.0
    message: str = ""
    notes: list[str] = field(default_factory=list)
    events: list[Observed] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def format_report(results: Sequence[ScenarioResult]) -> str:
    """A readable expected-vs-observed report."""
    lines: list[str] = []
    for r in results:
        ttd = "-" if r.time_to_decision_s is None else f"{r.time_to_decision_s:.2f}s"
        lines.append(f"[{r.status.upper():>11}] {r.name}  ({r.path})  decision: {ttd}")
        if r.message:
            lines.append(f"    {r.message}")
        for c in r.checks:
            mark = "ok  " if c.ok else "FAIL"
            lines.append(f"    {mark} expected {c.expected}")
            if not c.ok or c.observed:
                lines.append(f"         observed {c.observed}")
        lines.extend(f"    note: {n}" for n in r.notes)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines.append("summary: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


# --------------------------------------------------------------------------- evaluation


def _match(payload: dict[str, Any], fields: dict[str, Any]) -> bool:
    for key, want in fields.items():
        have = payload.get(key)
        if want == "*":
            if have is None:
                return False
        elif isinstance(want, list):
            if have not in want:
                return False
        elif have != want:
            return False
    return True


def _type_ok(pattern: str, etype: str) -> bool:
    if pattern.endswith(".*"):
        return etype.startswith(pattern[:-1])
    return pattern in ("*", etype)


def _describe(kind: str, fields: dict[str, Any]) -> str:
    f = ", ".join(f"{k}={v}" for k, v in fields.items())
    return f"{kind}({f})" if f else kind


def _brief(ev: Observed, t0: float) -> str:
    keys = ("door", "method", "reason", "reader", "camera")
    f = ", ".join(f"{k}={ev.payload[k]}" for k in keys if k in ev.payload)
    return f"{ev.type}({f})@{ev.t - t0:.1f}s"


def _hw_match(state: dict[str, Any], want: dict[str, Any]) -> bool:
    door = state.get("doors", {}).get(want["door"])
    if door is None:
        return False
    for key, value in want.items():
        if key == "door":
            continue
        if key in ("open", "forced", "held"):
            have: Any = door["door"].get(key)
        elif key == "led":
            have = door["led"].get("color")
        elif key == "buzzer":
            have = door["buzzer"].get("on")
        else:
            have = door.get(key)
        if value == "*":
            if not have:
                return False
        elif have != value:
            return False
    return True


@dataclass
class _Run:
    scenario: Scenario
    t0: float
    step_times: list[float]
    events: list[Observed]
    samples: list[tuple[float, dict[str, Any]]]
    corpus: FaceCorpus | None

    def window(self, within: Window | None, after_step: int | None) -> Window:
        base = self.t0 if after_step is None else self.step_times[after_step]
        if within is None:
            return (base - self.t0 if after_step is not None else 0.0, float("inf"))
        return (base - self.t0 + within[0], base - self.t0 + within[1])

    def in_window(self, ev_t: float, w: Window) -> bool:
        rel = ev_t - self.t0
        return w[0] <= rel <= w[1]

    def _hits(self, etype: str, fields: dict[str, Any], w: Window) -> list[Observed]:
        return [
            ev
            for ev in self.events
            if _type_ok(etype, ev.type) and _match(ev.payload, fields) and self.in_window(ev.t, w)
        ]

    def check(self, e: Any) -> Check:
        if isinstance(e, EventExpect):
            w = self.window(e.within, e.after_step)
            hits = self._hits(e.event, e.fields, w)
            ok = len(hits) == e.count if e.exactly else len(hits) >= e.count
            n = (
                f"{'exactly' if e.exactly else 'at least'} {e.count}x "
                if e.count > 1 or e.exactly
                else ""
            )
            same = [ev for ev in self.events if _type_ok(e.event, ev.type)]
            obs = f"{len(hits)} matching" + (
                f"; of that type: {', '.join(_brief(ev, self.t0) for ev in same[:6])}"
                if same
                else ""
            )
            if not same:
                every = ", ".join(_brief(ev, self.t0) for ev in self.events[:8]) or "none"
                obs += f"; all events: {every}"
            return Check(f"{n}{_describe(e.event, e.fields)} in {_fmt_w(w)}", obs, ok)
        if isinstance(e, AbsentExpect):
            w = self.window(e.within, e.after_step)
            hits = self._hits(e.absent, e.fields, w)
            obs = ", ".join(_brief(ev, self.t0) for ev in hits[:6]) or "none"
            return Check(f"no {_describe(e.absent, e.fields)} in {_fmt_w(w)}", obs, not hits)
        if isinstance(e, HardwareExpect):
            w = self.window(e.within, e.after_step)
            seen = [
                t for t, st in self.samples if self.in_window(t, w) and _hw_match(st, e.hardware)
            ]
            want = _describe("hardware", e.hardware)
            if e.never:
                obs = f"seen at {seen[0] - self.t0:.1f}s" if seen else "never seen"
                return Check(f"never {want} in {_fmt_w(w)}", obs, not seen)
            obs = (
                f"seen at {seen[0] - self.t0:.1f}s"
                if seen
                else f"never seen; last: {self._last_hw(e)}"
            )
            return Check(f"{want} in {_fmt_w(w)}", obs, bool(seen))
        if isinstance(e, SequenceExpect):
            pos = 0
            found: list[Observed] = []
            for part in e.sequence:
                after = part.after_step if part.after_step is not None else e.after_step
                w = self.window(part.within or e.within, after)
                while pos < len(self.events):
                    ev = self.events[pos]
                    pos += 1
                    if (
                        _type_ok(part.event, ev.type)
                        and _match(ev.payload, part.fields)
                        and self.in_window(ev.t, w)
                    ):
                        found.append(ev)
                        break
                else:
                    break
            want = " then ".join(_describe(p.event, p.fields) for p in e.sequence)
            obs = ", ".join(_brief(ev, self.t0) for ev in found) or "none of them in order"
            return Check(want, obs, len(found) == len(e.sequence))
        if isinstance(e, NeverPublishedExpect):
            needles = [self._resolve(s) for s in e.never_published]
            leaks = [
                f"{ev.topic} ({hit})"
                for ev in self.events
                for hit in [_leak(needles, ev.topic) or _leak(needles, ev.raw)]
                if hit
            ]
            return Check(
                f"none of {len(needles)} private strings in any MQTT message",
                f"leaked in {', '.join(leaks[:5])}" if leaks else "none leaked",
                not leaks,
            )
        raise TypeError(f"unknown expectation {type(e).__name__}")  # pragma: no cover

    def _resolve(self, s: str) -> str:
        if s.startswith("{") and s.endswith("}") and self.corpus is not None:
            with contextlib.suppress(Exception):
                return self.corpus.resolve(s[1:-1])
        return s

    def _last_hw(self, e: HardwareExpect) -> str:
        if not self.samples:
            return "no hardware samples"
        door = self.samples[-1][1].get("doors", {}).get(e.hardware["door"], {})
        return json.dumps(
            {
                "relay": door.get("relay"),
                "led": door.get("led", {}).get("color"),
                "door": door.get("door"),
            }
        )

    def time_to_decision(self) -> float | None:
        sc = self.scenario
        idx = sc.decision_step
        if idx is None:
            idx = next((i for i, s in enumerate(sc.steps) if s.action in TRIGGER_ACTIONS), None)
        if idx is None:
            return None
        start = self.step_times[idx]
        later = [ev.t for ev in self.events if ev.type in DECISION_EVENTS and ev.t >= start]
        return round(min(later) - start, 3) if later else None


def _fmt_w(w: Window) -> str:
    end = "end" if w[1] == float("inf") else f"{w[1]:.1f}s"
    return f"[{w[0]:.1f}s, {end}]"
