"""The gateway's keys: three roots, and one subkey per purpose (the :class:`Purpose` table).

Roots:

* ``device`` (one per gate, never leaves it): held by a key provider: ``file`` reads it in
  clear from ``privacy.device_key``; ``tpm`` unseals it from this board's TPM 2.0
  (``gateway.tpm``).
* ``gates`` (``privacy.gates_key``): shared by the site's gates only, never by the office:
  the template transform, the template-bundle wrapping and the withdrawal fan-out MAC. When
  it is not configured (installations made before it existed) the site key stands in for it
  with the same labels, so existing databases keep working; ``gateway keys rotate --what
  transform`` moves such a gate to its own gates key.
* ``site`` (``privacy.site_key``): shared by the gates and the management side (office),
  for what the office's work needs: event pseudonyms, the PIN index, the PIN transport
  seal and the sealed person references of commands (``gateway.privacy.person_ref``).

Every subkey is derived in :meth:`Keys.subkey` from its root with its own label, so no two
purposes share key material. The labels are versioned; a label is never reused for other
key material.

Signed JSON documents (the MQTT command envelopes, the roster's manifests and acks) share
:func:`canonical_json`, :func:`ed25519_key_id` and :func:`sign_json` / :func:`json_signed_by`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.config.base import SecretRef
from gateway.config.keys import KeysConfig
from gateway.config.root import GatewayConfig
from gateway.errors import ConfigError, GatewayError

MIN_KEY_BYTES = 32


def derive(key: bytes, purpose: str, length: int = 32) -> bytes:
    """A subkey of ``key`` for one purpose (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode()).derive(
        key
    )


class Root(enum.Enum):
    """The root a purpose's key comes from."""

    DEVICE = "device"
    GATES = "gates"
    SITE = "site"


@dataclass(frozen=True)
class KeySpec:
    """One purpose's key: its root, derivation label, and whether the office holds it.

    ``scheme`` is ``hkdf`` (:func:`derive`) or ``hmac`` (HMAC-SHA256(root, label): the card
    and legacy PIN lookup keys, kept as they were so stored hashes keep matching)."""

    root: Root
    label: str
    office: bool
    scheme: str = "hkdf"


class Purpose(enum.Enum):
    """Every key the gateway uses: one entry per purpose, the one place labels live."""

    CARD_LOOKUP = KeySpec(Root.DEVICE, "access-gateway/card-v1", False, "hmac")
    PIN_INDEX_LOCAL = KeySpec(Root.DEVICE, "access-gateway/pin-index-v1", False, "hmac")
    TEMPLATE_WRAP = KeySpec(Root.DEVICE, "access-gateway/template-wrap/v1", False)
    AUDIT_CHAIN = KeySpec(Root.DEVICE, "access-gateway/audit-chain/v1", False)
    ACCESS_LOG = KeySpec(Root.DEVICE, "access-gateway/access-log-subject/v1", False)
    TEMPLATE_TRANSFORM = KeySpec(Root.GATES, "access-gateway/template-site/v1", False)
    BUNDLE_WRAP = KeySpec(Root.GATES, "access-gateway/bundle-wrap/v1", False)
    WITHDRAWAL_FANOUT = KeySpec(Root.GATES, "access-gateway/withdrawal-fanout/v1", False)
    PSEUDONYM = KeySpec(Root.SITE, "access-gateway/pseudonym/v1", True)
    PIN_INDEX = KeySpec(Root.SITE, "access-gateway/pin-index/v1", True)
    PIN_TRANSPORT = KeySpec(Root.SITE, "access-gateway/pin-transport/v1", True)
    PERSON_REF = KeySpec(Root.SITE, "access-gateway/person-ref/v1", True)
    CARRY_WRAP = KeySpec(Root.DEVICE, "access-gateway/carried-keys/v1", False)
    #: The web console accounts' TOTP secrets, sealed in ``web_totp``.
    WEB_TOTP = KeySpec(Root.DEVICE, "access-gateway/web-totp/v1", False)
    #: Never derived: the outer HMAC layers card-key rotations put over the stored card
    #: hashes (:func:`layers`), carried as their concatenation.
    CARD_REKEY = KeySpec(Root.DEVICE, "access-gateway/card-rekey/v1", False)
    #: Never derived: the layers PIN-index rotations put over the stored PIN indexes.
    PIN_REKEY = KeySpec(Root.DEVICE, "access-gateway/pin-rekey/v1", False)
    #: The roster's own root on this device (carried over device-key rotations, so a gate's
    #: X25519 key, an office's roster ids and what it sealed locally outlive them); the
    #: four below are derived from it, not from the device key itself.
    ROSTER_ROOT = KeySpec(Root.DEVICE, "access-gateway/roster-root/v1", False)
    ROSTER_GATE = KeySpec(Root.DEVICE, "access-gateway/roster-gate-x25519/v1", False)
    ROSTER_ID = KeySpec(Root.DEVICE, "access-gateway/roster-id/v1", False)
    ROSTER_WRAP = KeySpec(Root.DEVICE, "access-gateway/roster-wrap/v1", False)
    #: A gate's Ed25519 key that signs its roster acknowledgements (from the roster root).
    ROSTER_ACK = KeySpec(Root.DEVICE, "access-gateway/roster-ack-ed25519/v1", False)

    @property
    def spec(self) -> KeySpec:
        """The purpose's root, label and holders."""
        value: KeySpec = self.value
        return value


