"""The one root exception class of the gateway, and its families."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` holds (key path, value, message) rows."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m} (value: {v})" for p, v, m in problems))


class StorageError(GatewayError):
    """The state database cannot be opened, migrated or written."""


class ModelError(GatewayError):
    """A face model is missing, corrupt or cannot be loaded."""


class HardwareError(GatewayError):
    """A reader, relay, input or camera driver failed."""


class ProtocolError(GatewayError):
    """Bad bytes from a peripheral or a bad remote command."""


class PrivacyError(GatewayError):
    """An operation would break a privacy rule (no consent, private space, ...)."""
