"""Capture every message on a broker (a subscriber on ``#``) and look for secrets in it.

    with MqttCapture("127.0.0.1", port) as cap:
        ...  # run gates, commands, scenarios
    assert cap.leaks(Secrets(ids=[...], names=[...], numbers=[...])) == []

The subscriber keeps a persistent session (QoS 1, fixed client id) and reconnects, so a
broker stopped and started by a scenario loses it nothing that was published while it was
reconnecting. A number (card number, PIN) counts as found only as a whole token (not inside a
longer run of digits, letters or a decimal), so a timestamp or a nonce does not look like one.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

import paho.mqtt.client as paho


@dataclass
class Secrets:
    """What must never appear on the wire in clear."""

    ids: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    units: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)  # card numbers, PINs

    def patterns(self) -> list[tuple[str, re.Pattern[bytes]]]:
        """(what, pattern) for every secret; text matched case-insensitively."""
        out = []
        for kind, values in (("id", self.ids), ("name", self.names), ("unit", self.units)):
            for v in sorted(values):
                out.append((f"{kind} {v!r}", re.compile(re.escape(v.encode()), re.IGNORECASE)))
        for v in sorted(self.numbers):
            # not inside a longer token: letters, digits, '.', or '-' (a UUID's 4-hex group of
            # an event id is all digits now and then: "…-7392-…" is no PIN)
            token = rb"(?<![A-Za-z0-9.\-])" + re.escape(v.encode()) + rb"(?![A-Za-z0-9.\-])"
            out.append((f"number {v!r}", re.compile(token)))
        return out


class MqttCapture:
    """A background subscriber on ``#`` recording (topic, payload) of every message."""

    def __init__(self, host: str, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"wire-capture-{secrets.token_hex(4)}",
            clean_session=False,
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.1, 1.0)
        self._host, self._port = host, port

    def _on_connect(self, client: paho.Client, *_: object) -> None:
        client.subscribe("#", qos=1)
        self._subscribed.set()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def start(self, timeout_s: float = 10.0) -> MqttCapture:
        """Connect and subscribe (waits until subscribed)."""
        self._client.connect_async(self._host, self._port)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.stop()
            raise RuntimeError(f"capture: no connection to {self._host}:{self._port}")
        return self

    def stop(self, settle_s: float = 0.5) -> None:
        """Give in-flight messages ``settle_s``, then disconnect."""
        time.sleep(settle_s)
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttCapture:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def snapshot(self) -> list[tuple[str, bytes]]:
        """The messages captured so far."""
        with self._lock:
            return list(self.messages)

    def topics(self) -> set[str]:
        """Every topic seen."""
        return {t for t, _ in self.snapshot()}

    def leaks(self, found: Secrets, *, ignore: Iterable[str] = ()) -> list[str]:
        """``what in topic`` for each secret found in a topic or payload (none: [])."""
        skip = set(ignore)
        out = []
        for what, pattern in found.patterns():
            for topic, payload in self.snapshot():
                if topic in skip:
                    continue
                if pattern.search(topic.encode()) or pattern.search(payload):
                    out.append(f"{what} in {topic}")
                    break
        return out
