"""A cancel is never lost on Python 3.11 (gateway.aio, gateway.mqtt.cancel_safe).

CI saw a roster agent keep running after its cancel (a test hung 300 s): aiomqtt waits for a
PUBACK with ``asyncio.wait_for``, which on 3.11 drops a cancel arriving as the PUBACK does.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiomqtt
import pytest

from gateway.aio import run_together
from gateway.gate import roster_agent
from gateway.mqtt.cancel_safe import Client
from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.roster_topics import RosterTopics
from gateway.mqtt.topics import Topics
from gateway.store import database as store

REPO = Path(__file__).resolve().parents[2]


async def _loop_until_cancelled(wait: Callable[[asyncio.Event], Awaitable[Any]]) -> str:
    """A service loop whose wait completes in the same iteration as its cancel arrives;
    "ran on" when the loop kept going after the cancel."""
    ev = asyncio.Event()

    async def service() -> None:
        while True:
            await wait(ev)
            ev.clear()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(service())
    await asyncio.sleep(0.01)
    ev.set()  # the acknowledgement arrives ...
    task.cancel()  # ... as the daemon stops
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()  # a second cancel meets the plain sleep or wait: the test ends
        await asyncio.gather(task, return_exceptions=True)
        return "ran on"
    return "cancelled" if task.cancelled() else "ended"


def test_the_cancel_safe_client_keeps_a_cancel_that_meets_an_acknowledgement() -> None:
    async def main() -> str:
        client = Client("127.0.0.1", 1, timeout=10)
        return await _loop_until_cancelled(lambda ev: client._wait_for(ev.wait(), None))

    assert asyncio.run(main()) == "cancelled"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for keeps it from 3.12")
def test_aiomqtt_own_wait_loses_that_cancel_on_python_3_11() -> None:
    """What the override is for: the same loop on aiomqtt's own client runs on."""

    async def main() -> str:
        client = aiomqtt.Client("127.0.0.1", 1, timeout=10)
        return await _loop_until_cancelled(lambda ev: client._wait_for(ev.wait(), None))

    assert asyncio.run(main()) == "ran on"


def test_the_override_still_replaces_an_aiomqtt_method() -> None:
    """A new aiomqtt that renames its wait would silently bring the bug back."""
    assert "_wait_for" in vars(aiomqtt.Client)
    assert Client._wait_for is not aiomqtt.Client._wait_for


def test_a_timeout_is_still_an_mqtt_error() -> None:
    async def main() -> None:
        client = Client("127.0.0.1", 1, timeout=0.05)
        await client._wait_for(asyncio.Event().wait(), None)

    with pytest.raises(aiomqtt.MqttError, match="timed out"):
        asyncio.run(main())


class _Lost(aiomqtt.MqttError):
    pass


async def _broker_lost() -> None:
    await asyncio.sleep(0.01)
    raise _Lost("connection lost")


async def _forever() -> None:
    await asyncio.Event().wait()


def test_run_together_raises_the_failure_and_leaves_no_cancel_on_the_caller() -> None:
    async def main() -> int:
        with pytest.raises(_Lost):
            await run_together(_broker_lost(), _forever())
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(main()) == 0


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="TaskGroup uncancels its caller from 3.12")
def test_a_task_group_leaves_a_cancel_counted_on_python_3_11() -> None:
    """Why sessions do not use TaskGroup on 3.11: a reconnect loop that asks
    ``cancelling()`` took every lost broker for a stop."""

    async def main() -> int:
        with contextlib.suppress(BaseExceptionGroup):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(_broker_lost())
                tg.create_task(_forever())
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert asyncio.run(main()) == 1


def test_a_cancel_of_the_caller_stays_a_cancel_when_children_fail_while_stopping() -> None:
    async def fails_when_stopped() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise _Lost("disconnected while stopping") from None

    async def main() -> str:
        task = asyncio.create_task(run_together(fails_when_stopped(), _forever()))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.wait({task})
        return "cancelled" if task.cancelled() else repr(task.exception())

    assert asyncio.run(main()) == "cancelled"


def test_run_together_waits_for_every_coroutine_that_ends_well() -> None:
    ended: list[int] = []

    async def after(i: int, s: float) -> None:
        await asyncio.sleep(s)
        ended.append(i)

    asyncio.run(run_together(after(1, 0.02), after(2, 0.01)))
    assert ended == [2, 1]


