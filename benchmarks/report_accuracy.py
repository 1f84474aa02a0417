"""Face-accuracy sections of benchmarks/report: enrolment experiment, defaults, single frame."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from report_sections import command_line, fmt, step_section
from report_steps import Step


def enrolment_section(
    enrol: Step | None, rows: list[dict[str, Any]], plot: Path | None
) -> list[str]:
    """Enrolment count, flip fusion and quality gate (eval_enrolment.py), with the defaults."""
    md = ["## Enrolment count, flip fusion, quality gate (1:N, LFW dev)", ""]
    if enrol is None:
        return [*md, "Skipped.", ""]
    if enrol.missing or not rows:
        return [*md, *step_section(enrol, "eval_enrolment.py")]
    md += [command_line(enrol), ""]
    out_lines = enrol.stdout.strip().splitlines()
    md += ["```", *[ln for ln in out_lines if not ln.startswith(("|", "n/m", "wrote"))]]
    md += ["```", "", *[ln for ln in out_lines if ln.startswith("|")], ""]
    md += [f"- {ln}" for ln in out_lines if ln.startswith("n/m")] + [""]
    md += calibration_table(enrol.data.get("calibration") or {})
    md += ["### Recommended defaults", "", *recommend(rows, enrol.data.get("calibration") or {})]
    if plot:
        md += ["![enrolment](enrolment.png)", ""]
    return md


def calibration_table(cal: dict[str, Any]) -> list[str]:
    """``gateway calibrate`` logic at FMR 1e-4 on every comparison among the experiment's images."""
    if not cal:
        return []
    lines = [
        (
            "Threshold for FMR 1e-4 (1:1) on every genuine/impostor comparison among the "
            "experiment's "
            "images (quality gate off), with its exact 95% Clopper-Pearson interval:"
        ),
        "",
        (
            "| pipeline | embedding | match_threshold | impostor comparisons | false matches | "
            "FMR 95% CI | rule of 3 | FNMR | match_margin (<=1% correct accepts lost) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for pipe, per in cal.items():
        for emb, c in per.items():
            r3 = fmt(c["rule_of_three"], ".1e") if c["rule_of_three"] is not None else "—"
            lines.append(
                f"| {pipe} | {emb} | {c['threshold']:.4f} | {c['n_impostor']} | "
                f"{c['false_matches']} | {c['fmr_ci95'][0]:.1e}..{c['fmr_ci95'][1]:.1e} | {r3} | "
                f"{c['fnmr']:.4f} | {c['margin_1pct_loss']:.4f} |"
            )
            if c.get("note"):
                notes.append(f"- {pipe}/{emb}: {c['note']}")
    return [*lines, "", *notes, ""]


def recommend(rows: list[dict[str, Any]], calibration: dict[str, Any]) -> list[str]:
    """Defaults from the enrolment experiment (gateway pipeline when measured, else opencv).

    Per quality-gate setting: the best condition by FNIR at FPIR 1%, then the cheapest one
    within one binomial standard error of it. Cost order: flip fusion (doubles the embedding
    time of every frame) > enrolment images (asked of every person once) > a mean template
    (the gallery keeps one template per image and scores the best one).
    """
    pipe = "gateway" if any(r["pipeline"] == "gateway" for r in rows) else "opencv"
    out: list[str] = []

    def cost(r: dict[str, Any]) -> tuple[int, int, int]:
        return (int(r["flip"]), r["enrol_images"], int(r["fusion"] == "mean"))

    picks = {}
    for gate in (True, False):
        cand = [
            r
            for r in rows
            if r["pipeline"] == pipe
            and r["quality_gate"] == gate
            and r.get("fnir@0.01") is not None
        ]
        if not cand:
            continue
        best = min(cand, key=lambda r: r["fnir@0.01"])
        se = (best["fnir@0.01"] * (1 - best["fnir@0.01"]) / max(best["mated"], 1)) ** 0.5
        pick = min((r for r in cand if r["fnir@0.01"] <= best["fnir@0.01"] + se), key=cost)
        picks[gate] = pick
        out += [
            (
                f"- quality gate {'on' if gate else 'off'} ({pipe}): best FNIR@FPIR1% "
                f"{best['fnir@0.01']:.4f} ± {se:.4f} (enrol {best['enrol_images']}, flip "
                f"{'on' if best['flip'] else 'off'}, {best['fusion']}); cheapest within one s.e.: "
                f"enrol {pick['enrol_images']}, flip {'on' if pick['flip'] else 'off'}, "
                f"{pick['fusion']} template -> FNIR@FPIR1% {pick['fnir@0.01']:.4f}, "
                f"FNIR@FPIR0.1% {fmt(pick.get('fnir@0.001'))} (threshold at FPIR 0.1%: "
                f"{fmt(pick.get('thr@0.001'), '.3f')})."
            )
        ]
    if not picks:
        return ["No measurable condition: no recommendation.", ""]
    pick = picks.get(True) or picks[False]
    cal = (calibration.get(pipe) or {}).get("flip" if pick["flip"] else "plain")
    thr_1n = pick.get("thr@0.001")
    out += [
        "",
        (
            f"Recommended (deployed pipeline, quality gate on): **enrol_images = "
            f"{pick['enrol_images']}**, **flip_fusion = {str(pick['flip']).lower()}**, "
            f"{pick['fusion']} template fusion (one template per enrolment image)."
        ),
        "",
    ]
    if thr_1n is not None:
        out.append(
            f"**match_threshold = {math.ceil(thr_1n * 100) / 100:.2f}** for 1:N doors: the "
            f"measured threshold for FPIR 0.1% is {thr_1n:.3f} with a {pick['enrolled_people']}-"
            f"person gallery and {pick['nonmated']} non-mated searches. A stranger's chance of "
            "a false identification grows roughly with gallery size x FMR, so larger sites "
            "must re-calibrate (`gateway eval identify` / `gateway calibrate` on their own "
            "enrolment-quality images); multi-frame fusion and the margin lower it further."
        )
        out.append("")
        gated = picks.get(True)
        if gated is not None:
            out += [
                (
                    f"With the gate on, {gated['failed_mated']} of {gated['mated']} mated probes "
                    "(and people whose enrolment images all failed) count as misses: on "
                    "LFW's press photos the gate mostly rejects non-frontal and small faces. "
                    "At a gate camera the person faces it and several frames are tried, so this "
                    "part of FNIR shrinks; "
                    "the gate's thresholds (max_yaw, min_interocular_px) are worth tuning on real "
                    "gate footage."
                ),
                "",
            ]
    if cal:
        out.append(
            f"For 1:1 checks (face+card, face+pin) FMR 1e-4 needs only "
            f"**{cal['threshold']:.4f}** ({cal['n_impostor']:,} impostor comparisons, "
            f"{cal['false_matches']} false matches, 95% CI "
            f"{cal['fmr_ci95'][0]:.1e}..{cal['fmr_ci95'][1]:.1e}; the comparisons share people, "
            "so the real uncertainty is wider): a single `match_threshold` should take the "
            "stricter 1:N value; a separate 1:1 threshold would let face+card accept more. "
            f"**match_margin = {cal['margin_1pct_loss']:.2f}** (leave-one-out: rejects <= 1% of "
            "correct accepts)."
        )
    out.append("")
    return out


def single_frame_section(step: Step) -> list[str]:
    """The single-frame rule's bars and its held-out false-accept figures."""
    title = "## Single-frame decision (eval_single_frame.py, held out by identity)"
    d = step.data or {}
    if not step.ok or "identity" not in d:
        return step_section(step, "eval_single_frame.py")
    idn, live = d["identity"], d.get("liveness") or {}
    held, door = idn["held_out"], idn["held_out"]["door"]

    def r(x: dict[str, Any]) -> str:
        three = f", rule of 3 <= {x['rule_of_three']:.1e}" if x.get("rule_of_three") else ""
        return f"{x['count']} / {x['of']} (95% CI {x['ci95'][0]:.1e}..{x['ci95'][1]:.1e}{three})"

    md = [title, "", command_line(step)]
    md += ["", f"Gallery: {idn['gallery_people']} people; target FPIR {idn['target_fpir']:g}.", ""]
    ch = idn["chosen"]
    md += [
        (
            f"Bars chosen on the calibration half: score >= {ch['single_frame_score']}, margin >= "
            f"{ch['single_frame_margin']}, live probability >= {live.get('chosen')} "
            f"(match_threshold {idn['match_threshold']}, match_margin {idn['match_margin']})."
        ),
        "",
        "| held-out figure | value |",
        "|---|---|",
        f"| single-frame false accepts (all searches) | {r(held['single_frame_false_accepts'])} |",
        (
            f"| single-frame false accepts (strangers) | "
            f"{r(held['single_frame_false_accepts_nonmated'])} |"
        ),
        (
            f"| per-frame identification false accepts | "
            f"{r(held['per_frame_identify_false_accepts'])} |"
        ),
        f"| residents decided on one frame | {held['single_frame_genuine_rate']:.3f} |",
        f"| residents identified per frame | {held['per_frame_genuine_rate']:.3f} |",
        f"| door FAR per stranger approach, fusion only | {r(door['fusion_only'])} |",
        (
            f"| door FAR per stranger approach, fusion + single frame | "
            f"{r(door['fusion_and_single_frame'])} |"
        ),
    ]
    tails = (idn["calibration"]["tail_estimate_at_score_bar"], held["tail_estimate_at_score_bar"])
    md.append(
        f"| wrong-person top score >= score bar per frame, Pareto tail fit: calibration / "
        f"held-out (budget {idn['budget_per_frame']:.1e}) | {tails[0]:.1e} / {tails[1]:.1e} |"
    )
    for key, x in (live.get("held_out_frames_at_or_above_bar") or {}).items():
        md.append(f"| liveness, held out: {key} | {r(x)} |")
    for rule, by_variant in (live.get("held_out_door") or {}).items():
        for variant, row in by_variant.items():
            for what, x in row.items():
                if isinstance(x, dict):
                    md.append(f"| door, held out, {rule}: {variant} {what} | {r(x)} |")
    md += ["", *[f"- left out, wrong LFW label: {k} ({v})" for k, v in idn["errata"].items()]]
    md += [
        (
            "- door FAR: a false accept needs one frame that also false-matches per frame (the "
            "bars sit above match_threshold/margin), so with identical frames (a still photo of a "
            "stranger) the door's rate stays the per-frame FPIR; with independent frames it is at "
            f"most fusion's plus {door['approach_frames']} x the per-frame tail estimate."
        )
    ]
    if live.get("chosen") is None:
        md += ["", f"Liveness bar not measured: {live.get('error')}"]
    return [*md, ""]


def pair_frames_section(step: Step) -> list[str]:
    """The two-frame rule's slack and its held-out figures (walks and LFW)."""
    title = "## Two-frame decision (eval_pair_frames.py, held out by identity)"
    d = step.data or {}
    if not step.ok or "held_out" not in d or "walks" not in d:
        return step_section(step, "eval_pair_frames.py")
    held, walks = d["held_out"], d["walks"]

    def r(x: dict[str, Any]) -> str:
        three = f", rule of 3 <= {x['rule_of_three']:.1e}" if x.get("rule_of_three") else ""
        return f"{x['count']} / {x['of']} (95% CI {x['ci95'][0]:.1e}..{x['ci95'][1]:.1e}{three})"

    def ratio(x: float | None) -> str:
        return "n/a (none without)" if x is None else f"x{x:.2f}"

    md = [title, "", command_line(step), ""]
    md.append(
        f"match_threshold {d['match_threshold']}, match_margin {d['match_margin']}, fusion "
        f"{d['fusion']['k']} of {d['fusion']['n']}. Slack chosen on the calibration halves: "
        f"**{d['chosen_slack']}** (shipped default: {d['default_slack']}): the smallest "
        f"of {list(d['slacks'])} with {d['gain_share']:.0%} of the largest gain in residents "
        f"decided by the second frame, among those adding at most x{d['ratio_max']} to the "
        "strangers accepted at the stress thresholds, accepting no more LFW strangers than "
        f"fusion 0.02 looser, and within the budget {d['budget']:.1e}."
    )
    md += [
        "",
        (
            "| slack (calibration) | walks: residents by 2nd frame | walks: strangers accepted | "
            "walks: stress ratio | LFW strangers, 0.02 looser | independent-frames estimate |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for row in d["calibration_table"]:
        md.append(
            f"| {row['slack']} | {row['walk_residents_by_second_frame']} | "
            f"{row['walk_strangers_accepted']} | {ratio(row['walk_stress_ratio'])} | "
            f"{row['lfw_strangers_accepted_guard_looser']} | {row['independent_bound']:.1e} |"
        )
    wh = walks["held_out"]
    chosen = f"slack {d['chosen_slack']}"
    md += [
        "",
        (
            f"Simulated walks, held out ({walks['corpus']}, gallery of {walks['gallery']} "
            "residents; 15 fps, every frame through the gate's pipeline):"
        ),
        "",
        "| held-out walks | fusion | fusion + two frames (chosen slack) |",
        "|---|---|---|",
    ]
    for key in (
        "strangers",
        "strangers_accepted",
        "residents",
        "residents_decided",
        "residents_by_second_frame",
        "residents_taken_for_someone_else",
        "frames_to_decision_median",
    ):
        md.append(
            f"| {key.replace('_', ' ')} | {wh['fusion']['shipped'][key]} | "
            f"{wh[chosen]['shipped'][key]} |"
        )
    md += [
        "",
        (
            "| stress threshold | strangers accepted: fusion | + two frames | any frame "
            "matched (no pairing rule can exceed) |"
        ),
        "|---|---|---|---|",
    ]
    for t, n in wh["fusion"]["stress_strangers_accepted"].items():
        md.append(
            f"| {t} | {n} | {wh[chosen]['stress_strangers_accepted'][t]} | "
            f"{wh['any_frame_matched'][t]} |"
        )
    md.append(
        f"| {d['match_threshold']} (shipped) | {wh['fusion']['shipped']['strangers_accepted']} | "
        f"{wh[chosen]['shipped']['strangers_accepted']} | "
        f"{wh['any_frame_matched'][str(d['match_threshold'])]} |"
    )
    md += [
        "",
        (
            "| held-out LFW (distinct photographs as frames) | fusion | + single frame | "
            "+ single and two frames |"
        ),
        "|---|---|---|---|",
    ]
    rules = ("fusion_only", "fusion_and_single_frame", "fusion_single_and_pair")
    for what in (
        "stranger_approaches_accepted",
        "residents_taken_for_someone_else",
        "residents_decided_by_frame_2",
        "residents_decided",
    ):
        cells = " | ".join(r(held[x][what]) for x in rules)
        md.append(f"| {what.replace('_', ' ')} | {cells} |")
    md += [
        "",
        (
            f"- LFW wrong-person top score per frame, Pareto tail fit (held out): P(>= "
            f"threshold) {held['per_frame_wrong_top_at_or_above_t']:.1e}, P(>= threshold - "
            f"slack) {held['per_frame_wrong_top_at_or_above_floor']:.1e}; independent frames: "
            f"the rule adds about {held['independent_frames_bound']:.1e} per approach."
        ),
        (
            "- Correlated frames (the walks): no independence bound holds; the rule cannot "
            "accept a stranger in whose approach no frame matched on its own, so the door's "
            "rate stays below the 'any frame matched' row, and the stress rows show how "
            "close to it the rule comes compared with fusion."
        ),
    ]
    return [*md, ""]
