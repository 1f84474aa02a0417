"""Ed25519 command envelopes: canonical encoding, signing, key files.

Envelope (JSON object): ``name``, ``args`` (object), ``site`` and ``gate`` (the target gate,
so a signed command is valid for that gate only), ``ts`` (RFC 3339 UTC), ``nonce``
(16-64 chars), ``key_id``, ``sig``. ``sig`` is base64 Ed25519 over the canonical encoding of
every other member: JSON with sorted keys, ``(",", ":")`` separators, UTF-8, no NaN.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import ProtocolError
from gateway.keys import ed25519_key_id, json_signed_by, sign_json, signed_bytes

SIGNED_FIELDS = ("name", "args", "site", "gate", "ts", "nonce", "key_id")

#: Bytes that are signed: every envelope member except ``sig``.
canonical = signed_bytes
#: Default key id: first 16 hex digits of SHA-256 of the raw public key.
key_id_of = ed25519_key_id


def public_raw(public: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key."""
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_b64(public: Ed25519PublicKey) -> str:
    """Base64 raw public key, as written in the config's ``command_keys``."""
    return base64.b64encode(public_raw(public)).decode("ascii")


def load_public_b64(text: str) -> Ed25519PublicKey:
    """Parse a base64 raw Ed25519 public key."""
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ProtocolError(
            f"invalid Ed25519 public key (base64 of 32 bytes expected): {exc}"
        ) from exc


def generate() -> Ed25519PrivateKey:
    """A new signing key."""
    return Ed25519PrivateKey.generate()


def write_private(key: Ed25519PrivateKey, path: Path) -> None:
    """Write a PKCS#8 PEM private key with mode 0600 (refuses to overwrite)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_private(path: Path) -> Ed25519PrivateKey:
    """Read a PEM private key written by :func:`write_private`."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ProtocolError(f"cannot load Ed25519 private key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ProtocolError(f"{path} is not an Ed25519 private key")
    return key


def now_rfc3339(now: float | None = None) -> str:
    """RFC 3339 UTC timestamp for envelopes."""
    t = dt.datetime.now(dt.UTC) if now is None else dt.datetime.fromtimestamp(now, dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign_envelope(
    name: str,
    args: dict[str, Any],
    key: Ed25519PrivateKey,
    *,
    site: str,
    gate: str,
    key_id: str | None = None,
    ts: str | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Build and sign a command envelope for gate ``gate`` of site ``site``."""
    if not site or not gate:
        raise ValueError("a command envelope needs its target site and gate")
    env: dict[str, Any] = {
        "name": name,
        "args": args,
        "site": site,
        "gate": gate,
        "ts": ts or now_rfc3339(),
        "nonce": nonce or secrets.token_hex(16),
        "key_id": key_id or key_id_of(key.public_key()),
    }
    env["sig"] = sign_json(env, key)
    return env


def verify_envelope(envelope: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """True when ``sig`` is a valid signature of the canonical encoding."""
    return json_signed_by(envelope, public)
