"""Fault suite: broker outage. Mosquitto is stopped for 10 s while cards are presented: the
door keeps working (valid card opens within 1 s, revoked card refused, relocks in time),
and every decision made during the outage reaches the broker once it returns (the daemon
reconnects within 5 s of the broker's return, issue 18 #6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.gate import provisioned_gate, started_with_revocation
from tests.mosquitto import Mosquitto

pytestmark = [pytest.mark.fault, pytest.mark.mosquitto, pytest.mark.slow, pytest.mark.timeout(90)]

OUTAGE_S = 10.0
#: The daemon reconnects within 5 s of the broker's return; 2 s for the outbox to drain.
DELIVER_AFTER_RETURN_S = 7.0


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


def test_broker_outage(broker: Mosquitto, tmp_path: Path) -> None:
    async def main() -> None:
        async with provisioned_gate(broker, tmp_path) as stack:
            inv = await started_with_revocation(stack)
            async with inv:
                await inv.round("healthy", revoked=False)
                await inv.no_event_lost(within_s=5.0, label="healthy")
                down_at = time.monotonic()
                await asyncio.to_thread(broker.stop)
                await inv.round("broker down")
                await asyncio.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
                await asyncio.to_thread(broker.start)
                await inv.no_event_lost(DELIVER_AFTER_RETURN_S, label="broker back")
                await inv.round("after the outage")
                await inv.no_event_lost(within_s=10.0)
            inv.assert_held()

    asyncio.run(main())
