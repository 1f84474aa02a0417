"""CLI: ``people``, ``consent``, ``enroll``, ``zones``, ``audit``, ``compliance``, ``purge``.

Paths and secrets come from options for now (the lead binds them to the configuration):
``--db`` (default ``$GATEWAY_STORAGE__DATABASE`` or /var/lib/access-gateway/state.db),
``--device-key``/``--site-key`` files (default: systemd credentials ``device-key``,
``site-key``), ``--notice-file``/``--notice-version``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from gateway.config.root import GatewayConfig
from gateway.config.settings import face_settings
from gateway.errors import GatewayError, PrivacyError
from gateway.privacy import audit, compliance, consent, people, retention, zones
from gateway.privacy.enroll import EnrolmentError, SampleVerdict, enroll_images
from gateway.privacy.notice import Notice, load_notice
from gateway.privacy.vault import Vault, load_key
from gateway.privacy.withdraw import withdraw

log = logging.getLogger(__name__)

DEFAULT_DB = Path("/var/lib/access-gateway/state.db")

Sub = argparse._SubParsersAction


def _common(p: argparse.ArgumentParser, *, keys: bool = False, notice: bool = False) -> None:
    p.add_argument(
        "--db",
        type=Path,
        default=None,
        help="state database (default: from --config, else $GATEWAY_STORAGE__DATABASE, "
        f"else {DEFAULT_DB})",
    )
    p.add_argument("--actor", default=os.environ.get("USER", "operator"), help="who does this")
    if not keys:
        p.add_argument(
            "--device-key",
            type=Path,
            help="device key file (0600), keys the audit chain; default: "
            "$CREDENTIALS_DIRECTORY/device-key",
        )
    if keys:
        p.add_argument(
            "--device-key",
            type=Path,
            help="device key file (0600); default: $CREDENTIALS_DIRECTORY/device-key",
        )
        p.add_argument(
            "--site-key",
            type=Path,
            help="site key file (0600); default: $CREDENTIALS_DIRECTORY/site-key",
        )
    if notice:
        p.add_argument("--notice-file", type=Path, help="the notice text shown (UTF-8)")
        p.add_argument("--notice-version", help="version of that notice")
    p.add_argument(
        "--renotice-grace-days",
        type=float,
        default=30.0,
        help="days face use continues after a notice change (default %(default)s)",
    )


def _config(args: argparse.Namespace) -> Any:
    """The gateway configuration when ``--config`` names a readable file, else None."""
    if not hasattr(args, "_gateway_cfg"):
        cfg = None
        path = getattr(args, "config", None)
        if path is not None and Path(path).is_file():
            from gateway.config.root import load_config

            cfg = load_config(path)
        args._gateway_cfg = cfg
    return args._gateway_cfg


def _db_path(args: argparse.Namespace) -> Path:
    if args.db is not None:
        return Path(args.db)
    cfg = _config(args)
    if cfg is not None:
        return Path(cfg.storage.database_path)
    env_db = os.environ.get("GATEWAY_STORAGE__DATABASE")
    return Path(env_db) if env_db else DEFAULT_DB


_BOUND_HERE: set[Path] = set()
"""Databases whose keys a CLI command bound (one process may run several commands)."""


def _open_db(args: argparse.Namespace, *, write: bool = True) -> sqlite_utils.Database:
    """The state database, with the device's audit and access-log keys bound when available.

    ``write``: the command will audit; on a keyed chain without the device key it is refused
    here, before it changes anything (never half done, never an unkeyed audit row).
    """
    from gateway.store import database as store

    path = _db_path(args)
    db = store.connect(path, create=False) if path.exists() else store.connect(path)
    device = _device_key_if_any(args)
    if device is not None:  # the audit chain and the access log are keyed per device
        from gateway.privacy import access_log

        audit.bind_key(db, audit.ChainKey.from_device(device))
        access_log.bind_key(db, access_log.key_from_device(device))
        _BOUND_HERE.add(path)
    else:
        if path in _BOUND_HERE:  # a key an earlier command of this process bound: not ours
            from gateway.privacy import access_log

            audit.bind_key(db, None)
            access_log.bind_key(db, None)
            _BOUND_HERE.discard(path)
        if write and audit.bound_key(db) is None and audit.is_keyed(db):
            raise GatewayError(audit.KEYED_RULE)
    return db


def _device_key_if_any(args: argparse.Namespace) -> bytes | None:
    """The device root key from --device-key, --config or the credentials, else None."""
    explicit = getattr(args, "device_key", None)
    cfg = _config(args)
    try:
        if explicit is None and cfg is not None and cfg.privacy.device_key is not None:
            from gateway.keys import Keys

            return Keys.from_config(cfg).device
        return load_key(explicit, "device-key")
    except GatewayError:
        if explicit is not None:
            raise
        return None


def _vault(args: argparse.Namespace) -> Vault:
    return Vault.from_root_keys(*_root_keys(args))


def _root_keys(args: argparse.Namespace) -> tuple[bytes, bytes]:
    """(device key, site key) from --device-key/--site-key, else --config, else credentials."""
    cfg = _config(args)
    if cfg is not None and args.device_key is None and args.site_key is None:
        from gateway.keys import Keys

        keys = Keys.from_config(cfg)
        return keys.device, keys.site
    return load_key(args.device_key, "device-key"), load_key(args.site_key, "site-key")


def _credentials(args: argparse.Namespace, db: sqlite_utils.Database) -> Any:
    """The gateway's card/PIN store, keyed exactly as the daemon keys it."""
    from gateway.credentials.store import Credentials
    from gateway.keys import Keys

    device, site = _root_keys(args)
    return Credentials(db, device, index_key=Keys(device, site).pin_index_site)


