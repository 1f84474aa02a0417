"""The compound roster against a real mosquitto it starts (issue 15 benchmarks).

1. ``gates`` lightweight gate agents (the real ``GateRosterAgent``, each with its own state
   database and MQTT connection, spread over ``--gate-procs`` processes of one event loop
   each: a real compound has one device per gate) follow one office; residents withdraw
   one after another; per withdrawal and gate: the time from the withdrawal at the office
   until the office has recorded that gate's signed acknowledgement of it (target: p95
   <= 2 s over all). The load average is recorded before and after.
2. A new gate joins a roster of ``join_people`` people with 3 templates each: from its
   registration at the office until it acknowledged the whole roster (target <= 60 s for
   10,000 people).
3. A gate offline while ``catchup`` changes are made catches up on reconnect: from its
   start until its acknowledgement (target <= 10 s for 1,000 changes).
4. ``sizes``: the bytes of a manifest, a change with 3 templates, a withdrawal, an ack and
   a snapshot of ``--snapshot-people`` (the README's clustered-broker sizing).

    python benchmarks/bench_roster.py --json benchmarks/results/roster.json [--only fan_out]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from gateway.face.gallery import Gallery
from gateway.gate.roster_agent import GateRosterAgent, OfficeRosterAgent, OfficeSettings
from gateway.mqtt.client import MqttSettings
from gateway.mqtt.roster_topics import RosterTopics
from gateway.services import credentials as creds_svc
from gateway.services import roster_gate, roster_office, roster_publish
from gateway.services.withdrawal import withdraw
from tests.mosquitto import Mosquitto
from tests.roster.support import SITE, make_gate, make_office, open_gate, register_gate

TOPICS = RosterTopics("access", SITE)
PARTS = ["fan_out", "catch_up", "join", "sizes"]


def office_agent(
    office: Any, settings: MqttSettings, view: OfficeView, **more: Any
) -> OfficeRosterAgent:
    """The office's roster agent on the benchmark's broker (polls every 50 ms)."""
    return OfficeRosterAgent(
        office.deps,
        office.signing,
        settings,
        TOPICS,
        view.run_db,
        settings=OfficeSettings(poll_s=0.05, **more),
    )


async def _inline(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class OfficeView:
    """Every gate's acknowledged versions as the office recorded them (verified, signed),
    with the time: the office agent's database calls go through :meth:`run_db`."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[float, int]]] = {}
        self.changed = asyncio.Event()

    async def run_db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if fn is roster_office.record_ack and result:
            gate, payload = args[2], args[3]
            v = int(json.loads(payload)["version"])
            self.seen.setdefault(gate, []).append((time.perf_counter(), v))
            self.changed.set()
        return result

    def reached(self, gate: str, version: int) -> float | None:
        return next((t for t, v in self.seen.get(gate, []) if v >= version), None)

    async def wait(self, wanted: dict[str, int], timeout_s: float) -> None:
        deadline = time.perf_counter() + timeout_s
        while any(self.reached(g, v) is None for g, v in wanted.items()):
            if time.perf_counter() > deadline:
                missing = [g for g, v in wanted.items() if self.reached(g, v) is None]
                raise TimeoutError(f"{len(missing)} gates did not acknowledge")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _gate_group(port: int, tmp: Path, devices: dict[str, bytes], trusted: dict[str, str]) -> None:
    """A child process: these gates' agents on one event loop until terminated."""
    gates = [open_gate(tmp, name, trusted, device=dev) for name, dev in devices.items()]
    settings = MqttSettings(port=port)

    async def follow() -> None:
        agents = [GateRosterAgent(g.deps, settings, TOPICS, _inline) for g in gates]
        await asyncio.gather(*(a.run() for a in agents))

    asyncio.run(follow())


def _heads(office: Any) -> dict[str, int]:
    return {
        g: roster_office.head(office.db, SITE, g)[0] for g in roster_office.gate_keys(office.db)
    }


