"""A gate's config for tests that run several gates of one site on a test broker."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from gateway.mqtt import sign
from tests.conftest import MINIMAL_CONFIG, REPO, write_secret
from tests.support.net import free_port


def site_gate_config(
    tmp: Path, gate: str, site_key: Path, port: int, command_keys: dict[str, str] | None = None
) -> Path:
    """``MINIMAL_CONFIG`` for ``gate`` under ``tmp/gate``: its own device key and reader
    port, the site's key, the broker on ``port``, the example notice, and (if given) the
    command keys it accepts."""
    d = tmp / gate
    text = MINIMAL_CONFIG.format(
        reader_port=free_port(),
        scbk=write_secret(d / "scbk", secrets.token_hex(16).encode()),
        state=d / "state",
        site_key=site_key,
        device_key=write_secret(d / "device-key", secrets.token_bytes(32)),
    )
    text = text.replace('gate = "gate-1"', f'gate = "{gate}"')
    mqtt = f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"'
    if command_keys:
        keys = ", ".join(f'"{k}" = "{v}"' for k, v in command_keys.items())
        mqtt += f"\ncommand_keys = {{ {keys} }}"
    text = text.replace("[mqtt]\nenabled = false", mqtt)
    text = text.replace(
        "[privacy]\n",
        f'[privacy]\nnotice_file = "{REPO / "config" / "notice.example.txt"}"\n'
        'notice_version = "2025-06"\n',
    )
    cfg = d / "gateway.toml"
    cfg.write_text(text)
    return cfg


def with_command_key(config: Path) -> tuple[Path, Any]:
    """``config`` (a ``MINIMAL_CONFIG``) with MQTT on and a new command-signing key accepted;
    the config and that key's private half."""
    key = sign.generate()
    kid, pub = sign.key_id_of(key.public_key()), sign.public_b64(key.public_key())
    text = config.read_text().replace(
        "[mqtt]\nenabled = false", f'[mqtt]\nenabled = true\ncommand_keys = {{ "{kid}" = "{pub}" }}'
    )
    config.write_text(text)
    return config, key
