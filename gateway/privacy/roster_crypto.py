"""The roster's cryptography: per-gate encryption, the hash chain, signed manifests.

* Every gate has an X25519 key pair; its private key is derived from the gate's device key
  (``Purpose.ROSTER_GATE``: sealed in the TPM with it where the device key is). The office
  seals each message for one gate: an ephemeral X25519 key, HKDF-SHA256 of the shared
  secret (info names the gate), AES-256-GCM with the message's position as associated
  data. The site key opens nothing; another gate's key opens nothing.
* The changes of a gate form a hash chain: ``h_v = SHA-256(h_{v-1} || canonical(change_v))``
  from a genesis hash that names the site and gate.
* The manifest (version, head, the retained chunks, the snapshot) is signed with Ed25519
  by the office over its canonical JSON (sorted keys, no spaces), as commands are.
* A gate's acknowledgement is signed the same way with the gate's own Ed25519 key
  (``Purpose.ROSTER_ACK``, from its roster root); the office holds its public key
  (registered with the X25519 one) and refuses an ack that does not verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import PrivacyError
from gateway.keys import (
    Purpose,
    canonical_json,
    ed25519_key_id,
    json_signed_by,
    sign_json,
    subkey_of,
)

FORMAT = "ag-roster-v1"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class RosterError(PrivacyError):
    """A roster message is refused (signature, chain, version, encryption, shape)."""


#: Canonical JSON bytes (what is hashed and signed; the command envelopes' encoding).
canonical = canonical_json


def b64(data: bytes) -> str:
    """Base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    """Bytes of base64 ``text``; RosterError naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise RosterError(f"{what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RosterError(f"{what} is not valid base64") from exc


# -- gate key pair ----------------------------------------------------------------------------


def gate_private(device_root: bytes) -> X25519PrivateKey:
    """This gate's roster private key, derived from its device key."""
    return X25519PrivateKey.from_private_bytes(subkey_of(device_root, Purpose.ROSTER_GATE))


def public_b64(key: X25519PrivateKey) -> str:
    """The base64 raw public key the installer registers at the office."""
    return b64(key.public_key().public_bytes(*_RAW))


def gate_ack_private(device_root: bytes) -> Ed25519PrivateKey:
    """This gate's acknowledgement signing key, derived from its roster root."""
    return Ed25519PrivateKey.from_private_bytes(subkey_of(device_root, Purpose.ROSTER_ACK))


def ack_public_b64(key: Ed25519PrivateKey) -> str:
    """The base64 raw Ed25519 public key the installer registers with the X25519 one."""
    return b64(key.public_key().public_bytes(*_RAW))