async def fan_out(port: int, tmp: Path, gates: int, withdrawals: int, procs: int) -> dict[str, Any]:
    office = make_office(tmp)
    devices = {f"g{i:03d}": os.urandom(32) for i in range(gates)}
    for name, dev in devices.items():
        register_gate(office, name, dev)
    pids = [office.add(f"resident {i}", card=1000 + i) for i in range(withdrawals + 2)]
    names = sorted(devices)
    ctx = multiprocessing.get_context("fork")  # before any event loop or thread here
    children = [
        ctx.Process(
            target=_gate_group,
            args=(port, tmp, {n: devices[n] for n in names[i::procs]}, office.trusted),
            daemon=True,
        )
        for i in range(procs)
    ]
    for c in children:
        c.start()
    settings = MqttSettings(port=port)
    view = OfficeView()
    oa = office_agent(office, settings, view)
    task = asyncio.ensure_future(oa.run())
    samples: list[float] = []
    load_before = _load()
    try:
        await view.wait(await _target(office), 180)
        await asyncio.sleep(2)  # the acks of the initial sync settle
        load_before = _load()
        for pid in pids[:withdrawals]:
            t0 = time.perf_counter()
            withdraw(office.db, office.vault, Gallery(), pid, "paper", vacuum=False)
            await asyncio.sleep(0)
            target = await _target(office)
            await view.wait(target, 60)
            samples += [view.reached(g, v) - t0 for g, v in target.items()]  # type: ignore[operator]
    finally:
        task.cancel()
        await asyncio.wait([task], timeout=30)
        for c in children:
            c.terminate()
        for c in children:
            c.join(10)
    samples.sort()
    p95 = samples[int(0.95 * (len(samples) - 1))]
    return {
        "gates": gates,
        "gate_processes": procs,
        "withdrawals": withdrawals,
        "acks": len(samples),
        "p50_s": round(statistics.median(samples), 3),
        "p95_s": round(p95, 3),
        "max_s": round(samples[-1], 3),
        "target_p95_s": 2.0,
        "pass": p95 <= 2.0,
        "load_avg_before": load_before,
        "load_avg_after": _load(),
    }


async def _target(office: Any) -> dict[str, int]:
    while True:  # the office's next pass makes the change: its version at every gate
        row = office.db.execute("SELECT count(*) FROM roster_dirty").fetchone()[0]
        if not row:
            return _heads(office)
        await asyncio.sleep(0.01)


async def join(port: int, tmp: Path, people: int) -> dict[str, Any]:
    office = make_office(tmp)
    t_seed = time.perf_counter()
    for i in range(people):
        office.add(f"person {i}", card=10_000 + i)
    seeded = time.perf_counter() - t_seed
    settings = MqttSettings(port=port)
    acks = OfficeView()
    oa = office_agent(office, settings, acks, max_pending=1_000_000)
    tasks = [asyncio.ensure_future(oa.run())]
    try:
        t0 = time.perf_counter()
        gate = make_gate(tmp, "newgate", office)  # registered: every person reconciled for it
        agent = GateRosterAgent(gate.deps, settings, TOPICS, _inline, fetch_wait_s=30)
        tasks.append(asyncio.ensure_future(agent.run()))
        await acks.wait({"newgate": people}, 600)
        joined = acks.reached("newgate", people) - t0  # type: ignore[operator]
        n = gate.db.execute("SELECT count(*) FROM templates").fetchone()[0]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=30)
    return {
        "people": people,
        "templates_at_gate": n,
        "seed_office_s": round(seeded, 1),
        "join_s": round(joined, 2),
        "target_s_for_10000": 60.0,
    }


