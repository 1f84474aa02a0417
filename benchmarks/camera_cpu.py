"""CPU per camera (bench_face.py ``camera_cpu``): the gateway's camera path vs plain OpenCV.

Both sides read the same simulated MJPEG stream (hw-sim camera, 640x480 at ``FPS``) in their
own child process, at the same time, with the same thread count (onnxruntime intra-op and
``cv2.setNumThreads``); CPU = utime + stime of each child per wall second:

- gateway: the daemon's camera path as built by the gate: ``CameraCapture`` (OpenCV
  VideoCapture, JPEG decode) -> ``FacePath`` (mailbox, worker thread, motion gate, face
  pipeline with liveness, 1:N match against a 1,000-person gallery, fusion);
- opencv: ``cv2.VideoCapture`` -> ``cv2.FaceDetectorYN`` on every whole frame -> for the
  largest face ``alignCrop`` + ``cv2.FaceRecognizerSF`` + a 1:N search (numpy) of the same
  gallery (gateway.eval.reference.OpenCVReference; no liveness, no quality gate).

- gateway_ungated: the same without the motion gate (every frame through the detector).

Phases: nobody in view, then one person lingering in view (a resident not enrolled, so
every frame goes through the models). CPU is also given per frame read from the camera and
scaled to the camera's fps (``cpu_s_per_s_at_fps``, see :func:`phase`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FPS = 15
CAMERA = "main-cam"
GALLERY = 1000


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _templates() -> np.ndarray:
    from gateway.face.embedder import l2_normalise

    return l2_normalise(np.random.default_rng(1).standard_normal((GALLERY, 128)))


def _stats_thread(stats: Any) -> None:
    """Answer each line on stdin with one JSON line of ``stats()``."""

    def run() -> None:
        for _ in sys.stdin:
            print(json.dumps(stats()), flush=True)

    threading.Thread(target=run, daemon=True).start()


def child_gateway(url: str, model_dir: Path, threads: int, *, gated: bool = True) -> None:
    """The gateway's camera path on ``url`` until killed (``gated``: with the motion gate)."""
    import cv2

    from gateway.access import ApproachTracker, FaceMode
    from gateway.access.fusion import FusionSettings
    from gateway.face.gallery import Gallery
    from gateway.face.pipeline import FacePipeline, FaceSettings
    from gateway.face.settings import MatchSettings
    from gateway.gate.camera import CameraCapture, OpenCVSource
    from gateway.gate.facepath import FacePath
    from gateway.privacy.zones import ZoneMasker

    cv2.setNumThreads(threads)
    pipe = FacePipeline.load(model_dir, FaceSettings(threads=threads))
    gallery = Gallery(capacity=GALLERY)
    for i, t in enumerate(_templates()):
        gallery.replace_person(f"p{i}", t[None])

    class Engine:
        def face_mode(self, door: str) -> FaceMode:
            return FaceMode.IDENTIFY

    async def sink(camera: str, outcome: Any) -> None:
        return None

    capture = CameraCapture(
        CAMERA, lambda: OpenCVSource(url, 640, 480), fps=FPS, on_state=lambda *_: None
    )
    path = FacePath(
        camera=CAMERA,
        door="door",
        reader=None,
        capture=capture,
        pipeline=pipe,
        gallery=gallery,
        transform=lambda x: x,
        masker=ZoneMasker(CAMERA, []),
        engine=Engine(),  # type: ignore[arg-type]
        tracker=ApproachTracker(FusionSettings()),
        settings=MatchSettings(),
        sink=sink,
    )
    if not gated:
        path.motion_gate = None
    gate = path.motion_gate

    def stats() -> dict[str, int]:
        skipped = gate.skipped if gate is not None else 0
        return {
            "frames": capture.frames,
            "analysed": path.worker.processed - skipped,
            "skipped_by_motion_gate": skipped,
        }

    _stats_thread(stats)
    asyncio.run(path.run())


def child_opencv(url: str, threads: int) -> None:
    """The plain OpenCV camera loop on ``url`` until killed."""
    import cv2

    from gateway.eval.reference import OpenCVReference

    cv2.setNumThreads(threads)
    ref = OpenCVReference()
    templates = _templates()
    counts = {"frames": 0, "embedded": 0}
    _stats_thread(lambda: dict(counts))
    cap = cv2.VideoCapture(url)
    while True:
        ok, frame = cap.read()
        if not ok:
            time.sleep(0.05)
            continue
        counts["frames"] += 1
        emb = ref.embed(frame)
        if emb.vector is not None:
            counts["embedded"] += 1
            int(np.argmax(templates @ emb.vector))


