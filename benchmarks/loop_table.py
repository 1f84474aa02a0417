"""bench_loop's console table (the run's result dict as the JSON holds it)."""

from __future__ import annotations

from typing import Any

from loop_setup import TARGET_P95_MS


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
            "  daemon idle / face in view / without camera",
            (
                f"{c.get('daemon_idle')} / {c.get('daemon_face_in_view')} / "
                f"{c.get('daemon_without_camera')} CPU s / s"
            ),
        ),
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
