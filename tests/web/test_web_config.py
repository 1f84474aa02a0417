"""``[web]``: off by default, strict addresses, certificate and key together."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config.web import WebConfig


def test_off_by_default_on_loopback() -> None:
    cfg = WebConfig()
    assert cfg.enabled is False
    assert cfg.listen == ["127.0.0.1"]


@pytest.mark.parametrize("addr", ["localhost", "0.0.0.0:80", "", "1.2.3"])
def test_listen_takes_ip_addresses_only(addr: str) -> None:
    with pytest.raises(ValidationError):
        WebConfig(listen=[addr])


def test_certificate_and_key_come_together(tmp_path: object) -> None:
    with pytest.raises(ValidationError, match="both"):
        WebConfig(cert_file="/etc/ssl/web.pem")
    with pytest.raises(ValidationError, match="both"):
        WebConfig(key={"file": "/etc/ssl/web.key"})
    cfg = WebConfig(cert_file="/etc/ssl/web.pem", key={"credential": "web-key"})
    assert cfg.key is not None


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        WebConfig(enable=True)  # type: ignore[call-arg]
