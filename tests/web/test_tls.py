"""The console's certificate: self-signed once (key 0600, then reused), or the configured
certificate with its key read through a secret reference."""

from __future__ import annotations

from pathlib import Path

from gateway.config.web import WebConfig
from gateway.web.tls import CERT_NAME, fingerprint, self_signed, server_context


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
