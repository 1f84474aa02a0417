"""A ``osdp+pty://`` URL naming something that is not a terminal: one clear warning, then
quiet backoff; no traceback every 0.5 s and no leaked descriptor (#18 item 9)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.hardware.osdp import OsdpBus
from gateway.hardware.osdp_transport import transport_from_url


@pytest.mark.parametrize("target", ["file", "/dev/null"])
def test_pty_url_on_a_non_tty_logs_one_clear_error(
    target: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "not-a-tty" if target == "file" else Path(target)
    if target == "file":
        path.write_text("hello\n")
    fds_before = len(list(Path("/proc/self/fd").iterdir()))

    async def main() -> None:
        bus = OsdpBus(transport_from_url(f"osdp+pty://{path}"))
        bus.add_reader("entry", 101)
        await bus.start()
        try:
            await asyncio.sleep(2.0)
            assert bus.thread_alive
        finally:
            await bus.stop()

    with caplog.at_level(logging.DEBUG, logger="gateway.hardware.osdp"):
        asyncio.run(main())
    records = [r for r in caplog.records if r.name == "gateway.hardware.osdp"]
    assert not [r for r in records if r.exc_info], "no traceback"
    assert not [r for r in records if r.levelno >= logging.ERROR]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    connect = [m for m in warnings if "cannot connect" in m]
    assert len(connect) == 1, warnings
    assert "not a terminal" in connect[0]
    retries = [r for r in records if "cannot connect" in r.getMessage()]
    assert len(retries) < 10, "backoff, not a retry every 0.5 s"
    assert len(list(Path("/proc/self/fd").iterdir())) <= fds_before
