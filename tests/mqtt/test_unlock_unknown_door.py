"""A signed ``unlock`` for a door this gate does not have is answered with an error naming
the door, not ``ok`` (#18 item 9)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.mqtt import sign
from gateway.mqtt.commands import CommandProcessor
from gateway.privacy import audit
from tests.conftest import built_gateway
from tests.mqtt.test_mqtt_commands import env_bytes

SITE, GATE = "test-site", "gate-1"


def test_unlock_of_an_unknown_door_answers_an_error_naming_it(minimal_config: Path) -> None:
    async def main() -> None:
        async with built_gateway(minimal_config) as gw:
            key = sign.generate()
            kid = sign.key_id_of(key.public_key())
            proc = CommandProcessor(
                gw.db,
                {kid: sign.public_b64(key.public_key())},
                site=SITE,
                gate=GATE,
                audit=audit.appender(gw.db),
            )
            proc.register("unlock", gw.remote_commands.unlock)
            env = sign.sign_envelope(
                "unlock", {"door": "back-gate"}, key, ts=sign.now_rfc3339(), site=SITE, gate=GATE
            )
            res = await proc.process("unlock", env_bytes(env))
            assert not res.ok, res
            assert res.error == "refused"
            assert res.detail is not None
            assert "'back-gate'" in res.detail

    asyncio.run(main())
