"""End-to-end loop: a resident walks up to the simulated gate -> the door relay command.

usage: python benchmarks/bench_loop.py [--approaches 50] [--check 50] [--relay osdp|gpio]
                                      [--json OUT]

Everything runs on loopback: the hardware simulator (hw-sim) and an embedded MQTT broker in
this process, the daemon with a generated config (camera 640x480 at 15 fps; the shared
broker on 1883 is never used). Needs ../shared (face corpus, anti-spoofing models).

1. Time to unlock, per approach (``--approaches``, residents taken in turn, each a new
   approach: the scene is emptied for longer than ``face.approach_gap_s`` and the door has
   relocked before the next one). End = the simulated OSDP reader receiving the output-0 "on"
   command (its command history); with ``--relay gpio`` the door relay is a GPIO line of a
   fake libgpiod (the fake line source, in-process only) and the end is its write.
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
   with a resident lingering in view; ``--check`` more approaches against that process
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

With ``--relay gpio`` step 3 is skipped (the fake libgpiod lives in this process only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np

from gateway.config.root import load_config
from gateway.daemon.process import Daemon
from gateway.demo.broker import EmbeddedBroker
from gateway.demo.run import DemoStack
from gateway.gate.app import build_gateway
from gateway.hardware.door_controller import DoorController
from gateway.hardware.io import GpioRelay
from gateway.hardware.osdp_reader import OsdpReader
from hw_sim.config import SimConfig
from hw_sim.sim import Simulator

log = logging.getLogger("bench_loop")

CAMERA = "main-cam"
READER = "entry"
WIDTH, HEIGHT, FPS = 640, 480, 15
TARGET_P95_MS = 150.0  # issue #17
UNLOCK_TIMEOUT_S = 12.0
UNLOCK_SECONDS = 1  # short unlock so the door relocks quickly between approaches
GPIO_LINE = 17


# ----------------------------------------------------------------------------- machine
def machine() -> dict[str, str]:
    """CPU model, cores and library versions (for benchmarks/report)."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
        cpu = next((fields[k] for k in ("model name", "hardware", "model") if fields.get(k)), cpu)

    def ver(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical / {usable} usable",
        "python": platform.python_version(),
        "onnxruntime": ver("onnxruntime"),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "load_average": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ----------------------------------------------------------------------------- probes
@dataclass
class FrameRecord:
    """One frame processed by the face path (instrumented in-process daemon)."""

    called: float  # monotonic: FacePath._process entered
    captured: float  # monotonic: CameraCapture took the frame
    analyze_start: float = 0.0
    analyze_end: float = 0.0
    analyze_ms: float = 0.0
    match_ms: float = 0.0
    faces: int = 0
    pipeline: dict[str, float] = field(default_factory=dict)
    relay_send: float | None = None
    #: per face: why the frame did or did not count towards a grant (see ``Probes.verdict``)
    verdicts: list[str] = field(default_factory=list)
    #: a face in this frame passed the strict gate (no size hysteresis)
    strict_ok: bool = False


class Probes:
    """Timestamps from the simulator (frames published, relay received) and the daemon."""

    def __init__(self, sim: Simulator, min_iod: float) -> None:
        self.sim = sim
        self.min_iod = min_iod
        self.first_full: dict[int, float] = {}  # id(actor) -> monotonic publish time
        #: every published frame: (monotonic publish time, scene time, ids of actors in view)
        self.published: list[tuple[float, float, tuple[int, ...]]] = []
        self._pending_t = 0.0
        self.relay_sends: list[float] = []
        self.relay_acks: dict[float, float] = {}  # relay send -> the reader's acknowledgement
        self.decisions: list[float] = []  # door grants (DoorController.grant_nowait)
        self.gpio: FakeGpio | None = None
        self.frames: list[FrameRecord] = []
        self._pending: list[tuple[int, bool]] = []
        self._lock = threading.Lock()
        self._install_sim()

    # -- simulator side (render thread) --------------------------------------------------
    def _install_sim(self) -> None:
        cam = self.sim.cameras[CAMERA]
        scene = cam.scene
        render = scene.render
        probes = self

        def timed_render(t: float) -> Any:
            frame = render(t)
            probes._pending_t = t
            probes._pending = [(id(a), probes._full_face(scene, a, t)) for a in scene.active(t)]
            return frame

        class PublishCondition(threading.Condition):
            """The camera's condition: its notify_all after ``_seq += 1`` = frame published."""

            seen = 0

            def notify_all(self) -> None:
                if cam._seq != self.seen:
                    self.seen = cam._seq
                    now = time.monotonic()
                    with probes._lock:
                        probes.published.append(
                            (now, probes._pending_t, tuple(k for k, _ in probes._pending))
                        )
                        for key, full in probes._pending:
                            if full and key not in probes.first_full:
                                probes.first_full[key] = now
                super().notify_all()

        scene.render = timed_render  # type: ignore[method-assign]
        cam._cond = PublishCondition()

    def _full_face(self, scene: Any, actor: Any, t: float) -> bool:
        if actor.variant != "live":
            return False
        pts = scene.landmarks(actor, t)
        iod = float(np.hypot(*(pts[1] - pts[0])))
        pl = scene._placement(actor, t)
        crop = scene.corpus.scaled(actor.name, actor.image_index, pl.fh)
        ch, cw = crop.shape[:2]
        x0, y0 = int(pl.cx) - cw // 2, int(pl.cy) - ch // 2
        inside = x0 >= 0 and y0 >= 0 and x0 + cw <= scene.width and y0 + ch <= scene.height
        return iod >= self.min_iod and inside

    def relay_received_after(self, t0: float) -> float | None:
        """Monotonic time the PD received the first output-0 'on' command after ``t0`` (GPIO:
        the first write of the release level)."""
        if self.gpio is not None:
            return next((ts for ts, on in list(self.gpio.writes) if on and ts > t0), None)
        reader = self.sim.readers[READER]
        with reader._lock:
            history = list(reader.history)
        for ts, kind, data in history:
            if (
                kind == "output"
                and ts > t0
                and data.get("no") == 0
                and data.get("control_code") in (2, 4, 5)
            ):
                return float(ts)
        return None

    # -- daemon side (in-process) ----------------------------------------------------------
    def install_daemon(self, gateway: Any) -> None:
        """Wrap the face path and the OSDP output of the in-process daemon."""
        path = gateway.face_paths[CAMERA]
        pipeline = path.pipeline
        analyze = pipeline.analyze
        process = path._process
        probes = self
        current: dict[str, FrameRecord] = {}

        def timed_analyze(frame: Any, **kwargs: Any) -> Any:
            rec = current.get("rec")
            t0 = time.monotonic()
            out = analyze(frame, **kwargs)
            if rec is not None:
                rec.analyze_start, rec.analyze_end = t0, time.monotonic()
                st = pipeline.stats
                rec.pipeline = {
                    "detect_ms": st.detect_ms,
                    "align_quality_ms": st.align_quality_ms,
                    "embed_ms": st.embed_ms,
                    "liveness_ms": st.liveness_ms,
                }
            return out

        async def timed_process(frame: Any, now: float) -> None:
            rec = FrameRecord(called=time.monotonic(), captured=float(frame.ts))
            current["rec"] = rec
            sends = len(probes.relay_sends)
            await process(frame, now)
            timing = path.timing
            rec.analyze_ms, rec.match_ms, rec.faces = (
                timing.analyze_ms,
                timing.match_ms,
                timing.faces,
            )
            if len(probes.relay_sends) > sends:
                rec.relay_send = probes.relay_sends[sends]
            probes.frames.append(rec)

        match = path._match

        def explained_match(observations: Any, claimed: Any, now: float) -> Any:
            out = match(observations, claimed, now)
            rec = current.get("rec")
            if rec is not None:
                rec.verdicts = [
                    probes.verdict(path, o, m) for o, m in zip(observations, out, strict=True)
                ]
                rec.strict_ok = any(
                    o.quality.ok and o.quality.interocular_px >= probes.min_iod
                    for o in observations
                )
            return out

        pipeline.analyze = timed_analyze
        path._process = timed_process
        path._match = explained_match

    @staticmethod
    def verdict(path: Any, obs: Any, m: Any) -> str:
        """``match`` / ``lowq:<reason>`` / ``below:<top1>`` / ``margin:<top1>-<top2>``, +live.

        Each ends with the face's eye distance in pixels (``@27.4``).
        """
        live = {True: "+live", False: "+SPOOF", None: ""}[m.live]
        live += f"@{obs.quality.interocular_px:.1f}"
        if not m.quality_ok:
            return f"lowq:{m.low_quality_reason}{live}"
        if m.person_id is not None:
            return f"match{live}"
        probe = path.transform(obs.embedding.reshape(1, -1))[0]
        top = path.gallery.search(probe, 2)
        if not top or top[0][1] < path.settings.threshold:
            return f"below:{top[0][1]:.3f}{live}" if top else "empty"
        return f"margin:{top[0][1]:.3f}-{top[1][1]:.3f}{live}"

    def install_relay_probe(self) -> None:
        output = OsdpReader.output
        pulse = GpioRelay.pulse
        grant = DoorController.grant_nowait
        probes = self

        async def timed_output(
            reader: OsdpReader, no: int, on: bool, seconds: float | None = None
        ) -> None:
            if not (no == 0 and on):
                await output(reader, no, on, seconds)
                return
            sent = time.monotonic()
            probes.relay_sends.append(sent)
            await output(reader, no, on, seconds)
            probes.relay_acks[sent] = time.monotonic()

        async def timed_pulse(relay: GpioRelay, energized: bool, seconds: float) -> None:
            if energized:
                probes.relay_sends.append(time.monotonic())
            await pulse(relay, energized, seconds)

        def timed_grant(door: DoorController, *args: Any, **kwargs: Any) -> Any:
            probes.decisions.append(time.monotonic())
            return grant(door, *args, **kwargs)

        OsdpReader.output = timed_output  # type: ignore[method-assign,assignment]
        GpioRelay.pulse = timed_pulse  # type: ignore[method-assign]
        DoorController.grant_nowait = timed_grant  # type: ignore[method-assign]


class FakeGpio:
    """A fake libgpiod v2 module (``sys.modules["gpiod"]``): output lines record each write
    (monotonic time, level); input lines read high (pull-up, switch open)."""

    def __init__(self) -> None:
        import types

        self.writes: list[tuple[float, bool]] = []
        fake = self

        class Request:
            def set_value(self, line: int, value: Any) -> None:
                fake.writes.append((time.monotonic(), value == "active"))

            def get_values(self, lines: list[int]) -> list[str]:
                return ["active"] * len(lines)

            def release(self) -> None:
                pass

        mod: Any = types.ModuleType("gpiod")
        mod.request_lines = lambda chip, consumer, config: Request()
        mod.LineSettings = types.SimpleNamespace
        mod.line = types.SimpleNamespace(
            Direction=types.SimpleNamespace(OUTPUT="out", INPUT="in"),
            Value=types.SimpleNamespace(ACTIVE="active", INACTIVE="inactive"),
            Bias=types.SimpleNamespace(PULL_UP="pull-up"),
        )
        self.module = mod

    def install(self) -> None:
        sys.modules["gpiod"] = self.module


# ----------------------------------------------------------------------------- helpers
def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default)."""
    return float(np.percentile(np.asarray(values, np.float64), q))


def med(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def write_config(stack: DemoStack, relay: str = "osdp") -> Path:
    """The demo config, adjusted: 15 fps, short unlock, quiet log; ``relay="gpio"``: the main
    gate's lock relay on GPIO line ``GPIO_LINE`` (the fake libgpiod)."""
    path = stack.write_config()
    text = path.read_text()
    if relay == "gpio":
        old = 'relay = { kind = "osdp", output = 0 }\n'
        if old not in text:
            raise SystemExit("bench_loop: the demo config no longer has an OSDP relay line")
        text = text.replace(old, f'relay = {{ kind = "gpio", line = {GPIO_LINE} }}\n', 1)
    for old, new in (
        ("fps = 10\n", f"fps = {FPS}\n"),
        ("width = 640\n", f"width = {WIDTH}\n"),
        ("height = 480\n", f"height = {HEIGHT}\n"),
        ("unlock_seconds = 5\n", f"unlock_seconds = {UNLOCK_SECONDS}\n"),
        ('log_level = "INFO"\n', 'log_level = "INFO"\n'),
    ):
        if old not in text:
            raise SystemExit(f"bench_loop: the demo config no longer contains {old.strip()!r}")
        text = text.replace(old, new)
    path.write_text(text)
    return path


