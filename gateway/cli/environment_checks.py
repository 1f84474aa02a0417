"""Checks of a valid configuration against this machine: secrets, notice text, paths."""

from __future__ import annotations

import stat
from collections.abc import Iterator

from gateway.config.base import SecretRef
from gateway.config.root import GatewayConfig, Problem
from gateway.errors import ConfigError


def _secret_refs(cfg: GatewayConfig) -> Iterator[tuple[str, SecretRef]]:
    for name, cam in cfg.cameras.items():
        if cam.password is not None:
            yield f"cameras.{name}.password", cam.password
    for name, reader in cfg.readers.items():
        if reader.scbk is not None:
            yield f"readers.{name}.scbk", reader.scbk
    if cfg.mqtt.password is not None:
        yield "mqtt.password", cfg.mqtt.password
    if cfg.mqtt.key is not None:
        yield "mqtt.key", cfg.mqtt.key
    if cfg.privacy.device_key is not None:
        yield "privacy.device_key", cfg.privacy.device_key
    if cfg.privacy.site_key is not None:
        yield "privacy.site_key", cfg.privacy.site_key
    if cfg.privacy.gates_key is not None:  # configured: the daemon refuses to start without it
        yield "privacy.gates_key", cfg.privacy.gates_key
    if cfg.keys.owner_auth is not None:
        yield "keys.owner_auth", cfg.keys.owner_auth


def secret_problems(cfg: GatewayConfig) -> list[Problem]:
    """Every secret must be readable, and a secret file must not be group/world readable."""
    problems: list[Problem] = []
    for key, ref in _secret_refs(cfg):
        try:
            path = ref.path()
        except ConfigError as exc:
            problems.extend((key, v, m) for _, v, m in exc.problems)
            continue
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            data = path.read_bytes().strip()
        except OSError as exc:
            problems.append((key, str(path), f"cannot read secret: {exc.strerror}"))
            continue
        if ref.file is not None and mode & 0o077:
            problems.append((key, str(path), f"secret file mode {mode:o} is too open: use 0600"))
        if not data:
            problems.append((key, str(path), "secret file is empty"))
        elif key.endswith(".scbk"):
            try:
                if len(bytes.fromhex(data.decode())) != 16:
                    raise ValueError
            except (ValueError, UnicodeDecodeError):
                problems.append((key, str(path), "an SCBK must be 32 hexadecimal digits"))
    return problems


def notice_problems(cfg: GatewayConfig) -> list[Problem]:
    """The consent notice must exist and carry the Art. 5 items when face is used."""
    notice = cfg.privacy.notice_file
    if notice is None:
        return []
    try:
        text = notice.read_text(encoding="utf-8")
    except OSError as exc:
        return [("privacy.notice_file", str(notice), f"cannot read notice: {exc.strerror}")]
    from gateway.privacy.notice import validate_notice

    missing = validate_notice(text)
    return [
        ("privacy.notice_file", str(notice), f"notice lacks the Art. 5 item: {item}")
        for item in missing
    ]


def sealed_key_problems(cfg: GatewayConfig) -> list[Problem]:
    """With the TPM provider, both blobs of the sealed device key must be readable (whether
    the TPM opens them is ``gateway doctor``'s check)."""
    if cfg.keys.provider != "tpm":
        return []
    from gateway.tpm import read_blobs

    try:
        read_blobs(cfg.keys)
    except ConfigError as exc:
        return exc.problems
    return []


def environment_problems(cfg: GatewayConfig) -> list[Problem]:
    """All checks that need this machine (secrets, sealed key blobs, notice text)."""
    return secret_problems(cfg) + sealed_key_problems(cfg) + notice_problems(cfg)
