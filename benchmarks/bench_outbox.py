"""Outbox throughput and put()->PUBACK latency against a real mosquitto it starts.

usage: python benchmarks/bench_outbox.py [--events 5000] [--rate 1000] [--repeat 3] [--json OUT]

1. sustained: ``--events`` events put as fast as possible into a file-backed outbox while
   MqttService drains it; rate = events / (first put -> last PUBACK).
2. latency: events put at ``--rate``/s for ``--events`` events; per event the time from
   put() returning to its PUBACK (median, p99).
3. reference (same run): plain aiomqtt QoS 1 publishes awaited one at a time, no database.
4. latency again against a broker with mosquitto's default ``set_tcp_nodelay false``: Nagle
   on the broker holds pipelined PUBACKs for the client's delayed ACK (~40 ms), which is why
   ``set_tcp_nodelay true`` is recommended on the broker.
Target: sustained >= 1,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt

from gateway import store
from gateway.mqtt.client import MqttService, MqttSettings
from gateway.mqtt.events import DoorOpened
from gateway.mqtt.outbox import Outbox
from gateway.mqtt.topics import Topics
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


async def _run_service(
    port: int, db_path: Path, n: int, rate: float | None
) -> tuple[float, list[float]]:
    db = store.connect(db_path)
    outbox = Outbox(db, TOPICS)
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
    args = ap.parse_args(argv)
    sustained, ref, p50s, p99s, maxes, nagle99 = [], [], [], [], [], []
    with (
        Mosquitto() as broker,
        Mosquitto(tcp_nodelay=False) as nagle,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for r in range(args.repeat):
            rate, _ = asyncio.run(
                _run_service(broker.port, Path(tmp) / f"s{r}.db", args.events, None)
            )
            _, lat = asyncio.run(
                _run_service(broker.port, Path(tmp) / f"l{r}.db", args.events, args.rate)
            )
            reference = asyncio.run(_reference(broker.port, args.events))
            _, lat_nagle = asyncio.run(
                _run_service(nagle.port, Path(tmp) / f"n{r}.db", args.events, args.rate)
            )
            nagle99.append(_p(lat_nagle, 0.99) * 1000)
            sustained.append(rate)
            ref.append(reference)
            p50s.append(statistics.median(lat) * 1000)
            p99s.append(_p(lat, 0.99) * 1000)
            maxes.append(max(lat) * 1000)
            print(
                f"run {r + 1}: sustained {rate:,.0f} ev/s, reference {reference:,.0f} msg/s, "
                f"latency@{args.rate:.0f}/s p50 {p50s[-1]:.2f} ms p99 {p99s[-1]:.2f} ms "
                f"(broker with Nagle: p99 {nagle99[-1]:.1f} ms)"
            )
    result = {
        "events": args.events,
        "repeat": args.repeat,
        "sustained_events_per_s_median": statistics.median(sustained),
        "reference_sequential_qos1_per_s_median": statistics.median(ref),
        "ratio_outbox_vs_reference": statistics.median(sustained) / statistics.median(ref),
        "latency_rate_per_s": args.rate,
        "put_to_puback_p50_ms_median": statistics.median(p50s),
        "put_to_puback_p99_ms_median": statistics.median(p99s),
        "put_to_puback_max_ms_median": statistics.median(maxes),
        "put_to_puback_p99_ms_median_broker_nagle": statistics.median(nagle99),
        "target_events_per_s": 1000,
    }
    print(
        f"median sustained {result['sustained_events_per_s_median']:,.0f} events/s "
        f"(target >= 1,000; {result['ratio_outbox_vs_reference']:.2f}x plain sequential QoS 1 "
        f"{result['reference_sequential_qos1_per_s_median']:,.0f} msg/s, no DB); "
        f"put->PUBACK at {args.rate:.0f}/s: p50 {result['put_to_puback_p50_ms_median']:.2f} ms, "
        f"p99 {result['put_to_puback_p99_ms_median']:.2f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["sustained_events_per_s_median"] >= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