def sim_config(faces: Path | None) -> SimConfig:
    data = SimConfig.demo().model_dump()
    data["cameras"][0].update(width=WIDTH, height=HEIGHT, fps=FPS)
    if faces is not None:
        data["faces"] = faces
    return SimConfig.model_validate(data)


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


def first_accepted(
    probes: Probes, pipeline: Any, masker: Any, sim: Simulator, rows: list[dict[str, Any]]
) -> None:
    """Per approach, the first published frame the gateway's quality gate accepts.

    The scene is deterministic in scene time, so every frame the camera published is
    rendered again here with the same actor, JPEG-coded like the stream, masked like the
    daemon masks it (the configured no-capture zones), and run through a
    face pipeline with the daemon's settings (offline, after the run: it does not compete
    with the daemon). Sets ``row["accepted"]`` (publish time) or None.
    """
    from hw_sim.scenes import Scene

    cam = sim.cameras[CAMERA]
    params = [int(cv2.IMWRITE_JPEG_QUALITY), cam.jpeg_quality]
    for row in rows:
        actor = row["actor"]
        scene = Scene(WIDTH, HEIGHT, sim.corpus, zones=list(cam.scene.zones))
        scene.add(actor)
        row["accepted"] = None
        frames = [
            (pub, t)
            for pub, t, ids in probes.published
            if id(actor) in ids and row["start"] <= pub <= row["received"]
        ]
        for pub, t in frames:
            ok, buf = cv2.imencode(".jpg", scene.render(t), params)
            if not ok:
                continue
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            masker.apply(image)  # the no-capture zones, as the daemon blanks them
            obs = pipeline.analyze(image, liveness=False)
            if any(o.quality.ok for o in obs):
                row["accepted"] = pub
                break


