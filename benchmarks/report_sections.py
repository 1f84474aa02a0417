"""Markdown pieces of benchmarks/report: generic tables and the per-benchmark sections."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

from report_steps import ROOT, Step


def bench_module(name: str) -> ModuleType:
    """benchmarks/<name>.py, loaded from its file (its ``section`` renders its markdown)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fmt(v: Any, spec: str = ".4f") -> str:
    if v is None:
        return "n/m"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def flatten(d: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and len(d) <= 50:
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix.rstrip(".")] = float(d)
    return out


def command_line(step: Step) -> str:
    """``Command: `...` — N s``, saying when the result was re-used from an earlier run."""
    again = f" (result of {step.reused}, re-used)" if step.reused else ""
    return f"Command: `{shlex.join(step.display_cmd())}` — {step.seconds:.0f} s{again}"


def step_section(step: Step, title: str) -> list[str]:
    lines = [f"## {title}", ""]
    if step.missing:
        return [*lines, f"**Not measured:** {step.missing}.", ""]
    lines += [
        f"Command: `{shlex.join(step.display_cmd())}` — exit {step.rc}, {step.seconds:.0f} s"
        + (f" (result of {step.reused}, re-used)" if step.reused else ""),
        "",
    ]
    if step.rc != 0:
        tail = "\n".join((step.stderr or step.stdout).strip().splitlines()[-15:])
        lines += [f"**FAILED (exit {step.rc}).** Last lines:", "", "```", tail, "```", ""]
    if step.stdout.strip():
        lines += ["Output:", "", "```", step.stdout.strip()[-6000:], "```", ""]
    return lines