class _LosingClient:
    """A broker connection that is lost 10 ms after the subscription."""

    async def subscribe(self, *_: Any, **__: Any) -> None:
        return None

    @property
    def messages(self) -> AsyncIterator[Any]:
        async def lost() -> AsyncIterator[Any]:
            await _broker_lost()
            yield None  # never reached

        return lost()


def test_the_roster_follower_reconnects_after_a_lost_broker_and_stops_when_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: the roster agents' loop took the TaskGroup's leftover cancel for a stop
    and ended after the first lost connection (a gate then never converged again)."""
    sessions = 0

    @contextlib.asynccontextmanager
    async def connected(*_: Any) -> AsyncIterator[Any]:
        nonlocal sessions
        sessions += 1
        yield _LosingClient()

    monkeypatch.setattr(roster_agent, "_connected", connected)
    deps: Any = SimpleNamespace(gate="north")
    agent = roster_agent.GateRosterAgent(deps, cast(Any, None), RosterTopics("ag", "site"), _no_db)

    async def main() -> tuple[bool, bool]:
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(1.0)  # backoff 0.1-0.2 s, then 0.2-0.4 s: three sessions or more
        running = not task.done()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        return running, task in done and task.cancelled()

    assert asyncio.run(main()) == (True, True)
    assert sessions >= 3


async def _no_db(*_: Any, **__: Any) -> Any:
    raise AssertionError("no database call expected before a manifest arrives")


def test_a_cancel_while_the_children_are_stopped_waits_for_them_and_stays_a_cancel() -> None:
    """A child fails, its sibling needs 0.2 s to stop, the caller is cancelled meanwhile:
    the caller ends cancelled only once the sibling has ended (as a TaskGroup waits)."""
    cleaned = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(asyncio.sleep(0.2))
            cleaned.set()

    async def main() -> tuple[bool, bool]:
        task = asyncio.create_task(run_together(_broker_lost(), slow_to_stop()))
        await asyncio.sleep(0.05)  # the failure came at 10 ms: the sibling is stopping
        task.cancel()
        await asyncio.wait({task})
        return task.cancelled(), cleaned.is_set()

    assert asyncio.run(main()) == (True, True)


class _SlowToCloseClient:
    """A connection that is lost 50 ms in and takes 1 s to close (a slow broker)."""

    def __init__(self) -> None:
        self.closed = False

    async def publish(self, *_: Any, **__: Any) -> None:
        return None

    async def subscribe(self, *_: Any, **__: Any) -> None:
        return None

    @property
    def messages(self) -> AsyncIterator[Any]:
        async def lost() -> AsyncIterator[Any]:
            await asyncio.sleep(0.05)
            raise _Lost("connection lost")
            yield None  # an async generator

        return lost()

    async def __aexit__(self, *_: Any) -> None:
        await asyncio.sleep(1.0)
        self.closed = True


@pytest.mark.timeout(30)  # the old code never stopped: fail, do not hang
def test_the_gate_session_stops_when_cancelled_while_it_closes_a_lost_connection() -> None:
    """Regression: the session's teardown suppressed CancelledError, so a stop arriving
    while a lost connection was being closed was swallowed and the service reconnected."""
    topics = Topics("ag", "site", "north")
    service = MqttService(
        MqttSettings(client_id="north", backoff_initial_s=0.05, backoff_max_s=0.05),
        topics,
        Outbox(store.connect(":memory:"), topics),
    )
    sessions = 0

    async def connect() -> Any:
        nonlocal sessions
        sessions += 1
        return _SlowToCloseClient()

    service._connect = connect  # type: ignore[method-assign]

    async def main() -> bool:
        task = asyncio.create_task(service.run())
        await asyncio.sleep(0.3)  # lost at 50 ms; closing until 1.05 s
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
        return task in done and task.cancelled()

    assert asyncio.run(main())
    assert sessions == 1


def test_the_package_uses_the_cancel_safe_client_only() -> None:
    """Every aiomqtt client of the package is gateway.mqtt.cancel_safe.Client."""
    found = [
        f"{p.relative_to(REPO)}:{n}"
        for p in sorted((REPO / "gateway").rglob("*.py"))
        if p.name != "cancel_safe.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "aiomqtt.Client(" in line
    ]
    assert found == []


def test_the_package_never_waits_with_asyncio_wait_for() -> None:
    """gateway and the simulator use asyncio.timeout (wait_for drops cancels on 3.11)."""
    found = [
        f"{p.relative_to(REPO)}:{n}"
        for root in ("gateway", "hw-sim/hw_sim")
        for p in sorted((REPO / root).rglob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if "asyncio.wait_for(" in line and not line.lstrip().startswith("#")
    ]
    assert found == []
