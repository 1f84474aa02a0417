"""``gateway doctor``: check everything an installer wires up and say what is wrong."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config.cameras import CameraConfig
from gateway.config.root import GatewayConfig, format_problems, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.gate.camera import redact_url


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    status: str  # PASS, WARN (works, but fix it), FAIL, SKIP
    detail: str


def _tcp(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def check_storage(cfg: GatewayConfig) -> Check:
    """The database opens, migrates and passes ``integrity_check``."""
    from gateway.store import database as store
    from gateway.store.readonly import open_state

    try:
        db, read_only = open_state(cfg.storage.database_path)
    except (GatewayError, OSError) as exc:
        return Check("storage", "FAIL", str(exc))
    if read_only is not None:
        db.close()
        return Check(
            "storage",
            "FAIL",
            f"DEGRADED: {read_only}; the daemon opens valid cards and PINs from memory but "
            "cannot store changes or events: remount the storage read-write",
        )
    try:
        ok = store.integrity_ok(db)
        version = db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()
    if not ok:
        return Check("storage", "FAIL", f"{cfg.storage.database_path}: integrity_check failed")
    return Check("storage", "PASS", f"{cfg.storage.database_path} (schema {version})")


def check_models(cfg: GatewayConfig) -> Check:
    """The face models are installed and their hashes match."""
    if not cfg.face_doors() or not cfg.face.enabled:
        return Check("models", "SKIP", "no door uses face")
    try:
        from gateway.face.models import verify as verify_models
    except ImportError as exc:
        return Check("models", "FAIL", f"face pipeline unavailable: {exc}")
    try:
        statuses = verify_models(cfg.face.model_dir)
    except GatewayError as exc:
        return Check("models", "FAIL", f"{exc}; run 'gateway models install'")
    bad = [s for s in statuses if not s.ok]
    if bad:
        detail = "; ".join(f"{s.name}: {s.reason}" for s in bad)
        return Check("models", "FAIL", f"{detail}; run 'gateway models install'")
    pair_doors = [
        n
        for n, d in cfg.doors.items()
        if d.uses_face and d.pair is not None and d.pair.kind == "stereo"
    ]
    if pair_doors:
        from gateway.face.landmark_models import landmark_path
        from gateway.face.landmarks import runtime_available

        why = runtime_available()
        try:
            landmark_path(cfg.face.model_dir)
        except GatewayError as exc:
            why = why or str(exc)
        if why is not None:
            return Check("models", "FAIL", f"doors {', '.join(pair_doors)} (camera pair): {why}")
    return Check("models", "PASS", ", ".join(s.name for s in statuses))


def check_camera(name: str, source: str, timeout: float) -> Check:
    """The camera delivers a frame (the frame is discarded at once)."""
    import cv2

    def grab() -> str | None:
        cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
        try:
            if not cap.isOpened():
                return f"cannot open {redact_url(source)}"
            ok, frame = cap.read()
            if not ok or frame is None:
                return f"{redact_url(source)} opened but delivered no frame"
            return None
        finally:
            cap.release()

    async def bounded() -> str | None:
        async with asyncio.timeout(timeout):
            return await asyncio.to_thread(grab)

    try:
        err = asyncio.run(bounded())
    except TimeoutError:
        err = f"no frame from {redact_url(source)} within {timeout:.0f} s"
    return Check(f"camera {name}", "FAIL" if err else "PASS", err or redact_url(source))


def check_configured_camera(name: str, cam: CameraConfig, timeout: float) -> Check:
    """A configured camera with its login: its secret readable, a frame delivered, and a
    WARN for a password still written inside ``source``."""
    try:
        url = cam.stream_url()
    except ConfigError as exc:
        return Check(f"camera {name}", "FAIL", format_problems(exc.problems))
    check = check_camera(name, url, timeout)
    if not cam.inline_password:
        return check
    return Check(
        check.name,
        "WARN" if check.status == "PASS" else check.status,
        f"{check.detail}; password inside 'source': move it to cameras.{name}.password "
        "(a file or systemd credential)",
    )


def check_reader(name: str, url: str, timeout: float) -> Check:
    """The reader's transport is reachable (serial device present, or TCP port open)."""
    parts = urlsplit(url)
    if parts.scheme.endswith("+socket"):
        err = _tcp(parts.hostname or "127.0.0.1", parts.port or 0, timeout)
        return Check(f"reader {name}", "FAIL" if err else "PASS", err or url)
    dev = Path(parts.path)
    if parts.scheme.startswith("wiegand+feed"):
        return Check(f"reader {name}", "SKIP", "in-process feed")
    if not dev.exists():
        return Check(f"reader {name}", "FAIL", f"{dev} does not exist")
    if not os.access(dev, os.R_OK | os.W_OK):
        return Check(f"reader {name}", "FAIL", f"{dev} is not readable and writable by this user")
    return Check(f"reader {name}", "PASS", str(dev))