def pairs_table(steps: list[Step]) -> list[str]:
    rows = [s.data for s in steps if s.data]
    if not rows:
        return ["No pairs evaluation produced results.", ""]
    ref = next((r for r in rows if r["pipeline"] == "opencv"), None)
    lines = [
        (
            "| pipeline | face | 10-fold accuracy | ± std | failed images | failed pairs (gen/imp) "
            "| TAR@FAR 1e-2 | TAR@FAR 1e-3 | TAR@FAR 1e-4 | ms / image (incl. JPEG decode) "
            "| time ratio to opencv | error-rate ratio to opencv |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for r in rows:
        tars = []
        for key in ("0.01", "0.001", "0.0001"):
            t = r["tar_at_far"][key]
            tars.append(fmt(t["tar"]) if t["tar"] is not None else t["not_measurable"])
        ratio = t_ratio = "—"
        if ref is not None and r is not ref:
            if (1 - ref["accuracy_mean"]) > 0:
                ratio = f"{(1 - r['accuracy_mean']) / (1 - ref['accuracy_mean']):.2f}"
            if ref.get("ms_per_image"):
                t_ratio = f"{r.get('ms_per_image', 0) / ref['ms_per_image']:.2f}"
            diff = r["accuracy_mean"] - ref["accuracy_mean"]
            pairs = round(abs(diff) * r["pairs"])
            word = "better than" if diff > 0 else "worse than" if diff < 0 else "equal to"
            verdicts.append(
                f"- {r['pipeline']}: {abs(diff) * 100:.2f} points ({pairs} of {r['pairs']} pairs) "
                f"{word} the plain OpenCV reference."
            )
        lines.append(
            f"| {r['pipeline']} | {r.get('face', 'largest (before --face)')} "
            f"| {r['accuracy_mean']:.4f} | {r['accuracy_std']:.4f} | "
            f"{r['failed_images']} | {r['failed_pairs']} ({r['failed_genuine_pairs']}/"
            f"{r['failed_impostor_pairs']}) | {' | '.join(tars)} "
            f"| {r.get('ms_per_image', 0):.1f} | {t_ratio} | {ratio} |"
        )
    return [
        *lines,
        "",
        *verdicts,
        "",
        (
            "Face: the subject of each image is the detected face nearest the image centre "
            "(`--face centre`, LFW's labelling convention: a deep-funneled image is centred on "
            "its labelled person); the gate itself takes the largest face (`--face largest`). "
            f"Failed-pair rule: {rows[0]['failed_pair_rule']}. The gateway row with the "
            "quality gate on counts every face the gate rejects as a failed pair (the operational "
            "figure); the "
            "row without it is the like-for-like comparison with the reference."
        ),
        "",
    ]


def json_table(data: Any, limit: int = 60) -> list[str]:
    flat = flatten(data)
    if not flat:
        return []
    lines = ["| figure | value |", "|---|---|"]
    for k, v in list(flat.items())[:limit]:
        lines.append(f"| {k} | {v:.4g} |")
    if len(flat) > limit:
        lines.append(f"| … | {len(flat) - limit} more in the JSON |")
    return [*lines, ""]


def outbox_durability(data: dict[str, Any]) -> list[str]:
    """The outbox's durability guarantee and what it costs (bench_outbox.py, issue 18)."""
    full, normal = data["durability"]["FULL"], data["durability"]["NORMAL"]
    ratio = data["full_vs_normal_same_run_ratio_median"]
    n, fs = data.get("fsync_probe_events"), data.get("fsyncs_measured") or {}
    counted = (
        f"Counted with strace for {n} events put and published one at a time: "
        f"{fs.get('FULL')} fsync/fdatasync calls with FULL, {fs.get('NORMAL')} with NORMAL. "
        if fs.get("FULL") is not None
        else "(strace not installed: fsyncs not counted.) "
    )
    return [
        "### Durability guarantee and cost",
        "",
        "| synchronous | put() events/s | put p50 ms | put p99 ms | sustained events/s |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {m['put_per_s']:,.0f} | {m['put_p50_ms']:.3f} | "
            f"{m['put_p99_ms']:.3f} | {m['sustained']:,.0f} |"
            for name, m in (("NORMAL (before)", normal), ("FULL (now)", full))
        ),
        "",
        (
            "Guarantee: when `Outbox.put()` returns, the event is on stable storage: committed "
            "with `synchronous=FULL` (the WAL is fsync'd at every commit), or, when the "
            "database refuses the write, appended to the fsync'd spill journal beside it. A "
            "kill -9 or a power cut loses no event put() returned for (duplicates are "
            "possible, with the same id). Not covered: a storage device that acknowledges "
            "fsync without writing (some SD cards), or a journal that cannot be written either "
            "(disk full, read-only): then events are held in memory only (bounded, counted in "
            "health as `in_memory`)."
        ),
        "",
        (
            f"Cost, same run: FULL/NORMAL put rate x{ratio['put_per_s']:.2f}, sustained "
            f"x{ratio['sustained']:.2f}. {counted}fsyncs: 1 per event (the insert's commit); the "
            "delete after PUBACK is not fsync'd (a delete lost to a power cut only re-sends; "
            "the next commit syncs the WAL past it); WAL checkpoints add ~2 per 1,000 pages. "
            "On an SD card an fsync takes ~2-20 ms: 50-500 events/s, against ~10 events/s "
            "at a busy gate; the fsync runs on the event loop, so an access event adds one "
            "fsync (a few ms) to the loop. This VM's disk fsyncs far faster than an SD card: "
            "the absolute FULL figures here are optimistic, the count of fsyncs is not."
        ),
        "",
    ]


def stereo_pad(data: dict[str, Any]) -> list[str]:
    """The PAD table and the 3-D check's cost, rendered by bench_stereo.py's ``section``."""
    return list(bench_module("bench_stereo").section(data))


def fuzz_section(out: Path) -> list[str]:
    """The fuzzing figures kept from ``fuzz.json`` (made by benchmarks/fuzz_report.py)."""
    saved = out / "fuzz.json"
    if not saved.is_file():
        return []
    return [*bench_module("fuzz_report").section(json.loads(saved.read_text())), ""]


def unlinkability_section(step: Step | None) -> list[str]:
    """Template protection (eval_unlinkability.py, issue 20): accuracy and linkage figures."""
    md = ["## Template protection: 1:N accuracy and cross-site linkage (LFW dev)", ""]
    if step is None:
        return [*md, "Skipped (--skip unlinkability).", ""]
    if step.missing or not step.data:
        return step_section(step, md[0].removeprefix("## "))
    return [*md, command_line(step), "", *bench_module("eval_unlinkability").section(step.data)]
