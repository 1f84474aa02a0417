"""The device key sealed to a TPM 2.0 (``tpm2-pytss``, the optional extra ``tpm``).

The key is a sealed data object (keyed-hash, no scheme) under the owner (storage)
hierarchy's primary key, which is re-created on each use from the TPM's own seed with the
``tpm2_createprimary -C o`` default template (ECC P-256, AES-128-CFB): the private blob is
encrypted by that primary, so it opens on this TPM only. With PCRs configured the object
has no user auth, only a PolicyPCR policy: it opens while those PCRs hold the values they
held at sealing. Every seal also carries a PolicyNV on a monotonic NV counter
(``keys.nv_index``): a blob is sealed for "counter <= n + 1" while the counter reads ``n``,
and :func:`advance` increments it once the new blob is in place, so every older blob
(a copy made before a rotation) no longer satisfies its policy on this TPM. Every
exchange with the TPM runs in a session salted by the primary with AES-128-CFB parameter
encryption: the key never crosses the bus (SPI) in clear.

With ``keys.owner_auth`` configured, the owner hierarchy's auth value (set by the installer)
authorises the primary and the counter's definition in HMAC sessions (the value itself never
crosses the bus), and a new counter is owner-write: only the holder of that value can
advance it (an older index-auth counter keeps working as before, not migrated).
:func:`hierarchy_state` reads what ``gateway doctor`` reports about the hierarchies.

The blobs are the marshalled TPM2B_PUBLIC and TPM2B_PRIVATE, as ``tpm2_create -u/-r`` write
them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gateway.config.base import SecretRef
from gateway.config.keys import KeysConfig
from gateway.config.loading import read_regular_file
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from tpm2_pytss import ESAPI

log = logging.getLogger(__name__)

MAX_SEALED_BYTES = 128  # MAX_SYM_DATA of the TPM 2.0 library specification
MAX_BLOB_BYTES = 4096
COUNTER_BYTES = 8  # an NV counter is a 64-bit big-endian value
MAX_AUTH_BYTES = 64  # TPM2B_AUTH

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


def _where(ref: SecretRef) -> str:
    """Where a secret lives (its file or credential name), never its value."""
    return str(ref.file) if ref.file is not None else f"credential {ref.credential}"


def _owner_auth(cfg: KeysConfig) -> bytes | None:
    """The owner hierarchy's auth value from ``keys.owner_auth`` (None: not configured)."""
    ref = cfg.owner_auth
    if ref is None:
        return None
    try:
        value = ref.read_bytes()
    except ConfigError as exc:
        raise ConfigError([("keys.owner_auth", _where(ref), exc.problems[0][2])]) from exc
    if not 1 <= len(value) <= MAX_AUTH_BYTES:
        problem = f"the owner auth value must have 1..{MAX_AUTH_BYTES} bytes"
        raise ConfigError([("keys.owner_auth", _where(ref), problem)])
    return value


@contextmanager
def _esapi(cfg: KeysConfig, *, owner: bool = True) -> Iterator[ESAPI]:
    """An ESAPI context on the configured TCTI, the owner auth set on ``ESYS_TR.OWNER``
    (``owner``); ConfigError naming ``keys.tcti`` if the TPM does not open."""
    tss = _tss()
    auth = _owner_auth(cfg) if owner else None
    try:
        esys = tss.ESAPI(cfg.tcti)
    except Exception as exc:  # TSS2_Exception, or a missing TCTI library (RuntimeError...)
        raise ConfigError(
            [("keys.tcti", cfg.tcti, f"cannot open the TPM through this TCTI: {exc}")]
        ) from exc
    try:
        if auth is not None:
            esys.tr_set_auth(tss.ESYS_TR.OWNER, auth)
        yield esys
    finally:
        esys.close()


