"""The demo's compound (issue 15): a roster office beside the demo gate, and its harness.

The office is the roster office services in-process: its own database, device key and
Ed25519 manifest key in the work directory, the site's key, and the office publisher
(:func:`gateway.gate.roster_wiring.office_agent`, built from a generated office config,
``[roster] role = "office"``) on a thread with its own event loop, on the demo's broker.
The first scenario that needs it (a fixture person with ``office: true``) starts it,
registers the demo gate and restarts the gate daemon with ``[roster] role = "gate"``: from
then on the gate follows the office (its own people stay its own). The harness steps:
``office_withdraw``, ``office_revoke_card``, ``office_delete_person`` (the office's
services, as its clerk would), ``gate_offline`` / ``gate_online`` (the gate daemon stopped
and started again), ``wait_converged`` (fails the scenario unless the office reports every
gate acknowledged every change) and ``gate_forgot`` (fails it unless the gate holds no trace
of the person: record, cards, PINs, consent, face data).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gateway.demo.files import write_secret

log = logging.getLogger(__name__)

STEPS = (
    "office_withdraw",
    "office_revoke_card",
    "office_delete_person",
    "gate_offline",
    "gate_online",
    "wait_converged",
    "gate_forgot",
)
#: Tables a gate keeps a roster person in (by roster id): none may hold a deleted one.
TRACES = ("people", "cards", "pins", "consents", "face_keys", "templates", "roster_members")

OFFICE_CONFIG = """
[site]
id = "{site}"
gate = "office"

# The office opens no reader: this one only satisfies the schema (a door needs one).
[readers.desk]
url = "osdp+socket://127.0.0.1:9"
protocol = "osdp"
scbk = {{ file = "{scbk}" }}

[doors.desk]
reader = "desk"
methods = ["card"]
relay = {{ kind = "osdp", output = 0 }}

[mqtt]
url = "{mqtt_url}"
topic_prefix = "{prefix}"
protocol = "{protocol}"

[storage]
state_dir = "{state_dir}"

[privacy]
notice_file = "{notice}"
notice_version = "demo-1"
device_key = {{ file = "{device_key}" }}
site_key = {{ file = "{site_key}" }}

[roster]
role = "office"
signing_key = "{signing_key}"
poll_s = 0.1
erasure_ack_s = 120
gates = {{ "{gate}" = {{ public_key = "{gate_key}", ack_key = "{ack_key}" }} }}
"""

GATE_SECTION = """
[roster]
role = "gate"
fetch_wait_s = 2.0
office_keys = {{ "{kid}" = "{pub}" }}
"""


def office_unit(n: int) -> str:
    """A made-up unit for the office's ``n``-th person (a test looks for it on the broker)."""
    return f"Office Bldg9 Rm{901 + n}"