async def catch_up(port: int, tmp: Path, changes: int) -> dict[str, Any]:
    office = make_office(tmp)
    gate = make_gate(tmp, "offline", office)
    pids = [office.add(f"person {i}", card=20_000 + i) for i in range(max(1, changes // 10))]
    settings = MqttSettings(port=port)
    acks = OfficeView()
    oa = office_agent(office, settings, acks, max_pending=1_000_000)
    tasks = [asyncio.ensure_future(oa.run())]
    try:
        agent = GateRosterAgent(gate.deps, settings, TOPICS, _inline)
        first = asyncio.ensure_future(agent.run())
        await acks.wait({"offline": len(pids)}, 120)
        first.cancel()
        await asyncio.wait([first], timeout=30)
        deps = creds_svc.CredentialDeps(office.creds)
        made = 0
        while made < changes:  # a simulated day: cards revoked and given again
            pid = pids[made % len(pids)]
            creds_svc.revoke_card(deps, pid, actor="b", channel="cli")
            roster_office.reconcile(office.deps)  # one version each, as a day of edits
            creds_svc.add_card(deps, pid, (10, 30_000 + made), actor="b", channel="cli")
            roster_office.reconcile(office.deps)
            made += 2
        target = (await _target(office))["offline"]
        t0 = time.perf_counter()
        agent = GateRosterAgent(gate.deps, settings, TOPICS, _inline)
        tasks.append(asyncio.ensure_future(agent.run()))
        await acks.wait({"offline": target}, 120)
        took = acks.reached("offline", target) - t0  # type: ignore[operator]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=30)
    return {
        "changes": target - len(pids),
        "catch_up_s": round(took, 2),
        "target_s": 10.0,
        "pass": took <= 10,
    }


async def sizes(tmp: Path, people: int) -> dict[str, Any]:
    """Bytes of what the roster puts on the broker (for the clustered-broker sizing in the
    README): a manifest, one person's change with 3 templates, a withdrawal, an ack, and
    the snapshot of ``people`` people with 3 templates each."""
    office = make_office(tmp)
    gate = make_gate(tmp, "g", office)
    kw = {"chunk_bytes": 256 * 1024, "max_pending": 5000}

    broker: dict[str, bytes] = {}

    def publish(**extra: Any) -> dict[str, int]:
        roster_office.reconcile(office.deps)
        pub = roster_publish.plan(office.deps, "g", office.signing, **{**kw, **extra})
        roster_publish.published(office.deps, pub)
        broker.update({f"g/{t}": p for t, p in pub.messages})
        return {t: len(p) for t, p in pub.messages}

    pid = office.add("person 0", card=1)
    put = publish()
    gate.sync(broker, office)
    ack = len(roster_gate.ack_payload(gate.deps))
    withdraw(office.db, office.vault, Gallery(), pid, "paper", vacuum=False)
    withdrawal = publish()
    for i in range(1, people):
        office.add(f"person {i}", card=10 + i)
    snap = publish(max_pending=1)  # the gate acknowledged version 1: a snapshot
    parts = {t: n for t, n in snap.items() if t.startswith("s/")}
    return {
        "manifest_bytes": put["manifest"],
        "change_put_3_templates_bytes": put["c/1"],
        "change_withdrawal_bytes": withdrawal["c/2"],
        "ack_bytes": ack,
        "snapshot_people": people,
        "snapshot_bytes": sum(parts.values()),
        "snapshot_parts_at_256KiB": len(parts),
        "manifest_with_snapshot_bytes": snap["manifest"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--gates", type=int, default=100)
    ap.add_argument("--withdrawals", type=int, default=3)
    ap.add_argument("--gate-procs", type=int, default=4, help="processes the gates run in")
    ap.add_argument("--join-people", type=int, default=10_000)
    ap.add_argument("--catchup", type=int, default=1000)
    ap.add_argument("--snapshot-people", type=int, default=10_000, help="sizes: the snapshot")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=PARTS,
        help="run these parts (the --json file keeps the other parts' earlier results)",
    )
    args = ap.parse_args()
    out: dict[str, Any] = {}
    if args.json and args.json.exists():
        out = json.loads(args.json.read_text())
    runs = {
        "fan_out": lambda d: fan_out(broker.port, d, args.gates, args.withdrawals, args.gate_procs),
        "catch_up": lambda d: catch_up(broker.port, d, args.catchup),
        "join": lambda d: join(broker.port, d, args.join_people),
        "sizes": lambda d: sizes(d, args.snapshot_people),
    }
    with Mosquitto() as broker, tempfile.TemporaryDirectory() as tmp:
        for name in [p for p in PARTS if p in args.only]:
            (Path(tmp) / name).mkdir()
            t = time.perf_counter()
            out[name] = asyncio.run(runs[name](Path(tmp) / name))
            print(f"{name}: {out[name]} ({time.perf_counter() - t:.0f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