def _property(esys: ESAPI, prop: int) -> int:
    """One TPM property's value (TPM2_GetCapability, TPM_CAP_TPM_PROPERTIES)."""
    tss = _tss()
    _, data = esys.get_capability(tss.TPM2_CAP.TPM_PROPERTIES, prop, 1)
    found = data.data.tpmProperties
    if found.count < 1 or int(found.tpmProperty[0].property) != int(prop):
        raise ConfigError([("keys.tcti", "", f"the TPM does not report property {prop:#x}")])
    return int(found.tpmProperty[0].value)


def _owner_refused(esys: ESAPI, cfg: KeysConfig, exc: Exception) -> ConfigError:
    """The TPM refused the owner auth value: say which side is missing or wrong."""
    tss = _tss()
    ref = cfg.owner_auth
    try:
        on_tpm: bool | None = bool(
            _property(esys, tss.TPM2_PT.PERMANENT) & tss.TPMA_PERMANENT.OWNERAUTHSET
        )
    except (ConfigError, tss.TSS2_Exception):
        on_tpm = None
    if ref is None:
        problem = (
            "the TPM's owner hierarchy has an auth value and the gateway has none: set "
            "keys.owner_auth to the file (or systemd credential) holding the value given to "
            "'tpm2_changeauth -c owner'"
        )
    elif on_tpm is False:
        problem = (
            "the TPM's owner hierarchy has no auth value, so the configured one is refused: "
            "set it on the TPM ('tpm2_changeauth -c owner file:FILE') or remove keys.owner_auth"
        )
    else:
        problem = (
            "the TPM refuses the configured owner auth value: it is not the one set on this "
            "TPM's owner hierarchy ('tpm2_changeauth -c owner'): correct the file"
        )
    where = _where(ref) if ref is not None else "unset"
    return ConfigError([("keys.owner_auth", where, f"{problem} ({exc})")])


@contextmanager
def _as_owner(esys: ESAPI, cfg: KeysConfig | None) -> Iterator[Any]:
    """An HMAC session for commands authorised by the owner hierarchy (its auth value keys
    the HMAC and never crosses the bus); the auth refused: ConfigError naming
    ``keys.owner_auth``."""
    tss = _tss()
    null = tss.TPMT_SYM_DEF(algorithm=tss.TPM2_ALG.NULL)
    session = esys.start_auth_session(
        tss.ESYS_TR.NONE, tss.ESYS_TR.NONE, tss.TPM2_SE.HMAC, null, tss.TPM2_ALG.SHA256
    )
    try:
        yield session
    except tss.TSS2_Exception as exc:
        if cfg is None or exc.error not in (tss.TPM2_RC.BAD_AUTH, tss.TPM2_RC.AUTH_FAIL):
            raise
        raise _owner_refused(esys, cfg, exc) from exc
    finally:
        with contextlib.suppress(tss.TSS2_Exception):  # already gone after a refusal
            esys.flush_context(session)


def _primary(esys: ESAPI, cfg: KeysConfig | None = None) -> Any:
    """The storage primary key (deterministic from the owner seed: same key every time)."""
    tss = _tss()
    attrs = tss.TPMA_OBJECT.DEFAULT_TPM2_TOOLS_CREATEPRIMARY_ATTRS
    template = tss.TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=attrs)
    with _as_owner(esys, cfg) as session:
        handle, *_ = esys.create_primary(
            tss.TPM2B_SENSITIVE_CREATE(), template, tss.ESYS_TR.OWNER, session1=session
        )
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


def _policy(esys: ESAPI, session: Any, cfg: KeysConfig, bound: int | None) -> None:
    """Run the seal's policy in ``session``: PolicyPCR over the configured PCRs (if any),
    then PolicyNV "counter <= bound" (``bound`` None: a blob sealed before the counter)."""
    if cfg.pcrs:
        esys.policy_pcr(session, None, _pcr_selection(cfg))
    if bound is not None:
        tss = _tss()
        handle = _counter_handle(esys, cfg)
        operand = tss.TPM2B_OPERAND(bound.to_bytes(COUNTER_BYTES, "big"))
        esys.policy_nv(handle, handle, session, operand, tss.TPM2_EO.UNSIGNED_LE)