def check_broker(cfg: GatewayConfig, timeout: float) -> Check:
    """The MQTT broker accepts TCP connections."""
    if not cfg.mqtt.enabled or cfg.mqtt.url is None:
        return Check("broker", "SKIP", "no broker configured (events stay in the outbox)")
    parts = urlsplit(cfg.mqtt.url)
    port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    err = _tcp(parts.hostname or "localhost", port, timeout)
    return Check("broker", "FAIL" if err else "PASS", err or cfg.mqtt.url)


def check_keys(cfg: GatewayConfig) -> Check:
    """Which provider holds the device key; WARN on a clear key file and on a TPM seal not
    bound to PCRs, FAIL when the TPM does not unseal it."""
    from gateway.keys import device_key_provider

    provider = device_key_provider(cfg)
    if provider.name == "file":
        return Check(
            "device key",
            "WARN",
            f"file provider: the key is in clear on disk ({provider.describe()}); seal it to "
            "the TPM: 'gateway keys seal --from FILE --remove-clear', keys.provider = \"tpm\"",
        )
    try:
        provider.device_key()
    except GatewayError as exc:
        return Check("device key", "FAIL", f"{provider.name} provider: {exc}")
    from gateway import tpm

    if not tpm.pcr_bound(tpm.read_blobs(cfg.keys), cfg.keys):  # the blob itself, not the config
        return Check(
            "device key",
            "WARN",
            f"{provider.name} provider: {provider.describe()}: the seal is not bound to PCRs "
            "(another boot chain on this board unseals it): set keys.pcrs (e.g. [7]) and "
            "run 'gateway keys seal' again",
        )
    return Check("device key", "PASS", f"{provider.name} provider: {provider.describe()}")


