"""Supervisor: restarts with backoff, budgets, non-critical services never stop the rest."""

from __future__ import annotations

import asyncio
import random

import pytest

from gateway.daemon.supervisor import (
    Backoff,
    RestartBudgetExhaustedError,
    ServiceSpec,
    ServiceState,
    Supervisor,
)


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(base=0.5, cap=4.0)
    rng = random.Random(1)
    delays = [b.delay(n, rng) for n in range(1, 10)]
    assert all(0 < d <= 4.0 for d in delays)
    assert delays[0] <= 0.5
    assert max(delays[5:]) > 2.0  # reaches the cap region
    assert len({round(d, 6) for d in delays}) > 5  # jittered, not constant


def test_crashing_service_restarts_while_others_keep_running() -> None:
    crashes = 0
    ticks = 0

    async def flaky() -> None:
        nonlocal crashes
        await asyncio.sleep(0.01)
        crashes += 1
        raise RuntimeError("injected crash")

    async def steady() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def main() -> Supervisor:
        sup = Supervisor(budget=100, window=60, backoff=Backoff(base=0.01, cap=0.02))
        task = asyncio.create_task(
            sup.run([ServiceSpec("camera", flaky), ServiceSpec("doors", steady, critical=True)])
        )
        await asyncio.sleep(0.4)
        assert sup.status["doors"].state is ServiceState.RUNNING
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return sup

    sup = asyncio.run(main())
    assert crashes >= 4
    assert sup.status["camera"].restarts >= 3
    assert "injected crash" in (sup.status["camera"].last_error or "")
    assert ticks > 20


def test_critical_service_past_budget_ends_the_run() -> None:
    async def broken() -> None:
        raise OSError("relay board gone")

    async def steady() -> None:
        await asyncio.sleep(3600)

    async def main() -> None:
        sup = Supervisor(budget=3, window=60, backoff=Backoff(base=0.001, cap=0.002))
        await sup.run([ServiceSpec("doors", broken, critical=True), ServiceSpec("x", steady)])

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(asyncio.wait_for(main(), 5))
    assert info.group_contains(RestartBudgetExhaustedError)


def test_non_critical_service_past_budget_is_marked_failed_not_fatal() -> None:
    async def broken() -> None:
        raise OSError("camera gone")

    async def main() -> Supervisor:
        sup = Supervisor(budget=2, window=60, backoff=Backoff(base=0.001, cap=0.02))
        task = asyncio.create_task(sup.run([ServiceSpec("camera", broken)]))
        await asyncio.sleep(0.3)
        assert not task.done(), "a non-critical service must never end the daemon"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return sup

    sup = asyncio.run(main())
    assert sup.status["camera"].state is ServiceState.FAILED
    assert sup.status["camera"].restarts >= 3


def test_budget_window_forgets_old_crashes() -> None:
    now = [0.0]

    async def main() -> Supervisor:
        count = 0

        async def sometimes() -> None:
            nonlocal count
            count += 1
            now[0] += 100.0  # each crash is far apart in time
            if count < 6:
                raise RuntimeError("rare crash")

        sup = Supervisor(
            budget=2, window=60, backoff=Backoff(base=0.001, cap=0.002), clock=lambda: now[0]
        )
        await sup.run([ServiceSpec("doors", sometimes, critical=True)])
        return sup

    sup = asyncio.run(main())
    assert sup.status["doors"].restarts == 5
