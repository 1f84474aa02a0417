"""asyncio helpers for Python 3.11 that never lose or invent a cancel.

Two 3.11 behaviours made service loops wrong (both are fixed in 3.12):

- :func:`asyncio.wait_for` drops a cancel that arrives as the awaited operation completes
  (CPython gh-86296): the loop that lost it never stops. The package uses
  :func:`asyncio.timeout` instead (and :mod:`gateway.mqtt.cancel_safe` for aiomqtt's waits).
- :class:`asyncio.TaskGroup` leaves a cancel request counted on its caller when a child
  fails (``Task.cancelling()`` stays 1), and turns a cancel of the caller into the children's
  errors when they fail while stopping. A reconnect loop can then tell neither a broker
  error from a stop nor stop on one. :func:`run_together` is the session's group instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def run_together(*coros: Coroutine[Any, Any, None], name: str = "") -> None:
    """Run ``coros`` as tasks until all end or one fails; then cancel and await the rest
    and raise the first failure. A cancel of the caller cancels and awaits them all (also
    when it arrives while they are being stopped) and stays a cancel, whatever they raise
    while stopping."""
    tasks = [
        asyncio.create_task(c, name=f"{name}-{i}" if name else None) for i, c in enumerate(coros)
    ]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        await _stop(tasks)
        raise
    await _stop(pending)
    failures = [e for t in tasks if t in done and (e := _outcome(t)) is not None]
    if failures:  # the first in the order given; the others are retrieved (never "lost")
        raise failures[0]


async def _stop(tasks: Any) -> None:
    """Cancel ``tasks`` and wait until every one has ended, also when this wait is itself
    cancelled (that cancel is raised once they have); what they raised while stopping is
    logged, never lost."""
    for task in tasks:
        task.cancel()
    stop: asyncio.CancelledError | None = None
    while pending := [t for t in tasks if not t.done()]:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as cancel:
            stop = cancel
    for task in tasks:
        if (failure := _outcome(task)) is not None:
            log.debug("%s ended with %r while it was stopped", task.get_name(), failure)
    if stop is not None:
        raise stop


def _outcome(task: asyncio.Task[None]) -> BaseException | None:
    return None if task.cancelled() else task.exception()
