"""The signed ``rotate_keys`` command: the running gate rotates the key (the same service as
``gateway keys rotate``), answers with fingerprints only, and restarts in place; after the
restart faces, cards, PINs and the audit chain work. Site-wide: ``gateway mqtt sign`` signs
one envelope per gate, and a pseudonym generation makes every gate converge."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config.root import load_config
from gateway.gate.remote_commands import RESTART_DELAY_S
from gateway.keys import Keys, Purpose
from gateway.mqtt import sign
from gateway.mqtt.commands import CommandProcessor, CommandResult
from gateway.privacy import audit
from tests.conftest import built_gateway, minimal_config_text
from tests.keys.legacy import legacy_config
from tests.keys.rotation_checks import Card, close_gate, open_gate, still_works


async def _command(
    config: Path,
    name: str,
    args: dict[str, Any],
    *,
    office: Ed25519PrivateKey | None = None,
    envelope: dict[str, Any] | None = None,
) -> tuple[CommandResult, bool]:
    """Send one signed command (``envelope``, signed by ``office``; default: ``args`` signed
    here) to the gate built from ``config``; its result, and whether the gate asked for its
    restart in place."""
    cfg = load_config(config, env=False)
    key = office or sign.generate()
    env = envelope or sign.sign_envelope(name, args, key, site=cfg.site.id, gate=cfg.site.gate)
    async with built_gateway(config) as gw:
        trusted = {sign.key_id_of(key.public_key()): sign.public_b64(key.public_key())}
        proc = CommandProcessor(
            gw.db, trusted, site=cfg.site.id, gate=cfg.site.gate, audit=audit.appender(gw.db)
        )
        gw.remote_commands.register(proc)
        result = await proc.process(name, json.dumps(env).encode())
        await asyncio.sleep(RESTART_DELAY_S + 0.3)
        return result, gw.daemon.restart_requested


def _leaks(payload: bytes, *keys: bytes) -> list[str]:
    """Which of ``keys`` appear in ``payload`` (raw, hex or base64)."""
    forms = [(k, f) for k in keys for f in (k, k.hex().encode(), base64.b64encode(k))]
    return [f.decode("latin-1")[:8] for _, f in forms if f in payload]


@pytest.mark.parametrize("what", ["card", "audit", "device"])
def test_signed_rotate_keys_rotates_the_running_gate(
    what: str, tmp_path: Path, minimal_config: Path
) -> None:
    raw = legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    old = Keys.from_config(cfg)

    result, restarting = asyncio.run(_command(minimal_config, "rotate_keys", {"what": what}))

    assert result.ok, result
    assert restarting
    assert result.result["what"] == what
    assert result.result["restarting"] is True
    assert result.result["old_key_id"] != result.result["new_key_id"]
    keys = still_works(cfg, raw, what, by="mqtt")  # what the restarted daemon loads
    secrets_ = [old.device, keys.device, *(keys.subkey(p) for p in Purpose)]
    assert _leaks(result.to_json(), *secrets_) == []
    db, _ = open_gate(cfg)
    try:
        executed = db.execute(
            "SELECT actor, details FROM audit WHERE action = 'command.executed'"
        ).fetchall()
        (rotated,) = db.execute("SELECT actor FROM audit WHERE action = 'keys.rotate'").fetchall()
    finally:
        close_gate(db)
    assert rotated[0] == "mqtt"
    assert [json.loads(d)["command"] for _, d in executed] == ["rotate_keys"]

    async def restarted() -> int:
        async with built_gateway(minimal_config) as gw:
            assert gw.keys.device == keys.device
            return len(gw.vault.load_person(gw.db, "p2"))

    assert asyncio.run(restarted()) == 3


def test_rotate_keys_refuses_a_generation_for_a_device_key(
    tmp_path: Path, minimal_config: Path
) -> None:
    legacy_config(tmp_path, minimal_config)
    args = {"what": "card", "generation": 2}
    result, restarting = asyncio.run(_command(minimal_config, "rotate_keys", args))
    assert not result.ok
    assert result.error == "invalid_args"
    assert "'pseudonym' only" in str(result.detail)
    assert not restarting
    result, _ = asyncio.run(_command(minimal_config, "rotate_keys", {"what": "transform"}))
    assert result.error == "invalid_args"  # the gates key never travels over MQTT


def _second_gate(tmp_path: Path, site_key: Path) -> Path:
    """Another gate of the same site (its own device key and database)."""
    config = tmp_path / "gate-b.toml"
    text = minimal_config_text(tmp_path / "b-keys", tmp_path / "b-state", site_key)
    config.write_text(text.replace('gate = "gate-1"', 'gate = "gate-2"'))
    return config


def test_site_wide_pseudonym_rotation_converges_on_every_gate(
    tmp_path: Path, minimal_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli.main import main

    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    assert cfg.privacy.site_key is not None
    assert cfg.privacy.site_key.file is not None
    other = _second_gate(tmp_path, cfg.privacy.site_key.file)
    old = Keys.from_config(cfg).pseudonym

    keyfile = tmp_path / "office.key"
    assert main(["mqtt", "keygen", "--out", str(keyfile)]) == 0
    capsys.readouterr()
    args = ["--args", '{"what": "pseudonym", "generation": 2}', "--key", str(keyfile)]
    target = ["--site", cfg.site.id, "--gate", "gate-1", "--gate", "gate-2"]
    assert main(["mqtt", "sign", "rotate_keys", *args, *target]) == 0
    envelopes = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["gate"] for e in envelopes] == ["gate-1", "gate-2"]
    assert {e["nonce"] for e in envelopes} != {envelopes[0]["nonce"]}

    office = sign.load_private(keyfile)
    news = []
    for config, env in zip((minimal_config, other), envelopes, strict=True):
        sent = _command(config, "rotate_keys", {}, office=office, envelope=env)
        result, restarting = asyncio.run(sent)
        assert result.ok, result
        assert restarting
        db, keys = open_gate(load_config(config, env=False))
        close_gate(db)
        assert keys.generations == {Purpose.PSEUDONYM: 2}
        news.append(keys.pseudonym)
    assert news[0] == news[1] != old


def test_no_command_runs_between_a_rotation_and_the_restart(
    tmp_path: Path, minimal_config: Path
) -> None:
    """Regression: until the restart the gate holds its pre-rotation keys; a command in that
    window (a second rotate_keys, a set_pin, a sync_person) ran on them and stored values
    the restarted gate cannot use (or dropped what the rotation carried)."""
    raw = legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    key = sign.generate()

    def env(name: str, args: dict[str, Any]) -> bytes:
        doc = sign.sign_envelope(name, args, key, site=cfg.site.id, gate=cfg.site.gate)
        return json.dumps(doc).encode()

    async def scenario() -> tuple[CommandResult, ...]:
        async with built_gateway(minimal_config) as gw:
            trusted = {sign.key_id_of(key.public_key()): sign.public_b64(key.public_key())}
            proc = CommandProcessor(
                gw.db, trusted, site=cfg.site.id, gate=cfg.site.gate, audit=audit.appender(gw.db)
            )
            gw.remote_commands.register(proc)
            first = await proc.process("rotate_keys", env("rotate_keys", {"what": "card"}))
            again = await proc.process("rotate_keys", env("rotate_keys", {"what": "pin"}))
            reload = await proc.process("reload_config", env("reload_config", {}))
            return first, again, reload

    first, *later = asyncio.run(scenario())
    assert first.ok, first
    for res in later:
        assert (res.ok, res.error) == (False, "refused")
        assert "no command runs until it restarts" in str(res.detail)
    still_works(cfg, raw, "card", by="mqtt")  # what the restarted gate loads


def test_a_rotation_failing_after_its_commit_still_restarts_the_gate(
    tmp_path: Path, minimal_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: when the key file's move failed after the rotation committed, the command
    failed and the gate ran on with the keys the database no longer records."""
    from gateway.services import keys as keys_svc

    raw = legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)

    def fail(staged: Path, target: Path) -> None:
        raise OSError("read-only file system")

    with monkeypatch.context() as m:
        m.setattr(keys_svc, "commit_key_file", fail)
        result, restarting = asyncio.run(_command(minimal_config, "rotate_keys", {"what": "pin"}))
    assert not result.ok
    assert restarting
    still_works(cfg, raw, "pin", by="mqtt")  # the restart finishes the move