class Child:
    """A camera child process and its CPU counter."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "bench_face.py"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def cpu(self) -> float:
        return proc_cpu_s(self.proc.pid)

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return out

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def snapshot(children: dict[str, Child]) -> dict[str, tuple[float, float, dict[str, Any]]]:
    """(time, CPU seconds, counters) of each child, taken together."""
    out = {}
    for k, c in children.items():
        stats = c.stats()
        out[k] = (time.monotonic(), c.cpu(), stats)
    return out


def phase(children: dict[str, Child], seconds: float) -> dict[str, Any]:
    """CPU seconds per wall second, and per frame handled, over ``seconds``.

    A frame is handled when it went through the whole path (gateway: analysed or skipped by
    the motion gate; a frame the mailbox dropped for a newer one is not handled, but its
    decoding is in the CPU); ``cpu_s_per_s_at_fps`` = CPU per handled frame x the camera's
    fps: what the side would spend handling every frame (a side starved of CPU by other load
    on the machine handles fewer, which would flatter its CPU per second)."""
    before = snapshot(children)
    time.sleep(seconds)
    after = snapshot(children)
    out: dict[str, Any] = {}
    for k in children:
        (t0, c0, s0), (t1, c1, s1) = before[k], after[k]
        counts = {n: s1[n] - s0.get(n, 0) for n in s1}
        handled = max(1, counts.get("analysed", 0) + counts.get("skipped_by_motion_gate", 0))
        if k == "opencv":
            handled = max(1, counts["frames"])
        cpu = c1 - c0
        out[k] = {
            "cpu_s_per_s": round(cpu / (t1 - t0), 4),
            "cpu_ms_per_frame": round(1e3 * cpu / handled, 3),
            "cpu_s_per_s_at_fps": round(FPS * cpu / handled, 4),
            "frames_handled": handled,
            **counts,
        }
    for k in children:
        if k != "opencv":
            out[f"ratio_{k}_to_opencv"] = round(
                out[k]["cpu_s_per_s_at_fps"] / max(out["opencv"]["cpu_s_per_s_at_fps"], 1e-9), 3
            )
    return out


def wait_for_faces(children: dict[str, Child], limit_s: float = 40.0) -> float:
    """Seconds until every child handles frames with the face (a side that lags behind the
    stream first works off frames buffered before the person came); then measuring starts."""
    t0 = time.monotonic()
    key = {"opencv": "embedded"}  # the gateway drains the stream: it never lags
    last = {k: c.stats() for k, c in children.items()}
    while time.monotonic() - t0 < limit_s:
        time.sleep(1.0)
        now = {k: c.stats() for k, c in children.items()}
        moved = [now[k][key.get(k, "analysed")] - last[k][key.get(k, "analysed")] for k in now]
        if min(moved) >= 1:
            break
        last = now
    return round(time.monotonic() - t0, 1)


def measure(model_dir: Path, threads: int, seconds: float) -> dict[str, Any]:
    """Start a simulated camera, both children, and measure idle then face in view."""
    sys.path.insert(0, str(REPO / "hw-sim"))
    from hw_sim.config import SimConfig
    from hw_sim.scenes import Actor
    from hw_sim.sim import Simulator

    data = SimConfig.demo().model_dump()
    data["cameras"][0].update(width=640, height=480, fps=FPS)
    sim = Simulator(SimConfig.model_validate(data)).start()
    children: dict[str, Child] = {}
    try:
        url = sim.camera_url(CAMERA)
        scene = sim.cameras[CAMERA].scene
        scene.clear()
        children["gateway"] = Child(["--camera-child", "gateway", url, str(model_dir)])
        children["gateway_ungated"] = Child(
            ["--camera-child", "gateway-ungated", url, str(model_dir)]
        )
        children["opencv"] = Child(["--camera-child", "opencv", url, str(model_dir)])
        time.sleep(8.0)  # models loaded, streams connected
        idle = phase(children, seconds)
        cam = sim.cameras[CAMERA]
        name = sim.corpus.resolve("resident1")
        scene.add(
            Actor(
                name=name,
                image_index=sim.corpus.probe_index(name, 0),
                variant="live",
                start=cam.now(),
                approach_s=0.5,
                linger_s=seconds + 60,
            )
        )
        time.sleep(2.0)
        waited = wait_for_faces(children)
        busy = phase(children, seconds)
        busy["waited_s_for_every_side_to_see_the_face"] = waited
    finally:
        for c in children.values():
            c.stop()
        sim.stop()
    return {
        "what": __doc__.split("\n\n")[0] if __doc__ else "",
        "fps": FPS,
        "threads": threads,
        "seconds_per_phase": seconds,
        "corpus": sim.corpus.source,
        "idle": idle,
        "face_in_view": busy,
        "target_idle_cpu_s_per_s": 0.05,
    }
