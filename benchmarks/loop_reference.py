"""bench_loop's same-run references: the gateway's analyze vs the plain OpenCV pipeline on
the same frames, and the relay paths alone (OSDP as shipped and with the pre-#17 cadence; a
GPIO relay driven by a door grant)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
from loop_setup import GPIO_LINE, FakeGpio, med

from gateway.hardware.door_controller import DoorController
from gateway.hardware.io import GpioRelay
from hw_sim.sim import Simulator


# ----------------------------------------------------------------------------- reference
def reference(pipeline: Any, scene: Any, residents: list[str], sim: Simulator) -> dict[str, Any]:
    """Gateway analyze vs plain OpenCV on the same JPEG frames of the simulated approach."""
    from bench_face import time_against_reference

    from gateway.eval.reference import OpenCVReference
    from hw_sim.scenes import Actor

    ref = OpenCVReference()
    frames = []
    for k, name in enumerate(residents):
        actor = Actor(
            name=sim.corpus.resolve(name),
            image_index=sim.corpus.probe_index(name, 0),
            variant="live",
            start=0.0,
            approach_s=3.0,
            linger_s=8.0,
            seed=k,
        )
        scene.clear()
        scene.add(actor)
        for t in np.linspace(0.8, 4.0, 8):
            ok, buf = cv2.imencode(".jpg", scene.render(float(t)), [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                frames.append(np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), np.uint8))
    scene.clear()
    gw, gw_live, cv = time_against_reference(pipeline, ref, frames, reps=3, copy=True)
    g, gl, c = float(np.median(gw)), float(np.median(gw_live)), float(np.median(cv))
    # per frame, the fastest of the repeats (least disturbed by other load on shared cores)
    least_disturbed = float(gw.min(axis=0).sum() / cv.min(axis=0).sum())
    return {
        "frames": len(frames),
        "opencv_reference_ms": round(c, 2),
        "gateway_analyze_no_liveness_ms": round(g, 2),
        "gateway_analyze_with_liveness_ms": round(gl, 2),
        "ratio_gateway_to_opencv": round(g / c, 3),
        "ratio_gateway_with_liveness_to_opencv": round(gl / c, 3),
        "ratio_gateway_to_opencv_fastest_of_repeats": round(least_disturbed, 3),
    }


# ----------------------------------------------------------------------------- relay reference
def _relay_commands(fixed_cadence: bool, n: int) -> dict[str, float | None]:
    """``n`` output commands to a fresh simulated reader (Secure Channel, loopback):
    medians of command -> PD receipt and -> acknowledgement, in ms. ``fixed_cadence``: the
    pre-#17 behaviour (CP and PD refreshing every 20 ms, a submit waits for the next one)."""
    import osdp

    from gateway.hardware.osdp import OsdpBus
    from gateway.hardware.osdp_transport import SocketTransport
    from hw_sim.osdp_pd import ReaderSettings, SimReader

    class FixedCadenceBus(OsdpBus):
        def _pause(self) -> None:
            time.sleep(0.02)

    key = bytes(range(16))
    got: list[float] = []
    arrived = threading.Event()

    def on_output(no: int, on: bool) -> None:
        got.append(time.monotonic())
        arrived.set()

    sim = SimReader(ReaderSettings("ref", scbk=key), on_output=on_output)
    if fixed_cadence:
        sim._pd.refresh = osdp.PeripheralDevice.refresh  # the binding's fixed 20 ms loop
    sim.start()

    async def main() -> tuple[list[float], list[float]]:
        bus_cls = FixedCadenceBus if fixed_cadence else OsdpBus
        bus = bus_cls(SocketTransport("127.0.0.1", sim.port))
        reader = bus.add_reader("ref", sim.settings.address, scbk=key)
        await reader.start()
        try:
            for _ in range(300):  # 15 s
                if reader.online and sim.sc_active():
                    break
                await asyncio.sleep(0.05)
            to_pd, to_ack = [], []
            rng = np.random.default_rng(0)
            for i in range(n):
                await asyncio.sleep(float(rng.uniform(0.05, 0.15)))  # any phase of the polls
                seen = len(got)
                arrived.clear()
                t0 = time.monotonic()
                await reader.output(1, i % 2 == 0)
                to_ack.append((time.monotonic() - t0) * 1000)
                if len(got) == seen and not await asyncio.to_thread(arrived.wait, 5.0):
                    raise SystemExit("bench_loop: the reference reader never switched")
                to_pd.append((got[seen] - t0) * 1000)
            return to_pd, to_ack
        finally:
            await reader.close()

    try:
        to_pd, to_ack = asyncio.run(main())
    finally:
        sim.stop()
    return {"to_pd_ms": med(to_pd), "to_ack_ms": med(to_ack), "commands": n}


def _gpio_grants(n: int) -> dict[str, float | None]:
    """``n`` door grants with a GPIO relay (fake libgpiod): grant -> line write, ms."""
    from gateway.hardware.door import DoorConfig, DoorStateMachine
    from gateway.hardware.io import LockSpec
    from gateway.hardware.lock import DoorLock

    fake = FakeGpio()
    saved = sys.modules.get("gpiod")
    fake.install()

    async def main() -> list[float]:
        relay = GpioRelay("/dev/gpiochip0", GPIO_LINE, rest_level=False)
        door = DoorController(
            DoorStateMachine(DoorConfig("ref", unlock_s=0.05)), DoorLock("ref", relay, LockSpec())
        )
        out = []
        for _ in range(n):
            seen = len(fake.writes)
            t0 = time.monotonic()
            await DoorController.applied(door.grant_nowait())
            out.append((fake.writes[seen][0] - t0) * 1000)
            await asyncio.sleep(0.1)
            await door.tick()
        await relay.set(False)
        return out

    try:
        times = asyncio.run(main())
    finally:
        if saved is None:
            sys.modules.pop("gpiod", None)
        else:
            sys.modules["gpiod"] = saved
    return {"grant_to_line_write_ms": med(times), "grants": n}


def relay_reference(n: int = 30) -> dict[str, Any]:
    """The relay paths alone, as shipped and with the pre-#17 cadence, in this run."""
    now = _relay_commands(False, n)
    before = _relay_commands(True, n)
    gpio = _gpio_grants(n)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    return {
        "osdp_as_shipped": now,
        "osdp_fixed_20ms_cadence": before,
        "ratio_to_pd": ratio(now["to_pd_ms"], before["to_pd_ms"]),
        "ratio_to_ack": ratio(now["to_ack_ms"], before["to_ack_ms"]),
        "gpio": gpio,
        "ratio_gpio_write_to_osdp_ack": ratio(gpio["grant_to_line_write_ms"], now["to_ack_ms"]),
    }