def daemon_accepted(probes: Probes, rows: list[dict[str, Any]]) -> None:
    """Where the offline re-analysis found no accepted frame, take the daemon's own.

    The re-analysis and the daemon can disagree by a fraction of a pixel on a face at the
    size limit; the start is then the publish time of the frame in which the daemon's gate
    first accepted a face without the size hysteresis (``row["start_from"] = "daemon"``).
    """
    for row in rows:
        if row.get("accepted") is not None:
            row["start_from"] = "re-analysis"
            continue
        rec = next(
            (
                f
                for f in probes.frames
                if f.strict_ok and row["start"] <= f.captured and f.called <= row["received"]
            ),
            None,
        )
        if rec is None:
            continue
        pubs = [pub for pub, _, _ in probes.published if row["start"] <= pub <= rec.captured]
        if pubs:
            row["accepted"], row["start_from"] = max(pubs), "daemon"


def unlock_times(rows: list[dict[str, Any]], key: str) -> list[float]:
    """Milliseconds from ``row[key]`` (a publish time) to the PD receiving the relay command."""
    return [(r["received"] - r[key]) * 1000 for r in rows if r.get(key) is not None]


def summary(times: list[float], approaches_n: int) -> dict[str, Any]:
    """Percentiles of ``times``; ``measured`` = approaches with a start frame and an unlock."""
    if not times:
        return {"approaches": approaches_n, "measured": 0}
    return {
        "p50": round(pct(times, 50), 1),
        "p95": round(pct(times, 95), 1),
        "mean": round(statistics.fmean(times), 1),
        "min": round(min(times), 1),
        "max": round(max(times), 1),
        "approaches": approaches_n,
        "measured": len(times),
    }


