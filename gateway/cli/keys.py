"""``gateway keys``: seal the device key to this board's TPM 2.0 (``[keys]`` of the config);
rotate the device or gates key (:mod:`gateway.services.keys`) or one purpose's key
(:mod:`gateway.services.key_purposes`).

``keys seal --from FILE`` seals an existing device key (the one the database is keyed with);
``keys init --provider tpm`` seals a fresh random one (the OS's and the TPM's random bytes
combined; a new installation), never written in clear. Both
check that the TPM unseals what it sealed before writing the blobs, and never print a key.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from gateway.cli.context import Sub
from gateway.config.base import SecretRef
from gateway.config.keys import KeysConfig
from gateway.config.root import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.keys import MIN_KEY_BYTES, Purpose
from gateway.services.key_rotation import COPIED, WHATS

NEW_KEY_BYTES = 32


def _seal_and_store(key: bytes, cfg: KeysConfig, *, force: bool) -> None:
    from gateway import tpm

    sealed = tpm.seal(key, cfg)
    if tpm.unseal(sealed, cfg) != key:  # never trust a blob the TPM has not opened
        raise ConfigError([("keys.tcti", cfg.tcti, "the TPM unsealed a different key")])
    tpm.write_blobs(sealed, cfg, replace=force)
    tpm.advance(cfg)  # blobs sealed before (copies of them too) no longer unseal here
    print(f"sealed the device key to the TPM at {cfg.tcti}")
    print(f"  public blob:  {cfg.public_blob}")
    print(f"  private blob: {cfg.private_blob}")
    print(f"  PCR policy:   {cfg.pcr_bank}:{cfg.pcrs}" if cfg.pcrs else "  PCR policy:   none")


def shred(path: Path) -> None:
    """Overwrite a file with random bytes, sync, and remove it (on flash storage the old
    blocks may survive the overwrite: prefer sealing from a key that never touched it)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.write(secrets.token_bytes(max(size, 1)))
        f.flush()
        os.fsync(f.fileno())
    path.unlink()


