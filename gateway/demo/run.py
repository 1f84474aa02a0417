"""``gateway demo``: broker + simulator + the real daemon + the scenario library, one command.

The daemon runs as its own process with a generated config pointing at the simulator's
URLs (no "simulation mode"). Residents are enrolled from the simulator's face corpus with
recorded consent; images stay in memory. Events are printed as the broker delivers them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from gateway.daemon.heap import freeze_startup_heap
from gateway.demo import console as web_console
from gateway.demo import daemon_log, management
from gateway.demo.console import DemoConsole
from gateway.demo.files import demo_keys, render_config
from gateway.demo.models import install_landmark_model, install_models
from gateway.demo.report import all_failed, exit_code, print_results
from gateway.demo.roster_office import STEPS as ROSTER_STEPS
from gateway.demo.roster_office import DemoOffice
from gateway.demo.rotation import rotate_every_key

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCENARIOS = REPO_ROOT / "hw-sim" / "scenarios"
MODEL_CACHE = Path(os.environ.get("GATEWAY_MODEL_CACHE", Path.home() / ".cache" / "access-gateway"))
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", REPO_ROOT.parent / "shared"))
PREFIX = "access"
#: The demo config's ``face.approach_gap_s``: no face for this long ends an approach.
APPROACH_GAP_S = 1.5
SITE = "demo"
GATE = "gate-1"

NOTICE = management.NOTICE

BrokerControl = Callable[[str], Awaitable[None]]


class DemoStack:
    """Simulator, generated config and the daemon process; the scenario harness."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        broker_control: BrokerControl | None,
        workdir: Path,
        mqtt_protocol: str = "auto",
        print_events: bool = True,
    ) -> None:
        self.mqtt_url, self.mqtt_protocol = mqtt_url, mqtt_protocol
        self.broker_control = broker_control  # the harness's stop_broker/start_broker
        self.workdir = workdir
        self.print_events = print_events
        self.sim: Any = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._daemon_mark = 0  # daemon.log's size when the daemon was last started
        self.config_path = workdir / "gateway.toml"
        self.state_dir = workdir / "state"
        self.model_dir = MODEL_CACHE / "models"
        self.keys: dict[str, Path] = {}
        self.command_key: Any = None
        self.pipeline: Any = None
        self.have_antispoof = False
        self.landmarks_error: str | None = "not installed yet"
        self._people: dict[str, str] = {}
        self._played = False
        self._printer: asyncio.Task[None] | None = None
        self.console: DemoConsole | None = None  # the web console, when the extra is there
        self.office = DemoOffice(self)  # the compound's roster office, once a scenario needs it
        self._pin_index_key: bytes | None = None

    # -- setup ------------------------------------------------------------------------------
    def start_sim(self) -> None:
        """Start the hardware simulator on free ports."""
        from hw_sim.config import SimConfig
        from hw_sim.sim import Simulator

        self.sim = Simulator(SimConfig.demo()).start()

    def write_config(self, liveness: str | None = None) -> Path:
        """Keys, notice and the daemon's TOML, pointing at the simulator's URLs."""
        from gateway.mqtt import sign

        self.keys = demo_keys(self.workdir / "keys", self.sim)
        self.command_key = sign.generate()
        if liveness is None:
            # No anti-spoofing model: "required" would disable the face path altogether.
            liveness = "required" if self.have_antispoof else "off"
        text = render_config(
            self.sim,
            self.keys,
            site=SITE,
            gate=GATE,
            prefix=PREFIX,
            liveness=liveness,
            model_dir=self.model_dir,
            approach_gap_s=APPROACH_GAP_S,
            mqtt_url=self.mqtt_url,
            protocol=self.mqtt_protocol,
            key_id="demo",
            command_key=base64.b64encode(sign.public_raw(self.command_key.public_key())).decode(),
            state_dir=self.state_dir,
            notice=NOTICE,
        )
        if self.console is not None:
            text += self.console.config_section()
        self.config_path.write_text(text)
        return self.config_path

    def load_pipeline(self) -> None:
        """Models for enrolment (the daemon loads its own)."""
        from gateway.face.pipeline import FacePipeline
        from gateway.face.settings import FaceSettings

        # Without ../shared the models live apart: a cache shared with a ../shared run must
        # not lend a fresh-clone run its anti-spoofing models.
        if not (SHARED / "models" / "antispoof").is_dir():
            self.model_dir = MODEL_CACHE / "models-no-antispoof"
        self.have_antispoof = install_models(self.model_dir, SHARED)
        self.landmarks_error = install_landmark_model(self.model_dir)
        self.pipeline = FacePipeline.load(self.model_dir, FaceSettings(threads=1, warmup=False))

    async def start_daemon(self, limit_s: float = 60.0) -> None:
        """Run ``gateway run`` as its own process and wait until it is ready. The
        simulator's readers answer its polls from this process: the heap so far (models,
        browser driver, a test worker's modules) is first kept out of the collector's full
        passes (:mod:`gateway.daemon.heap`)."""
        freeze_startup_heap("simulator")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        log_path = self.workdir / "daemon.log"
        offset = self._daemon_mark = daemon_log.log_size(log_path)
        logf = log_path.open("ab")
        self.proc = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "gateway", "--config", str(self.config_path), "run"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited early:\n{self.daemon_log_tail()}")
            text = daemon_log.read_since(log_path, offset)
            if "subsystems wired" in text and "running for site" in text:
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"the daemon did not become ready:\n{self.daemon_log_tail()}")
        await self._wait_readers_online()

    async def _wait_readers_online(self, limit_s: float = 20.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            text = (self.workdir / "daemon.log").read_text(errors="replace")
            online = sum(
                f"reader {r}: online" in text or f"reader {r} online" in text
                for r in ("entry", "side")
            )
            st = await asyncio.to_thread(self.sim.state)
            readers = st.get("readers", {})
            if readers and all(
                r.get("online") or r.get("sc_active") or r.get("connected")
                for r in readers.values()
            ):
                return
            if online >= 2:
                return
            await asyncio.sleep(0.3)

    def daemon_log_tail(self, lines: int = 40) -> str:
        """The end of the daemon's log."""
        path = self.workdir / "daemon.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    async def stop_daemon(self) -> int | None:
        """SIGTERM the daemon and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def stop_sim(self) -> None:
        """Stop the simulator."""
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    # -- harness ------------------------------------------------------------------------------
    async def harness(self, name: str, args: dict[str, Any]) -> None:
        """Carry out a scenario's harness step."""
        if name == "provision":  # people marked office: enrolled at the roster office
            mark = daemon_log.log_size(self.workdir / "daemon.log")
            # A scenario must not start while the gate still sees its resident as unknown:
            # wait for the data watch to load the face data just enrolled.
            took_up = r"gallery loaded: [1-9]\d* people"
            here = await self.office.provision(args)
            enrolled = await asyncio.to_thread(self._provision, here)
            path = self.workdir / "daemon.log"
            if enrolled and not await daemon_log.wait_for_line(path, mark, took_up, 10.0):
                log.warning("demo: the daemon's gallery did not take up new face data")
            await self.settle(clear=False)
        elif name in ("stop_broker", "start_broker"):
            if self.broker_control is None:
                raise RuntimeError(f"harness step {name} needs a broker this demo controls")
            await self.broker_control(name)
        elif name == "withdraw_consent":
            await self._withdraw(args["person"])
        elif name == "sync_person":
            await self._sync(args["person"])
        elif name == "set_pin":
            await self._set_pin(args["person"], str(args["pin"]))
        elif name in ROSTER_STEPS:
            await self.office.harness(name, args)
        else:
            raise RuntimeError(f"unknown harness step {name!r}")

    async def settle(self, limit_s: float = 15.0, *, clear: bool = True) -> None:
        """Start each scenario from a quiet gate: nobody left in view of a camera (a person
        still lingering from the last scenario would continue its approach, and one approach
        yields one decision), that approach over, and every door locked and closed."""
        if clear:
            st = await asyncio.to_thread(self.sim.state)
            for cam in [n for n, c in st.get("cameras", {}).items() if c.get("people")]:
                await asyncio.to_thread(self.sim.do, "clear-camera", {"camera": cam})
            if self._played:
                # Someone may have left the view just now: let that approach end.
                await asyncio.sleep(APPROACH_GAP_S + 0.5)
            self._played = True
        deadline = time.monotonic() + limit_s
        busy: list[str] = []
        while time.monotonic() < deadline:
            st = await asyncio.to_thread(self.sim.state)
            doors = st.get("doors", {})
            busy = [
                n for n, d in doors.items() if d.get("relay") or (d.get("door") or {}).get("open")
            ]
            if not busy:
                return
            await asyncio.sleep(0.25)
        log.warning("demo: doors %s still unlocked or open after %.0f s", busy, limit_s)

    def _db(self) -> Any:
        """The state database, its audit chain keyed as the daemon keys it."""
        from gateway.keys import Purpose
        from gateway.privacy import audit
        from gateway.store import database as store

        db = store.connect(self.state_dir / "state.db")
        keys = self.gate_keys(db)
        audit.bind_key(db, audit.ChainKey(keys.subkey(Purpose.AUDIT_CHAIN)))
        return db

    def gate_keys(self, db: Any) -> Any:
        """The gate's keys as the daemon loads them (from any key provider, with the device
        subkeys carried over and the purpose generations of the key rotations)."""
        from gateway.config.root import load_config
        from gateway.services.keys import load_keys

        return load_keys(load_config(self.config_path), db.conn)

    def _provision(self, fixtures: dict[str, Any]) -> bool:
        """Provision a scenario's fixtures; True when someone's face data was enrolled."""
        from gateway.credentials.hashing import CredentialError, PinTerms
        from gateway.credentials.store import Credentials
        from gateway.face.gallery import Gallery
        from gateway.privacy import consent
        from gateway.privacy.enroll import enroll_arrays
        from gateway.privacy.notice import load_notice
        from gateway.privacy.people import add_person
        from gateway.privacy.vault import Vault

        db = self._db()
        try:
            keys = self.gate_keys(db)
            creds = Credentials(
                db, keys.device, index_key=keys.pin_index_site, carried=keys.carried
            )
            vault = Vault.from_keys(keys)
            notice = load_notice(NOTICE, "demo-1")
            now = time.time()
            # Each scenario starts from a clean slate for lockouts (a test fixture reset).
            db.execute("DELETE FROM lockouts")
            enrolled = False
            for person in fixtures.get("people", []):
                name = person["name"]
                pid = self._people.get(name)
                if pid is None:
                    pid = add_person(db, name, unit=demo_unit(len(self._people)), actor="demo")
                    self._people[name] = pid
                if person.get("card"):
                    with contextlib.suppress(CredentialError):
                        creds.add_card(
                            pid, person["card"].get("facility"), person["card"]["number"], now
                        )
                kinds: tuple[tuple[Literal["normal", "duress"], str], ...] = (
                    ("normal", "pin"),
                    ("duress", "duress_pin"),
                )
                for kind, key in kinds:
                    if person.get(key):
                        with contextlib.suppress(CredentialError):
                            creds.set_pin(pid, person[key], now, PinTerms(kind))
                if person.get("consent", True):
                    latest = consent.latest(db, pid)
                    if latest is None or latest.status != "granted":
                        consent.grant(db, pid, notice, method="kiosk", recorded_by="demo")
                wants_face = person.get("face") and person.get("consent", True)
                if wants_face and not vault.has_face_data(db, pid):
                    images = self.sim.corpus.enrolment_images(name)
                    enroll_arrays(db, vault, self.pipeline, Gallery(), pid, images, actor="demo")
                    enrolled = True
            for i, visitor in enumerate(fixtures.get("visitor_pins", [])):
                key = f"visitor:{visitor['pin']}"
                pid = self._people.get(key)
                if pid is None:
                    pid = add_person(
                        db,
                        f"Visitor {len(self._people) + i + 1}",
                        role="visitor",
                        access_group="visitors",
                        actor="demo",
                    )
                    self._people[key] = pid
                with contextlib.suppress(CredentialError):
                    valid_until = now + float(visitor.get("valid_s", 3600))
                    creds.set_pin(pid, visitor["pin"], now, PinTerms("visitor", valid_until))
            return enrolled
        finally:
            db.close()

    async def _withdraw(self, ref: str) -> None:
        """Withdraw consent through the signed MQTT command, as the management system would."""
        name = self.sim.corpus.resolve(ref)
        pid = self._people.get(name)
        if pid is None:
            raise RuntimeError(f"person {ref} was not provisioned")
        await self.command("withdraw_consent", {"person_ref": self.person_ref(pid)})

    def site_key(self) -> bytes:
        """The site key as the gateway reads its file (a rotation rewrites the file)."""
        return management.site_key(self.keys)

    def site_pin_index_key(self) -> bytes:
        """The site's PIN-index key, kept as a management side keeps it (carried over every
        site-key rotation: :func:`management.first_pin_index_key`)."""
        self._pin_index_key = self._pin_index_key or management.first_pin_index_key(self.keys)
        return self._pin_index_key

    def person_ref(self, person_id: str) -> str:
        """``person_id`` sealed for the site's gates, as a command carries it."""
        from gateway.privacy import person_ref

        return person_ref.seal(self.site_key(), person_id)

    async def _sync(self, ref: str) -> None:
        """Enrol at the office and sync the templates to this gate by signed MQTT command."""
        name = self.sim.corpus.resolve(ref)
        export = functools.partial(
            management.office_export,
            self.workdir / "office",
            self.keys,
            self.pipeline,
            self.sim.corpus,
            name=name,
            unit=demo_unit(len(self._people)),
        )
        pid, args = await asyncio.to_thread(export)
        self._people[name] = pid
        await self.command("sync_person", args)

    async def _set_pin(self, ref: str, pin: str) -> None:
        """Set a PIN as the management system does: only its hash and index travel."""
        from gateway.credentials.hashing import management_pin_record

        name = self.sim.corpus.resolve(ref)
        pid = self._people.get(name)
        if pid is None:
            raise RuntimeError(f"person {ref} was not provisioned")
        record = functools.partial(
            management_pin_record, pin, self.site_key(), pid, index_key=self.site_pin_index_key()
        )
        sealed, index = await asyncio.to_thread(record)
        await self.command(
            "set_pin",
            {"person_ref": self.person_ref(pid), "pin_hash_sealed": sealed, "pin_index": index},
        )

    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Send a signed command as the management system would; its ``cmd_result`` body.

        Raises RuntimeError when the gate does not answer or refuses the command.
        """
        from gateway.mqtt.topics import Topics

        # A command is not kept for a gate that has not subscribed yet: wait for its session.
        log_path = self.workdir / "daemon.log"
        await daemon_log.wait_for_line(log_path, self._daemon_mark, "MQTT session ready", 15.0)
        topics = Topics(PREFIX, SITE, GATE)
        return await management.send_command(
            self.mqtt_url, self.command_key, topics, name, args, site=SITE, gate=GATE
        )

    # -- events -------------------------------------------------------------------------------
    async def print_events_task(self) -> None:
        """Print every event as it arrives (anonymized: what a guard house would see)."""
        await management.print_events(self.mqtt_url, PREFIX)


def demo_unit(n: int) -> str:
    """A made-up unit for the demo's ``n``-th person (a test looks for it on the broker)."""
    return f"Bldg{n % 7 + 1} Rm{1201 + n}"


async def run_demo(args: argparse.Namespace) -> int:
    """Set everything up, play the scenarios, print the summary; 0 only if every runnable
    scenario passed. A failure in one scenario never stops the run."""
    from gateway.demo.broker import EmbeddedBroker

    files = _scenario_files(args.scenarios)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    broker: EmbeddedBroker | None = None
    mqtt_url = args.mqtt
    control: BrokerControl | None = None
    printed = False
    if mqtt_url is None:
        broker = EmbeddedBroker()
        await broker.start()
        mqtt_url = broker.url
        print(f"embedded MQTT broker on {mqtt_url}", flush=True)

        async def control_embedded(step: str) -> None:
            assert broker is not None  # noqa: S101 - set just above
            if step == "stop_broker":
                await broker.stop()
            else:
                await broker.start()

        control = control_embedded
    stack = DemoStack(
        mqtt_url=mqtt_url,
        broker_control=control,
        workdir=workdir,
        mqtt_protocol="3.1.1" if broker is not None else "auto",
    )
    try:
        try:
            unmet = await _set_up(stack)
        except Exception as exc:  # noqa: BLE001 - reported; every scenario is marked failed
            print(f"demo set-up failed: {exc}", file=sys.stderr, flush=True)
            print(stack.daemon_log_tail(), file=sys.stderr, flush=True)
            results = all_failed(files, f"demo set-up failed: {type(exc).__name__}: {exc}")
        else:
            rotate = getattr(args, "rotate_keys", False)
            results = await rotate_every_key(stack, unmet) if rotate else []
            results += await _play(stack, files, mqtt_url, unmet)
            if getattr(args, "keep_open", False):
                print_results(results)
                printed = True
                await web_console.keep_open()
    finally:
        await stack.stop_daemon()
        await asyncio.to_thread(stack.office.stop)
        await asyncio.to_thread(stack.stop_sim)
        if broker is not None:
            await broker.stop()
        if args.keep:
            print(f"work directory kept: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not printed:
        print_results(results)
    return exit_code(results)


def _scenario_files(args: Sequence[Path] | None) -> list[Path]:
    files: list[Path] = []
    for p in sorted(Path(p) for p in (args or [DEFAULT_SCENARIOS])):
        files.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    return files


async def _set_up(stack: DemoStack) -> dict[str, str]:
    """Corpus, simulator, models, config and daemon; the unmet needs (need -> reason)."""
    from gateway.demo.needs import prepare_corpus, unmet_needs

    corpus_error = await asyncio.to_thread(prepare_corpus)
    print("starting the hardware simulator (camera stream, OSDP readers, doors)", flush=True)
    await asyncio.to_thread(stack.start_sim)
    print("installing face models", flush=True)
    await asyncio.to_thread(stack.load_pipeline)
    unmet = unmet_needs(
        have_antispoof=stack.have_antispoof,
        landmarks_error=stack.landmarks_error,
        shared=SHARED,
        corpus_shortfall=stack.sim.corpus.shortfall(),
        corpus_error=corpus_error,
        broker_control=stack.broker_control is not None,
    )
    if not stack.have_antispoof:
        print(
            "no anti-spoofing model: the demo door runs with liveness = off "
            "(stereo-gate and nir-gate keep liveness = required: their pair checks)",
            flush=True,
        )
    stack.console = web_console.plan()
    stack.write_config()
    print(f"starting the daemon: gateway --config {stack.config_path} run", flush=True)
    await stack.start_daemon()
    if stack.console is not None:
        db = stack._db()
        try:
            web_console.add_admin(db, stack.console)
        finally:
            db.close()
        fp = await web_console.wait_up(stack.console, stack.state_dir)
        web_console.announce(stack.console, fp)
    return unmet


async def _play(
    stack: DemoStack, files: Sequence[Path], mqtt_url: str, unmet: dict[str, str]
) -> list[Any]:
    """Play each scenario; an error in one fails that one and the run goes on."""
    from hw_sim.runner import format_report, run_scenarios_async

    printer = asyncio.create_task(stack.print_events_task(), name="event-printer")
    print(f"playing {len(files)} scenarios\n", flush=True)
    results: list[Any] = []
    try:
        for f in files:
            print(f"== scenario {f.stem}", flush=True)
            try:
                await stack.settle()
                one = await run_scenarios_async(
                    [f], stack.sim, mqtt_url, PREFIX, harness=stack.harness, unmet=unmet
                )
            except Exception as exc:  # noqa: BLE001 - this scenario fails, the run goes on
                one = all_failed([f], f"{type(exc).__name__}: {exc}")
            results.extend(one)
            for r in one:
                if not r.passed:
                    print(format_report([r]), flush=True)
    finally:
        printer.cancel()
    return results


def _cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(run_demo(args))


def register(subparsers: Any) -> None:
    """Add ``gateway demo``."""
    p = subparsers.add_parser(
        "demo", help="run the simulator, the daemon and the scenario library (exit 0 if all pass)"
    )
    p.add_argument(
        "scenarios", nargs="*", type=Path, help="scenario files or folders (default: all)"
    )
    p.add_argument("--mqtt", help="use this broker (mqtt://host:port) instead of an embedded one")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, config)")
    p.add_argument(
        "--keep-open",
        action="store_true",
        help="after the scenarios keep the simulator, the daemon and its web console running "
        "(Ctrl-C stops them)",
    )
    p.add_argument(
        "--rotate-keys",
        action="store_true",
        help="before the scenarios rotate every key (as gateway keys rotate does) and check "
        "the old key material is gone",
    )
    p.set_defaults(func=_cmd_demo)
