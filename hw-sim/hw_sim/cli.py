"""``gateway-sim``: run the simulator, poke it, or run scenarios against a live gateway.

gateway-sim serve --config sim.yaml [--ports-file ports.json]
gateway-sim present-card --reader entry --card 4242 [--facility 10] [--api URL]
gateway-sim person-approaches --camera main-cam --person resident1 --variant photo
gateway-sim state
gateway-sim run hw-sim/scenarios/ [--sim-api URL | --config sim.yaml] \
        --mqtt mqtt://127.0.0.1:1883 --topic-prefix access
gateway-sim validate hw-sim/scenarios/
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hw_sim.config import VARIANTS, ConfigError, SimConfig

DEFAULT_API = os.environ.get("HWSIM_API", "http://127.0.0.1:8765")


def _api_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api", default=DEFAULT_API, help="simulator control API (default %(default)s, $HWSIM_API)"
    )


def _load_config(path: Path | None, faces: Path | None) -> SimConfig:
    cfg = SimConfig.load(path) if path else SimConfig.demo()
    if faces is not None:
        cfg = cfg.model_copy(update={"faces": faces})
    return cfg


def _cmd_serve(args: argparse.Namespace) -> int:
    from hw_sim.sim import Simulator

    cfg = _load_config(args.config, args.faces)
    if args.api_port is not None:
        cfg = cfg.model_copy(update={"api_port": args.api_port})
    elif args.config is None:
        cfg = cfg.model_copy(update={"api_port": int(DEFAULT_API.rsplit(":", 1)[1])})
    sim = Simulator(cfg).start()
    urls = sim.urls()
    print(json.dumps(urls, indent=2), flush=True)
    if args.ports_file:
        Path(args.ports_file).write_text(json.dumps(urls), encoding="utf-8")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


def _post(api: str, action: str, body: dict[str, Any]) -> int:
    from hw_sim.runner import RemoteSim

    try:
        out = RemoteSim(api).do(action, body)
    except (RuntimeError, OSError) as exc:
        print(f"gateway-sim: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


def _action(name: str, fields: list[str]) -> Any:
    def run(args: argparse.Namespace) -> int:
        body = {f.replace("-", "_"): getattr(args, f.replace("-", "_")) for f in fields}
        body = {k: v for k, v in body.items() if v is not None}
        return _post(args.api, name, body)

    return run


def _cmd_state(args: argparse.Namespace) -> int:
    from hw_sim.runner import RemoteSim

    try:
        print(json.dumps(RemoteSim(args.api).state(), indent=2))
    except (RuntimeError, OSError) as exc:
        print(f"gateway-sim: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from hw_sim.scenario import ScenarioError, load_scenario, scenario_paths

    bad = 0
    for p in scenario_paths(args.scenarios):
        try:
            sc = load_scenario(p)
            print(f"ok      {p}: {sc.name}" + (f" (pending: {sc.pending})" if sc.pending else ""))
        except ScenarioError as exc:
            bad += 1
            print(f"INVALID {exc}")
    return 1 if bad else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from hw_sim.runner import RemoteSim, format_report, run_scenarios
    from hw_sim.scenario import scenario_paths
    from hw_sim.sim import Simulator

    paths = scenario_paths(args.scenarios)
    local: Simulator | None = None
    sim: Any
    if args.sim_api:
        sim = RemoteSim(args.sim_api)
    else:
        local = Simulator(_load_config(args.config, args.faces)).start()
        print(json.dumps(local.urls(), indent=2), flush=True)
        sim = local
    caps = [c for c in args.capabilities.split(",") if c] if args.capabilities is not None else None
    try:
        results = run_scenarios(
            paths,
            sim,
            args.mqtt,
            args.topic_prefix,
            capabilities=caps,
            run_pending=args.run_pending,
        )
    finally:
        if local is not None:
            local.stop()
    print(format_report(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "path": r.path,
                        "status": r.status,
                        "time_to_decision_s": r.time_to_decision_s,
                        "message": r.message,
                        "checks": [c.__dict__ for c in r.checks],
                        "notes": r.notes,
                    }
                    for r in results
                ],
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0 if all(r.status in ("pass", "pending") for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="gateway-sim", description="access-gateway hardware simulator"
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("serve", help="run cameras, readers and doors until interrupted")
    p.add_argument("--config", type=Path, help="simulator YAML (default: the demo site)")
    p.add_argument("--faces", type=Path, help="LFW-layout face directory")
    p.add_argument("--api-port", type=int, help="override api_port (0 = free)")
    p.add_argument("--ports-file", type=Path, help="write the URLs as JSON here")
    p.set_defaults(func=_cmd_serve)

    simple: list[tuple[str, str, list[tuple[str, dict[str, Any]]]]] = [
        (
            "present-card",
            "present a card",
            [
                ("reader", {"required": True}),
                ("card", {"type": int, "required": True}),
                ("facility", {"type": int}),
                ("format", {}),
            ],
        ),
        (
            "type-pin",
            "type a PIN (then #)",
            [("reader", {"required": True}), ("pin", {"required": True})],
        ),
        (
            "person-approaches",
            "people walk up to a camera",
            [
                ("camera", {"required": True}),
                ("person", {"default": "unknown"}),
                (
                    "variant",
                    {
                        "default": "live",
                        "choices": list(VARIANTS),
                    },
                ),
                ("count", {"type": int, "default": 1}),
                ("approach-s", {"type": float}),
            ],
        ),
        ("open-door", "push the door (opens only if unlocked)", [("door", {"required": True})]),
        (
            "hold-door",
            "hold the door open",
            [("door", {"required": True}), ("seconds", {"type": float})],
        ),
        (
            "force-door",
            "force the door open",
            [("door", {"required": True}), ("seconds", {"type": float})],
        ),
        ("close-door", "let the door shut", [("door", {"required": True})]),
        ("press-exit", "press the exit button", [("door", {"required": True})]),
        (
            "press-keys",
            "press keypad keys",
            [("reader", {"required": True}), ("keys", {"required": True})],
        ),
        ("clear-camera", "everyone leaves the camera's view", [("camera", {"required": True})]),
        ("unplug-camera", "unplug a camera", [("camera", {"required": True})]),
        ("replug-camera", "plug a camera back", [("camera", {"required": True})]),
        (
            "cut-link",
            "cut a reader's RS-485 pair (it stops answering)",
            [("reader", {"required": True})],
        ),
        ("restore-link", "mend a reader's RS-485 pair", [("reader", {"required": True})]),
        (
            "corrupt-frames",
            "send a reader's next replies with a bad CRC",
            [("reader", {"required": True}), ("count", {"type": int, "default": 1})],
        ),
    ]
    for name, help_, opts in simple:
        p = sub.add_parser(name, help=help_)
        for opt, kw in opts:
            p.add_argument(f"--{opt}", **kw)
        _api_opt(p)
        p.set_defaults(func=_action(name, [o for o, _ in opts]))

    p = sub.add_parser("tamper", help="open (or --clear) a reader's tamper switch")
    p.add_argument("--reader", required=True)
    p.add_argument("--clear", action="store_true")
    _api_opt(p)
    p.set_defaults(
        func=lambda a: _post(a.api, "tamper", {"reader": a.reader, "active": not a.clear})
    )

    p = sub.add_parser("state", help="relay, LED, buzzer, text, door and camera state (JSON)")
    _api_opt(p)
    p.set_defaults(func=_cmd_state)

    p = sub.add_parser("validate", help="validate scenario files")
    p.add_argument("scenarios", nargs="+", type=Path)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("run", help="run scenarios against a live gateway")
    p.add_argument("scenarios", nargs="+", type=Path, help="files or directories")
    p.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    p.add_argument("--topic-prefix", default="access")
    p.add_argument("--sim-api", help="use a running simulator (else start one from --config)")
    p.add_argument("--config", type=Path)
    p.add_argument("--faces", type=Path)
    p.add_argument("--capabilities", help="comma list the gateway supports (default: all)")
    p.add_argument("--run-pending", action="store_true", help="also run scenarios marked pending")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.set_defaults(func=_cmd_run)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
    )
    try:
        rc: int = args.func(args)
    except ConfigError as exc:
        print(f"gateway-sim: {exc}", file=sys.stderr)
        return 2
    return rc
