"""The console's live feed: the gate's events (as published, anonymized: a person only by
their rotating pseudonym) kept in a bounded ring for the events page, and fanned out to
the open server-sent-event streams of the dashboard and the events page. Events from
before the feed started are read from the database (:mod:`gateway.web.history`).

A slow browser never slows the gate: each stream has a bounded queue and an event that
does not fit is dropped for that stream only (the stream is told how many it missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

RECENT = 1000
"""Events kept for the events page."""
QUEUE = 256
"""Events a stream may fall behind before it drops some."""
_CLOSED: dict[str, Any] = {"type": "_closed"}


class Stream:
    """One open stream's queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        self.dropped = 0

    async def next(self, timeout_s: float) -> dict[str, Any] | None:
        """The next event, None after ``timeout_s`` without one, or the close marker."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self.queue.get()
        except TimeoutError:
            return None


def closed(item: Mapping[str, Any] | None) -> bool:
    """Whether ``item`` is the feed's close marker (the server is stopping)."""
    return item is _CLOSED


class EventFeed:
    """Events published on the gate, for the console (never raises into the gate)."""

    def __init__(self, recent: int = RECENT) -> None:
        self.started = time.time()
        """When the feed started: older events are read from the database."""
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self._streams: set[Stream] = set()

    def publish(self, event: Any) -> None:
        """Keep ``event`` (a :mod:`gateway.mqtt.events` model, or its JSON dict) and hand
        it to every open stream."""
        try:
            item = event.model_dump(mode="json") if hasattr(event, "model_dump") else dict(event)
        except Exception:
            log.exception("web: an event could not be kept for the console")
            return
        self._recent.append(item)
        for s in self._streams:
            try:
                s.queue.put_nowait(item)
            except asyncio.QueueFull:
                s.dropped += 1

    def recent(self) -> list[dict[str, Any]]:
        """The kept events, newest first."""
        return list(reversed(self._recent))

    @contextlib.contextmanager
    def stream(self) -> Iterator[Stream]:
        """An open stream for as long as the block runs."""
        s = Stream()
        self._streams.add(s)
        try:
            yield s
        finally:
            self._streams.discard(s)

    def close(self) -> None:
        """Tell every open stream to end (the server is stopping)."""
        for s in self._streams:
            with contextlib.suppress(asyncio.QueueFull):
                s.queue.put_nowait(_CLOSED)
            if s.queue.full():  # a full stream still has to end
                with contextlib.suppress(asyncio.QueueEmpty):
                    s.queue.get_nowait()
                s.queue.put_nowait(_CLOSED)


def matches(item: Mapping[str, Any], filters: Mapping[str, str]) -> bool:
    """Whether an event passes the events page's filters: ``type`` (a prefix, such as
    ``access`` or ``door.forced``), ``door``, ``person`` (a pseudonym), ``since`` (an
    RFC 3339 time; events at or after it)."""
    kind = filters.get("type", "")
    if kind and not str(item.get("type", "")).startswith(kind):
        return False
    for key in ("door", "person"):
        if filters.get(key) and item.get(key) != filters[key]:
            return False
    since = filters.get("since", "")
    return not since or str(item.get("ts", "")) >= since
