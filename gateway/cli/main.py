"""The ``gateway`` command: daemon, configuration tools and the subsystems' subcommands."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import __version__
from gateway.cli import arguments as cli_input
from gateway.config.root import DEFAULT_CONFIG_PATH, format_problems, json_schema, load_config
from gateway.errors import ConfigError

# Subsystems that add their own subcommands through ``register(subparsers)``.
SUBCOMMAND_MODULES = (
    "gateway.cli.face",
    "gateway.cli.camera",
    "gateway.cli.privacy",
    "gateway.cli.mqtt",
    "gateway.eval.commands",
    "gateway.cli.hardware",
    "gateway.cli.keys",
    "gateway.cli.decommission",
    "gateway.cli.web",
    "gateway.cli.roster",
    "gateway.demo.run",
)

EXIT_CONFIG = 2


def _default_config() -> Path:
    return Path(os.environ.get("GATEWAY_CONFIG", str(DEFAULT_CONFIG_PATH)))


def _cmd_validate(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else args.config
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(format_problems(exc.problems), file=sys.stderr)
        return EXIT_CONFIG
    from gateway.cli.environment_checks import environment_problems

    problems = environment_problems(cfg) if args.deep else []
    if problems:
        print(format_problems(problems), file=sys.stderr)
        return EXIT_CONFIG
    doors = ", ".join(f"{n} ({'/'.join(m.value for m in d.methods)})" for n, d in cfg.doors.items())
    print(f"{path}: valid — site {cfg.site.id}, gate {cfg.site.gate}, doors: {doors}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return 0


def _cmd_reference(args: argparse.Namespace) -> int:
    from gateway.config.reference import reference_markdown

    sys.stdout.write(reference_markdown())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import functools

    from gateway.cli.doctor import doctor_rows
    from gateway.daemon.process import run_daemon
    from gateway.gate.app import build_gateway

    return run_daemon(args.config, functools.partial(build_gateway, doctor=doctor_rows))


def _cmd_doctor(args: argparse.Namespace) -> int:
    from gateway.cli.doctor import run_doctor

    return run_doctor(args.config, timeout=args.timeout)


def _broken_module(name: str, error: BaseException) -> None:
    print(f"warning: subcommands of {name} are unavailable: {error}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="access-gateway: face, card and PIN access control for compound gates.",
    )
    parser.add_argument("--version", action="version", version=f"access-gateway {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=_default_config(),
        help=f"configuration file (default: $GATEWAY_CONFIG or {DEFAULT_CONFIG_PATH})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run the daemon")
    p.set_defaults(func=_cmd_run)

    cfg = sub.add_parser("config", help="validate the configuration or print its schema")
    cfg_sub = cfg.add_subparsers(dest="config_command", metavar="ACTION")
    cfg_sub.required = True
    v = cfg_sub.add_parser("validate", help="validate a configuration file (exit 2 on error)")
    v.add_argument("file", nargs="?", help="file to check (default: --config)")
    v.add_argument(
        "--deep",
        action="store_true",
        help="also check secrets, notice text and paths on this machine",
    )
    v.set_defaults(func=_cmd_validate)
    s = cfg_sub.add_parser("schema", help="print the JSON Schema of the configuration")
    s.set_defaults(func=_cmd_schema)
    r = cfg_sub.add_parser("reference", help="print the Markdown reference of every key")
    r.set_defaults(func=_cmd_reference)

    d = sub.add_parser("doctor", help="check config, storage, models, camera, readers, broker")
    d.add_argument("--timeout", type=float, default=3.0, help="per-check timeout in seconds")
    d.set_defaults(func=_cmd_doctor)

    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name and (name == exc.name or name.startswith(f"{exc.name}.")):
                continue  # subsystem not present in this build
            _broken_module(name, exc)
            continue
        module.register(sub)
    _accept_global_options_anywhere(parser)
    return parser


def _accept_global_options_anywhere(parser: argparse.ArgumentParser) -> None:
    """``gateway doctor --config FILE`` works like ``gateway --config FILE doctor``: every
    subcommand also takes ``--config``; given there, it overrides the one before it."""
    for action in parser._actions:  # argparse has no public walk over subparsers
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            if not any("--config" in a.option_strings for a in child._actions):
                child.add_argument(
                    "--config",
                    type=Path,
                    default=argparse.SUPPRESS,
                    help="configuration file (same as --config before the command)",
                )
            _accept_global_options_anywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gateway`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cli_input.check(parser, args)  # bounded, printable text and finite numbers only
    try:
        code = int(args.func(args))
    except ConfigError as exc:
        print(format_problems(exc.problems), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
