"""Sealed person references: how a signed command names a person without a stable id on
the wire.

``ref = "r1." + base64url(nonce | AES-256-GCM(pad(person_id)))`` under the site key's
``Purpose.PERSON_REF`` subkey (the office and the site's gates hold it, a broker reader
does not), AAD ``ag-person-ref-v1|<role>`` (``person`` or ``guardian``: a guardian's ref
cannot stand for the person). The id is padded to :data:`PAD` bytes, so every ref has the
same length (an absent guardian is sealed as the empty id: a ``sync_person`` does not show
whether the person is a minor), and the nonce is fresh, so two refs to the same person are
not linkable. Commands that carry a ``person_id`` in clear are refused (see
``gateway.mqtt.commands``).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import PrivacyError
from gateway.keys import Purpose, subkey_of

PREFIX = "r1."
PAD = 64
"""The longest person id (``gateway.command_args.PersonId``): every sealed id is this long."""
NONCE = 12
ROLES = ("person", "guardian")


class PersonRefError(PrivacyError):
    """A sealed person reference does not open (another site's key, tampered, malformed)."""


def ref_key(site_key: bytes) -> bytes:
    """The sealing key, from the SITE root (``Keys.site``)."""
    return subkey_of(site_key, Purpose.PERSON_REF)


def _aad(role: str) -> bytes:
    if role not in ROLES:
        raise ValueError(f"person ref role {role!r} is not one of {ROLES}")
    return f"ag-person-ref-v1|{role}".encode()


def seal(site_key: bytes, person_id: str | None, *, role: str = "person") -> str:
    """The sealed reference of ``person_id`` (None: the empty id, e.g. no guardian)."""
    raw = (person_id or "").encode("utf-8")
    if len(raw) > PAD or b"\x00" in raw:
        raise PersonRefError(f"a person id is at most {PAD} bytes without NUL")
    nonce = os.urandom(NONCE)
    ct = AESGCM(ref_key(site_key)).encrypt(nonce, raw.ljust(PAD, b"\x00"), _aad(role))
    return PREFIX + base64.urlsafe_b64encode(nonce + ct).decode("ascii").rstrip("=")


def open_ref(site_key: bytes, ref: str, *, role: str = "person") -> str | None:
    """The person id a reference seals (None for the empty id); :class:`PersonRefError`."""
    if not ref.startswith(PREFIX):
        raise PersonRefError(f"{role}_ref is not a version 1 sealed reference ({PREFIX}...)")
    body = ref[len(PREFIX) :]
    try:
        blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise PersonRefError(f"{role}_ref is not base64url") from exc
    try:
        plain = AESGCM(ref_key(site_key)).decrypt(blob[:NONCE], blob[NONCE:], _aad(role))
    except (InvalidTag, ValueError) as exc:
        raise PersonRefError(
            f"{role}_ref does not open with this site's key (another site, or altered)"
        ) from exc
    text = plain.rstrip(b"\x00").decode("utf-8", "replace")
    return text or None
