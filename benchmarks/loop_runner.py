"""bench_loop's drivers: approaches against the daemon (in-process or its own process),
readiness, and CPU per camera of the daemon process."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loop_probes import Probes
from loop_setup import CAMERA, READER, UNLOCK_TIMEOUT_S, without_camera
from loop_stages import first_accepted

from gateway.daemon.process import Daemon
from gateway.demo.run import DemoStack


async def empty_scene(stack: DemoStack, gap_s: float) -> None:
    """Nobody in view for longer than the approach gap, door relocked and closed."""
    stack.sim.cameras[CAMERA].scene.clear()
    await asyncio.sleep(gap_s)
    await stack.settle()


@dataclass(frozen=True)
class Run:
    """What one batch of approaches needs."""

    stack: DemoStack
    probes: Probes
    residents: list[str]
    gap_s: float


async def approaches(run: Run, n: int, tag: str) -> tuple[list[dict[str, Any]], int]:
    """``n`` approaches; per-approach records (times on the monotonic clock), misses."""
    stack, probes = run.stack, run.probes
    scene = stack.sim.cameras[CAMERA].scene
    out: list[dict[str, Any]] = []
    misses = 0
    for i in range(n):
        await empty_scene(stack, run.gap_s)
        ref = run.residents[i % len(run.residents)]
        t_start = time.monotonic()
        stack.sim.do(
            "person-approaches",
            {"camera": CAMERA, "person": ref, "approach_s": 3.0, "linger_s": 8.0},
        )
        actor = scene.actors[-1]
        received = None
        deadline = t_start + UNLOCK_TIMEOUT_S
        while time.monotonic() < deadline:
            received = probes.relay_received_after(t_start)
            if received is not None:
                break
            await asyncio.sleep(0.02)
        if received is None:
            misses += 1
            print(f"[{tag}] approach {i + 1:2d} ({ref}): NO UNLOCK within {UNLOCK_TIMEOUT_S} s")
            continue
        # the gateway may unlock before the ground-truth full-face frame: wait for it
        full = probes.first_full.get(id(actor))
        while full is None and time.monotonic() < t_start + 5.0:
            await asyncio.sleep(0.05)
            full = probes.first_full.get(id(actor))
        out.append(
            {
                "i": i,
                "resident": ref,
                "actor": actor,
                "start": t_start,
                "gt_full": full,
                "received": received,
            }
        )
        gt = "never" if full is None else f"{(received - full) * 1000:+7.1f} ms"
        print(
            f"[{tag}] approach {i + 1:2d} ({ref}): unlock {(received - t_start) * 1000:5.0f} ms "
            f"after start; from the ground-truth full-face frame: {gt}",
            flush=True,
        )
    scene.clear()
    return out, misses


async def wait_ready(daemon: Daemon, stack: DemoStack, limit_s: float = 90.0) -> Any:
    """Until the in-process gateway is wired, the face path sees frames, readers online."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        gw = daemon.app
        path = gw.face_paths.get(CAMERA) if gw is not None else None
        readers = stack.sim.state()["readers"]
        if path is not None and path.frames > 0 and readers[READER]["secure_channel"]:
            return gw
        await asyncio.sleep(0.2)
    raise SystemExit("bench_loop: the in-process daemon did not become ready")


# ----------------------------------------------------------------------------- CPU
def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_rate(pid: int, seconds: float) -> float:
    c0, t0 = proc_cpu_s(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (proc_cpu_s(pid) - c0) / (time.monotonic() - t0)


async def daemon_without_camera(stack: DemoStack, seconds: float) -> float:
    """CPU s/s of the daemon process with its camera removed from the config (the baseline
    of CPU per camera: MQTT, OSDP readers, doors, web console)."""
    print("subprocess daemon without its camera: CPU baseline", flush=True)
    config = stack.config_path
    bare = config.with_name("gateway-without-camera.toml")
    bare.write_text(without_camera(config.read_text(), CAMERA))
    stack.config_path = bare
    try:
        await stack.start_daemon()
        if stack.proc is None:
            raise SystemExit("bench_loop: the daemon process did not start")
        await asyncio.sleep(4.0)  # as with the camera: settled after start-up
        return await cpu_rate(stack.proc.pid, seconds)
    finally:
        await stack.stop_daemon()
        stack.config_path = config


async def daemon_process(
    run: Run, args: argparse.Namespace, pipeline: Any, masker: Any
) -> tuple[float, float, list[dict[str, Any]], int]:
    """Step 3: the daemon as its own process: CPU idle and with a face in view, and
    ``--check`` approaches (time to unlock as deployed)."""
    stack, probes = run.stack, run.probes
    print("subprocess daemon: CPU idle / face in view", flush=True)
    stack.sim.cameras[CAMERA].scene.clear()
    await stack.start_daemon()
    if stack.proc is None:
        raise SystemExit("bench_loop: the daemon process did not start")
    await asyncio.sleep(4.0)  # stream connected, first frames through the models
    idle = await cpu_rate(stack.proc.pid, args.cpu_seconds)
    stack.sim.do(
        "person-approaches",
        {
            "camera": CAMERA,
            "person": run.residents[0],
            "approach_s": 0.5,
            "linger_s": args.cpu_seconds + 6,
        },
    )
    await asyncio.sleep(2.0)
    busy = await cpu_rate(stack.proc.pid, args.cpu_seconds)
    check_rows, check_misses = await approaches(run, args.check, "subprocess")
    await stack.stop_daemon()
    await asyncio.to_thread(first_accepted, probes, pipeline, masker, stack.sim, check_rows)
    return idle, busy, check_rows, check_misses
