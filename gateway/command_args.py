"""The arguments of the signed remote commands: validated models that a transport (the
MQTT command processor today, HTTP next) parses and the handlers pass to the services.

Shared by :mod:`gateway.mqtt.commands` (which validates a command's ``args`` against
:data:`COMMAND_ARGS`) and :mod:`gateway.privacy.sync` (which builds and reads the
``sync_person`` template bundle), so neither depends on the other.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

_PERSON = r"^[A-Za-z0-9_.:-]{1,64}$"
PersonId = Annotated[str, Field(pattern=_PERSON, description="Person id in the ledger.")]
DoorName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
PersonRef = Annotated[
    str,
    Field(
        pattern=r"^r1\.[A-Za-z0-9_-]{100,160}$",
        description="The person's id sealed for the site's gates (gateway.privacy.person_ref); "
        "never the id in clear.",
    ),
]
CLEAR_ID_FIELDS = ("person_id", "guardian_id")
"""Fields that named a person in clear before issue #15: a command carrying one is refused."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TemplateBundle(_Args):
    """Encrypted templates of one person (AES-256-GCM; the key wrapped for this site)."""

    format: Literal["ag-template-bundle-v1"] = "ag-template-bundle-v1"
    key_id: str = Field(min_length=1, max_length=64, description="Id of the wrapping key.")
    wrapped_key_b64: str = Field(min_length=16, max_length=1024)
    nonce_b64: str = Field(min_length=16, max_length=64)
    ciphertext_b64: str = Field(min_length=16, max_length=48_000)
    model: str = Field(min_length=1, max_length=64, description="Embedding model id.")
    count: int = Field(ge=1, le=20, description="Number of templates in the bundle.")


class ConsentRef(_Args):
    """The consent that allows syncing the templates."""

    scope: Literal["device", "compound"]
    notice_version: str = Field(min_length=1, max_length=32)
    notice_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    granted_at: dt.datetime
    guardian_ref: PersonRef = Field(
        description="The guardian's id sealed (role 'guardian'); the empty id sealed when "
        "there is none, so the command does not show whether the person is a minor."
    )


class SyncPersonArgs(_Args):
    """Install an enrolled person's encrypted templates (consent scope 'compound' only)."""

    person_ref: PersonRef
    consent: ConsentRef
    bundle: TemplateBundle


class WithdrawConsentArgs(_Args):
    """Withdraw face consent: erase the person's face data at once."""

    person_ref: PersonRef
    receipt_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class RevokeCardArgs(_Args):
    """Revoke one card (by its HMAC, never the number) or all cards of a person."""

    person_ref: PersonRef
    card_hmac: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")


class SetPinArgs(_Args):
    """Set a PIN from an Argon2id hash computed by the management side (never the PIN),
    sealed with ``gateway.credentials.hashing.seal_pin_hash`` under the site key (a bare hash of a
    short PIN is crackable by anyone reading the broker), with its 16-bit lookup index
    ``gateway.credentials.hashing.pin_index_for(pin, key)`` where
    ``key = gateway.keys.derive(site_key, "access-gateway/pin-index/v1")``."""

    person_ref: PersonRef
    pin_hash_sealed: str = Field(
        pattern=r"^[A-Za-z0-9+/]+={0,2}$",
        min_length=40,
        max_length=512,
        description="base64(nonce | AES-256-GCM(argon2id hash)) under the site's PIN "
        "transport key, AAD bound to the person's id.",
    )
    pin_index: int = Field(ge=0, le=65535, strict=True, description="PIN lookup index.")
    kind: Literal["normal", "duress", "visitor"] = "normal"
    expires_at: AwareDatetime | None = None
    uses_left: int | None = Field(None, ge=1, le=1000)


class RevokePinArgs(_Args):
    """Revoke a person's PINs (of one kind, or all)."""

    person_ref: PersonRef
    kind: Literal["normal", "duress", "visitor"] | None = None


class UnlockArgs(_Args):
    """Momentary unlock of one door."""

    door: DoorName
    seconds: float = Field(5.0, ge=1.0, le=30.0)


class ReloadConfigArgs(_Args):
    """Re-read the configuration file."""


class RotateKeysArgs(_Args):
    """Rotate one key of the gate (the office sends it to every gate of the site). The gates
    key (``transform``) is not rotated this way: the new key is shared by the site's gates
    and never travels over MQTT (``gateway keys rotate --what transform [--key FILE]``)."""

    what: Literal["device", "audit", "access-log", "card", "pin", "pseudonym"] = Field(
        description="The key: the device key, or one purpose's key (its stored values follow)."
    )
    generation: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="pseudonym only: the target generation, the same for every gate of the "
        "site (default: the gate's next one).",
    )

    @model_validator(mode="after")
    def _generation_for_pseudonym(self) -> Self:
        if self.generation is not None and self.what != "pseudonym":
            raise ValueError("generation is for what = 'pseudonym' only")
        return self


class PurgeArgs(_Args):
    """Erase data: one person entirely (record, cards, PINs, consents, face data; a receipt,
    as ``gateway people delete``), or access-log rows before a time."""

    target: Literal["person", "access_log"]
    person_ref: PersonRef | None = None
    before: dt.datetime | None = None

    @model_validator(mode="after")
    def _target_args(self) -> Self:
        if self.target == "person" and self.person_ref is None:
            raise ValueError("purge target 'person' needs person_ref")
        if self.target == "access_log" and self.before is None:
            raise ValueError("purge target 'access_log' needs before")
        return self


class DecommissionArgs(_Args):
    """Crypto-erase every key and template of this gate and write a decommission report."""

    confirm: str = Field(
        min_length=1, max_length=64, description="The gate's own id, as a confirmation."
    )


COMMAND_ARGS: dict[str, type[BaseModel]] = {
    "sync_person": SyncPersonArgs,
    "withdraw_consent": WithdrawConsentArgs,
    "revoke_card": RevokeCardArgs,
    "set_pin": SetPinArgs,
    "revoke_pin": RevokePinArgs,
    "unlock": UnlockArgs,
    "reload_config": ReloadConfigArgs,
    "purge": PurgeArgs,
    "rotate_keys": RotateKeysArgs,
    "decommission": DecommissionArgs,
}
