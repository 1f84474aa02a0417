"""An embedded MQTT broker (amqtt) for the demo when no broker is configured."""

from __future__ import annotations

import logging
import socket
from typing import Any

from gateway.errors import GatewayError

log = logging.getLogger(__name__)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Snapshots(dict[str, Any]):
    """amqtt 0.12's subscription table, iterated over a snapshot: the broker walks it across
    awaits (a client's connection, a broadcast) while other clients subscribe or leave, and
    the walk then fails with "dictionary changed size during iteration", which kills that
    client's session on the broker (seen when the demo gate restarts beside the roster)."""

    def __iter__(self) -> Any:
        return iter(list(dict.keys(self)))

    def items(self) -> Any:
        return list(dict.items(self))


class EmbeddedBroker:
    """amqtt broker on 127.0.0.1, anonymous, MQTT 3.1.1 — for the demo only."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._broker: Any = None

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start listening."""
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise GatewayError(
                "the embedded demo broker needs amqtt: pip install 'access-gateway[demo]' "
                "(or give the demo a broker with --mqtt mqtt://host:port)"
            ) from exc

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)
        self._broker._subscriptions = _Snapshots()  # see _Snapshots
        await self._broker.start()
        log.info("embedded MQTT broker listening on 127.0.0.1:%d", self.port)

    async def stop(self) -> None:
        """Shut down."""
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