def _policy_digest(esys: ESAPI, cfg: KeysConfig, bound: int | None) -> Any:
    """The policy's digest over the PCRs' current values (a trial session)."""
    trial = _session(esys, None, "trial", "")
    try:
        _policy(esys, trial, cfg, bound)
        return esys.policy_get_digest(trial)
    finally:
        esys.flush_context(trial)


def seal(key: bytes, cfg: KeysConfig) -> SealedKey:
    """Seal ``key`` to the configured TPM for the counter's next value (call :func:`advance`
    once the blob is stored), bound to ``cfg.pcrs`` when there are any."""
    if not 1 <= len(key) <= MAX_SEALED_BYTES:
        raise ConfigError(
            [("keys", f"<{len(key)} bytes>", f"a sealed key has 1..{MAX_SEALED_BYTES} bytes")]
        )
    tss = _tss()
    with _esapi(cfg) as esys:
        primary = _primary(esys, cfg)
        session = None
        try:
            attrs = tss.TPMA_OBJECT.FIXEDTPM | tss.TPMA_OBJECT.FIXEDPARENT | tss.TPMA_OBJECT.NODA
            counter = _ensure_counter(esys, cfg)
            template = tss.TPM2B_PUBLIC.parse("keyedhash", objectAttributes=attrs)
            template.publicArea.authPolicy = _policy_digest(esys, cfg, counter + 1)
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


def _counter_handle(esys: ESAPI, cfg: KeysConfig) -> Any:
    """The ESYS handle of the NV counter; ConfigError naming ``keys.nv_index`` if absent."""
    tss = _tss()
    try:
        return esys.tr_from_tpmpublic(cfg.nv_index)
    except tss.TSS2_Exception as exc:
        raise ConfigError(
            [("keys.nv_index", hex(cfg.nv_index), f"no NV counter at this index ({exc})")]
        ) from exc


def _read_counter(esys: ESAPI, cfg: KeysConfig) -> int:
    handle = _counter_handle(esys, cfg)
    return int.from_bytes(bytes(esys.nv_read(handle, COUNTER_BYTES, 0, handle)), "big")


def _increment(esys: ESAPI, handle: Any, cfg: KeysConfig) -> None:
    """TPM2_NV_Increment, authorised as the counter's attributes say: by the owner
    hierarchy (owner-write) or by the index's own empty auth (an older counter)."""
    tss = _tss()
    nv_public, _ = esys.nv_read_public(handle)
    if nv_public.nvPublic.attributes & tss.TPMA_NV.OWNERWRITE:
        with _as_owner(esys, cfg) as session:
            esys.nv_increment(handle, auth_handle=tss.ESYS_TR.OWNER, session1=session)
    else:
        esys.nv_increment(handle, handle)


def _ensure_counter(esys: ESAPI, cfg: KeysConfig) -> int:
    """The counter's value, defining it and writing it once when it is not there yet.
    Anyone may read it (PolicyNV needs that; reading is harmless); with ``keys.owner_auth``
    only the owner hierarchy may increment it, else (no owner auth) anyone may."""
    tss = _tss()
    try:
        handle = esys.tr_from_tpmpublic(cfg.nv_index)
    except tss.TSS2_Exception:
        write = tss.TPMA_NV.OWNERWRITE if cfg.owner_auth is not None else tss.TPMA_NV.AUTHWRITE
        attrs = (
            (tss.TPM2_NT.COUNTER << tss.TPMA_NV.TPM2_NT_SHIFT)
            | tss.TPMA_NV.AUTHREAD
            | write
            | tss.TPMA_NV.NO_DA
        )
        public = tss.TPMS_NV_PUBLIC(
            nvIndex=cfg.nv_index,
            nameAlg=tss.TPM2_ALG.SHA256,
            attributes=attrs,
            dataSize=COUNTER_BYTES,
        )
        with _as_owner(esys, cfg) as session:
            handle = esys.nv_define_space(
                None, tss.TPM2B_NV_PUBLIC(nvPublic=public), session1=session
            )
        log.info("defined the TPM NV counter %s (%s)", hex(cfg.nv_index), _writer(attrs))
    nv_public, _ = esys.nv_read_public(handle)
    area = nv_public.nvPublic
    kind = (int(area.attributes) >> int(tss.TPMA_NV.TPM2_NT_SHIFT)) & 0xF
    if kind != int(tss.TPM2_NT.COUNTER):
        raise ConfigError(
            [("keys.nv_index", hex(cfg.nv_index), "this NV index is in use and not a counter")]
        )
    if not area.attributes & tss.TPMA_NV.WRITTEN:
        _increment(esys, handle, cfg)
    return _read_counter(esys, cfg)


