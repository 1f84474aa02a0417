"""Run scenarios against a live gateway: drive the simulator, watch MQTT and the hardware,
compare with the expectations and report expected vs observed, per scenario.

``run_scenarios(paths, sim, mqtt_url, topic_prefix, harness=...)`` is the Python API;
``gateway-sim run`` the CLI. Pending scenarios are reported as pending, scenarios whose
``requires`` are not all in ``capabilities`` as unsupported, scenarios needing something
listed in ``unmet`` as skipped with its reason: nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from hw_sim.corpus import FaceCorpus
from hw_sim.scenario import (
    AbsentExpect,
    EventExpect,
    HardwareExpect,
    NeverPublishedExpect,
    Scenario,
    ScenarioError,
    SequenceExpect,
    Status,
    Window,
    load_scenario,
)

log = logging.getLogger(__name__)

Harness = Callable[[str, dict[str, Any]], Awaitable[None]]
DECISION_EVENTS = ("access.granted", "access.denied")
TRIGGER_ACTIONS = ("present-card", "type-pin", "press-keys", "person-approaches")


class SimHandle(Protocol):
    """What the runner needs from a simulator (in-process ``Simulator`` or ``RemoteSim``)."""

    def do(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]: ...
    def state(self) -> dict[str, Any]: ...


class RemoteSim:
    """A simulator running elsewhere (``gateway-sim serve``), driven over its HTTP API."""

    def __init__(self, api_url: str, timeout_s: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - URL from the operator
            self.api_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                out: dict[str, Any] = json.loads(resp.read())
                return out
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read()).get("error", str(exc))
            except ValueError:
                msg = str(exc)
            raise RuntimeError(f"simulator {self.api_url}: {msg}") from None

    def do(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("POST", "/" + action, args or {})

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")


# --------------------------------------------------------------------------- observing MQTT


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


def event_type(topic: str, payload: dict[str, Any]) -> str:
    """The event type: payload ``type``, else from the topic (``.../alarm/duress`` = duress)."""
    if isinstance(payload.get("type"), str):
        return str(payload["type"])
    parts = topic.split("/")
    if len(parts) >= 2 and parts[-2] == "alarm":
        return parts[-1]
    if len(parts) >= 2 and parts[-2] == "events":
        return parts[-1]
    return parts[-1]


class Observer(Protocol):
    """Collects MQTT messages; ``events`` grows while running."""

    events: list[Observed]

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class MqttObserver:
    """Subscribes to ``{prefix}/#`` with aiomqtt and reconnects (the broker may go away)."""

    def __init__(self, mqtt_url: str, topic_prefix: str) -> None:
        u = urlparse(mqtt_url)
        if u.scheme not in ("mqtt", "tcp", ""):
            raise ValueError(f"unsupported MQTT URL {mqtt_url!r} (use mqtt://host:port)")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 1883
        self.username = u.username
        self.password = u.password
        self.topic = f"{topic_prefix.rstrip('/')}/#"
        self.events: list[Observed] = []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self.connected.wait()
        if not self.connected.is_set():
            log.warning("runner: MQTT broker %s:%d not reachable yet", self.host, self.port)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import aiomqtt

        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, username=self.username, password=self.password
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.connected.set()
                    async for msg in client.messages:
                        self._add(str(msg.topic), msg.payload)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.debug("runner: MQTT observer disconnected: %s", exc)
                await asyncio.sleep(0.1)

    def _add(self, topic: str, payload: Any) -> None:
        raw = (
            payload.decode("utf-8", "replace")
            if isinstance(payload, bytes | bytearray)
            else str(payload)
        )
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {"value": data}
        self.events.append(Observed(time.monotonic(), topic, event_type(topic, data), data, raw))


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

    def check(self, e: Any) -> Check:
        if isinstance(e, EventExpect):
            w = self.window(e.within, e.after_step)
            hits = [
                ev
                for ev in self.events
                if _type_ok(e.event, ev.type)
                and _match(ev.payload, e.fields)
                and self.in_window(ev.t, w)
            ]
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
            hits = [
                ev
                for ev in self.events
                if _type_ok(e.absent, ev.type)
                and _match(ev.payload, e.fields)
                and self.in_window(ev.t, w)
            ]
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
                w = self.window(part.within or e.within, part.after_step or e.after_step)
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


