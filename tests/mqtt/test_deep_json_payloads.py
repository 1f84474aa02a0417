"""JSON nested too deep for the parser is a refusal on every subscribed topic, never a
RecursionError escaping the parser (found by the fuzz suite; #18 items 4 and 9)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import ProtocolError
from gateway.mqtt import fleet
from tests.fuzz.cases import GATE, MqttTarget, deep_json

DEEP = [deep_json(20_000, "["), deep_json(10_000, "{")]  # under the 64 KB size limit


@pytest.mark.parametrize("text", DEEP, ids=["arrays", "objects"])
def test_deep_json_is_refused_by_every_parser(text: str) -> None:
    payload = text.encode()
    with MqttTarget.open() as target:
        res = asyncio.run(target.processor.process("unlock", payload))
        assert not res.ok
        assert res.error == "too_deep"
        with pytest.raises(ProtocolError, match="refused"):
            target.fanout.accept(payload)
    assert fleet.parse_enrolled(f"access/site/{GATE}/enrolled", payload) is None
    assert fleet.parse_state(payload) == "unknown"