def subkey_of(root_key: bytes, purpose: Purpose, generation: int = 0) -> bytes:
    """``purpose``'s key derived from ``root_key`` (which must be the purpose's root);
    ``generation`` > 0: the key after that many purpose rotations (its own label)."""
    spec = purpose.spec
    label = spec.label if generation == 0 else f"{spec.label}/g{generation}"
    if spec.scheme == "hmac":
        return hmac.new(root_key, label.encode(), hashlib.sha256).digest()
    return derive(root_key, label)


def office_purposes() -> list[Purpose]:
    """The purposes whose keys the management side (office) holds: all from the site key."""
    return [p for p in Purpose if p.spec.office]


#: Device purposes whose stored values cannot be recomputed (card hashes, PIN index buckets,
#: audit MACs, access-log subjects, the console's TOTP secrets): a device-key rotation
#: carries their keys over, sealed under the new device key in ``kv['keys.carried']``;
#: the old device key itself is erased.
CARRIED = (
    Purpose.CARD_LOOKUP,
    Purpose.PIN_INDEX_LOCAL,
    Purpose.AUDIT_CHAIN,
    Purpose.ACCESS_LOG,
    Purpose.ROSTER_ROOT,
    Purpose.WEB_TOTP,
)
CARRY_KV = "keys.carried"


#: The purposes whose rotation layers the stored values (:func:`layers`), and their layers.
LAYERED = {Purpose.CARD_LOOKUP: Purpose.CARD_REKEY, Purpose.PIN_INDEX: Purpose.PIN_REKEY}
LAYER_BYTES = 32


def layers(carried: Mapping[Purpose, bytes], purpose: Purpose) -> list[bytes]:
    """The keys rotations of ``purpose`` (a key of :data:`LAYERED`) put over its stored
    values, oldest first: a card hash is ``HMAC(layer_n, ... HMAC(layer_1, HMAC(card_key,
    card)))``, a PIN index likewise (:func:`rekey_pin_index`)."""
    chain = carried.get(LAYERED[purpose], b"")
    return [chain[i : i + LAYER_BYTES] for i in range(0, len(chain), LAYER_BYTES)]


def rekey_card(digest: bytes, over: list[bytes]) -> bytes:
    """A card hash under the rotation layers ``over`` (:func:`layers`)."""
    for layer in over:
        digest = hmac.new(layer, digest, hashlib.sha256).digest()
    return digest


def rekey_pin_index(index: int, over: list[bytes]) -> int:
    """A 16-bit PIN index under the rotation layers ``over`` (still 16 bits)."""
    for layer in over:
        mac = hmac.new(layer, b"pin-index|" + index.to_bytes(2, "big"), hashlib.sha256)
        index = int.from_bytes(mac.digest()[:2], "big")
    return index


