"""bench_loop's probes: timestamps from the simulator (frames published, relay received) and
from the instrumented in-process daemon (face path stages, relay commands, door grants)."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from loop_setup import CAMERA, READER, FakeGpio

from gateway.hardware.door_controller import DoorController
from gateway.hardware.io import GpioRelay
from gateway.hardware.osdp_reader import OsdpReader
from hw_sim.sim import Simulator


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
        if m.person_id is not None:  # + the single-frame evidence: score-lead~live probability
            ev = "" if m.score is None or m.margin is None else f":{m.score:.3f}-{m.margin:.3f}"
            ev += "" if m.live_score is None else f"~{m.live_score:.2f}"
            return f"match{ev}{live}"
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
