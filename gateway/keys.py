"""The gateway's keys: loaded from credentials, with purpose-bound subkeys (HKDF).

The device key never leaves this machine: it wraps per-person template keys and keys the
card and PIN lookup hashes. A key provider holds it: ``file`` reads it in clear from
``privacy.device_key``; ``tpm`` unseals it from this board's TPM 2.0 (``gateway.tpm``).
The site key is shared by the compound's gates and its management system: it binds
templates to the site and keys event pseudonyms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.config.base import SecretRef
from gateway.config.keys import KeysConfig
from gateway.config.root import GatewayConfig
from gateway.errors import ConfigError

MIN_KEY_BYTES = 32


def derive(key: bytes, purpose: str, length: int = 32) -> bytes:
    """A subkey of ``key`` for one purpose (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode()).derive(
        key
    )


#: HKDF purpose of the PIN lookup index key shared with the management side.
PIN_INDEX_PURPOSE = "access-gateway/pin-index/v1"
WITHDRAWAL_FANOUT_PURPOSE = "access-gateway/withdrawal-fanout/v1"
"""Derivation purpose of the MAC key of withdrawals fanned out between a site's gates."""


def pin_index_key(site_key: bytes) -> bytes:
    """The site's PIN lookup index key (what ``set_pin``'s ``pin_index`` is keyed with)."""
    return derive(site_key, PIN_INDEX_PURPOSE)


def _load(ref: SecretRef | None, key_path: str) -> bytes:
    if ref is None:
        raise ConfigError([(key_path, "None", "this key is required")])
    data = ref.read_bytes()
    if len(data) < MIN_KEY_BYTES:
        raise ConfigError(
            [(key_path, f"<{len(data)} bytes>", f"a key needs at least {MIN_KEY_BYTES} bytes")]
        )
    return data


class DeviceKeyProvider(Protocol):
    """Where the device key comes from."""

    @property
    def name(self) -> str:
        """``file`` or ``tpm`` (as in ``keys.provider``)."""
        ...

    def device_key(self) -> bytes:
        """The device key (raises ConfigError naming the setting when it cannot)."""
        ...

    def describe(self) -> str:
        """Where the key is held, for ``gateway doctor`` (no secret in it)."""
        ...


@dataclass(frozen=True)
class FileDeviceKey:
    """The device key read in clear from ``privacy.device_key`` (a file or credential)."""

    ref: SecretRef | None
    name: str = "file"

    def device_key(self) -> bytes:
        """The key file's bytes (at least ``MIN_KEY_BYTES``)."""
        return _load(self.ref, "privacy.device_key")

    def describe(self) -> str:
        """The file or credential name."""
        if self.ref is None:
            return "privacy.device_key is not set"
        return str(self.ref.file) if self.ref.file else f"credential {self.ref.credential}"


@dataclass(frozen=True)
class TpmDeviceKey:
    """The device key unsealed by this board's TPM 2.0 from the configured blobs."""

    cfg: KeysConfig
    name: str = "tpm"

    def device_key(self) -> bytes:
        """Unseal the key (ConfigError naming keys.* when the TPM or the blobs refuse)."""
        from gateway import tpm

        key = tpm.unseal(tpm.read_blobs(self.cfg), self.cfg)
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                [("keys.private_blob", f"<{len(key)} bytes>", f"a key needs {MIN_KEY_BYTES}")]
            )
        return key

    def describe(self) -> str:
        """TCTI, blob and PCR binding."""
        pcrs = f"PCRs {self.cfg.pcr_bank}:{self.cfg.pcrs}" if self.cfg.pcrs else "no PCR policy"
        return f"TPM 2.0 at {self.cfg.tcti}, {self.cfg.private_blob}, {pcrs}"


def device_key_provider(cfg: GatewayConfig) -> DeviceKeyProvider:
    """The configured provider of the device key."""
    if cfg.keys.provider == "tpm":
        return TpmDeviceKey(cfg.keys)
    return FileDeviceKey(cfg.privacy.device_key)


@dataclass(frozen=True, repr=False)
class Keys:
    """Root keys and their derived subkeys (never printed: ``repr`` is blank)."""

    device: bytes
    site: bytes

    def __repr__(self) -> str:
        return "Keys(<redacted>)"

    @classmethod
    def from_config(cls, cfg: GatewayConfig) -> Keys:
        """Load the device key from its provider and the site key from its reference."""
        return cls(
            device=device_key_provider(cfg).device_key(),
            site=_load(cfg.privacy.site_key, "privacy.site_key"),
        )

    @property
    def card_hmac(self) -> bytes:
        """Key of the card-number HMAC."""
        return derive(self.device, "access-gateway/card-hmac/v1")

    @property
    def pin_pepper(self) -> bytes:
        """Key of the PIN lookup index."""
        return derive(self.device, "access-gateway/pin-index/v1")

    @property
    def template_wrap(self) -> bytes:
        """Key wrapping the per-person template keys."""
        return derive(self.device, "access-gateway/template-wrap/v1")

    @property
    def template_site(self) -> bytes:
        """Key of the site-bound template transform."""
        return derive(self.site, "access-gateway/template-site/v1")

    @property
    def pin_index_site(self) -> bytes:
        """Key of the PIN lookup index shared with the management system (which holds the
        site key and so can compute a PIN's index for the ``set_pin`` command)."""
        return pin_index_key(self.site)

    @property
    def withdrawal_fanout(self) -> bytes:
        """MAC key of consent withdrawals fanned out between the site's gates."""
        return derive(self.site, WITHDRAWAL_FANOUT_PURPOSE)

    @property
    def pseudonym(self) -> bytes:
        """Key of the event pseudonyms."""
        return derive(self.site, "access-gateway/pseudonym/v1")