def _people_add_card(args: argparse.Namespace) -> int:
    db = _open_db(args)
    people.get_person(db, args.person)  # a clear error for an unknown id
    number = args.number
    if number is None:
        number = sys.stdin.readline().strip()
    if not str(number).isdigit():
        raise GatewayError("the card number must be digits (from --number or stdin)")
    card_id = _credentials(args, db).add_card(args.person, args.facility, int(number), time.time())
    audit.append(db, args.actor, "card.added", args.person, {"card_id": card_id})
    print(f"card added for {args.person} (stored as a keyed hash only)")
    return 0


def _people_set_pin(args: argparse.Namespace) -> int:
    db = _open_db(args)
    people.get_person(db, args.person)
    pin = sys.stdin.readline().strip()  # never on the command line (shell history, ps)
    from gateway.services import credentials as svc

    deps = svc.CredentialDeps(_credentials(args, db))
    svc.set_pin(deps, args.person, pin, actor=args.actor, channel="cli", kind=args.kind)
    print(f"{args.kind} PIN set for {args.person} (stored as an argon2id hash only)")
    return 0


def _notice(args: argparse.Namespace) -> Notice:
    cfg = _config(args)
    if args.notice_file is None and cfg is not None and cfg.privacy.notice_file is not None:
        return load_notice(cfg.privacy.notice_file, cfg.privacy.notice_version)
    if args.notice_file is None or not args.notice_version:
        raise GatewayError(
            "--notice-file and --notice-version are required: consent is "
            "recorded against the exact notice shown"
        )
    return load_notice(args.notice_file, args.notice_version)


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        d = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise GatewayError(f"{value!r} is not an ISO date (YYYY-MM-DD[THH:MM])") from exc
    if d.tzinfo is None:
        d = d.astimezone()
    return d.timestamp()


