"""Outbox throughput and put()->PUBACK latency against a real mosquitto it starts.

usage: python benchmarks/bench_outbox.py [--events 5000] [--rate 1000] [--repeat 3] [--json OUT]

0. durability cost, per run, ``synchronous=NORMAL`` (before issue 18) vs ``FULL`` (now: each
   committed put is fsync'd, so a power cut cannot roll it back): put() alone into a file
   database, events/s and p50/p99 put latency; and 1./2. below for both. Ratios FULL/NORMAL
   are taken within the same run, then the median over runs is reported.
1. sustained: ``--events`` events put as fast as possible into a file-backed outbox while
   MqttService drains it; rate = events / (first put -> last PUBACK).
2. latency: events put at ``--rate``/s for ``--events`` events; per event the time from
   put() returning to its PUBACK (median, p99).
3. reference (same run): plain aiomqtt QoS 1 publishes awaited one at a time, no database.
4. latency again against a broker with mosquitto's default ``set_tcp_nodelay false``: Nagle
   on the broker holds pipelined PUBACKs for the client's delayed ACK (~40 ms), which is why
   ``set_tcp_nodelay true`` is recommended on the broker.
Target: with FULL, sustained >= 200 events/s on this machine (a busy gate peaks at ~10
events/s; one fsync per event on an SD card at 2-20 ms still allows 50-500 events/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt

from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.events import AccessGranted, DoorOpened
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.topics import Topics
from gateway.store import database as store
from tests.mosquitto import Mosquitto

TOPICS = Topics("bench", "site1", "gate1")


class TimedService(MqttService):
    """MqttService that records when each event's PUBACK arrived."""

    acked: dict[str, float]
    expect: int
    all_acked: asyncio.Event

    def _publisher(self, client: aiomqtt.Client) -> Callable[[str, bytes, bool], Awaitable[None]]:
        inner = super()._publisher(client)

        async def publish(topic: str, payload: bytes, retain: bool) -> None:
            await inner(topic, payload, retain)
            self.acked[json.loads(payload)["id"]] = time.perf_counter()
            if len(self.acked) >= self.expect:
                self.all_acked.set()

        return publish


SYNC_MODES = ("NORMAL", "FULL")
FSYNC_PROBE_EVENTS = 200


def _probe(sync: str, n: int) -> None:
    """Put and publish ``n`` events one at a time (as at a gate), no broker: for strace."""
    with tempfile.TemporaryDirectory() as tmp:
        db = store.connect(Path(tmp) / "probe.db", busy_timeout_ms=200)
        outbox = Outbox(db, TOPICS, synchronous="FULL" if sync == "FULL" else "NORMAL")

        async def acked(topic: str, payload: bytes, retain: bool) -> None:
            return None

        async def go() -> None:
            for _ in range(n):
                outbox.put(AccessGranted(site="site1", gate="gate1", door="main", method="card"))
                batch = outbox._next_batch()
                await outbox._send(batch, acked)
                outbox._mark_sent(batch)

        asyncio.run(go())
        db.conn.close()


def _fsyncs(sync: str, n: int) -> int | None:
    """fsync + fdatasync calls of ``n`` events put and published, counted by strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    cmd = [strace, "-f", "-c", "-e", "trace=fsync,fdatasync", sys.executable, __file__]
    calls = []
    for count in (0, n):  # the baseline: opening and migrating the database
        out = subprocess.run(
            [*cmd, "--fsync-probe", sync, str(count)], capture_output=True, text=True, check=False
        ).stderr
        total = [ln.split() for ln in out.splitlines() if ln.rstrip().endswith("total")]
        if not total:
            return None
        calls.append(int(total[0][3]))
    return calls[1] - calls[0]


TARGET_FULL_EVENTS_PER_S = 200


def _puts(db_path: Path, n: int, sync: str) -> tuple[float, list[float]]:
    """put() alone (no broker), as the daemon's outbox connection does it."""
    db = store.connect(db_path, busy_timeout_ms=200)
    outbox = Outbox(db, TOPICS, synchronous="FULL" if sync == "FULL" else "NORMAL")
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        e = AccessGranted(site="site1", gate="gate1", door="main", method="card")
        t = time.perf_counter()
        outbox.put(e)
        lat.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    db.conn.close()
    return n / elapsed, lat


async def _run_service(
    port: int, db_path: Path, n: int, rate: float | None, sync: str = "FULL"
) -> tuple[float, list[float]]:
    db = store.connect(db_path)
    outbox = Outbox(db, TOPICS, synchronous="FULL" if sync == "FULL" else "NORMAL")
    svc = TimedService(MqttSettings(port=port, client_id="bench-gate"), TOPICS, outbox)
    svc.acked = {}
    svc.expect = n
    svc.all_acked = asyncio.Event()
    task = asyncio.create_task(svc.run())
    for _ in range(1000):
        if svc.connected:
            break
        await asyncio.sleep(0.01)
    put_at: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(n):
        e = DoorOpened(site="site1", gate="gate1", door="main")
        svc.publish_event(e)
        put_at[str(e.id)] = time.perf_counter()
        if rate is not None:
            delay = t0 + (i + 1) / rate - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))
        elif i % 50 == 0:
            await asyncio.sleep(0)  # a real producer yields between events
    await asyncio.wait_for(svc.all_acked.wait(), 600)
    elapsed = max(svc.acked.values()) - t0
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    db.conn.close()
    lat = [svc.acked[k] - v for k, v in put_at.items()]
    return n / elapsed, lat