def test_writes_between_the_rotation_and_the_restart_are_refused(
    tmp_path: Path, minimal_config: Path
) -> None:
    """The restart window: the rotated gate still holds the old keys for ~0.5 s; a card, a
    PIN change or any other audited write then is refused (retryable), nothing is stored
    under the old keys; the restarted gate takes it."""
    from gateway.services import credentials as creds

    legacy_config(tmp_path, minimal_config)
    cfg = load_config(minimal_config, env=False)
    office = sign.generate()

    def envelope(name: str, args: dict[str, Any]) -> bytes:
        env = sign.sign_envelope(name, args, office, site=cfg.site.id, gate=cfg.site.gate)
        return json.dumps(env).encode()

    def cards(gw: Any) -> int:
        return int(gw.db.execute("SELECT count(*) FROM cards").fetchone()[0])

    async def window() -> None:
        async with built_gateway(minimal_config) as gw:
            trusted = {sign.key_id_of(office.public_key()): sign.public_b64(office.public_key())}
            proc = CommandProcessor(
                gw.db, trusted, site=cfg.site.id, gate=cfg.site.gate, audit=audit.appender(gw.db)
            )
            gw.remote_commands.register(proc)
            before = cards(gw)
            rotated = await proc.process("rotate_keys", envelope("rotate_keys", {"what": "card"}))
            assert rotated.ok, rotated
            assert not gw.daemon.restart_requested  # the window
            deps = creds.CredentialDeps(gw.controller.credentials, gw.cache_state)
            with pytest.raises(audit.WritesHeldError, match="retry in a few seconds"):
                creds.add_card(deps, "p1", (None, 4242), actor="t", channel="cli")
            refused = await proc.process("revoke_pin", envelope("revoke_pin", {"person_id": "p1"}))
            assert not refused.ok  # every command waits for the restart
            assert cards(gw) == before
            await asyncio.sleep(RESTART_DELAY_S + 0.3)
            assert gw.daemon.restart_requested

    async def restarted() -> None:
        async with built_gateway(minimal_config) as gw:
            deps = creds.CredentialDeps(gw.controller.credentials, gw.cache_state)
            creds.add_card(deps, "p1", (None, 4242), actor="t", channel="cli")
            new = gw.controller.credentials
            assert new.identify_card(SimpleNamespace(facility=None, card_number=4242)) == "p1"
            assert new.identify_card(Card()) == "p3"  # the rotated card still opens

    asyncio.run(window())
    asyncio.run(restarted())
