"""Issue #18 item 3 against the simulator and a real Mosquitto: a card revoked by the signed
MQTT ``revoke_card`` command and one revoked by the CLI while the daemon runs are refused at
the reader once the database becomes unreadable; a valid card still opens the relay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.demo.run import DemoStack
from tests.conftest import REPO
from tests.mosquitto import Mosquitto
from tests.services.test_revocation_outage import _hold_wal_index
from tests.support.demo import demo_stack

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

FACILITY = 10
CARDS = {"Revoked By Mqtt": 41001, "Revoked By Cli": 41002, "Still Valid": 41003}


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


async def _relay_opens(stack: DemoStack, number: int, within_s: float) -> bool:
    await stack.settle(clear=False)
    await asyncio.to_thread(
        stack.sim.do, "present-card", {"reader": "entry", "card": number, "facility": FACILITY}
    )
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        st = await asyncio.to_thread(stack.sim.state)
        if st["doors"]["main-gate"]["relay"]:
            return True
        await asyncio.sleep(0.05)
    return False


def test_revoked_cards_never_open_while_the_database_is_unreadable(
    broker: Mosquitto, tmp_path: Path
) -> None:
    async def main() -> None:
        async with demo_stack(broker.port, tmp_path) as stack:
            stack.write_config()
            people = [
                {"name": name, "card": {"facility": FACILITY, "number": n}, "consent": False}
                for name, n in CARDS.items()
            ]
            await asyncio.to_thread(stack._provision, {"people": people})
            db = stack._db()  # enrolled an hour ago: not a "recent change"
            db.execute("UPDATE cards SET created_at = created_at - 3600")
            db.close()
            await stack.start_daemon()
            for name, number in CARDS.items():
                assert await _relay_opens(stack, number, 3.0), f"{name}: card does not open"
            # revoke one card by the signed MQTT command, one by the CLI (another process)
            body = await stack.command(
                "revoke_card", {"person_ref": stack.person_ref(stack._people["Revoked By Mqtt"])}
            )
            assert body["result"] == {"revoked": 1}, body
            cli = await asyncio.to_thread(
                subprocess.run,
                [
                    sys.executable, "-m", "gateway", "--config", str(stack.config_path),
                    "people", "revoke-card", stack._people["Revoked By Cli"],
                    "--facility", str(FACILITY),
                ],
                input=f"{CARDS['Revoked By Cli']}\n",
                capture_output=True,
                text=True,
                timeout=60,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                check=False,
            )  # fmt: skip
            assert cli.returncode == 0, cli.stderr
            await asyncio.sleep(1.0)  # the daemon follows the data version every 0.25 s
            holder = await asyncio.to_thread(_hold_wal_index, stack.state_dir / "state.db")
            try:
                for name in ("Revoked By Mqtt", "Revoked By Cli"):
                    opened = await _relay_opens(stack, CARDS[name], 3.0)
                    assert not opened, f"{name}: a revoked card opened\n{stack.daemon_log_tail()}"
                assert await _relay_opens(stack, CARDS["Still Valid"], 1.5), (
                    "a valid card must open within 1 s while the database is unreadable\n"
                    + stack.daemon_log_tail()
                )
            finally:
                holder.kill()
                holder.wait()
            log = (tmp_path / "daemon.log").read_text(errors="replace")
            assert "deciding from the in-memory cache" in log
            assert "41001" not in log
            assert "41002" not in log

    asyncio.run(main())