def carry_over(keys: Keys) -> dict[Purpose, bytes]:
    """What a device-key rotation carries: the :data:`CARRIED` keys, the layers, a
    carried cancelable transform key and the PIN-index key a site-key rotation carried."""
    out = {p: keys.subkey(p) for p in CARRIED}
    for layer in (*LAYERED.values(), Purpose.TEMPLATE_TRANSFORM, Purpose.PIN_INDEX):
        if layer in keys.carried:
            out[layer] = keys.carried[layer]
    return out


def device_subkey(device_root: bytes, purpose: Purpose, carried: Mapping[Purpose, bytes]) -> bytes:
    """A device purpose's key: carried over from before a device-key rotation, else derived."""
    return carried.get(purpose) or subkey_of(device_root, purpose)


def seal_carried(device_root: bytes, keys: Mapping[Purpose, bytes]) -> str:
    """``keys`` sealed (AES-GCM, AAD = the purpose's label) under ``device_root``'s
    ``CARRY_WRAP`` subkey, as the JSON text of ``kv['keys.carried']``."""
    aead = AESGCM(subkey_of(device_root, Purpose.CARRY_WRAP))
    sealed = {}
    for purpose, key in keys.items():
        nonce = os.urandom(12)
        blob = nonce + aead.encrypt(nonce, key, purpose.spec.label.encode())
        sealed[purpose.name] = base64.b64encode(blob).decode("ascii")
    return json.dumps({"v": 1, "keys": sealed}, sort_keys=True)


def open_carried(device_root: bytes, text: str) -> dict[Purpose, bytes]:
    """The keys :func:`seal_carried` sealed; ConfigError when this device key cannot open them."""
    aead = AESGCM(subkey_of(device_root, Purpose.CARRY_WRAP))
    out = {}
    try:
        for name, b64 in json.loads(text)["keys"].items():
            blob = base64.b64decode(b64, validate=True)
            purpose = Purpose[name]
            out[purpose] = aead.decrypt(blob[:12], blob[12:], purpose.spec.label.encode())
    except (InvalidTag, KeyError, ValueError, binascii.Error) as exc:
        raise ConfigError(
            [("kv", CARRY_KV, "the carried keys do not open with this device key")]
        ) from exc
    return out


def key_id(key: bytes) -> str:
    """A key's public fingerprint (derived, so it says nothing of the key), as recorded in
    the database's kv table."""
    return derive(key, "access-gateway/key-id/v1", 8).hex()


def canonical_json(doc: Any) -> bytes:
    """Canonical JSON bytes (what is hashed and signed): sorted keys, ``(",", ":")``
    separators, UTF-8, no NaN."""
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signed_bytes(doc: dict[str, Any]) -> bytes:
    """What the signature of a signed JSON document covers: every member but ``sig``."""
    return canonical_json({k: v for k, v in doc.items() if k != "sig"})


def ed25519_key_id(public: Ed25519PublicKey) -> str:
    """An Ed25519 key's id: first 16 hex digits of SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_json(doc: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """The base64 Ed25519 signature of :func:`signed_bytes` of ``doc``."""
    return base64.b64encode(key.sign(signed_bytes(doc))).decode("ascii")


def json_signed_by(doc: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """True when ``doc["sig"]`` is ``public``'s signature of :func:`signed_bytes` of ``doc``."""
    sig = doc.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        public.verify(base64.b64decode(sig, validate=True), signed_bytes(doc))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


#: The lock file in the state directory the daemon holds while it runs (it keeps the keys in
#: memory) and a key rotation holds while it changes them.
STATE_LOCK = "daemon.lock"


class StateLockedError(GatewayError):
    """Another process (the daemon, or a key rotation) holds the state directory's lock."""


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[bool]:
    """Hold the exclusive ``flock`` on ``<state_dir>/daemon.lock`` for the block; raises
    :class:`StateLockedError` when another process holds it. Yields False (no lock) when the
    file cannot be opened (a read-only state directory)."""
    path = state_dir / STATE_LOCK
    with contextlib.suppress(OSError):
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            yield False
            return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StateLockedError(f"{path} is held by another gateway process") from exc
        yield True
    finally:
        os.close(fd)  # releases the lock