def advance(cfg: KeysConfig) -> int:
    """Increment the NV counter (after the blob sealed for its next value is stored): every
    blob sealed before no longer unseals on this TPM. Returns the new value."""
    with _esapi(cfg) as esys:
        handle = _counter_handle(esys, cfg)
        _increment(esys, handle, cfg)
        value = _read_counter(esys, cfg)
    log.info("TPM NV counter %s now %d: older sealed blobs revoked", hex(cfg.nv_index), value)
    return value


CounterWriter = Literal["owner", "index", "other"]


def _writer(attributes: int) -> CounterWriter:
    """Who may increment a counter with these attributes: the owner hierarchy, anyone
    (its own empty auth), or something else (a policy, the platform)."""
    tss = _tss()
    if attributes & tss.TPMA_NV.OWNERWRITE:
        return "owner"
    if attributes & tss.TPMA_NV.AUTHWRITE:
        return "index"
    return "other"


@dataclass(frozen=True)
class HierarchyState:
    """What the TPM says about its hierarchies' auth values and the NV counter."""

    owner_auth_set: bool
    endorsement_auth_set: bool
    lockout_auth_set: bool
    platform_enabled: bool
    counter: CounterWriter | None  # who may increment it; None: not defined yet


def hierarchy_state(cfg: KeysConfig) -> HierarchyState:
    """Read TPM_PT_PERMANENT, TPM_PT_STARTUP_CLEAR and the counter's public area (reading
    only: needs no auth, changes nothing)."""
    tss = _tss()
    with _esapi(cfg, owner=False) as esys:
        permanent = _property(esys, tss.TPM2_PT.PERMANENT)
        startup = _property(esys, tss.TPM2_PT.STARTUP_CLEAR)
        counter: CounterWriter | None = None
        with contextlib.suppress(tss.TSS2_Exception):
            handle = esys.tr_from_tpmpublic(cfg.nv_index)
            nv_public, _ = esys.nv_read_public(handle)
            counter = _writer(int(nv_public.nvPublic.attributes))
    bits = tss.TPMA_PERMANENT
    return HierarchyState(
        owner_auth_set=bool(permanent & bits.OWNERAUTHSET),
        endorsement_auth_set=bool(permanent & bits.ENDORSEMENTAUTHSET),
        lockout_auth_set=bool(permanent & bits.LOCKOUTAUTHSET),
        platform_enabled=bool(startup & tss.TPMA_STARTUP.CLEAR_PHENABLE),
        counter=counter,
    )


_BY_AUTH = "auth"  # a blob sealed before policies: opens by its (empty) auth value


