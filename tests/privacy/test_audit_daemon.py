"""Issue 18 item 10c, wiring: the gateway keys the chain on every connection to its database
(the command processor's too) and its audit watch raises the compliance alert on a break."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from gateway.mqtt import events as ev
from gateway.privacy import audit, people
from tests.conftest import built_gateway


def test_gateway_keys_the_chain_and_alerts_on_a_break(minimal_config: Path) -> None:
    emitted: list[Any] = []

    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            key = audit.bound_key(gw.db)
            assert key is not None
            assert key == audit.ChainKey.from_device(gw.keys.device)
            people.add_person(gw.db, "A")
            row = gw.db.execute("SELECT key_id FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            assert row[0] == key.key_id
            watch = dataclasses.replace(gw.audit_watch, emit=emitted.append)
            assert (await watch.check()).ok
            assert emitted == []
            gw.db.execute("UPDATE audit SET actor = 'someone else' WHERE seq = 1")
            assert not (await watch.check()).ok

    asyncio.run(main())
    assert [e.code for e in emitted] == [ev.ComplianceCode.AUDIT_CHAIN_BROKEN]