def stage_breakdown(probes: Probes, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-stage medians on the frame that caused each unlock."""
    stages: dict[str, list[float]] = {
        k: []
        for k in (
            "accepted_frame_served_to_unlocking_frame_captured",
            "frame_wait",
            "analyze",
            "detect",
            "align_quality",
            "embed",
            "liveness",
            "match",
            "fusion_decision",
            "decision_to_relay_command",
            "relay_send_to_pd",
            "relay_send_to_ack",
        )
    }
    frames_between: list[float] = []
    for row in rows:
        rec = next(
            (
                f
                for f in probes.frames
                if f.relay_send is not None and row["start"] < f.relay_send < row["received"]
            ),
            None,
        )
        if rec is None or rec.relay_send is None:
            continue
        match_done = rec.called + (rec.analyze_ms + rec.match_ms) / 1000
        if row.get("accepted") is not None:
            stages["accepted_frame_served_to_unlocking_frame_captured"].append(
                (rec.captured - row["accepted"]) * 1000
            )
            row["frames"] = sum(
                1 for f in probes.frames if row["accepted"] <= f.captured <= rec.captured
            )
            frames_between.append(row["frames"])
        stages["frame_wait"].append((rec.analyze_start - rec.captured) * 1000)
        stages["analyze"].append(rec.analyze_ms)
        for k in ("detect", "align_quality", "embed", "liveness"):
            stages[k].append(rec.pipeline.get(f"{k}_ms", 0.0))
        stages["match"].append(rec.match_ms)
        stages["fusion_decision"].append((rec.relay_send - match_done) * 1000)
        stages["relay_send_to_pd"].append((row["received"] - rec.relay_send) * 1000)
        decided = [d for d in probes.decisions if d <= rec.relay_send]
        if decided:
            stages["decision_to_relay_command"].append((rec.relay_send - max(decided)) * 1000)
        acked = probes.relay_acks.get(rec.relay_send)
        if acked is not None:
            stages["relay_send_to_ack"].append((acked - rec.relay_send) * 1000)
    result: dict[str, Any] = {f"{k}_ms": med(v) for k, v in stages.items()}
    result["frames_processed_accepted_to_unlock"] = med(frames_between)
    result["unlocks_attributed"] = len(stages["analyze"])
    slow = [r for r in rows if r.get("frames") is not None and r.get("accepted") is not None]
    over = [r for r in slow if (r["received"] - r["accepted"]) * 1000 > TARGET_P95_MS]
    under = [r for r in slow if r not in over]
    result["approaches_over_target"] = len(over)
    result["frames_processed_when_over_target"] = med([r["frames"] for r in over])
    result["frames_processed_when_within_target"] = med([r["frames"] for r in under])
    # Why the slow approaches were slow: each processed frame's verdict, accepted -> unlock.
    result["unlocked_before_accepted"] = [
        {
            "resident": r["resident"],
            "frames": [
                ";".join(f.verdicts) or "no face"
                for f in probes.frames
                if r["start"] <= f.captured and f.called <= r["received"] and f.faces
            ],
        }
        for r in rows
        if r.get("accepted") is None
    ]
    result["over_target_explained"] = [
        {
            "resident": r["resident"],
            "ms": round((r["received"] - r["accepted"]) * 1000, 1),
            "frames": [
                ";".join(f.verdicts) or "no face"
                for f in probes.frames
                if r["accepted"] <= f.captured and f.called <= r["received"]
            ],
        }
        for r in over
    ]
    return result


def all_frames(probes: Probes) -> dict[str, Any]:
    """Medians over every processed frame with a face (not only the unlocking ones)."""
    with_face = [f for f in probes.frames if f.faces and f.analyze_start]
    return {
        "frames": len(with_face),
        "frame_wait_ms": med([(f.analyze_start - f.captured) * 1000 for f in with_face]),
        "analyze_ms": med([f.analyze_ms for f in with_face]),
        "match_ms": med([f.match_ms for f in with_face]),
    }


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


# ----------------------------------------------------------------------------- reference
def reference(pipeline: Any, scene: Any, residents: list[str], sim: Simulator) -> dict[str, Any]:
    """Gateway analyze vs plain OpenCV on the same JPEG frames of the simulated approach."""
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
    for f in frames[:3]:  # warm-up
        pipeline.analyze(f.copy(), liveness=True)
        ref.embed(f)
    reps = 3
    gw = np.zeros((reps, len(frames)))
    gw_live = np.zeros((reps, len(frames)))
    cv = np.zeros((reps, len(frames)))
    for r in range(reps):
        for j, f in enumerate(frames):
            t0 = time.perf_counter()
            pipeline.analyze(f.copy(), liveness=False)
            t1 = time.perf_counter()
            pipeline.analyze(f.copy(), liveness=True)
            t2 = time.perf_counter()
            ref.embed(f)
            t3 = time.perf_counter()
            gw[r, j], gw_live[r, j], cv[r, j] = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
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


# ----------------------------------------------------------------------------- main
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
            probes.gpio = FakeGpio()
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
        if args.relay == "gpio":  # the fake libgpiod exists in this process only
            idle = busy = None
            check_rows, check_misses = [], 0
        else:
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
                "idle": None if idle is None else round(idle, 3),
                "face_in_view": None if busy is None else round(busy, 3),
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
                "camera": f"{WIDTH}x{HEIGHT} at {FPS} fps, JPEG quality 80 over HTTP MJPEG",
                "residents": len(residents),
                "face_threads": cfg.face.threads,
                "fusion": f"{cfg.face.fusion_k} of {cfg.face.fusion_n}",
                "min_interocular_px": cfg.face.min_interocular_px,
                "liveness": "required",
                "relay": (
                    "OSDP reader output 0 (simulated PD, Secure Channel, TCP loopback)"
                    if args.relay == "osdp"
                    else f"GPIO line {GPIO_LINE} (fake libgpiod, in-process daemon only)"
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


def print_table(r: dict[str, Any]) -> None:
    t, s, c, ref = r["time_to_unlock_ms"], r["stages_median_ms"], r["cpu_s_per_s"], r["reference"]
    g, sc = r["time_to_unlock_from_ground_truth_iod_ms"], r["daemon_process_time_to_unlock_ms"]
    analyze_split = " / ".join(
        str(s[k]) for k in ("detect_ms", "align_quality_ms", "embed_ms", "liveness_ms")
    )
    rows = [
        ("time to unlock p50 / p95 (in-process daemon)", f"{t.get('p50')} / {t.get('p95')} ms"),
        (
            "  target p95",
            (
                f"{TARGET_P95_MS:.0f} ms: {'met' if r['meets_target'] else 'NOT met'} "
                f"({r['target_judged_on']}: p95 {r['target_p95_judged_ms']} ms)"
            ),
        ),
        (
            "  unlocked / measured / approaches",
            f"{t['unlocked']} / {t['measured']} / {t['approaches']}",
        ),
        ("  from ground-truth IOD frame p50 / p95", f"{g.get('p50')} / {g.get('p95')} ms"),
        ("time to unlock p50 / p95 (daemon process)", f"{sc.get('p50')} / {sc.get('p95')} ms"),
        (
            "stage: accepted frame served -> unlocking frame",
            f"{s['accepted_frame_served_to_unlocking_frame_captured_ms']} ms",
        ),
        ("stage: frame wait (capture -> analysis)", f"{s['frame_wait_ms']} ms"),
        ("stage: analyze (detect+align+embed+liveness)", f"{s['analyze_ms']} ms"),
        ("  detect / align+quality / embed / liveness", f"{analyze_split} ms"),
        ("stage: match", f"{s['match_ms']} ms"),
        ("stage: fusion + decision -> relay command", f"{s['fusion_decision_ms']} ms"),
        ("  of which door grant -> relay command", f"{s['decision_to_relay_command_ms']} ms"),
        (
            "stage: relay command -> PD receipt"
            if r["relay"] == "osdp"
            else "stage: relay command -> GPIO line write",
            f"{s['relay_send_to_pd_ms']} ms",
        ),
        ("stage: relay command -> reader acknowledgement", f"{s['relay_send_to_ack_ms']} ms"),
        ("frames processed, accepted -> unlocking", f"{s['frames_processed_accepted_to_unlock']}"),
        (
            "  approaches over target (frames processed)",
            (
                f"{s['approaches_over_target']} ({s['frames_processed_when_over_target']}, "
                f"within target: {s['frames_processed_when_within_target']})"
            ),
        ),
        ("CPU per camera, idle", f"{c['idle']} CPU s / s"),
        ("CPU per camera, face in view", f"{c['face_in_view']} CPU s / s"),
        (
            "analyze (no liveness) vs OpenCV reference",
            (
                f"{ref['gateway_analyze_no_liveness_ms']} vs {ref['opencv_reference_ms']} ms "
                f"= x{ref['ratio_gateway_to_opencv']}"
            ),
        ),
        (
            "analyze with liveness vs OpenCV reference",
            (
                f"{ref['gateway_analyze_with_liveness_ms']} ms "
                f"= x{ref['ratio_gateway_with_liveness_to_opencv']}"
            ),
        ),
    ]
    rr = r["relay_reference"]
    now, before = rr["osdp_as_shipped"], rr["osdp_fixed_20ms_cadence"]
    rows += [
        (
            "relay ref: OSDP command -> PD receipt",
            (
                f"{now['to_pd_ms']} ms vs {before['to_pd_ms']} ms with the 20 ms cadence "
                f"= x{rr['ratio_to_pd']}"
            ),
        ),
        (
            "relay ref: OSDP command -> acknowledgement",
            f"{now['to_ack_ms']} ms vs {before['to_ack_ms']} ms = x{rr['ratio_to_ack']}",
        ),
        (
            "relay ref: GPIO grant -> line write",
            (
                f"{rr['gpio']['grant_to_line_write_ms']} ms "
                f"= x{rr['ratio_gpio_write_to_osdp_ack']} of the OSDP acknowledgement"
            ),
        ),
    ]
    width = max(len(a) for a, _ in rows)
    print()
    for a, b in rows:
        print(f"{a.ljust(width)}  {b}")
    print(f"\nmachine: {r['machine']['cpu']}, {r['machine']['cores']}")
    if t.get("start_frame_from_daemon"):
        print(
            f"{t['start_frame_from_daemon']} approach(es) timed from the daemon's own first "
            "accepted frame (the offline re-analysis accepted none before the unlock)"
        )
    for k, row in enumerate(s.get("over_target_explained", []), 1):
        print(f"\nover target #{k}: {row['resident']}, {row['ms']} ms; frames processed:")
        for frame in row["frames"]:
            print(f"  {frame}")


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
