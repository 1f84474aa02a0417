"""Configuration of the key provider: where the device key comes from (a file or a TPM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from gateway.config.base import SecretRef, Strict

DEFAULT_TCTI = "device:/dev/tpmrm0"
DEFAULT_BLOB_DIR = Path("/etc/access-gateway/credentials")


class KeysConfig(Strict):
    """Which provider holds the device key, and the TPM's settings when it is sealed."""

    provider: Literal["file", "tpm"] = Field(
        "file",
        description="'file': the device key is read from privacy.device_key (in clear on "
        "disk); 'tpm': it is sealed to this board's TPM 2.0 (blobs below, no clear copy).",
    )
    tcti: str = Field(
        DEFAULT_TCTI,
        min_length=1,
        max_length=256,
        pattern=r"^[a-z0-9-]+(:[ -~]*)?$",
        description="TPM connection (TCTI) of tpm2-tss: 'device:/dev/tpmrm0' (the kernel's "
        "resource manager), 'tabrmd:' or 'swtpm:host=127.0.0.1,port=2321'.",
    )
    public_blob: Path = Field(
        DEFAULT_BLOB_DIR / "device-key.tpm.pub",
        description="Public part of the sealed device key (TPM2B_PUBLIC, as tpm2_create -u).",
    )
    private_blob: Path = Field(
        DEFAULT_BLOB_DIR / "device-key.tpm.priv",
        description="Private part of the sealed device key (TPM2B_PRIVATE, encrypted by the "
        "TPM: useless on another TPM).",
    )
    pcrs: list[Annotated[int, Field(ge=0, le=23)]] = Field(
        default_factory=list,
        max_length=24,
        description="PCRs the seal is bound to (e.g. [0, 7]: firmware and Secure Boot "
        "state); empty: not bound. After a change of these PCRs the key must be re-sealed.",
    )
    nv_index: int = Field(
        0x01000A6E,
        ge=0x01000000,
        le=0x013FFFFF,
        description="NV index (owner range) of the monotonic counter in every seal's policy: "
        "each seal or rotation advances it, so a copy of an older blob no longer unseals on "
        "this TPM. Defined on first use.",
    )
    pcr_bank: Literal["sha1", "sha256", "sha384"] = Field(
        "sha256", description="PCR bank whose values the policy binds."
    )
    owner_auth: SecretRef | None = Field(
        None,
        description="The TPM owner hierarchy's auth value as the installer set it "
        "(tpm2_changeauth -c owner): a file (0600) or a systemd credential. The gateway "
        "creates its primary key and defines and advances its NV counter with it, and "
        "defines a new counter owner-write: no other process can advance it. Unset: the "
        "owner auth must be empty ('gateway doctor' warns).",
    )

    @model_validator(mode="after")
    def _owner_auth_needs_tpm(self) -> Self:
        if self.owner_auth is not None and self.provider != "tpm":
            raise ValueError("'owner_auth' applies only with provider = \"tpm\"")
        return self