def _match_bound(esys: ESAPI, public: Any, cfg: KeysConfig) -> int | str | None:
    """The counter bound the blob was sealed for (the candidate whose policy digest is the
    blob's), None for a PCR-only blob sealed before the counter, ``_BY_AUTH`` for a
    blob with no policy; ConfigError when no candidate matches (revoked or PCRs moved)."""
    tss = _tss()
    area = public.publicArea
    if area.objectAttributes & tss.TPMA_OBJECT.USERWITHAUTH:
        return _BY_AUTH
    digest = bytes(area.authPolicy)
    candidates: list[int | None] = []
    with contextlib.suppress(ConfigError):
        current = _read_counter(esys, cfg)
        candidates += [current, current + 1]
    for bound in [*candidates, None]:
        if bound is None and not cfg.pcrs:
            continue
        if bytes(_policy_digest(esys, cfg, bound)) == digest:
            return bound
    revoked = (
        f"the blob was replaced by a later seal or rotation (the NV counter "
        f"{hex(cfg.nv_index)} moved past it: use the current blobs)"
    )
    if cfg.pcrs:
        problem = (
            "keys.pcrs",
            str(cfg.pcrs),
            (
                f"the TPM refuses to unseal the device key: the PCRs {_pcr_selection(cfg)} no "
                "longer hold the values they had at sealing (firmware, boot or Secure Boot "
                f"state changed; re-seal it from a trusted state), or {revoked}"
            ),
        )
    else:
        problem = (
            "keys.private_blob",
            str(cfg.private_blob),
            f"the TPM refuses to unseal the device key: {revoked}",
        )
    raise ConfigError([problem])


def pending(sealed: SealedKey, cfg: KeysConfig) -> bool:
    """True when ``sealed`` was sealed for the counter's next value (not yet advanced)."""
    tss = _tss()
    public, _ = tss.TPM2B_PUBLIC.unmarshal(sealed.public)
    with _esapi(cfg) as esys:
        bound = _match_bound(esys, public, cfg)
        return isinstance(bound, int) and bound == _read_counter(esys, cfg) + 1


def pcr_bound(sealed: SealedKey, cfg: KeysConfig) -> bool:
    """True when the sealed object's policy includes PCRs (read from the blob: its policy
    digest is none of the PCR-free ones), never when it opens by its auth value."""
    tss = _tss()
    public, _ = tss.TPM2B_PUBLIC.unmarshal(sealed.public)
    area = public.publicArea
    if area.objectAttributes & tss.TPMA_OBJECT.USERWITHAUTH or not int(area.authPolicy.size):
        return False
    plain = cfg.model_copy(update={"pcrs": []})
    digests: set[bytes] = set()
    with _esapi(cfg) as esys, contextlib.suppress(ConfigError):  # no counter: a PCR policy
        current = _read_counter(esys, cfg)
        digests = {bytes(_policy_digest(esys, plain, b)) for b in (current, current + 1)}
    return bytes(area.authPolicy) not in digests


def unseal(sealed: SealedKey, cfg: KeysConfig) -> bytes:
    """The key sealed in ``sealed``; ConfigError naming the setting when the TPM refuses."""
    return _unseal(sealed, cfg, _match_bound)


def _unseal(
    sealed: SealedKey, cfg: KeysConfig, choose: Callable[[ESAPI, Any, KeysConfig], Any]
) -> bytes:
    """Unseal with the policy ``choose`` picks (tests pass an old blob's real bound)."""
    tss = _tss()
    try:
        public, _ = tss.TPM2B_PUBLIC.unmarshal(sealed.public)
        private, _ = tss.TPM2B_PRIVATE.unmarshal(sealed.private)
    except Exception as exc:
        raise _foreign(cfg, exc) from exc
    with _esapi(cfg) as esys:
        primary = _primary(esys, cfg)
        handles = [primary]
        try:
            try:
                obj = esys.load(primary, private, public)
            except tss.TSS2_Exception as exc:
                raise _foreign(cfg, exc) from exc
            handles.append(obj)
            bound = choose(esys, public, cfg)
            session = _session(esys, primary, "hmac" if bound == _BY_AUTH else "policy", "encrypt")
            handles.append(session)
            try:
                if bound != _BY_AUTH:
                    _policy(esys, session, cfg, bound)
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