def _cmd_seal(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    source = Path(args.source)
    key = SecretRef(file=source).read_bytes()  # read exactly as the file provider reads it
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError([(str(source), f"<{len(key)} bytes>", f"need {MIN_KEY_BYTES} bytes")])
    _seal_and_store(key, cfg.keys, force=args.force)
    if args.remove_clear:
        shred(source)
        print(f"overwrote and removed the clear key file {source}")
    else:
        print(f"the clear key file {source} is still there: remove it (--remove-clear)")
    print('next: set [keys] provider = "tpm" and remove privacy.device_key from the config')
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from gateway.tpm import fresh_key

    cfg = load_config(args.config)
    key = fresh_key(NEW_KEY_BYTES, cfg.keys)
    _seal_and_store(key, cfg.keys, force=args.force)
    if cfg.keys.provider != "tpm":
        print('next: set [keys] provider = "tpm" in the config', file=sys.stderr)
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    """Rotate with the state directory locked (never while the daemon holds the old keys);
    exit 1 when old key material is still on disk after the rotation."""
    from gateway.services.key_rotation import rotate_stopped

    cfg = load_config(args.config)
    if args.what not in COPIED and args.key:
        raise ConfigError([("--key", args.key, f"a {args.what} key is never copied: omit --key")])
    new_key = SecretRef(file=Path(args.key)).read_bytes() if args.key else None
    outcome = rotate_stopped(cfg, args.what, actor=args.actor, new_key=new_key)
    done = outcome.rotation
    print(
        f"rotated {done.what}: {done.people} people, {done.templates} templates moved "
        f"from key {done.old_key_id} to {done.new_key_id}"
    )
    if done.what == "transform" and cfg.privacy.template_protection == "cancelable":
        print(
            "cancelable templates cannot be re-transformed: their transform key was carried "
            "over (bundle wrapping and the fan-out MAC use the new key); renewing the "
            "transform means 'gateway keys erase-templates --yes', this rotation, re-enrolment"
            if done.templates
            else "no templates stored: the transform key is renewed too"
        )
    if not done.scrubbed:
        print("the WAL is busy: the old pages leave it at the next scrub", file=sys.stderr)
    office = cfg.roster.role == "office"  # its gates key is its own: never copied to a gate
    if args.what == "transform" and args.key is None and cfg.privacy.gates_key and not office:
        print(
            f"copy {cfg.privacy.gates_key.file} to the site's other gates and run there: "
            "gateway keys rotate --what transform --key FILE"
        )
    if args.what == "site":
        _site_next_steps(cfg, args.key is not None)
    print(outcome.residue.describe(), file=sys.stdout if outcome.residue.clean else sys.stderr)
    print("start the daemon again: systemctl start access-gateway")
    return 0 if outcome.residue.clean else 1


def _site_next_steps(cfg: GatewayConfig, adopted: bool) -> None:
    """What the operator does after a site-key rotation."""
    if cfg.roster.role == "office":
        print(
            "every registered gate is sent the new site key in its roster (sealed for it "
            "alone) and restarts with it once it applies it; `gateway roster status` shows "
            "which gates are on it. A gate outside the roster (roster.role = off) that "
            "shares the site key takes it by hand: gateway keys rotate --what site --key FILE"
        )
    elif not adopted and cfg.privacy.site_key is not None:
        print(
            f"copy {cfg.privacy.site_key.file} to the site's management side and run on "
            "every other gate: gateway keys rotate --what site --key FILE"
        )
    print(
        "the PIN-index key was carried over (stored PIN indexes cannot be recomputed): "
        "`gateway mqtt pin-args` now takes --config (this instance's) instead of --site-key"
    )


def _cmd_erase_templates(args: argparse.Namespace) -> int:
    """Erase every stored template with the state directory locked (daemon stopped)."""
    from gateway.keys import StateLockedError, state_lock
    from gateway.privacy import audit
    from gateway.privacy.vault import Vault
    from gateway.services import keys as svc
    from gateway.services.enrolment import erase_all_templates
    from gateway.store import database as store

    if not args.yes:
        raise ConfigError([("--yes", "missing", "every face must be enrolled again: add --yes")])
    cfg = load_config(args.config)
    try:
        with state_lock(cfg.storage.state_dir):
            db = store.connect(Path(cfg.storage.database_path), create=False)
            keys = svc.load_keys(cfg, db.conn)
            audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
            vault = Vault.from_keys(keys, protection=cfg.privacy.template_protection)
            count = erase_all_templates(db, vault, actor=args.actor)
    except StateLockedError as exc:
        why = f"{exc}: stop the daemon first: systemctl stop access-gateway"
        raise ConfigError([("storage.state_dir", str(cfg.storage.state_dir), why)]) from exc
    print(f"erased {count} templates: enrol every face again (gateway enroll)")
    return 0


def register(subparsers: Sub[argparse.ArgumentParser]) -> None:
    """Add ``gateway keys seal``, ``init`` and ``rotate``."""
    keys = subparsers.add_parser("keys", help="seal the device key to the TPM 2.0; rotate keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    sub.required = True
    seal = sub.add_parser("seal", help="seal an existing device key file to the TPM")
    seal.add_argument("--from", dest="source", required=True, help="the clear device key file")
    seal.add_argument(
        "--remove-clear",
        action="store_true",
        help="overwrite and remove the clear file once the sealed key is verified",
    )
    init = sub.add_parser("init", help="generate a fresh device key inside the TPM's seal")
    init.add_argument(
        "--provider", choices=["tpm"], required=True, help="where the new key is held"
    )
    for p in (seal, init):
        p.add_argument("--force", action="store_true", help="replace blobs already at keys.*_blob")
    rotate = sub.add_parser("rotate", help="renew a key; stored templates follow (no re-enrolment)")
    rotate.add_argument(
        "--what",
        choices=list(WHATS),
        required=True,
        help="which key (a purpose: its stored values follow; see gateway.services.key_purposes)",
    )
    rotate.add_argument(
        "--key", help="adopt this new gates or site key file (rotated at another instance)"
    )
    rotate.add_argument("--actor", default=os.environ.get("USER", "operator"), help="who")
    erase = sub.add_parser(
        "erase-templates",
        help="crypto-erase every stored template (to switch privacy.template_protection)",
    )
    erase.add_argument("--yes", action="store_true", help="every face is enrolled again after")
    erase.add_argument("--actor", default=os.environ.get("USER", "operator"), help="who")
    erase.set_defaults(func=_cmd_erase_templates)
    seal.set_defaults(func=_cmd_seal)
    init.set_defaults(func=_cmd_init)
    rotate.set_defaults(func=_cmd_rotate)
