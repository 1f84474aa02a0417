"""The device key sealed to a TPM 2.0 (``tpm2-pytss``, the optional extra ``tpm``).

The key is a sealed data object (keyed-hash, no scheme) under the owner (storage)
hierarchy's primary key, which is re-created on each use from the TPM's own seed with the
``tpm2_createprimary -C o`` default template (ECC P-256, AES-128-CFB): the private blob is
encrypted by that primary, so it opens on this TPM only. With PCRs configured the object
has no user auth, only a PolicyPCR policy: it opens while those PCRs hold the values they
held at sealing. Every exchange with the TPM runs in a session salted by the primary with
AES-128-CFB parameter encryption: the key never crosses the bus (SPI) in clear.

The blobs are the marshalled TPM2B_PUBLIC and TPM2B_PRIVATE, as ``tpm2_create -u/-r`` write
them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.config.keys import KeysConfig
from gateway.config.loading import read_regular_file
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from tpm2_pytss import ESAPI

log = logging.getLogger(__name__)

MAX_SEALED_BYTES = 128  # MAX_SYM_DATA of the TPM 2.0 library specification
MAX_BLOB_BYTES = 4096

_MISSING = (
    "the TPM key provider needs tpm2-pytss: install the 'tpm' extra "
    "(pip install 'access-gateway[tpm]'; it builds against Debian's libtss2-dev)"
)


@dataclass(frozen=True)
class SealedKey:
    """The two blobs of a sealed key (public area and TPM-encrypted private area)."""

    public: bytes
    private: bytes


def _tss() -> Any:
    """The tpm2_pytss module, imported only when a TPM is used."""
    try:
        import tpm2_pytss
    except ImportError as exc:
        raise ConfigError([("keys.provider", "tpm", f"{_MISSING} ({exc})")]) from exc
    return tpm2_pytss


@contextmanager
def _esapi(cfg: KeysConfig) -> Iterator[ESAPI]:
    """An ESAPI context on the configured TCTI; ConfigError naming ``keys.tcti`` if not."""
    tss = _tss()
    try:
        esys = tss.ESAPI(cfg.tcti)
    except Exception as exc:  # TSS2_Exception, or a missing TCTI library (RuntimeError...)
        raise ConfigError(
            [("keys.tcti", cfg.tcti, f"cannot open the TPM through this TCTI: {exc}")]
        ) from exc
    try:
        yield esys
    finally:
        esys.close()


def _primary(esys: ESAPI) -> Any:
    """The storage primary key (deterministic from the owner seed: same key every time)."""
    tss = _tss()
    attrs = tss.TPMA_OBJECT.DEFAULT_TPM2_TOOLS_CREATEPRIMARY_ATTRS
    template = tss.TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=attrs)
    handle, *_ = esys.create_primary(tss.TPM2B_SENSITIVE_CREATE(), template, tss.ESYS_TR.OWNER)
    return handle


def _session(esys: ESAPI, primary: Any, kind: str, protect: str) -> Any:
    """A session salted by ``primary`` encrypting the command (``decrypt``) or the response
    (``encrypt``) parameter; ``kind`` is ``hmac``, ``policy`` or ``trial``."""
    tss = _tss()
    sym = tss.TPMT_SYM_DEF(algorithm=tss.TPM2_ALG.AES)
    sym.keyBits.aes = 128
    sym.mode.aes = tss.TPM2_ALG.CFB
    session_type = {
        "hmac": tss.TPM2_SE.HMAC,
        "policy": tss.TPM2_SE.POLICY,
        "trial": tss.TPM2_SE.TRIAL,
    }[kind]
    salt = primary if kind != "trial" else tss.ESYS_TR.NONE
    session = esys.start_auth_session(
        salt, tss.ESYS_TR.NONE, session_type, sym, tss.TPM2_ALG.SHA256
    )
    if kind != "trial":
        flag = tss.TPMA_SESSION.DECRYPT if protect == "decrypt" else tss.TPMA_SESSION.ENCRYPT
        esys.trsess_set_attributes(session, flag | tss.TPMA_SESSION.CONTINUESESSION)
    return session


def _pcr_selection(cfg: KeysConfig) -> str:
    return f"{cfg.pcr_bank}:{','.join(str(p) for p in sorted(set(cfg.pcrs)))}"


def _policy_digest(esys: ESAPI, cfg: KeysConfig) -> Any:
    """The PolicyPCR digest over the configured PCRs' current values (a trial session)."""
    trial = _session(esys, None, "trial", "")
    try:
        esys.policy_pcr(trial, None, _pcr_selection(cfg))
        return esys.policy_get_digest(trial)
    finally:
        esys.flush_context(trial)


