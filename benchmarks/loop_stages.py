"""bench_loop's analysis after a run: each approach's start frame, the time-to-unlock
percentiles and the per-stage medians on the frame that caused each unlock."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
from loop_probes import Probes
from loop_setup import CAMERA, HEIGHT, TARGET_P95_MS, WIDTH, med, pct

from hw_sim.sim import Simulator


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