def _fmt_ts(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


class _NullGallery:
    """The CLI enrols into the database; the daemon loads the gallery at start/reload."""

    def replace_person(self, person_id: str, templates: np.ndarray) -> None:
        """Nothing to update offline."""

    def remove_person(self, person_id: str) -> int:
        """Nothing to remove offline."""
        return 0


# --- people -----------------------------------------------------------------------------


def _people_add(args: argparse.Namespace) -> int:
    db = _open_db(args)
    pid = people.add_person(
        db,
        args.name,
        unit=args.unit,
        role=args.role,
        access_group=args.group,
        valid_from=_ts(args.valid_from),
        valid_until=_ts(args.valid_until),
        is_minor=args.minor,
        birth_month=args.birth,
        guardian_id=args.guardian,
        actor=args.actor,
    )
    print(pid)
    return 0


def _people_list(args: argparse.Namespace) -> int:
    db = _open_db(args, write=False)
    enrolled = {r[0] for r in db.execute("SELECT person_id FROM face_keys")}
    print(f"{'id':32}  {'role':9} {'unit':8} {'face':4} {'consent':9} name")
    for p in people.list_people(db):
        rec = consent.latest(db, p.id)
        print(
            f"{p.id:32}  {p.role:9} {p.unit:8} {'yes' if p.id in enrolled else 'no':4} "
            f"{rec.status if rec else '-':9} {p.display_name}{' (minor)' if p.is_minor else ''}"
        )
    return 0


def _people_show(args: argparse.Namespace) -> int:
    db = _open_db(args, write=False)
    p = people.get_person(db, args.person)
    n = db.execute("SELECT count(*) FROM templates WHERE person_id = ?", [p.id]).fetchone()[0]
    st = consent.face_status(db, p.id, grace_days=args.renotice_grace_days)
    print(f"id:            {p.id}\nname:          {p.display_name}\nunit:          {p.unit}")
    print(f"role:          {p.role}\ngroup:         {p.access_group}")
    print(f"valid:         {_fmt_ts(p.valid_from)} .. {_fmt_ts(p.valid_until)}")
    print(f"minor:         {'yes, guardian ' + str(p.guardian_id) if p.is_minor else 'no'}")
    print(f"templates:     {n}\nface allowed:  {'yes' if st.allowed else 'no'} ({st.reason})")
    print(f"card/PIN:      {'yes' if people.person_has_non_face_credential(db, p.id) else 'NO'}")
    print(f"last seen:     {_fmt_ts(p.last_seen_at)}")
    return 0


def _site_root(args: argparse.Namespace) -> bytes:
    """The SITE root key (from --site-key, else the config, else the systemd credential)."""
    cfg = _config(args)
    if cfg is not None and args.site_key is None:
        from gateway.keys import Keys

        return Keys.from_config(cfg).site
    return load_key(args.site_key, "site-key")


def _people_export_bundle(args: argparse.Namespace) -> int:
    from gateway.privacy.sync import export_sync_args

    db = _open_db(args)
    sync_args = export_sync_args(
        db,
        _vault(args),
        args.person,
        _site_root(args),
        actor=args.actor,
        grace_days=args.renotice_grace_days,
    )
    data = (json.dumps(sync_args, indent=1) + "\n").encode("utf-8")
    fd = os.open(args.out, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    args.out.chmod(0o600)
    print(
        f"{sync_args['bundle']['count']} templates of {args.person} exported (encrypted for "
        f"this site) -> {args.out}; send it as the args of a signed sync_person command"
    )
    return 0


# --- consent ----------------------------------------------------------------------------


def _consent_grant(args: argparse.Namespace) -> int:
    db = _open_db(args)
    n = _notice(args)
    cid = consent.grant(
        db,
        args.person,
        n,
        method=args.method,
        recorded_by=args.recorded_by or args.actor,
        scope=args.scope,
        guardian_id=args.guardian,
    )
    print(f"consent {cid} granted under notice {n.version} ({n.sha256[:12]}...)")
    return 0


def _consent_decline(args: argparse.Namespace) -> int:
    db = _open_db(args)
    n = _notice(args)
    consent.decline(
        db,
        args.person,
        n,
        method=args.method,
        recorded_by=args.recorded_by or args.actor,
        guardian_id=args.guardian,
    )
    print(f"declined under notice {n.version}; this person will not be asked again")
    return 0


def _consent_withdraw(args: argparse.Namespace) -> int:
    db = _open_db(args)
    t0 = time.monotonic()
    receipt = withdraw(
        db, _vault(args), _NullGallery(), args.person, args.channel, actor=args.actor
    )
    print(
        f"withdrawn: {receipt.templates_erased} templates erased in "
        f"{time.monotonic() - t0:.2f} s; receipt {receipt.id}; card/PIN unaffected"
    )
    print(
        "the running daemon drops the person from its live gallery within a second and "
        "announces the withdrawal to the site's other gates, which erase their copies; "
        "if it is not running, it does so when it starts"
    )
    return 0


def _consent_show(args: argparse.Namespace) -> int:
    db = _open_db(args, write=False)
    people.get_person(db, args.person)
    for r in consent.history(db, args.person):
        print(
            f"{r.id:5} {_fmt_ts(r.created_at)} {r.status:9} notice {r.notice_version} "
            f"({r.notice_sha256[:12]}) {r.method:6} by {r.recorded_by} scope {r.scope}"
            f"{' guardian ' + r.guardian_id if r.guardian_id else ''}"
        )
    st = consent.face_status(db, args.person, grace_days=args.renotice_grace_days)
    print(f"face processing: {'allowed' if st.allowed else 'not allowed'} ({st.reason})")
    return 0


def _consent_notice(args: argparse.Namespace) -> int:
    db = _open_db(args)
    flagged = consent.set_notice(db, _notice(args), actor=args.actor)
    print(f"notice {args.notice_version} in force; {flagged} people flagged for re-notice")
    return 0


# --- enroll -----------------------------------------------------------------------------


def _progress_bar(i: int, n: int, name: str) -> None:
    width = 30
    filled = int(width * i / max(n, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {i}/{n} {name[:30]:30}")
    if i == n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _verdict_table(verdicts: list[SampleVerdict]) -> None:
    w = max([5, *(len(v.source) for v in verdicts)])
    print(f"{'image':{w}}  verdict")
    for v in verdicts:
        print(f"{v.source:{w}}  {v.verdict}")


DEFAULT_MODEL_DIR = Path("/var/lib/access-gateway/models")


def _load_pipeline(model_dir: Path, cfg: GatewayConfig | None) -> Any:
    try:
        from gateway.face.pipeline import FacePipeline
        from gateway.face.settings import FaceSettings
    except ImportError as exc:
        raise GatewayError(f"the face pipeline is not available in this build: {exc}") from exc
    return FacePipeline.load(model_dir, FaceSettings() if cfg is None else face_settings(cfg))


def _enroll(args: argparse.Namespace) -> int:
    db = _open_db(args)
    vault = _vault(args)
    consent.require_consent(db, args.person, grace_days=args.renotice_grace_days)
    if not people.person_has_non_face_credential(db, args.person):
        raise GatewayError(
            f"person {args.person} has no card or PIN: face must never be the only way in "
            "(Art. 10); give them one first (gateway people add-card / people set-pin)"
        )
    cfg = _config(args)
    model_dir = args.model_dir or (cfg.face.model_dir if cfg is not None else DEFAULT_MODEL_DIR)
    pipeline = _load_pipeline(model_dir, cfg)
    try:
        res = enroll_images(
            db,
            vault,
            pipeline,
            _NullGallery(),
            args.person,
            args.images,
            _progress_bar,
            min_good=args.min_good,
            max_templates=args.max_templates,
            actor=args.actor,
            grace_days=args.renotice_grace_days,
        )
    except EnrolmentError as exc:
        _verdict_table(exc.verdicts)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _verdict_table(res.verdicts)
    print(
        f"{res.stored} templates stored (encrypted), {res.rejected} images rejected; "
        "no image was stored"
    )
    return 0


# --- zones ------------------------------------------------------------------------------


def _zones_from_config(args: argparse.Namespace) -> tuple[str | None, list[Any]]:
    cfg_path = getattr(args, "config", None)
    if cfg_path is None or not Path(cfg_path).exists():
        return None, []
    from gateway.config.root import load_config

    cfg = load_config(cfg_path)
    cam = cfg.cameras.get(args.camera)
    if cam is None:
        raise GatewayError(f"camera {args.camera!r} is not in {cfg_path}")
    return cam.source, [z.polygon for z in cam.zones]


def _zones_preview(args: argparse.Namespace) -> int:
    import cv2

    cfg_source, cfg_polys = _zones_from_config(args)
    source = args.source or cfg_source
    # The camera's configured zones are always applied; --zones can only ADD zones to try.
    polys = list(cfg_polys)
    if args.zones is not None:
        raw = (
            json.loads(args.zones)
            if args.zones.lstrip().startswith("[")
            else json.loads(Path(args.zones).read_text(encoding="utf-8"))
        )
        polys += [z["polygon"] if isinstance(z, dict) else z for z in raw]
    if args.image is not None:
        from gateway.face.image import load_image

        frame = load_image(args.image)  # ImageError: header-checked, capped, regular files only
    elif source is not None:
        frame = zones.grab_frame(source)
    else:
        raise GatewayError(
            f"camera {args.camera}: give --source URL or --image FILE "
            "(or a config with this camera)"
        )
    out, blurred = zones.render_preview(frame, polys, _preview_detector(args))
    # The one image the gateway ever writes: on the installer's explicit request, locally,
    # 0600, with every configured no-capture zone blanked (Art. 13 installer aid).
    ok, png = cv2.imencode(".png", out)  # privacy-ok: zones preview, reviewed, see above
    if not ok:
        raise GatewayError(f"cannot encode the preview for {args.out}")
    # Created 0600 from the first byte (not chmod-ed after the fact).
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, png.tobytes())
    finally:
        os.close(fd)
    faces = (
        "no face detector: the whole frame is blurred (fail private)"
        if blurred is None
        else f"{blurred} face(s) outside the zones blurred"
    )
    print(f"camera {args.camera}: {len(polys)} zone(s) blanked and outlined; {faces} -> {args.out}")
    return 0


def _preview_detector(args: argparse.Namespace) -> Any:
    """The face detector for the preview's blurring, or None (then everything is blurred)."""
    from gateway.errors import ModelError
    from gateway.face import models
    from gateway.face.detector import OpenCVYuNet

    cfg = _config(args)
    model_dir = args.model_dir or (cfg.face.model_dir if cfg is not None else DEFAULT_MODEL_DIR)
    try:
        path = models.require(Path(model_dir))[models.YUNET]
        # a low threshold: a missed passer-by is worse than a blurred background patch
        return OpenCVYuNet(path, input_size=None, score_threshold=0.5)
    except (ModelError, OSError, KeyError) as exc:
        log.warning("zones preview: no face detector (%s)", exc)
        return None


# --- audit, compliance, purge -----------------------------------------------------------


def _audit_verify(args: argparse.Namespace) -> int:
    res = audit.verify(_open_db(args, write=False))
    if res.ok and res.unchecked:
        print(
            f"audit chain links ok: {res.rows} entries, but {res.unchecked} keyed entries "
            "were not MAC-checked: pass --device-key (or --config) to verify them"
        )
        return 1
    if res.ok:
        print(f"audit chain ok: {res.rows} entries (head seq {res.head_seq})")
        return 0
    print(f"audit chain BROKEN at seq {res.broken_seq}: {res.reason}")
    return 1


_RETENTION_FIELDS = (
    "access_log_days",
    "inactive_template_days",
    "expired_person_days",
    "visitor_pin_grace_days",
    "processing_records_years",
    "audit_days",
    "audit_max_rows",
    "people_inactive_days",
)


def _policy(args: argparse.Namespace) -> retention.RetentionPolicy:
    """The ``[retention]`` periods of --config (the daemon's), each overridable by a flag."""
    cfg = _config(args)
    base = retention.RetentionPolicy()
    values: dict[str, int] = {}
    for name in _RETENTION_FIELDS:
        flag = getattr(args, name, None)
        if flag is not None:
            values[name] = flag
        elif cfg is not None:
            values[name] = getattr(cfg.retention, name)
        else:
            values[name] = getattr(base, name)
    return retention.RetentionPolicy(**values)


def _retention_opts(p: argparse.ArgumentParser) -> None:
    for name in _RETENTION_FIELDS:
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=None,
            help="default: [retention] of --config, else the built-in default",
        )


def _load_json(value: str | None) -> Any:
    if value is None:
        return None
    text = value if value.lstrip().startswith(("{", "[")) else Path(value).read_text("utf-8")
    return json.loads(text)


def _compliance_report(args: argparse.Namespace) -> int:
    db = _open_db(args, write=False)
    cfg = _config(args)
    gate = args.gate or (cfg.site.gate if cfg is not None else os.uname().nodename)
    gate_counts: dict[str, int] = dict(_load_json(args.gate_counts) or {})
    if args.from_mqtt:
        gate_counts.update(_counts_from_mqtt(cfg, gate))
    cams = [compliance.CameraRecord(**c) for c in (_load_json(args.cameras) or [])]
    if not cams and cfg is not None:
        cams = [
            compliance.CameraRecord(
                name, cam.space.value, cam.signage_installed, cam.signage_recorded or ""
            )
            for name, cam in cfg.cameras.items()
        ]
    ref, date = args.assessment_ref, args.assessment_date
    if ref is None and cfg is not None and cfg.privacy.impact_assessment is not None:
        ref = cfg.privacy.impact_assessment.reference
        date = date or cfg.privacy.impact_assessment.date.isoformat()
    report = compliance.compliance_report(
        db,
        gate=gate,
        today=dt.datetime.now().astimezone().date(),
        thresholds=compliance.Thresholds(
            args.warn_people,
            args.filing_threshold,
            tuple(dt.date.fromisoformat(h) for h in args.holiday),
        ),
        gate_counts=gate_counts,
        cameras=cams,
        assessment_ref=ref,
        assessment_date=dt.date.fromisoformat(date) if date else None,
        retention=_policy(args),
    )
    print(
        json.dumps(report, indent=1, ensure_ascii=False)
        if args.json
        else compliance.format_report(report)
    )
    return 2 if report["compound"]["level"] == "filing_required" else 0


def _counts_from_mqtt(cfg: Any, gate: str) -> dict[str, int]:
    """The other gates' last published counts (their retained status on the broker)."""
    import asyncio

    from gateway.mqtt.fleet import collect_counts, settings_from_config

    if cfg is None:
        raise PrivacyError("--from-mqtt needs --config (the [mqtt] section of this gate)")
    settings = settings_from_config(cfg)
    if settings is None:
        raise PrivacyError("--from-mqtt: no broker configured (mqtt.url)")
    found = asyncio.run(collect_counts(settings, cfg.mqtt.topic_prefix, cfg.site.id))
    for g in found.values():
        if g.state != "online":
            print(f"note: gate {g.gate} is {g.state}; its last count is used", file=sys.stderr)
    return {g.gate: g.enrolled_people for g in found.values() if g.gate != gate}


def _compliance_export(args: argparse.Namespace) -> int:
    n = compliance.export_records(_open_db(args), args.format, args.out, actor=args.actor)
    print(f"{n} processing records written to {args.out}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    db = _open_db(args)
    rep = retention.run_purge(db, _vault(args), _NullGallery(), _policy(args), time.time())
    print(json.dumps(rep.__dict__))
    return 0


def _safe(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (GatewayError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def register(subparsers: Sub[argparse.ArgumentParser]) -> None:
    """Add the privacy subcommands."""
    # people
    pp = subparsers.add_parser("people", help="people on record (no biometrics)")
    ps = pp.add_subparsers(dest="people_command", metavar="ACTION", required=True)
    a = ps.add_parser("add", help="add a person; prints the new id")
    a.add_argument("name")
    a.add_argument("--unit", default="")
    a.add_argument("--role", choices=people.ROLES, default="resident")
    a.add_argument("--group", default="residents", help="access group")
    a.add_argument("--valid-from", help="ISO date/time")
    a.add_argument("--valid-until", help="ISO date/time")
    a.add_argument("--minor", action="store_true", help="under 14: needs --guardian")
    a.add_argument(
        "--birth",
        metavar="YYYY-MM",
        help="birth year and month: under 14 needs --guardian, and guardian consent "
        "lapses at 14 (own consent then needed)",
    )
    a.add_argument("--guardian", help="guardian's person id (an adult on record)")
    _common(a)
    a.set_defaults(func=_safe(_people_add))
    lst = ps.add_parser("list", help="list people")
    _common(lst)
    lst.set_defaults(func=_safe(_people_list))
    ac = ps.add_parser("add-card", help="give a person a card (stored as a keyed hash only)")
    ac.add_argument("person")
    ac.add_argument("--number", help="card number (default: read from stdin)")
    ac.add_argument("--facility", type=int, default=None, help="facility code, if any")
    _common(ac, keys=True)
    ac.set_defaults(func=_safe(_people_add_card))
    sp = ps.add_parser("set-pin", help="set a person's PIN, read from stdin (argon2id hash only)")
    sp.add_argument("person")
    sp.add_argument("--kind", choices=("normal", "duress"), default="normal")
    _common(sp, keys=True)
    sp.set_defaults(func=_safe(_people_set_pin))
    from gateway.cli.credentials import register as register_credentials

    register_credentials(ps)
    sh = ps.add_parser("show", help="show one person")
    sh.add_argument("person")
    _common(sh)
    sh.set_defaults(func=_safe(_people_show))
    xb = ps.add_parser(
        "export-bundle",
        help="write a person's encrypted template bundle (sync_person args; scope compound)",
    )
    xb.add_argument("person")
    xb.add_argument("--out", type=Path, required=True, help="JSON file to write (mode 0600)")
    _common(xb, keys=True)
    xb.set_defaults(func=_safe(_people_export_bundle))

    # consent
    cp = subparsers.add_parser("consent", help="face-processing consent")
    cs = cp.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    for name, fn, helptext in (
        ("grant", _consent_grant, "record consent given on the notice shown"),
        ("decline", _consent_decline, "record that the person declined"),
    ):
        g = cs.add_parser(name, help=helptext)
        g.add_argument("person")
        g.add_argument("--method", choices=consent.METHODS, required=True)
        g.add_argument("--recorded-by", help="who recorded it (default --actor)")
        g.add_argument("--guardian", help="guardian's person id (required for minors)")
        if name == "grant":
            g.add_argument("--scope", choices=consent.SCOPES, default="device")
        _common(g, notice=True)
        g.set_defaults(func=_safe(fn))
    w = cs.add_parser("withdraw", help="withdraw consent and erase face data at once")
    w.add_argument("person")
    w.add_argument("--channel", default="cli")
    _common(w, keys=True)
    w.set_defaults(func=_safe(_consent_withdraw))
    s = cs.add_parser("show", help="consent history and current state")
    s.add_argument("person")
    _common(s)
    s.set_defaults(func=_safe(_consent_show))
    n = cs.add_parser("notice", help="put a new notice version in force (flags re-notice)")
    _common(n, notice=True)
    n.set_defaults(func=_safe(_consent_notice))

    # enroll
    e = subparsers.add_parser("enroll", help="enrol a consenting person from images")
    e.add_argument("person")
    e.add_argument("--images", nargs="+", type=Path, required=True, help="DIR or FILES")
    e.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help=f"installed models (default: face.model_dir of --config, else {DEFAULT_MODEL_DIR})",
    )
    e.add_argument("--min-good", type=int, default=1)
    e.add_argument("--max-templates", type=int, default=10)
    _common(e, keys=True)
    e.set_defaults(func=_safe(_enroll))

    # zones
    zp = subparsers.add_parser("zones", help="no-capture zones")
    zs = zp.add_subparsers(dest="zones_command", metavar="ACTION", required=True)
    pv = zs.add_parser("preview", help="write one frame with zones blanked and outlined")
    pv.add_argument("camera")
    pv.add_argument("--out", type=Path, required=True)
    pv.add_argument("--source", help="camera source URL/device (default: from --config)")
    pv.add_argument("--image", type=Path, help="use this image instead of the camera")
    pv.add_argument("--zones", help="JSON list of polygons (or of {name, polygon}), or a file")
    pv.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="face detector models, to blur passers-by (default: face.model_dir of --config, "
        f"else {DEFAULT_MODEL_DIR}); without them the whole frame is blurred",
    )
    pv.set_defaults(func=_safe(_zones_preview))

    # audit
    ap = subparsers.add_parser("audit", help="audit log")
    asub = ap.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = asub.add_parser("verify", help="verify the hash chain (exit 1 at the first broken seq)")
    _common(v)
    v.set_defaults(func=_safe(_audit_verify))

    # compliance
    cmp_ = subparsers.add_parser("compliance", help="compliance report and inspection export")
    cms = cmp_.add_subparsers(dest="compliance_command", metavar="ACTION", required=True)
    r = cms.add_parser("report", help="people counts, thresholds, filing deadline, records")
    r.add_argument("--gate", help="this gate's name (default: site.gate of --config, or host)")
    r.add_argument("--gate-counts", help='JSON {"gate": count} of the other gates, or a file')
    r.add_argument(
        "--from-mqtt",
        action="store_true",
        help="also read the other gates' counts from their retained MQTT status (--config)",
    )
    r.add_argument(
        "--cameras",
        help="JSON list of {name, space, signage_installed, signage_recorded}, or a file",
    )
    r.add_argument("--assessment-ref")
    r.add_argument("--assessment-date", help="YYYY-MM-DD")
    r.add_argument("--warn-people", type=int, default=80_000)
    r.add_argument("--filing-threshold", type=int, default=100_000)
    r.add_argument("--holiday", action="append", default=[], help="YYYY-MM-DD (repeatable)")
    r.add_argument("--json", action="store_true")
    _retention_opts(r)
    _common(r)
    r.set_defaults(func=_safe(_compliance_report))
    x = cms.add_parser("export", help="export processing records for an inspection")
    x.add_argument("--format", choices=("json", "csv"), required=True)
    x.add_argument("--out", type=Path, required=True)
    _common(x)
    x.set_defaults(func=_safe(_compliance_export))

    # purge
    pg = subparsers.add_parser("purge", help="run the retention purge once")
    _retention_opts(pg)
    _common(pg, keys=True)
    pg.set_defaults(func=_safe(_purge))
