"""A compound on a real Mosquitto: an office and gates as separate ``gateway roster serve``
processes (configs, keys and state in a tmp dir)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from gateway.keys import Keys, Purpose
from gateway.mqtt.sign import generate, key_id_of, public_b64, write_private
from gateway.privacy import audit
from gateway.store import database
from tests.conftest import MINIMAL_CONFIG, REPO, write_secret
from tests.support.net import free_port

SITE = "test-site"


@dataclass
class Member:
    name: str
    config: Path
    device_key: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def db_path(self) -> Path:
        return self.config.parent / "state" / "state.db"


@dataclass
class Compound:
    tmp: Path
    port: int
    site_key: Path
    gates_key: Path
    office: Member | None = None
    gates: dict[str, Member] = field(default_factory=dict)
    signing_pub: str = ""
    signing_kid: str = ""

    def _config(self, name: str, roster: str, *, gates_key: bool = True) -> Member:
        d = self.tmp / name
        device = write_secret(d / "device-key", secrets.token_bytes(32))
        text = MINIMAL_CONFIG.format(
            reader_port=free_port(),
            scbk=write_secret(d / "scbk", secrets.token_hex(16).encode()),
            state=d / "state",
            site_key=self.site_key,
            device_key=device,
        )
        text = text.replace('id = "test-site"\ngate = "gate-1"', f'id = "{SITE}"\ngate = "{name}"')
        text = text.replace(
            "[mqtt]\nenabled = false", f'[mqtt]\nurl = "mqtt://127.0.0.1:{self.port}"'
        )
        text = text.replace(
            "[privacy]\n",
            f'[privacy]\nnotice_file = "{REPO / "config" / "notice.example.txt"}"\n'
            f'notice_version = "2025-06"\n'
            + (f'gates_key = {{ file = "{self.gates_key}" }}\n' if gates_key else ""),
        )
        cfg = d / "gateway.toml"
        cfg.write_text(text + "\n" + roster)
        return Member(name, cfg, device)

    def add_office(self, erasure_ack_s: float = 2.0) -> Member:
        key = generate()
        path = self.tmp / "office-signing.pem"
        write_private(key, path)
        self.signing_pub, self.signing_kid = (
            public_b64(key.public_key()),
            key_id_of(key.public_key()),
        )
        roster = (
            f'[roster]\nrole = "office"\nsigning_key = "{path}"\nerasure_ack_s = {erasure_ack_s}\n'
            "poll_s = 0.1\n"
        )
        self.office = self._config("office", roster, gates_key=False)  # never the gates'

        return self.office

    def add_gate(self, name: str) -> Member:
        roster = (
            f'[roster]\nrole = "gate"\nfetch_wait_s = 2.0\n'
            f'office_keys = {{ "{self.signing_kid}" = "{self.signing_pub}" }}\n'
        )
        gate = self._config(name, roster)
        self.gates[name] = gate
        public = cli("roster", "gate-key", "--config", str(gate.config)).strip()
        assert self.office is not None
        cli("roster", "add-gate", name, *public.split(), "--config", str(self.office.config))
        return gate

    def start(self, member: Member) -> None:
        log = (member.config.parent / "roster.log").open("ab")
        member.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "roster", "serve", "--config", str(member.config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def stop(self, member: Member) -> None:
        if member.proc is not None:
            member.proc.terminate()
            try:
                member.proc.wait(10)
            except subprocess.TimeoutExpired:
                member.proc.kill()
                member.proc.wait(5)
            member.proc = None

    def stop_all(self) -> None:
        for m in [self.office, *self.gates.values()]:
            if m is not None:
                self.stop(m)

    def office_db(self) -> tuple[sqlite_utils.Database, Keys]:
        assert self.office is not None
        keys = Keys(self.office.device_key.read_bytes(), self.site_key.read_bytes())
        db = database.connect(self.office.db_path)
        audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
        return db, keys


def cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert out.returncode in (0, 3), out.stderr
    return out.stdout


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status_json(compound: Compound, *, via_cli: bool = False) -> dict:  # type: ignore[type-arg]
    """The office's ``roster status`` (read in process unless ``via_cli``)."""
    assert compound.office is not None
    if via_cli:
        return json.loads(
            cli("roster", "status", "--json", "--config", str(compound.office.config))
        )
    from dataclasses import asdict

    from gateway.services.roster_publish import status

    db = database.connect(compound.office.db_path)
    try:
        return asdict(status(db, SITE))
    finally:
        db.close()
