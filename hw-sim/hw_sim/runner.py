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
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from hw_sim.corpus import FaceCorpus
from hw_sim.evaluation import Observed, ScenarioResult, _Run, format_report
from hw_sim.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
)

__all__ = [
    "MqttObserver",
    "Observed",
    "RemoteSim",
    "ScenarioResult",
    "format_report",
    "run_scenarios",
    "run_scenarios_async",
]

log = logging.getLogger(__name__)
LATE_S = 0.5
"""A step this late is noted: the run's timings then say more about the machine."""

Harness = Callable[[str, dict[str, Any]], Awaitable[None]]


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

    async def door_when_unlocked(i: int, action: str, args: dict[str, Any], limit: float) -> None:
        """Push once the lock clicks (at most ``limit`` after the step's ``at``); the
        step's time is the push. Runs beside the later steps, which keep their times."""
        door = str(args["door"])
        if not await _await_unlock(sim, door, loop_t0 + sc.steps[i].at + limit, result.notes):
            result.notes.append(f"step {i}: door {door} still locked after {limit:g} s; pushed")
        step_times[i] = time.monotonic()
        await asyncio.to_thread(sim.do, action, args)

    sampling = asyncio.create_task(sampler())
    waiting: list[asyncio.Task[None]] = []
    approaches = 0  # this scenario's own: its frames do not depend on what ran before it
    try:
        for i, step in sorted(enumerate(sc.steps), key=lambda p: p[1].at):
            delay = loop_t0 + step.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            step_times[i] = time.monotonic()
            if (late := step_times[i] - loop_t0 - step.at) > LATE_S:
                result.notes.append(f"step {i} ran {late:.1f} s late (a busy machine or harness)")
            if step.harness is not None:
                assert harness is not None  # checked above  # noqa: S101
                await harness(step.harness, dict(step.args))
            else:
                assert step.action is not None  # noqa: S101 - validated
                args = dict(step.args)
                if step.action == "person-approaches":
                    args.setdefault("seed", approaches)
                    approaches += int(args.get("count", 1))
                if step.await_unlock_s is not None:
                    push = door_when_unlocked(i, step.action, args, step.await_unlock_s)
                    waiting.append(asyncio.create_task(push, name=f"step-{i}"))
                    continue
                await asyncio.to_thread(sim.do, step.action, args)
        await asyncio.gather(*waiting)
        rest = loop_t0 + sc.total_duration - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
    except Exception as exc:  # noqa: BLE001 - a failing step ends this scenario only
        result.status = "error"
        result.message = f"step failed: {type(exc).__name__}: {exc}"
    finally:
        for pending in waiting:
            pending.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
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


async def _await_unlock(sim: SimHandle, door: str, deadline: float, notes: list[str]) -> bool:
    """Wait until ``door``'s relay is unlocked in the simulator, until ``deadline``
    (monotonic); a simulator that does not answer meanwhile is noted, not fatal. A relay
    unlocked already counts (the scenarios start from locked doors: ``settle``)."""
    while True:
        try:
            st = await asyncio.to_thread(sim.state)
        except Exception as exc:  # noqa: BLE001 - as the sampler: reported, not raised
            notes.append(f"hardware state unavailable while waiting for door {door}: {exc}")
            st = {}
        if (st.get("doors", {}).get(door) or {}).get("relay"):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


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