async def _reference(port: int, n: int) -> float:
    payload = DoorOpened(site="site1", gate="gate1", door="main").to_json()
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-ref") as c:
        t0 = time.perf_counter()
        for _ in range(n):
            await c.publish(TOPICS.event("door.opened"), payload, qos=1)
        return n / (time.perf_counter() - t0)


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s for the latency run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write results as JSON")
    ap.add_argument("--fsync-probe", nargs=2, metavar=("SYNC", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fsync_probe:
        _probe(args.fsync_probe[0], int(args.fsync_probe[1]))
        return 0
    fsyncs = {m: _fsyncs(m, FSYNC_PROBE_EVENTS) for m in SYNC_MODES}
    print(f"fsyncs for {FSYNC_PROBE_EVENTS} events put and published one at a time: {fsyncs}")
    sustained, ref, p50s, p99s, maxes, nagle99 = [], [], [], [], [], []
    sync: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in ("put_per_s", "put_p50_ms", "put_p99_ms", "sustained", "p50", "p99")}
        for m in SYNC_MODES
    }
    ratios: dict[str, list[float]] = {"put_per_s": [], "put_p99_ms": [], "sustained": []}
    with (
        Mosquitto() as broker,
        Mosquitto(tcp_nodelay=False) as nagle,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for r in range(args.repeat):
            for m in SYNC_MODES:
                d = sync[m]
                rate, put_lat = _puts(Path(tmp) / f"p{m}{r}.db", args.events, m)
                d["put_per_s"].append(rate)
                d["put_p50_ms"].append(statistics.median(put_lat) * 1000)
                d["put_p99_ms"].append(_p(put_lat, 0.99) * 1000)
                rate, _ = asyncio.run(
                    _run_service(broker.port, Path(tmp) / f"s{m}{r}.db", args.events, None, m)
                )
                d["sustained"].append(rate)
                _, lat = asyncio.run(
                    _run_service(broker.port, Path(tmp) / f"l{m}{r}.db", args.events, args.rate, m)
                )
                d["p50"].append(statistics.median(lat) * 1000)
                d["p99"].append(_p(lat, 0.99) * 1000)
                if m == "FULL":
                    maxes.append(max(lat) * 1000)
                print(
                    f"run {r + 1} {m:6}: put {d['put_per_s'][-1]:,.0f} ev/s "
                    f"(p50 {d['put_p50_ms'][-1]:.3f} ms, p99 {d['put_p99_ms'][-1]:.3f} ms), "
                    f"sustained {d['sustained'][-1]:,.0f} ev/s, put->PUBACK@{args.rate:.0f}/s "
                    f"p50 {d['p50'][-1]:.2f} ms p99 {d['p99'][-1]:.2f} ms"
                )
            full, normal = sync["FULL"], sync["NORMAL"]
            for k, values in ratios.items():
                values.append(full[k][-1] / normal[k][-1])
            reference = asyncio.run(_reference(broker.port, args.events))
            _, lat_nagle = asyncio.run(
                _run_service(nagle.port, Path(tmp) / f"n{r}.db", args.events, args.rate)
            )
            nagle99.append(_p(lat_nagle, 0.99) * 1000)
            sustained.append(full["sustained"][-1])
            ref.append(reference)
            p50s.append(full["p50"][-1])
            p99s.append(full["p99"][-1])
            print(
                f"run {r + 1}: FULL/NORMAL put rate {ratios['put_per_s'][-1]:.2f}x, sustained "
                f"{ratios['sustained'][-1]:.2f}x; reference {reference:,.0f} msg/s "
                f"(broker with Nagle: p99 {nagle99[-1]:.1f} ms)"
            )
    med = statistics.median
    result: dict[str, object] = {
        "events": args.events,
        "repeat": args.repeat,
        "synchronous": "FULL",
        "sustained_events_per_s_median": med(sustained),
        "reference_sequential_qos1_per_s_median": med(ref),
        "ratio_outbox_vs_reference": med(sustained) / med(ref),
        "latency_rate_per_s": args.rate,
        "put_to_puback_p50_ms_median": med(p50s),
        "put_to_puback_p99_ms_median": med(p99s),
        "put_to_puback_max_ms_median": med(maxes),
        "put_to_puback_p99_ms_median_broker_nagle": med(nagle99),
        "target_events_per_s": TARGET_FULL_EVENTS_PER_S,
        "durability": {m: {k: med(v) for k, v in sync[m].items()} for m in SYNC_MODES},
        "full_vs_normal_same_run_ratio_median": {k: med(v) for k, v in ratios.items()},
        "fsync_probe_events": FSYNC_PROBE_EVENTS,
        "fsyncs_measured": fsyncs,
    }
    full_m = result["durability"]["FULL"]  # type: ignore[index]
    normal_m = result["durability"]["NORMAL"]  # type: ignore[index]
    print(
        f"median sustained (FULL) {med(sustained):,.0f} events/s (target >= "
        f"{TARGET_FULL_EVENTS_PER_S}; {med(sustained) / med(ref):.2f}x plain sequential QoS 1 "
        f"{med(ref):,.0f} msg/s, no DB); put->PUBACK at {args.rate:.0f}/s: p50 {med(p50s):.2f} ms, "
        f"p99 {med(p99s):.2f} ms"
    )
    print(
        f"durability cost: put() FULL {full_m['put_per_s']:,.0f} ev/s p50 "
        f"{full_m['put_p50_ms']:.3f} ms p99 {full_m['put_p99_ms']:.3f} ms vs NORMAL "
        f"{normal_m['put_per_s']:,.0f} ev/s p50 {normal_m['put_p50_ms']:.3f} ms p99 "
        f"{normal_m['put_p99_ms']:.3f} ms; same-run ratio FULL/NORMAL "
        f"{result['full_vs_normal_same_run_ratio_median']['put_per_s']:.3f}x"  # type: ignore[index]
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if med(sustained) >= TARGET_FULL_EVENTS_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