def pin_index_key(site_key: bytes) -> bytes:
    """The site's PIN lookup index key (what ``set_pin``'s ``pin_index`` is keyed with)."""
    return subkey_of(site_key, Purpose.PIN_INDEX)


def _load(ref: SecretRef | None, key_path: str) -> bytes:
    if ref is None:
        raise ConfigError([(key_path, "None", "this key is required")])
    try:
        data = ref.read_bytes()
    except ConfigError as exc:  # name the setting, not only the file
        raise ConfigError([(key_path, exc.problems[0][0], exc.problems[0][2])]) from exc
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
    """Root keys and their purpose subkeys (never printed: ``repr`` is blank).

    ``gates`` is None when ``privacy.gates_key`` is not configured: the site key then
    stands in for it (compatibility with gates set up before it existed)."""

    device: bytes
    site: bytes
    gates: bytes | None = None
    carried: Mapping[Purpose, bytes] = field(default_factory=dict)
    #: purpose rotations of site- and gates-rooted purposes (kv ``keys.generations``)
    generations: Mapping[Purpose, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "Keys(<redacted>)"

    @classmethod
    def from_config(cls, cfg: GatewayConfig, *, gates_optional: bool = False) -> Keys:
        """Load the device key from its provider, the site key and the gates key. The site
        key stands in for the gates key only when ``privacy.gates_key`` is not configured; a
        configured one that cannot be read is a ConfigError (``gates_optional``: except a
        file not written yet, for ``gateway keys rotate --what transform``, which writes it).
        The device subkeys carried over a device-key rotation are in the database:
        :func:`gateway.services.keys.load_keys` adds them."""
        ref = cfg.privacy.gates_key
        gates = None
        unwritten = gates_optional and ref is not None and ref.file is not None
        if ref is not None and not (unwritten and ref.file is not None and not ref.file.exists()):
            gates = _load(ref, "privacy.gates_key")
        keys = cls(
            device=device_key_provider(cfg).device_key(),
            site=_load(cfg.privacy.site_key, "privacy.site_key"),
            gates=gates,
        )
        keys.check_distinct()
        return keys

    def check_distinct(self) -> None:
        """ConfigError when the gates key is the site or the device key (it would then be
        shared with the office, or be no separate key at all)."""
        if self.gates is None:
            return
        for other, name in ((self.site, "site"), (self.device, "device")):
            if hmac.compare_digest(self.gates, other):
                raise ConfigError(
                    [
                        (
                            "privacy.gates_key",
                            "<redacted>",
                            f"the gates key must differ from the {name} key",
                        )
                    ]
                )

    def root(self, root: Root) -> bytes:
        """One root key (``GATES`` falls back to the site key when none is configured)."""
        if root is Root.DEVICE:
            return self.device
        if root is Root.GATES:
            return self.gates_root
        return self.site

    @property
    def gates_root(self) -> bytes:
        """The gates-only root (the site key on a gate without its own gates key)."""
        return self.site if self.gates is None else self.gates

    def subkey(self, purpose: Purpose) -> bytes:
        """The key of one purpose, from its root and label (see :class:`Purpose`)."""
        if purpose.spec.root is Root.DEVICE:
            return device_subkey(self.device, purpose, self.carried)
        if purpose in self.carried:  # the cancelable transform, kept over a gates rotation
            return self.carried[purpose]
        return subkey_of(self.root(purpose.spec.root), purpose, self.generations.get(purpose, 0))

    @property
    def roster_root(self) -> bytes:
        """The root of this device's roster keys (``ROSTER_GATE``, ``ROSTER_ID``,
        ``ROSTER_WRAP``, ``ROSTER_ACK``): carried over device-key rotations."""
        return self.subkey(Purpose.ROSTER_ROOT)

    @property
    def pin_index_site(self) -> bytes:
        """Key of the PIN lookup index shared with the management system (which holds the
        site key and so can compute a PIN's index for the ``set_pin`` command)."""
        return self.subkey(Purpose.PIN_INDEX)

    @property
    def pseudonym(self) -> bytes:
        """Key of the event pseudonyms."""
        return self.subkey(Purpose.PSEUDONYM)