class DemoOffice:
    """The roster office of the demo compound and its harness steps."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack  # the DemoStack: its gate, config, keys, simulator and pipeline
        self.folder: Path = stack.workdir / "roster-office"
        self.people: dict[str, str] = {}  # name -> office person id
        self.kept: dict[str, str] = {}  # name -> office person id, deleted ones included
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[None] | None = None
        self._close: Callable[[], None] | None = None
        self._agent_db: Any = None
        self.config_path = self.folder / "office.toml"

    @property
    def running(self) -> bool:
        """True once the office publishes."""
        return self._thread is not None

    # -- the office ---------------------------------------------------------------------------
    async def ensure(self) -> None:
        """Start the office and move the gate to ``role = "gate"`` (once)."""
        if self.running:
            return
        kid, pub = await asyncio.to_thread(self._start_office)
        # appended last; an earlier attempt's section is replaced
        text = self.stack.config_path.read_text().split("\n[roster]\n")[0]
        self.stack.config_path.write_text(text + GATE_SECTION.format(kid=kid, pub=pub))
        print("roster office started; the demo gate restarts as its roster gate", flush=True)
        await self.stack.stop_daemon()
        await self.start_gate()
        await self.wait_converged()

    async def start_gate(self, limit_s: float = 20.0) -> None:
        """Start the gate daemon and wait until this start's readers are online (the log
        from this start on: an earlier start's lines and the simulator's state may be stale)."""
        path = self.stack.workdir / "daemon.log"
        offset = path.stat().st_size if path.exists() else 0
        await self.stack.start_daemon()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            with path.open("rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
            if all(f"reader {r}: online" in text for r in ("entry", "side")):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the gate's readers were not online {limit_s:.0f} s after its start")

    def _start_office(self) -> tuple[str, str]:
        from gateway.config.root import load_config
        from gateway.demo.run import GATE, NOTICE, PREFIX, SITE
        from gateway.gate.roster_wiring import office_agent, single_thread_runner
        from gateway.mqtt import sign
        from gateway.privacy.roster_crypto import (
            ack_public_b64,
            gate_ack_private,
            gate_private,
            public_b64,
        )
        from gateway.privacy.vault import Vault

        stack = self.stack
        db = stack._db()
        try:
            root = stack.gate_keys(db).roster_root
            gate_key = public_b64(gate_private(root))
            ack_key = ack_public_b64(gate_ack_private(root))  # the gate signs its acks
        finally:
            db.close()
        signing = sign.generate()
        keys_dir = self.folder / "keys"
        signing_path = keys_dir / "manifest-signing.pem"
        signing_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        signing_path.unlink(missing_ok=True)  # a new office for an attempt that failed
        sign.write_private(signing, signing_path)
        self.config_path.write_text(
            OFFICE_CONFIG.format(
                site=SITE,
                gate=GATE,
                mqtt_url=stack.mqtt_url,
                prefix=PREFIX,
                protocol=stack.mqtt_protocol,
                state_dir=self.folder / "state",
                notice=NOTICE,
                device_key=write_secret(
                    self.folder / "keys" / "device-key", secrets.token_bytes(32)
                ),
                site_key=stack.keys["site"],
                signing_key=signing_path,
                scbk=write_secret(keys_dir / "scbk", secrets.token_hex(16).encode()),
                gate_key=gate_key,
                ack_key=ack_key,
            )
        )
        cfg = load_config(self.config_path, env=False)
        self._agent_db, keys = self._open(cfg)
        run_db, self._close = single_thread_runner()
        agent = office_agent(cfg, keys, self._agent_db, Vault.from_keys(keys), run_db)
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            self._task = loop.create_task(agent.run())
            ready.set()
            try:
                loop.run_until_complete(self._task)
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="demo-roster-office", daemon=True)
        self._thread.start()
        ready.wait(5)
        public = signing.public_key()
        return sign.key_id_of(public), sign.public_b64(public)

    def _open(self, cfg: Any = None) -> tuple[Any, Any]:
        """A connection to the office database (its audit chain keyed) and its keys."""
        from gateway.config.root import load_config
        from gateway.keys import Purpose
        from gateway.privacy import audit
        from gateway.services.keys import load_keys
        from gateway.services.site_rotation import carry_pin_index
        from gateway.store import database as store

        cfg = cfg or load_config(self.config_path, env=False)
        db = store.connect(cfg.storage.database_path)
        keys = load_keys(cfg, db.conn)
        audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
        site_index = self.stack.site_pin_index_key()
        if keys.pin_index_site != site_index:  # set up after a site-key rotation
            carry_pin_index(db, keys, site_index, actor="installer")
            keys = load_keys(cfg, db.conn)
        return db, keys

    def stop(self) -> None:
        """Stop the office (nothing when it never started)."""
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(10)
        if self._close is not None:
            self._close()
        if self._agent_db is not None:
            self._agent_db.close()
        self._thread = self._loop = self._task = self._close = self._agent_db = None

    # -- fixtures -----------------------------------------------------------------------------
    async def provision(self, fixtures: dict[str, Any]) -> dict[str, Any]:
        """Enrol the fixture people marked ``office`` at the office (the gate learns them
        from the roster; converged before the scenario starts); the other fixtures."""
        ours = [p for p in fixtures.get("people", []) if p.get("office")]
        if not ours:
            return fixtures
        await self.ensure()
        await asyncio.to_thread(self._enrol, ours)
        await self.wait_converged()
        rest = [p for p in fixtures.get("people", []) if not p.get("office")]
        return {**fixtures, "people": rest}

    def _enrol(self, people: list[dict[str, Any]]) -> None:
        from gateway.credentials.store import Credentials
        from gateway.demo.run import NOTICE
        from gateway.face.gallery import Gallery
        from gateway.privacy.enroll import enroll_arrays
        from gateway.privacy.notice import load_notice
        from gateway.privacy.vault import Vault
        from gateway.services import consent as consent_svc
        from gateway.services import credentials as creds_svc
        from gateway.services import people as people_svc

        db, keys = self._open()
        try:
            vault = Vault.from_keys(keys)
            creds = creds_svc.CredentialDeps(
                Credentials(db, keys.device, index_key=keys.pin_index_site)
            )
            notice = load_notice(NOTICE, "demo-1")
            for p in people:
                name = p["name"]
                if name in self.people:
                    raise RuntimeError(f"{p['ref']} is already on the office's roster")
                new = people_svc.NewPerson(name, unit=office_unit(len(self.kept)))
                pid = people_svc.add_person(db, new, actor="office")
                self.people[name] = self.kept[name] = pid
                if p.get("consent", True):
                    answer = consent_svc.ConsentAnswer(pid, "paper", "office", scope="compound")
                    consent_svc.grant(db, notice, answer)
                if p.get("card"):
                    card = (p["card"].get("facility"), p["card"]["number"])
                    creds_svc.add_card(creds, pid, card, actor="office", channel="cli")
                if p.get("pin"):
                    creds_svc.set_pin(creds, pid, p["pin"], actor="office", channel="cli")
                if p.get("face") and p.get("consent", True):
                    corpus = self.stack.sim.corpus
                    if corpus.shortfall() is not None:  # a card/PIN scenario still runs
                        print(
                            f"note: {p['ref']} enrolled at the office without a face: "
                            f"{corpus.shortfall()}",
                            flush=True,
                        )
                        continue
                    images = corpus.enrolment_images(name)
                    enroll_arrays(
                        db, vault, self.stack.pipeline, Gallery(), pid, images, actor="office"
                    )
        finally:
            db.close()

    # -- harness steps ------------------------------------------------------------------------
    async def harness(self, name: str, args: dict[str, Any]) -> None:
        """One of :data:`STEPS`."""
        if name == "gate_offline":
            await self.stack.stop_daemon()
        elif name == "gate_online":
            await self.start_gate()
        elif name == "wait_converged":
            await self.wait_converged(float(args.get("timeout_s", 15.0)))
        elif name == "gate_forgot":
            await asyncio.to_thread(self._gate_forgot, self._pid(args["person"], deleted=True))
        else:
            await asyncio.to_thread(self._office_change, name, self._pid(args["person"]))

    def _pid(self, ref: str, *, deleted: bool = False) -> str:
        name = self.stack.sim.corpus.resolve(ref)
        pid = (self.kept if deleted else self.people).get(name)
        if pid is None:
            raise RuntimeError(f"{ref} is not on the office's roster (fixture office: true)")
        return pid

    def _office_change(self, step: str, pid: str) -> None:
        from gateway.credentials.store import Credentials
        from gateway.face.gallery import Gallery
        from gateway.privacy.vault import Vault
        from gateway.services import credentials as creds_svc
        from gateway.services import people as people_svc
        from gateway.services.withdrawal import withdraw

        db, keys = self._open()
        try:
            vault = Vault.from_keys(keys)
            creds = Credentials(db, keys.device, index_key=keys.pin_index_site)
            if step == "office_withdraw":
                withdraw(db, vault, Gallery(), pid, "paper", actor="office", vacuum=False)
            elif step == "office_revoke_card":
                deps = creds_svc.CredentialDeps(creds)
                if not creds_svc.revoke_card(deps, pid, actor="office", channel="cli"):
                    raise RuntimeError("office_revoke_card: the person has no active card")
            else:
                deletion = people_svc.DeletionDeps(creds, vault, Gallery())
                people_svc.delete_person(deletion, pid, actor="office", channel="cli")
                self.people = {n: p for n, p in self.people.items() if p != pid}
        finally:
            db.close()

    async def wait_converged(self, timeout_s: float = 15.0) -> None:
        """Until the office has made a version of every change and every gate acknowledged
        it without error; RuntimeError (the scenario fails) naming the gates behind."""
        deadline = time.monotonic() + timeout_s
        while True:
            st, dirty = await asyncio.to_thread(self._status)
            behind = [g for g in st["gates"] if g["behind"] or g["error"] or not g["last_ack"]]
            if not dirty and st["gates"] and not behind:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"roster not converged within {timeout_s:.0f} s: "
                    f"{dirty} people not versioned yet; behind: {behind}"
                )
            await asyncio.sleep(0.2)

    def _status(self) -> tuple[dict[str, Any], int]:
        from gateway.demo.run import SITE
        from gateway.services.roster_publish import status

        db, _keys = self._open()
        try:
            dirty = int(db.execute("SELECT count(*) FROM roster_dirty").fetchone()[0])
            return asdict(status(db, SITE)), dirty
        finally:
            db.close()

    def _gate_forgot(self, pid: str) -> None:
        """RuntimeError unless the gate holds nothing of the person (by its roster id)."""
        from gateway.demo.run import GATE
        from gateway.privacy.roster_crypto import roster_id

        office, keys = self._open()
        office.close()
        rid = roster_id(keys.roster_root, GATE, pid)
        db = self.stack._db()
        try:
            left = [
                t
                for t in TRACES
                if db.execute(
                    f"SELECT count(*) FROM {t} WHERE {'id' if t == 'people' else 'person_id'} = ?",  # noqa: S608 - fixed names
                    [rid],
                ).fetchone()[0]
            ]
        finally:
            db.close()
        if left:
            raise RuntimeError(f"the gate still holds the deleted person in: {', '.join(left)}")
