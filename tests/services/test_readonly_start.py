"""Issue #18 item 5: the daemon starts on a read-only state folder (an SD card the kernel
remounted read-only) in a DEGRADED mode that still opens for a valid card, and says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _can_unshare() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount --bind in a private mount namespace)"
    if shutil.which("unshare") is None:
        return "needs unshare(1) from util-linux"
    probe = subprocess.run(
        ["unshare", "-m", "true"], capture_output=True, text=True, timeout=10, check=False
    )
    if probe.returncode != 0:
        return f"unshare -m is not permitted here: {probe.stderr.strip()}"
    return None


def _prepare(config: Path) -> Path:
    """A person with card 10/4242 in the state database; the database closed cleanly (no
    WAL index left beside it, as after a clean shutdown)."""
    from gateway.config.root import load_config
    from gateway.credentials.store import Credentials
    from gateway.keys import Keys
    from gateway.privacy.people import add_person
    from gateway.store import database as store

    text = config.read_text().replace("[mqtt]\nenabled = false", "[mqtt]\nenabled = true")
    config.write_text(text)
    cfg = load_config(config, env=False)
    db = store.connect(cfg.storage.database_path)
    keys = Keys.from_config(cfg)
    pid = add_person(db, "Li Wei", unit="3-402")
    Credentials(db, keys.device, index_key=keys.pin_index_site).add_card(pid, 10, 4242, 0.0)
    db.close()
    return Path(cfg.storage.database_path).parent


def test_daemon_starts_read_only_and_a_valid_card_opens(minimal_config: Path) -> None:
    why = _can_unshare()
    if why is not None:
        pytest.skip(why)
    state = _prepare(minimal_config)
    state.chmod(0o755)  # a wider mode than 0700: the original open chmods (and crashes)
    probe = REPO / "tests" / "services" / "readonly_probe.py"
    inner = (
        f"mount --bind {state} {state} && mount -o remount,ro,bind {state} && "
        f"{sys.executable} {probe} {minimal_config}; "
        f"{sys.executable} -m gateway --config {minimal_config} doctor; true"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", inner],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, f"the daemon did not run:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = json.loads(lines[-1][len("PROBE ") :])
    assert out["grants"] == 1, (out, proc.stderr[-3000:])
    assert out["denials"] == 1  # an unknown card stays shut
    assert str(out["storage_mode"]).startswith("DEGRADED"), out
    assert out["outbox_degraded"], "events that cannot be stored are kept in memory, and said so"
    assert out["outbox_in_memory"] >= 1  # storage.degraded and the access events
    assert "DEGRADED" in proc.stderr
    storage = [line for line in proc.stdout.splitlines() if line.split()[1:2] == ["storage"]]
    assert storage, proc.stdout
    assert "FAIL" in storage[0]
    assert "DEGRADED" in storage[0]  # gateway doctor says so too
    # nothing was written: the state folder holds only the database as it was
    assert sorted(p.name for p in state.iterdir()) == ["state.db"]
