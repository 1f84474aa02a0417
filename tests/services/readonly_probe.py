"""Run by tests/services/test_readonly_start.py inside a private mount namespace where the
state folder is read-only: start the daemon, present a valid card, report as JSON."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.config.root import load_config
from gateway.daemon.process import Daemon
from gateway.hardware.events import CardRead


def main() -> int:
    cfg_path = Path(sys.argv[1])
    cfg = load_config(cfg_path, env=False)
    daemon = Daemon(cfg_path, cfg)
    out: dict[str, Any] = {}

    async def setup(d: Daemon) -> None:
        from gateway.gate.app import Gateway

        gw = Gateway(d)
        await gw.setup()

        async def probe() -> None:
            try:
                await asyncio.sleep(0.5)
                ctl = gw.controller
                assert ctl is not None
                await ctl.on_reader_event("entry", CardRead("entry", 4242, 10, "H10301", 26))
                await ctl.on_reader_event("entry", CardRead("entry", 999, 10, "H10301", 26))
                out["grants"] = ctl.stats.grants
                out["denials"] = ctl.stats.denials
                health = gw.health()
                out["storage_mode"] = health.get("storage_mode")
                out["outbox_in_memory"] = health.get("outbox", {}).get("in_memory")
                out["outbox_degraded"] = health.get("outbox_degraded")
            finally:
                d.request_stop()

        d.add_service_task = asyncio.get_running_loop().create_task(probe())  # type: ignore[attr-defined]

    out["exit"] = asyncio.run(daemon.run(setup))
    print("PROBE " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
