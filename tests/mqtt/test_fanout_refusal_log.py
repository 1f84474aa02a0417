"""Forged withdrawal fan-out messages cannot flood the log (#18 item 7): the first few per
window are logged one by one, the rest only counted and summarised."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.conftest import built_gateway


def test_forged_fanout_messages_log_a_bounded_number_of_lines(
    minimal_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            with caplog.at_level(logging.WARNING, logger="gateway.gate.withdrawal_announce"):
                for i in range(200):
                    await gw.withdrawals.on_fanout(b'{"v": 1, "forged": %d}' % i)

    asyncio.run(main())
    refused = [r for r in caplog.records if "withdrawal fan-out refused" in r.getMessage()]
    assert 1 <= len(refused) <= 10, len(refused)
