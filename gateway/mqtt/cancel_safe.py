"""aiomqtt's client with its waits built on :func:`asyncio.timeout` (see :mod:`gateway.aio`).

aiomqtt 2.x waits for a PUBACK, SUBACK or CONNACK with :func:`asyncio.wait_for`; on Python
3.11 a cancel that arrives as the acknowledgement does is dropped, and the session task that
published keeps running after its TaskGroup was told to stop. :class:`Client` replaces that
one wait (``Client._wait_for``, same contract: ``math.inf`` means no limit, ``None`` the
client's timeout, a timeout is an :class:`aiomqtt.MqttError`); the test
``tests/mqtt/test_cancel_safe.py`` fails if a new aiomqtt renames or drops it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import TypeVar

import aiomqtt

T = TypeVar("T")


class Client(aiomqtt.Client):
    """An :class:`aiomqtt.Client` whose operations never swallow a cancel."""

    async def _wait_for(
        self,
        fut: Awaitable[T],
        timeout: float | None,  # noqa: ASYNC109 - aiomqtt's signature, overridden
    ) -> T:
        if timeout is None:
            timeout = self.timeout
        try:
            async with asyncio.timeout(None if timeout == math.inf else timeout):
                result = await fut
        except TimeoutError:
            msg = "Operation timed out"
            raise aiomqtt.MqttError(msg) from None
        return result
