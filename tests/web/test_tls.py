"""The console's certificate: self-signed once (key 0600, then reused), or the configured
certificate with its key read through a secret reference."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config.web import WebConfig
from gateway.errors import GatewayError
from gateway.web.tls import CERT_NAME, KEY_NAME, fingerprint, self_signed, server_context


def test_self_signed_once_then_reused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "state", ["127.0.0.1", "::1"], "gate-1")
    assert key.stat().st_mode & 0o777 == 0o600
    first = cert.read_bytes()
    _, fp = server_context(WebConfig(listen=["127.0.0.1", "::1"]), tmp_path / "state", "gate-1")
    assert (tmp_path / "state" / CERT_NAME).read_bytes() == first  # not made again
    assert fp == fingerprint(first)
    assert len(fp.split(":")) == 32


def test_configured_certificate_and_key(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "elsewhere", ["127.0.0.1"], "office")
    cfg = WebConfig(cert_file=cert, key={"file": key})
    state = tmp_path / "state"
    state.mkdir()
    _, fp = server_context(cfg, state, "gate-1")
    assert fp == fingerprint(cert.read_bytes())
    assert list(state.iterdir()) == []  # no self-signed pair, no key copy left behind


def test_made_without_a_readable_moment_and_refused_when_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / KEY_NAME).symlink_to(tmp_path / "elsewhere")  # a planted link is replaced
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def recording(path: object, flags: int, mode: int = 0o777, **kw: object) -> int:
        opened.append((os.fspath(path), flags, mode))  # type: ignore[arg-type]
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", recording)
    _, key = self_signed(state, ["127.0.0.1"], "gate-1")
    monkeypatch.undo()
    assert not key.is_symlink()
    assert not (tmp_path / "elsewhere").exists()
    key_opens = [(f, m) for p, f, m in opened if KEY_NAME in p]
    assert key_opens
    assert all(f & os.O_EXCL and m == 0o600 for f, m in key_opens)
    assert key.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in state.iterdir()) == [CERT_NAME, KEY_NAME]  # no temp file left
    key.chmod(0o640)
    with pytest.raises(GatewayError, match="chmod 600"):
        self_signed(state, ["127.0.0.1"], "gate-1")
