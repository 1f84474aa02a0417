"""End-to-end loop: a resident walks up to the simulated gate -> the door relay command.

usage: python benchmarks/bench_loop.py [--approaches 50] [--check 50] [--relay osdp|gpio]
                                      [--json OUT]

Everything runs on loopback: the hardware simulator (hw-sim) and an embedded MQTT broker in
this process, the daemon with a generated config (the demo's, reduced to the main gate's
camera, 640x480 at 15 fps, so the daemon's CPU is one camera's; the shared broker on 1883
is never used). Needs ../shared (face corpus, anti-spoofing models).

1. Time to unlock, per approach (``--approaches``, residents taken in turn, each a new
   approach: the scene is emptied for longer than ``face.approach_gap_s`` and the door has
   relocked before the next one). End = the simulated OSDP reader receiving the output-0 "on"
   command (its command history); with ``--relay gpio`` the door relay is a GPIO line of a
   fake libgpiod (``benchmarks/fake_gpiod``) and the end is its write (monotonic time, in
   this process; in step 3 the daemon process appends it to a file).
   Start = the wall time at which the simulator published (made available to stream
   clients) the first frame of the approach showing the resident's
   full face, in two definitions, both on this process's monotonic clock:
   - headline, "accepted frame": the first published frame whose face passes the gateway's
     quality gate (eye distance >= ``face.min_interocular_px`` as the gateway's detector
     measures it, pose, sharpness). Found after the run by rendering the same scene time
     again (scenes are deterministic), JPEG-coding it like the stream and running the face
     pipeline the daemon used on it (borderline frames can differ from the live decode);
   - "ground-truth IOD": the first frame whose ground-truth landmarks (``Scene.landmarks``)
     are >= ``min_interocular_px`` apart with the whole head inside the frame, computed at
     render time. The detector measures ~10-20% larger eye distances than this geometry on
     the rendered heads, so the gateway can unlock BEFORE that frame (negative samples).
   p50/p95 reported; approaches without an unlock within 12 s are misses.
2. Per-stage medians on the frame that caused the unlock. The daemon runs IN-PROCESS for
   this (``gateway.daemon.process.Daemon`` as a task; the daemon logs no stage timings, so the
   subprocess cannot be instrumented). Stages: frame wait (capture -> analysis starts in the
   face worker), analyze (detect+align+quality+embed+liveness, split by the pipeline's
   ``stats``), match (``FacePath.timing.match_ms``), fusion+decision (match done -> relay
   command submitted to the OSDP bus), of which the door's grant -> relay command, relay
   command -> PD receipt (GPIO: the line write) and -> the reader's acknowledgement;
   plus the remainder
   (accepted frame served -> the unlocking frame captured: stream transport and the further
   frames fusion needs, ``face.fusion_k`` of ``fusion_n``).
3. CPU per camera: the daemon as its own process (``python -m gateway run``), CPU seconds
   (utime+stime from /proc/PID/stat) per wall second, ~10 s with nobody in view and ~10 s
   with a resident lingering in view, less the same daemon's CPU with its camera removed
   from the config (measured just before: MQTT, OSDP readers, doors, web console);
   ``--check`` more approaches against that process
   measure the time to unlock of the daemon as deployed (no instrumentation, no GIL shared
   with the simulator); with at least ``--approaches`` of them the p95 target is judged on
   these, the in-process run giving the per-stage breakdown.
4. Reference (same run, same frames): the gateway pipeline's ``analyze`` vs the plain OpenCV
   pipeline (gateway.eval.reference.OpenCVReference: detect + alignCrop + SFace) on JPEG
   frames of the same scene at the same size.
5. Relay reference (same run): output commands on a dedicated simulated reader (Secure
   Channel, loopback) with the bus as shipped and with the pre-#17 cadence (CP and PD
   refreshing every 20 ms, no wake on submit): command -> PD receipt and -> acknowledgement,
   medians and their ratio; and a GPIO relay (fake libgpiod) driven by a door grant:
   grant -> line write.

With ``--relay gpio`` the daemon process of step 3 imports the fake libgpiod (``PYTHONPATH``)
and reports each line write to a file this process reads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the loop_* modules beside it

from loop_probes import Probes
from loop_reference import reference, relay_reference
from loop_runner import Run, approaches, daemon_process, daemon_without_camera, wait_ready
from loop_setup import (
    CAMERA,
    FPS,
    GPIO_LINE,
    HEIGHT,
    TARGET_P95_MS,
    WIDTH,
    FakeGpio,
    machine,
    med,
    pct,
    sim_config,
    write_config,
)
from loop_stages import (
    all_frames,
    daemon_accepted,
    first_accepted,
    stage_breakdown,
    summary,
    unlock_times,
)
from loop_table import print_table

from gateway.config.root import load_config
from gateway.daemon.process import Daemon
from gateway.demo.broker import EmbeddedBroker
from gateway.demo.run import DemoStack
from gateway.gate.app import build_gateway
from hw_sim.sim import Simulator

log = logging.getLogger("bench_loop")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    broker = EmbeddedBroker()
    await broker.start()
    stack = DemoStack(
        mqtt_url=broker.url,
        broker_control=None,
        workdir=workdir,
        mqtt_protocol="3.1.1",
        print_events=False,
    )
    daemon_task: asyncio.Task[int] | None = None
    try:
        stack.sim = await asyncio.to_thread(lambda: Simulator(sim_config(args.faces)).start())
        await asyncio.to_thread(stack.load_pipeline)
        if not stack.have_antispoof:
            raise SystemExit("bench_loop: ../shared/models/antispoof is absent: cannot measure")
        config_path = write_config(stack, args.relay)
        cfg = load_config(config_path)
        gap_s = cfg.face.approach_gap_s + 0.5
        probes = Probes(stack.sim, cfg.face.min_interocular_px)
        probes.install_relay_probe()
        if args.relay == "gpio":
            probes.gpio = FakeGpio(workdir / "gpio-writes")
            probes.gpio.install()
        residents = [f"resident{k}" for k in range(1, args.residents + 1)]
        await stack.harness("provision", {"people": [{"name": r, "face": True} for r in residents]})

        run = Run(stack, probes, residents, gap_s)

        # -- 1+2: in-process daemon, instrumented ----------------------------------------
        print(f"in-process daemon: {config_path} ({WIDTH}x{HEIGHT} at {FPS} fps)", flush=True)
        handler = logging.FileHandler(workdir / "daemon-inprocess.log")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("gateway").addHandler(handler)
        logging.getLogger("gateway").setLevel(logging.INFO)
        daemon = Daemon(config_path, cfg)
        daemon_task = asyncio.create_task(daemon.run(build_gateway), name="daemon")
        gw = await wait_ready(daemon, stack)
        probes.install_daemon(gw)
        await asyncio.sleep(2.0)
        rows, misses = await approaches(run, args.approaches, "in-process")
        pipeline = gw.pipeline
        masker = gw.face_paths[CAMERA].masker
        ctl = gw.controller
        daemon.request_stop()
        await daemon_task
        daemon_task = None
        print("finding the first frame the quality gate accepts, per approach", flush=True)
        await asyncio.to_thread(first_accepted, probes, pipeline, masker, stack.sim, rows)
        daemon_accepted(probes, rows)

        # -- 4: reference on the same scene frames -----------------------------------------
        print("reference: gateway analyze vs plain OpenCV on the same frames", flush=True)
        ref = await asyncio.to_thread(
            reference, pipeline, stack.sim.cameras[CAMERA].scene, residents, stack.sim
        )

        print("relay reference: the relay paths alone, now and with the 20 ms cadence", flush=True)
        relay_ref = await asyncio.to_thread(relay_reference)

        # -- 3: the daemon as its own process: CPU, and a cross-check of time to unlock -----
        if probes.gpio is not None:  # the daemon process imports the fake libgpiod
            os.environ.update(probes.gpio.process_env())
        baseline = await daemon_without_camera(stack, args.cpu_seconds)
        idle, busy, check_rows, check_misses = await daemon_process(run, args, pipeline, masker)

        accepted = unlock_times(rows, "accepted")
        gt = unlock_times(rows, "gt_full")
        check = unlock_times(check_rows, "accepted")
        p95 = pct(accepted, 95) if accepted else None
        # The target is judged on the daemon as deployed (its own process) when that run is
        # as large as the instrumented one: in-process, the simulator's JPEG encoding and
        # this harness share the daemon's GIL, which inflates the tail.
        judged_on_process = bool(check) and args.check >= args.approaches
        judged = pct(check, 95) if judged_on_process else p95
        return {
            "time_to_unlock_ms": {
                **summary(accepted, args.approaches),
                "unlocked": len(rows),
                "misses": misses,
                "start_frame_from_daemon": sum(1 for r in rows if r.get("start_from") == "daemon"),
                "target_p95": TARGET_P95_MS,
                "p95_over_target": round(p95 / TARGET_P95_MS, 3) if p95 is not None else None,
            },
            "time_to_unlock_from_ground_truth_iod_ms": summary(gt, args.approaches),
            "stages_median_ms": stage_breakdown(probes, rows),
            "all_face_frames_median_ms": all_frames(probes),
            "cpu_s_per_s": {
                "idle": round(idle - baseline, 3),
                "face_in_view": round(busy - baseline, 3),
                "daemon_idle": round(idle, 3),
                "daemon_face_in_view": round(busy, 3),
                "daemon_without_camera": round(baseline, 3),
            },
            "reference": ref,
            "relay": args.relay,
            "relay_reference": relay_ref,
            "daemon_process_time_to_unlock_ms": {
                **summary(check, args.check),
                "unlocked": len(check_rows),
                "misses": check_misses,
            },
            "controller_capture_to_grant_median_ms": med(list(ctl.stats.timings)),
            "meets_target": judged is not None and judged <= TARGET_P95_MS,
            "target_judged_on": "daemon process" if judged_on_process else "in-process daemon",
            "target_p95_judged_ms": None if judged is None else round(judged, 1),
            "setup": {
                "camera": f"{WIDTH}x{HEIGHT} at {FPS} fps, JPEG quality 80 over HTTP MJPEG "
                "(the daemon's only camera)",
                "residents": len(residents),
                "face_threads": cfg.face.threads,
                "fusion": f"{cfg.face.fusion_k} of {cfg.face.fusion_n}",
                "single_frame": (
                    f"score >= {cfg.face.single_frame_score}, lead >= "
                    f"{cfg.face.single_frame_margin}, live >= {cfg.face.single_frame_liveness}, "
                    f"age <= {cfg.face.single_frame_max_age_ms} ms"
                    if cfg.face.single_frame
                    else "off"
                ),
                "pair_frames": (
                    f"two consecutive frames, each >= match_threshold - "
                    f"{cfg.face.pair_frames_slack}, mean >= match_threshold "
                    f"({cfg.face.match_threshold})"
                    if cfg.face.pair_frames
                    else "off"
                ),
                "min_interocular_px": cfg.face.min_interocular_px,
                "liveness": "required",
                "relay": (
                    "OSDP reader output 0 (simulated PD, Secure Channel, TCP loopback)"
                    if args.relay == "osdp"
                    else f"GPIO line {GPIO_LINE} (fake libgpiod: write time on the monotonic "
                    "clock, from the in-process daemon and from the daemon process)"
                ),
                "daemon_for_latency": "in-process (instrumented)",
                "daemon_for_cpu": "own process (python -m gateway run)",
            },
            "machine": info,
            "samples_ms": [round(x, 1) for x in accepted],
            "samples_from_ground_truth_iod_ms": [round(x, 1) for x in gt],
            "daemon_process_samples_ms": [round(x, 1) for x in check],
        }
    finally:
        if daemon_task is not None:
            daemon_task.cancel()
            with contextlib.suppress(BaseException):
                await daemon_task
        await stack.stop_daemon()
        await asyncio.to_thread(stack.stop_sim)
        await broker.stop()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--approaches", type=int, default=50)
    ap.add_argument(
        "--check",
        type=int,
        default=50,
        help="approaches against the daemon process (the target is judged on these when "
        "there are at least --approaches of them)",
    )
    ap.add_argument(
        "--relay",
        choices=("osdp", "gpio"),
        default="osdp",
        help="the main gate's lock relay: an OSDP reader output, or a GPIO line of a fake "
        "libgpiod (in-process daemon only: no daemon-process step)",
    )
    ap.add_argument("--residents", type=int, default=4)
    ap.add_argument("--cpu-seconds", type=float, default=10.0)
    ap.add_argument("--faces", type=Path, default=None, help="face corpus (default ../shared)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for h in logging.getLogger().handlers:
        h.setLevel(logging.WARNING)  # the daemon's INFO lines go to its log file only
    result = asyncio.run(run(args))
    print_table(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