def seal(key: bytes, cfg: KeysConfig) -> SealedKey:
    """Seal ``key`` to the configured TPM (bound to ``cfg.pcrs`` when there are any)."""
    if not 1 <= len(key) <= MAX_SEALED_BYTES:
        raise ConfigError(
            [("keys", f"<{len(key)} bytes>", f"a sealed key has 1..{MAX_SEALED_BYTES} bytes")]
        )
    tss = _tss()
    with _esapi(cfg) as esys:
        primary = _primary(esys)
        session = None
        try:
            attrs = tss.TPMA_OBJECT.FIXEDTPM | tss.TPMA_OBJECT.FIXEDPARENT | tss.TPMA_OBJECT.NODA
            policy = None
            if cfg.pcrs:
                policy = _policy_digest(esys, cfg)
            else:
                attrs |= tss.TPMA_OBJECT.USERWITHAUTH
            template = tss.TPM2B_PUBLIC.parse("keyedhash", objectAttributes=attrs)
            if policy is not None:
                template.publicArea.authPolicy = policy
            sensitive = tss.TPM2B_SENSITIVE_CREATE()
            sensitive.sensitive.data = key
            session = _session(esys, primary, "hmac", "decrypt")
            private, public, *_ = esys.create(primary, sensitive, template, session1=session)
        finally:
            if session is not None:
                esys.flush_context(session)
            esys.flush_context(primary)
    log.info("device key sealed to the TPM at %s (PCRs: %s)", cfg.tcti, cfg.pcrs or "none")
    return SealedKey(public=bytes(public.marshal()), private=bytes(private.marshal()))


def _foreign(cfg: KeysConfig, exc: Exception) -> ConfigError:
    return ConfigError(
        [
            (
                "keys.private_blob",
                str(cfg.private_blob),
                (
                    "the sealed device key does not load on this TPM: it was sealed on another "
                    "TPM, or this TPM's storage hierarchy was cleared, or the blob is damaged "
                    f"({exc})"
                ),
            )
        ]
    )


def _policy_refused(cfg: KeysConfig, exc: Exception) -> ConfigError:
    return ConfigError(
        [
            (
                "keys.pcrs",
                str(cfg.pcrs),
                (
                    f"the TPM refuses to unseal the device key: the PCRs {_pcr_selection(cfg)} no "
                    "longer hold the values they had at sealing (firmware, boot or Secure Boot "
                    f"state changed); re-seal it from a trusted state ({exc})"
                ),
            )
        ]
    )


def unseal(sealed: SealedKey, cfg: KeysConfig) -> bytes:
    """The key sealed in ``sealed``; ConfigError naming the setting when the TPM refuses."""
    tss = _tss()
    try:
        public, _ = tss.TPM2B_PUBLIC.unmarshal(sealed.public)
        private, _ = tss.TPM2B_PRIVATE.unmarshal(sealed.private)
    except Exception as exc:
        raise _foreign(cfg, exc) from exc
    with _esapi(cfg) as esys:
        primary = _primary(esys)
        handles = [primary]
        try:
            try:
                obj = esys.load(primary, private, public)
            except tss.TSS2_Exception as exc:
                raise _foreign(cfg, exc) from exc
            handles.append(obj)
            kind = "policy" if cfg.pcrs else "hmac"
            session = _session(esys, primary, kind, "encrypt")
            handles.append(session)
            try:
                if cfg.pcrs:
                    esys.policy_pcr(session, None, _pcr_selection(cfg))
                data = esys.unseal(obj, session1=session)
            except tss.TSS2_Exception as exc:
                raise _policy_refused(cfg, exc) from exc
            return bytes(data)
        finally:
            for handle in reversed(handles):
                esys.flush_context(handle)


def random_bytes(n: int, cfg: KeysConfig) -> bytes:
    """``n`` bytes from the TPM's random number generator (TPM2_GetRandom)."""
    with _esapi(cfg) as esys:
        return bytes(esys.get_random(n))


def fresh_key(n: int, cfg: KeysConfig) -> bytes:
    """A new key: the OS's random bytes XOR the TPM's (both sources must fail to weaken it)."""
    import secrets

    ours, theirs = secrets.token_bytes(n), random_bytes(n, cfg)
    return bytes(a ^ b for a, b in zip(ours, theirs, strict=True))


def read_blobs(cfg: KeysConfig) -> SealedKey:
    """The sealed key's blobs from ``keys.public_blob`` and ``keys.private_blob``."""
    parts = []
    for name, path in (("public_blob", cfg.public_blob), ("private_blob", cfg.private_blob)):
        try:
            parts.append(read_regular_file(path, MAX_BLOB_BYTES, missing="no such file"))
        except ConfigError as exc:
            problem = f"cannot read the sealed device key: {exc.problems[0][2]}"
            raise ConfigError([(f"keys.{name}", str(path), problem)]) from exc
    return SealedKey(public=parts[0], private=parts[1])


def write_blobs(sealed: SealedKey, cfg: KeysConfig, *, replace: bool = False) -> None:
    """Write both blobs (mode 0600, atomically); refuse to replace existing ones unless
    ``replace`` (the key they hold would be lost, and with it every template)."""
    targets = ((cfg.public_blob, sealed.public), (cfg.private_blob, sealed.private))
    existing = [str(path) for path, _ in targets if path.exists()]
    if existing and not replace:
        raise ConfigError(
            [
                (
                    "keys.private_blob",
                    ", ".join(existing),
                    "a sealed device key is already there: move it away first (or --force)",
                )
            ]
        )
    for path, data in targets:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