# --------------------------------------------------------------------------- running


async def _run_one(  # noqa: PLR0917 - internal, called once
    sc: Scenario,
    path: str,
    sim: SimHandle,
    observer: Observer,
    harness: Harness | None,
    corpus: FaceCorpus | None,
    sample_s: float,
) -> ScenarioResult:
    result = ScenarioResult(sc.name, path, "pass")
    missing = [h for h in sc.harness_actions if harness is None]
    if missing:
        result.status = "error"
        result.message = (
            f"needs harness action(s) {', '.join(sorted(set(missing)))} but no harness was provided"
        )
        return result
    if sc.fixtures.people or sc.fixtures.visitor_pins:
        if harness is not None:
            try:
                await harness("provision", _resolved_fixtures(sc, corpus))
            except Exception as exc:  # noqa: BLE001 - a failing set-up ends this scenario only
                result.status = "error"
                result.message = f"set-up failed: {type(exc).__name__}: {exc}"
                return result
        else:
            result.notes.append(
                "fixtures not provisioned by the runner (no harness): assumed present"
            )
    loop_t0 = time.monotonic()
    start_index = len(observer.events)
    samples: list[tuple[float, dict[str, Any]]] = []
    step_times: list[float] = [loop_t0 + s.at for s in sc.steps]
    stop = asyncio.Event()

    async def sampler() -> None:
        while not stop.is_set():
            try:
                st = await asyncio.to_thread(sim.state)
                samples.append((time.monotonic(), st))
            except Exception as exc:  # noqa: BLE001 - any simulator failure is reported, not raised
                result.notes.append(f"hardware state unavailable: {exc}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sample_s):
                    await stop.wait()

    sampling = asyncio.create_task(sampler())
    approaches = 0  # this scenario's own: its frames do not depend on what ran before it
    try:
        for i, step in sorted(enumerate(sc.steps), key=lambda p: p[1].at):
            delay = loop_t0 + step.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            step_times[i] = time.monotonic()
            if step.harness is not None:
                assert harness is not None  # checked above  # noqa: S101
                await harness(step.harness, dict(step.args))
            else:
                assert step.action is not None  # noqa: S101 - validated
                args = dict(step.args)
                if step.action == "person-approaches":
                    args.setdefault("seed", approaches)
                    approaches += int(args.get("count", 1))
                await asyncio.to_thread(sim.do, step.action, args)
        rest = loop_t0 + sc.total_duration - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
    except Exception as exc:  # noqa: BLE001 - a failing step ends this scenario only
        result.status = "error"
        result.message = f"step failed: {type(exc).__name__}: {exc}"
    finally:
        stop.set()
        await sampling
    result.duration_s = round(time.monotonic() - loop_t0, 2)
    events = [ev for ev in observer.events[start_index:] if ev.t >= loop_t0]
    result.events = events
    run = _Run(sc, loop_t0, step_times, events, samples, corpus)
    result.checks = [run.check(e) for e in sc.expect]
    result.time_to_decision_s = run.time_to_decision()
    if result.status != "error" and not all(c.ok for c in result.checks):
        result.status = "fail"
    return result


def _approached(sc: Scenario) -> list[str]:
    """The cameras people approach in ``sc``."""
    steps = [s for s in sc.steps if s.action == "person-approaches" and "camera" in s.args]
    return sorted({str(s.args["camera"]) for s in steps})


async def _empty(sim: SimHandle, cameras: list[str], clear_s: float) -> None:
    """Clear ``cameras`` of people and wait ``clear_s`` (see :func:`run_scenarios_async`)."""
    if not cameras:
        return
    for camera in cameras:
        try:
            await asyncio.to_thread(sim.do, "clear-camera", {"camera": camera})
        except Exception as exc:  # noqa: BLE001 - e.g. a camera a scenario left unplugged
            log.info("runner: camera %s not cleared: %s", camera, exc)
    await asyncio.sleep(clear_s)


def _resolved_fixtures(sc: Scenario, corpus: FaceCorpus | None) -> dict[str, Any]:
    data = sc.fixtures.model_dump()
    for person in data["people"]:
        person["name"] = corpus.resolve(person["ref"]) if corpus is not None else person["ref"]
    data["scenario"] = sc.name
    return data


async def run_scenarios_async(
    paths: Iterable[Path | str],
    sim: SimHandle,
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    topic_prefix: str = "access",
    *,
    harness: Harness | None = None,
    capabilities: Iterable[str] | None = None,
    observer: Observer | None = None,
    corpus: FaceCorpus | None = None,
    run_pending: bool = False,
    unmet: Mapping[str, str] | None = None,
    settle_s: float = 1.0,
    sample_s: float = 0.05,
    clear_s: float = 2.5,
) -> list[ScenarioResult]:
    """Run each scenario in turn; one result per path, in order.

    ``harness(name, args)`` carries out harness steps (``stop_broker``...) and
    ``provision`` (args = the scenario's fixtures with corpus names resolved).
    ``capabilities=None`` means everything is available. ``unmet`` maps a requirement
    that cannot be met here to the reason: a scenario requiring it is ``skipped`` with it.
    After a scenario in which people approached, its cameras are emptied and stay empty
    for ``clear_s`` (longer than the gate's approach gap, 2 s by default): the next
    scenario starts a new approach, never the tail of the last one's (a lingering attacker
    at the same place would otherwise carry its refusal over to a resident).
    """
    caps = None if capabilities is None else set(capabilities)
    if corpus is None:
        corpus = getattr(sim, "corpus", None)
    obs = observer or MqttObserver(mqtt_url, topic_prefix)
    results: list[ScenarioResult] = []
    await obs.start()
    try:
        for p in paths:
            path = str(p)
            try:
                sc = load_scenario(Path(p))
            except ScenarioError as exc:
                results.append(ScenarioResult(Path(p).stem, path, "error", message=str(exc)))
                continue
            if sc.pending and not run_pending:
                results.append(
                    ScenarioResult(sc.name, path, "pending", message=f"pending: {sc.pending}")
                )
                continue
            lacking = sorted(set(sc.requires) - caps) if caps is not None else []
            if lacking:
                results.append(
                    ScenarioResult(
                        sc.name, path, "unsupported", message=f"gateway lacks: {', '.join(lacking)}"
                    )
                )
                continue
            skip = [f"{need}: {unmet[need]}" for need in sc.requires if unmet and need in unmet]
            if skip:
                results.append(ScenarioResult(sc.name, path, "skipped", message="; ".join(skip)))
                continue
            log.info("runner: scenario %s", sc.name)
            res = await _run_one(sc, path, sim, obs, harness, corpus, sample_s)
            if sc.pending:
                res.notes.append(f"marked pending ({sc.pending}); ran because run_pending=True")
                if res.status == "fail":
                    res.status = "pending"
            results.append(res)
            await _empty(sim, _approached(sc), clear_s)
            await asyncio.sleep(settle_s)
    finally:
        await obs.stop()
    return results


def run_scenarios(
    paths: Iterable[Path | str],
    sim: SimHandle,
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    topic_prefix: str = "access",
    **kwargs: Any,
) -> list[ScenarioResult]:
    """Blocking wrapper around :func:`run_scenarios_async` (not inside a running loop)."""
    return asyncio.run(run_scenarios_async(paths, sim, mqtt_url, topic_prefix, **kwargs))
