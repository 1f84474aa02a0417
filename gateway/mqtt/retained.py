"""Retained documents other parts of the gate read, kept from the daemon's own MQTT session.

The audit watch compares the chain's head with the copy published off the device, and the
Art. 15 check sums the other gates' retained people counts. Opening a second broker
connection for each read made every check a connect/subscribe/disconnect cycle (and an
embedded broker dropped the main session when those short-lived clients left). Instead the
main session subscribes to the wanted filters once per connection and this store keeps
the latest payload per topic, bounded in entries and size.
"""

from __future__ import annotations

import asyncio
import time

# Anyone who may publish under the site prefix can post documents here: bound what is kept
# (a compound's gates with room to spare; the documents are a few hundred bytes).
MAX_TOPICS = 512
MAX_PAYLOAD = 2048
MAX_TOPIC_LEN = 256


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` (one level) and a trailing ``#``."""
    p_levels, t_levels = pattern.split("/"), topic.split("/")
    for i, p in enumerate(p_levels):
        if p == "#":
            return True
        if i >= len(t_levels) or (p not in ("+", t_levels[i])):
            return False
    return len(p_levels) == len(t_levels)


class RetainedStore:
    """Latest payload per topic for a fixed set of filters (fed by the MQTT session)."""

    def __init__(self, filters: list[str] | None = None) -> None:
        self.filters: list[str] = list(filters or [])
        self._docs: dict[str, bytes] = {}
        self._subscribed_at: float | None = None  # monotonic time of the last subscription
        self._changed = asyncio.Event()

    def watch(self, topic_filter: str) -> None:
        """Keep the documents of ``topic_filter`` (call before the session starts)."""
        if topic_filter not in self.filters:
            self.filters.append(topic_filter)

    def accepts(self, topic: str) -> bool:
        """True when ``topic`` is one of the watched filters."""
        return any(topic_matches(f, topic) for f in self.filters)

    def subscribed(self) -> None:
        """The session (re)subscribed: retained documents are on their way."""
        self._subscribed_at = time.monotonic()
        self._changed.set()

    def put(self, topic: str, payload: bytes) -> bool:
        """Keep ``payload`` for ``topic`` (an empty payload clears it); False when refused."""
        if len(payload) > MAX_PAYLOAD or len(topic) > MAX_TOPIC_LEN:
            return False
        if not payload:
            self._docs.pop(topic, None)
        elif topic in self._docs or len(self._docs) < MAX_TOPICS:
            self._docs[topic] = payload
        else:
            return False
        self._changed.set()
        return True

    def get(self, topic: str) -> bytes | None:
        """The latest document on ``topic``, None when none arrived."""
        return self._docs.get(topic)

    def matching(self, topic_filter: str) -> dict[str, bytes]:
        """Every kept document whose topic matches ``topic_filter``."""
        return {t: p for t, p in self._docs.items() if topic_matches(topic_filter, t)}

    async def read(self, topic: str, *, settle_s: float = 1.0, wait_s: float = 5.0) -> bytes | None:
        """``topic``'s document, waiting (at most ``wait_s``) for a session to subscribe and
        ``settle_s`` more for the broker to send its retained copy; None if none comes."""
        deadline = time.monotonic() + wait_s
        while True:
            doc = self._docs.get(topic)
            if doc is not None:
                return doc
            now = time.monotonic()
            since = self._subscribed_at
            if now >= deadline or (since is not None and now - since >= settle_s):
                return None
            self._changed.clear()
            remaining = deadline - now
            if since is not None:
                remaining = min(remaining, since + settle_s - now)
            try:
                async with asyncio.timeout(max(0.01, remaining)):
                    await self._changed.wait()
            except TimeoutError:
                continue
