"""``gateway mqtt keygen``, ``sign``, ``pin-args`` and ``seal-person`` for operators and tests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.errors import ProtocolError
from gateway.mqtt import sign
from gateway.mqtt.commands import MAX_COMMAND_BYTES
from gateway.mqtt.payload import PayloadError, loads_bounded


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mqtt keygen`` and ``mqtt sign``."""
    mqtt = subparsers.add_parser("mqtt", help="MQTT command keys and signed envelopes")
    sub = mqtt.add_subparsers(dest="mqtt_command", required=True)

    kg = sub.add_parser("keygen", help="create an Ed25519 command-signing key")
    kg.add_argument("--out", type=Path, required=True, help="private key file to create (0600)")
    kg.add_argument("--key-id", help="key id (default: hash of the public key)")
    kg.set_defaults(func=run_keygen)

    sg = sub.add_parser("sign", help="print a signed command envelope (JSON)")
    sg.add_argument("name", help="command name, e.g. unlock")
    sg.add_argument("--args", default="{}", help="command args as a JSON object")
    sg.add_argument("--site", required=True, help="target site id (signed; as in the topic)")
    sg.add_argument(
        "--gate",
        required=True,
        action="append",
        help="target gate id (signed; as in the topic); repeat it to address several gates of "
        "the site (e.g. rotate_keys site-wide): one envelope per gate, one per line",
    )
    sg.add_argument("--key", type=Path, required=True, help="private key file from keygen")
    sg.add_argument("--key-id", help="key id (default: hash of the public key)")
    sg.set_defaults(func=run_sign)

    pa = sub.add_parser(
        "pin-args",
        help="print set_pin args for a PIN read from stdin (sealed hash + index; never the PIN)",
    )
    pa.add_argument("person_id", help="the person's id")
    pa.add_argument(
        "--site-key",
        type=Path,
        help="the site key file (0600); without it the keys of --config's instance (needed "
        "after a site-key rotation, which carries the PIN-index key in its database)",
    )
    pa.add_argument("--kind", choices=("normal", "duress", "visitor"), default="normal")
    pa.set_defaults(func=run_pin_args)

    sp = sub.add_parser(
        "seal-person",
        help="print a person's id sealed for the site's gates (a command's person_ref)",
    )
    sp.add_argument("person_id", help="the person's id")
    sp.add_argument("--site-key", type=Path, required=True, help="the site key file (0600)")
    sp.add_argument("--role", choices=("person", "guardian"), default="person")
    sp.set_defaults(func=run_seal_person)


def run_keygen(args: argparse.Namespace) -> int:
    """Write a private key; print the key id and the public key for ``mqtt.command_keys``."""
    key = sign.generate()
    try:
        sign.write_private(key, args.out)
    except FileExistsError:
        sys.stderr.write(f"error: {args.out} exists; refusing to overwrite a key\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"error: cannot write {args.out}: {exc.strerror}\n")
        return 1
    kid = args.key_id or sign.key_id_of(key.public_key())
    doc = {"key_id": kid, "public_key": sign.public_b64(key.public_key())}
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.write(
        f'# add under [mqtt.command_keys] in the config:\n# "{kid}" = "{doc["public_key"]}"\n'
    )
    return 0


def run_sign(args: argparse.Namespace) -> int:
    """Print a signed envelope for command ``args.name``, one per ``--gate``."""
    try:
        cmd_args = loads_bounded(
            args.args.encode("utf-8", "surrogateescape"), max_bytes=MAX_COMMAND_BYTES
        )
    except PayloadError as exc:
        sys.stderr.write(f"error: --args refused ({exc.reason}): {exc}\n")
        return 2
    if not isinstance(cmd_args, dict):
        sys.stderr.write("error: --args must be a JSON object\n")
        return 2
    try:
        key = sign.load_private(args.key)
    except ProtocolError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    for gate in args.gate:
        env = sign.sign_envelope(
            args.name, cmd_args, key, site=args.site, gate=gate, key_id=args.key_id
        )
        sys.stdout.write(json.dumps(env, separators=(",", ":")) + "\n")
    return 0


def run_pin_args(args: argparse.Namespace) -> int:
    """``set_pin`` args for the PIN on stdin (one line; kept off the command line and logs)."""
    from gateway.credentials.hashing import management_pin_record
    from gateway.errors import GatewayError
    from gateway.privacy import person_ref

    pin = sys.stdin.readline().strip()
    try:
        site, index_key = _site_keys(args)
        sealed, index = management_pin_record(pin, site, args.person_id, index_key=index_key)
    except (GatewayError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    doc = {
        "person_ref": person_ref.seal(site, args.person_id),
        "pin_hash_sealed": sealed,
        "pin_index": index,
        "kind": args.kind,
    }
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    return 0


def _site_keys(args: argparse.Namespace) -> tuple[bytes, bytes | None]:
    """The site key and the PIN-index key: from --site-key (the index key derived from
    it), else as the instance of --config loads them (its carried PIN-index key)."""
    from gateway.errors import GatewayError
    from gateway.privacy.vault import load_key

    if args.site_key is not None:
        return load_key(args.site_key, "site-key"), None
    from gateway.config.root import load_config
    from gateway.services.keys import load_keys
    from gateway.store.readonly import open_state

    cfg = load_config(args.config)
    if not Path(cfg.storage.database_path).exists():
        raise GatewayError(f"no state database at {cfg.storage.database_path}: give --site-key")
    db, _ = open_state(cfg.storage.database_path)
    try:
        keys = load_keys(cfg, db.conn)
    finally:
        db.close()
    return keys.site, keys.pin_index_site


def run_seal_person(args: argparse.Namespace) -> int:
    """Print ``person_id`` sealed under the site key (fresh each time: refs do not link)."""
    from gateway.errors import GatewayError
    from gateway.privacy import person_ref
    from gateway.privacy.vault import load_key

    try:
        site = load_key(args.site_key, "site-key")
        ref = person_ref.seal(site, args.person_id, role=args.role)
    except (GatewayError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(ref + "\n")
    return 0