def load_ack_public(text: str) -> Ed25519PublicKey:
    """A gate's acknowledgement public key from base64; RosterError when not 32 bytes."""
    raw = unb64(text, "gate acknowledgement key")
    if len(raw) != 32:
        raise RosterError(f"a gate acknowledgement key is 32 bytes, this one has {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_gate_public(text: str) -> X25519PublicKey:
    """A gate's public key from base64; RosterError when it is not 32 bytes."""
    raw = unb64(text, "gate public key")
    if len(raw) != 32:
        raise RosterError(f"a gate public key is 32 bytes, this one has {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def _kdf(shared: bytes, eph: bytes, gate: str) -> bytes:
    info = f"{FORMAT}/seal/{gate}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=eph, info=info).derive(shared)


class Sealer:
    """Seals for gates with one ephemeral key per pass of the office (a batch of people):
    each gate's AES key (X25519 with the gate's public key, HKDF naming the gate) is
    derived once per pass instead of once per message. Every message keeps its own random
    nonce; the ephemeral key is shared by every change of the pass, so it links no one
    person's changes across gates. The output is what :func:`seal` makes."""

    def __init__(self) -> None:
        eph = X25519PrivateKey.generate()
        self._eph = eph
        self._eph_pub = eph.public_key().public_bytes(*_RAW)
        self._keys: dict[tuple[str, bytes], AESGCM] = {}

    def seal(self, gate_public: X25519PublicKey, gate: str, plaintext: bytes, aad: bytes) -> bytes:
        """``plaintext`` encrypted for one gate: ephemeral public (32) | nonce (12) | AES-GCM."""
        slot = (gate, gate_public.public_bytes(*_RAW))
        aead = self._keys.get(slot)
        if aead is None:
            shared = self._eph.exchange(gate_public)
            aead = self._keys[slot] = AESGCM(_kdf(shared, self._eph_pub, gate))
        nonce = os.urandom(12)
        return self._eph_pub + nonce + aead.encrypt(nonce, plaintext, aad)


def seal(gate_public: X25519PublicKey, gate: str, plaintext: bytes, aad: bytes) -> bytes:
    """``plaintext`` encrypted for one gate with a fresh ephemeral key (see :class:`Sealer`)."""
    return Sealer().seal(gate_public, gate, plaintext, aad)


def open_sealed(private: X25519PrivateKey, gate: str, blob: bytes, aad: bytes) -> bytes:
    """The plaintext of :func:`seal`; RosterError when it was sealed for another gate or
    altered."""
    if len(blob) < 32 + 12 + 16:
        raise RosterError("sealed roster message is too short")
    eph_pub = blob[:32]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        return AESGCM(_kdf(shared, eph_pub, gate)).decrypt(blob[32:44], blob[44:], aad)
    except (InvalidTag, ValueError) as exc:
        raise RosterError(
            "roster message does not decrypt with this gate's key (encrypted for another "
            "gate, or altered)"
        ) from exc


def change_aad(site: str, gate: str, version: int) -> bytes:
    """Associated data of a sealed change: its site, gate and version."""
    return f"{FORMAT}|{site}|{gate}|change|{version}".encode()


def snapshot_aad(site: str, gate: str, version: int) -> bytes:
    """Associated data of a sealed snapshot: its site, gate and version."""
    return f"{FORMAT}|{site}|{gate}|snapshot|{version}".encode()


# -- hash chain -------------------------------------------------------------------------------


def genesis(site: str, gate: str) -> str:
    """The chain's starting hash (version 0) for one gate."""
    return hashlib.sha256(f"{FORMAT}/genesis/{site}/{gate}".encode()).hexdigest()


def link(prev: str, change: dict[str, Any]) -> str:
    """The chain hash after ``change`` (hex)."""
    return hashlib.sha256(bytes.fromhex(prev) + canonical(change)).hexdigest()


# -- signed manifests -------------------------------------------------------------------------


def sign_manifest(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``doc`` with ``key_id`` and ``sig`` (Ed25519 over the canonical JSON of the rest, as
    command envelopes are signed)."""
    body = {k: v for k, v in doc.items() if k != "sig"}
    body["key_id"] = ed25519_key_id(key.public_key())
    return {**body, "sig": sign_json(body, key)}


def verify_manifest(
    doc: Any, trusted: dict[str, str], what: str = "roster manifest"
) -> dict[str, Any]:
    """``doc`` when its signature verifies with a trusted key (key id -> base64 raw);
    RosterError naming the problem (and ``what`` was checked) otherwise."""
    if not isinstance(doc, dict):
        raise RosterError(f"{what} is not a JSON object")
    key_id = doc.get("key_id")
    if not isinstance(key_id, str) or key_id not in trusted:
        raise RosterError(f"{what} signed by unknown key {str(key_id)[:64]!r}")
    unb64(doc.get("sig"), f"{what} signature")  # names a signature that is not base64
    try:
        public = Ed25519PublicKey.from_public_bytes(unb64(trusted[key_id], "signing key"))
    except ValueError as exc:
        raise RosterError(f"trusted key {key_id} is not an Ed25519 public key") from exc
    if not json_signed_by(doc, public):
        raise RosterError(f"{what} signature does not verify (forged or altered)")
    return doc


def roster_id(office_device_root: bytes, gate: str, person_id: str) -> str:
    """The opaque id of a person at one gate: HMAC of the gate and the office's person id
    under an office-only key, so no two gates' rosters link and none reveals the office id."""
    return roster_id_with(roster_id_key(office_device_root), gate, person_id)


def roster_id_key(office_device_root: bytes) -> bytes:
    """The office's roster-id key (derive it once for a pass over many people and gates)."""
    return subkey_of(office_device_root, Purpose.ROSTER_ID)


def roster_id_with(key: bytes, gate: str, person_id: str) -> str:
    """:func:`roster_id` with the key of :func:`roster_id_key`."""
    return hmac.new(key, f"{gate}\x00{person_id}".encode(), hashlib.sha256).hexdigest()[:32]


def wrap_local(device_root: bytes, data: bytes, label: str) -> str:
    """``data`` sealed under this device's ``ROSTER_WRAP`` key (for the database)."""
    nonce = os.urandom(12)
    aead = AESGCM(subkey_of(device_root, Purpose.ROSTER_WRAP))
    return b64(nonce + aead.encrypt(nonce, data, label.encode()))


def unwrap_local(device_root: bytes, text: str, label: str) -> bytes:
    """What :func:`wrap_local` sealed; RosterError when this device key cannot open it."""
    blob = unb64(text, label)
    try:
        aead = AESGCM(subkey_of(device_root, Purpose.ROSTER_WRAP))
        return aead.decrypt(blob[:12], blob[12:], label.encode())
    except (InvalidTag, ValueError) as exc:
        raise RosterError(f"{label} does not open with this device key") from exc