def _mode(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0  # unreadable: the device key check names it


def check_tpm_hierarchy(cfg: GatewayConfig) -> Check:
    """With the TPM provider: WARN, saying what it allows and how to fix it, for each TPM
    setting that lets any process with TPM access lock the gate out of its sealed key."""
    from gateway import tpm

    keys = cfg.keys
    try:
        state = tpm.hierarchy_state(keys)
    except GatewayError as exc:
        return Check("TPM hierarchies", "FAIL", str(exc))
    risks: list[str] = []
    if not state.lockout_auth_set:
        risks.append(
            "the lockout auth is empty: any process that can open the TPM can clear it "
            "(TPM2_Clear), and with it the sealed device key; set one ('tpm2_changeauth -c "
            "lockout') and keep it off the board"
        )
    if not state.owner_auth_set:
        risks.append(
            f"the owner auth is empty: any process that can open the TPM can advance or "
            f"undefine the NV counter {keys.nv_index:#x} and so lock the device key out; set "
            "one ('tpm2_changeauth -c owner file:FILE', FILE 0600 without a trailing newline) "
            'and keys.owner_auth = { file = "FILE" }'
        )
    if state.counter == "index":
        risks.append(
            f"the NV counter {keys.nv_index:#x} is written with its own empty auth: any "
            "process that can open the TPM can advance it and lock the device key out; the "
            "gateway does not migrate an existing counter (redefining it revokes the sealed "
            "key): with the clear device key file at hand and keys.owner_auth set, undefine "
            f"it ('tpm2_nvundefine -C o -P file:FILE {keys.nv_index:#x}') and seal again "
            "('gateway keys seal --from KEYFILE --force'): the new counter is owner-write"
        )
    ref = keys.owner_auth
    mode = _mode(ref.file) if ref is not None and ref.file is not None else 0
    if mode & 0o077:
        risks.append(
            f"keys.owner_auth is readable by other users (mode {mode:o}): they can advance "
            "or undefine the NV counter with it: chmod 0600 it"
        )
    if state.platform_enabled:
        risks.append(
            "the platform hierarchy is enabled: with its (usually empty) auth any process "
            "that can open the TPM can clear it or disable the owner hierarchy; the firmware "
            "should disable it at boot (TPM2_HierarchyControl)"
        )
    if risks:
        return Check("TPM hierarchies", "WARN", "; ".join(risks))
    counter = {
        "owner": "owner-write",
        "other": "not writable by its own auth",
        None: "not defined yet (owner-write at the first seal)",
    }[state.counter]
    return Check(
        "TPM hierarchies",
        "PASS",
        f"lockout and owner auths set, platform hierarchy disabled, NV counter {counter}",
    )


def check_template_protection(cfg: GatewayConfig) -> Check:
    """Which template protection mode is in use; FAIL when the stored templates were made
    under another one (the daemon refuses to start)."""
    from gateway.privacy import protection_record
    from gateway.store.readonly import open_state

    mode = cfg.privacy.template_protection
    try:
        db, _ = open_state(cfg.storage.database_path)
    except (GatewayError, OSError) as exc:
        return Check("template protection", "WARN", f"{mode}; the database: {exc}")
    try:
        problem = protection_record.mismatch(db.conn, mode)
        count = protection_record.template_count(db.conn)
    finally:
        db.close()
    if problem is not None:
        return Check("template protection", "FAIL", problem)
    return Check("template protection", "PASS", f"{mode} ({count} templates stored under it)")


def check_gates_key(cfg: GatewayConfig) -> Check:
    """WARN while the site key (which the office holds) stands in for the gates key; FAIL
    for a configured gates key file that is missing (the daemon refuses to start). The roster
    office needs none (its gates apply their own transform): WARN when it has one."""
    ref = cfg.privacy.gates_key
    if cfg.roster.role == "office":
        if ref is None:
            return Check("gates key", "PASS", "none at the office (each gate applies its own)")
        return Check(
            "gates key",
            "WARN",
            "the office needs no gates key: if this is the gates' key, run 'gateway keys "
            "rotate --what transform' here (never copy the new one to a gate), then remove "
            "the gates' key from this machine",
        )
    if ref is not None and ref.file is not None and not ref.file.exists():
        return Check(
            "gates key",
            "FAIL",
            f"{ref.file} is missing: restore it, or create it with 'gateway keys rotate "
            "--what transform' (the daemon does not start without it)",
        )
    if ref is None:
        return Check(
            "gates key",
            "WARN",
            "the template transform and bundle keys come from the site key, which the office "
            "holds too: set privacy.gates_key to a file and run 'gateway keys rotate --what "
            "transform'",
        )
    return Check("gates key", "PASS", "template transform keyed by the site's gates only")


def check_web(cfg: GatewayConfig) -> Check:
    """The web console: off, or its addresses and its certificate's SHA-256 fingerprint
    (compare it with what the browser shows before trusting a self-signed one)."""
    if not cfg.web.enabled:
        return Check("web console", "SKIP", "off ([web] enabled = false)")
    from gateway.web.tls import CERT_NAME, fingerprint

    w = cfg.web
    cert = w.cert_file or cfg.storage.state_dir / CERT_NAME
    where = ", ".join(f"https://{f'[{a}]' if ':' in a else a}:{w.port}/" for a in w.listen)
    if not cert.is_file():
        if w.cert_file is not None:
            return Check("web console", "FAIL", f"{cert} is missing ({where})")
        return Check("web console", "PASS", f"{where}; self-signed certificate made at first start")
    try:
        fp = fingerprint(cert.read_bytes())
    except (OSError, ValueError) as exc:
        return Check("web console", "FAIL", f"{cert}: {exc}")
    return Check("web console", "PASS", f"{where}; certificate SHA-256 {fp}")


def run_checks(cfg: GatewayConfig, timeout: float) -> list[Check]:
    """Every check, in the order an installer fixes things."""
    from gateway.cli.environment_checks import environment_problems

    checks: list[Check] = []
    problems = environment_problems(cfg)
    checks.append(
        Check(
            "secrets & notice",
            "FAIL" if problems else "PASS",
            format_problems(problems).replace("\n", "; ") if problems else "readable",
        )
    )
    checks.append(check_keys(cfg))
    if cfg.keys.provider == "tpm":
        checks.append(check_tpm_hierarchy(cfg))
    checks.append(check_gates_key(cfg))
    checks.append(check_template_protection(cfg))
    checks.append(check_storage(cfg))
    checks.append(check_models(cfg))
    checks.extend(check_configured_camera(name, cam, timeout) for name, cam in cfg.cameras.items())
    for name, reader in cfg.readers.items():
        checks.append(check_reader(name, reader.url, timeout))
    checks.append(check_broker(cfg, timeout))
    checks.append(check_web(cfg))
    return checks


def doctor_rows(cfg: GatewayConfig, timeout: float = 3.0) -> list[tuple[str, str, str]]:
    """The doctor's table for the running daemon's web console (check, status, detail)."""
    return [(c.name, c.status, c.detail) for c in run_checks(cfg, timeout)]


def render(checks: list[Check], write: Callable[[str], object] = sys.stdout.write) -> None:
    """Print the pass/fail table."""
    width = max((len(c.name) for c in checks), default=10)
    for c in checks:
        write(f"{c.status:<4}  {c.name:<{width}}  {c.detail}\n")


def run_doctor(config_path: Path, timeout: float = 3.0) -> int:
    """Exit 0 when nothing failed, 1 otherwise (2 for an invalid config)."""
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        render([Check("config", "FAIL", str(config_path))])
        print(format_problems(exc.problems), file=sys.stderr)
        return 2
    checks = [Check("config", "PASS", str(config_path)), *run_checks(cfg, timeout)]
    render(checks)
    return 1 if any(c.status == "FAIL" for c in checks) else 0
