"""Supervised asyncio services: named tasks in a TaskGroup, restart with backoff and budget.

A crashing service is restarted after a capped, jittered backoff. A *critical* service that
crashes more than ``budget`` times within ``window`` seconds ends the daemon with a non-zero
exit (systemd restarts it). A *non-critical* one (camera, MQTT) past its budget is marked
failed and retried at the slowest pace instead, so PIN and card access never stop for it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

ServiceFn = Callable[[], Awaitable[None]]


class RestartBudgetExhaustedError(GatewayError):
    """A critical service crashed too often: the daemon must exit non-zero."""


class ServiceState(StrEnum):
    """What a supervised service is doing."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class ServiceSpec:
    """A service to supervise."""

    name: str
    run: ServiceFn
    critical: bool = False
    restart: bool = True


@dataclass
class ServiceStatus:
    """Live status of one service (for ``status`` and health reports)."""

    state: ServiceState = ServiceState.STARTING
    restarts: int = 0
    last_error: str | None = None
    crashes: deque[float] = field(default_factory=deque)


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        upper = min(self.cap, self.base * float(2 ** max(0, attempt - 1)))
        r: float = (rng or random.Random()).uniform(0.5, 1.0)
        return upper * r


class Supervisor:
    """Run services as named tasks and restart them within a budget."""

    def __init__(
        self,
        *,
        budget: int = 5,
        window: float = 60.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.window = window
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.status: dict[str, ServiceStatus] = {}

    def health(self) -> dict[str, str]:
        """Service name -> state, for status reports."""
        return {name: st.state.value for name, st in self.status.items()}

    async def run(self, specs: list[ServiceSpec]) -> None:
        """Run every service until all end or one critical service exhausts its budget."""
        async with asyncio.TaskGroup() as tg:
            for spec in specs:
                self.status[spec.name] = ServiceStatus()
                tg.create_task(self._supervise(spec), name=spec.name)

    async def _supervise(self, spec: ServiceSpec) -> None:
        st = self.status[spec.name]
        attempt = 0
        while True:
            st.state = ServiceState.RUNNING
            try:
                await spec.run()
            except asyncio.CancelledError:
                st.state = ServiceState.STOPPED
                raise
            except Exception as exc:
                st.last_error = f"{type(exc).__name__}: {exc}"
                now = self.clock()
                st.crashes.append(now)
                while st.crashes and st.crashes[0] < now - self.window:
                    st.crashes.popleft()
                attempt += 1
                if len(st.crashes) > self.budget:
                    if spec.critical:
                        st.state = ServiceState.FAILED
                        log.critical(
                            "service %s crashed %d times in %.0f s (budget %d): giving up",
                            spec.name,
                            len(st.crashes),
                            self.window,
                            self.budget,
                        )
                        raise RestartBudgetExhaustedError(
                            f"critical service {spec.name} exhausted its restart budget: "
                            f"{st.last_error}"
                        ) from exc
                    first_failure = st.state is not ServiceState.FAILED
                    st.state = ServiceState.FAILED
                    delay = self.backoff.cap
                    (log.error if first_failure else log.debug)(
                        "service %s keeps crashing (%s); retrying every %.0f s, "
                        "PIN/card access unaffected",
                        spec.name,
                        st.last_error,
                        delay,
                    )
                else:
                    st.state = ServiceState.BACKOFF
                    delay = self.backoff.delay(attempt)
                    if attempt == 1:
                        log.warning(
                            "service %s crashed (%s); restarting in %.1f s",
                            spec.name,
                            st.last_error,
                            delay,
                        )
                    else:
                        log.debug(
                            "service %s crashed again (%s); restart %d in %.1f s",
                            spec.name,
                            st.last_error,
                            attempt,
                            delay,
                        )
                if not spec.restart:
                    st.state = ServiceState.FAILED
                    return
                st.restarts += 1
                await asyncio.sleep(delay)
                continue
            st.state = ServiceState.STOPPED
            log.debug("service %s finished", spec.name)
            return
