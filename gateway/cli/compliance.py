"""``gateway audit``, ``gateway compliance``, ``gateway purge``: argument parsing and
printing; the operations are :mod:`gateway.services.compliance`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from gateway.cli import context as ctx
from gateway.errors import PrivacyError
from gateway.privacy import compliance
from gateway.privacy.vault import NullGallery
from gateway.services import compliance as svc


def _audit_verify(args: argparse.Namespace) -> int:
    res = svc.verify_audit(ctx.open_db(args, write=False))
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


def _cameras(args: argparse.Namespace, cfg: Any) -> list[compliance.CameraRecord]:
    cams = [compliance.CameraRecord(**c) for c in (ctx.load_json(args.cameras) or [])]
    if not cams and cfg is not None:
        cams = [
            compliance.CameraRecord(
                name, cam.space.value, cam.signage_installed, cam.signage_recorded or ""
            )
            for name, cam in cfg.cameras.items()
        ]
    return cams


def _compliance_report(args: argparse.Namespace) -> int:
    db = ctx.open_db(args, write=False)
    cfg = ctx.config_of(args)
    gate = args.gate or (cfg.site.gate if cfg is not None else os.uname().nodename)
    gate_counts: dict[str, int] = dict(ctx.load_json(args.gate_counts) or {})
    if args.from_mqtt:
        gate_counts.update(_counts_from_mqtt(cfg, gate))
    ref, date = args.assessment_ref, args.assessment_date
    if ref is None and cfg is not None and cfg.privacy.impact_assessment is not None:
        ref = cfg.privacy.impact_assessment.reference
        date = date or cfg.privacy.impact_assessment.date.isoformat()
    request = svc.ReportRequest(
        gate=gate,
        today=dt.datetime.now().astimezone().date(),
        thresholds=_thresholds(args, cfg),
        retention=ctx.retention_policy(args),
        gate_counts=gate_counts,
        cameras=_cameras(args, cfg),
        assessment_ref=ref,
        assessment_date=dt.date.fromisoformat(date) if date else None,
        template_protection=cfg.privacy.template_protection if cfg is not None else None,
    )
    report = svc.report(db, request)
    print(
        json.dumps(report, indent=1, ensure_ascii=False)
        if args.json
        else compliance.format_report(report)
    )
    return 2 if svc.filing_required(report) else 0


def _thresholds(args: argparse.Namespace, cfg: Any) -> compliance.Thresholds:
    """The options given, else the configured ``[privacy]`` values, else the defaults."""
    base = svc.thresholds_of(cfg) if cfg is not None else compliance.Thresholds()
    extra = tuple(dt.date.fromisoformat(h) for h in args.holiday)
    return compliance.Thresholds(
        base.warn_people if args.warn_people is None else args.warn_people,
        base.filing_threshold if args.filing_threshold is None else args.filing_threshold,
        base.holidays + extra,
    )


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
    n = svc.export_records(ctx.open_db(args), args.format, args.out, actor=args.actor)
    print(f"{n} processing records written to {args.out}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    db = ctx.open_db(args)
    policy = ctx.retention_policy(args)
    rep = svc.run_retention_purge(db, ctx.vault_of(args), NullGallery(), policy)
    print(json.dumps(rep.__dict__))
    return 0


def _report_parser(cms: ctx.Sub[argparse.ArgumentParser]) -> None:
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
    r.add_argument("--warn-people", type=int, help="default: privacy.warn_people, else 80000")
    r.add_argument(
        "--filing-threshold", type=int, help="default: privacy.filing_threshold, else 100000"
    )
    r.add_argument(
        "--holiday",
        action="append",
        default=[],
        help="YYYY-MM-DD, a local closure besides China's official holidays (repeatable)",
    )
    r.add_argument("--json", action="store_true")
    ctx.retention_options(r)
    ctx.common_options(r)
    r.set_defaults(func=ctx.safe(_compliance_report))


def register(subparsers: ctx.Sub[argparse.ArgumentParser]) -> None:
    """Add ``gateway audit``, ``gateway compliance`` and ``gateway purge``."""
    ap = subparsers.add_parser("audit", help="audit log")
    asub = ap.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = asub.add_parser("verify", help="verify the hash chain (exit 1 at the first broken seq)")
    ctx.common_options(v)
    v.set_defaults(func=ctx.safe(_audit_verify))

    cmp_ = subparsers.add_parser("compliance", help="compliance report and inspection export")
    cms = cmp_.add_subparsers(dest="compliance_command", metavar="ACTION", required=True)
    _report_parser(cms)
    x = cms.add_parser("export", help="export processing records for an inspection")
    x.add_argument("--format", choices=("json", "csv"), required=True)
    x.add_argument("--out", type=Path, required=True)
    ctx.common_options(x)
    x.set_defaults(func=ctx.safe(_compliance_export))

    pg = subparsers.add_parser("purge", help="run the retention purge once")
    ctx.retention_options(pg)
    ctx.common_options(pg, keys=True)
    pg.set_defaults(func=ctx.safe(_purge))
