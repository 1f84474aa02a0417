"""The console's TLS: the configured certificate and key, or a self-signed pair made at
first start in the state directory (key 0600), whose SHA-256 fingerprint is logged."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import secrets
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config.web import SELF_SIGNED_KEY, WebConfig
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

CERT_NAME = "web-cert.pem"
KEY_NAME = SELF_SIGNED_KEY


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of a PEM certificate, as colon-separated hex."""
    der = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in der)


def self_signed(state_dir: Path, addresses: list[str], host: str) -> tuple[Path, Path]:
    """The self-signed certificate and key in ``state_dir`` (made when absent; GatewayError
    for an existing key that group or others may read)."""
    cert, key = state_dir / CERT_NAME, state_dir / KEY_NAME
    if cert.is_file() and key.is_file():
        if key.stat().st_mode & 0o077:
            raise GatewayError(f"{key} may be read by group or others: chmod 600 it")
        return cert, key
    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"access-gateway {host}")])
    now = dt.datetime.now(dt.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(host)]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    crt = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pk.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(pk, hashes.SHA256())
    )
    key_pem = pk.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    state_dir.mkdir(parents=True, exist_ok=True)
    _write_new(key, key_pem, 0o600)
    _write_new(cert, crt.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("web console: self-signed certificate made in %s", state_dir)
    return cert, key


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """``data`` to a new file beside ``path`` (O_EXCL, ``mode`` from the start), renamed
    over ``path``: never a moment with the key readable, nor a half-written file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def server_context(cfg: WebConfig, state_dir: Path, host: str) -> tuple[ssl.SSLContext, str]:
    """The TLS server context (TLS 1.2+) and the certificate's fingerprint."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert_file is not None and cfg.key is not None:
        key_pem = cfg.key.read_bytes()
        # ssl loads a key only from a file: a private temporary one, removed at once
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".web-key-") as tmp:
            tmp.write(key_pem)
            tmp.flush()
            ctx.load_cert_chain(cfg.cert_file, tmp.name)
        cert = cfg.cert_file
    else:
        cert, key = self_signed(state_dir, cfg.listen, host)
        ctx.load_cert_chain(cert, key)
    return ctx, fingerprint(cert.read_bytes())
