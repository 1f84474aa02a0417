#!/usr/bin/env python3
"""Fuzz figures for the benchmark report: the fuzz suite's strategies (tests/fuzz/cases.py),
a fixed number of inputs per class, every outcome counted instead of stopping at the first.

    python benchmarks/fuzz_report.py [--inputs 2000] [--out benchmarks/results]

Writes ``fuzz.json`` and the "Fuzzing" section of ``REPORT.md`` (replaced in place between
its markers, appended when absent; nothing else in the report is touched).
A failure is an input that raised anything but the project's own error type for that class
(or such an error without a message), or took longer than the hang limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- fuzz_report: begin -->"
END = "<!-- fuzz_report: end -->"


def _classes(tmp: Path) -> dict[str, tuple[str, Any, Callable[[Any], str]]]:
    import sys

    sys.path.insert(0, str(ROOT))
    from hypothesis import strategies as st

    from tests.fuzz import cases, device_cases

    mqtt = cases.MqttTarget.open()
    target = mqtt.__enter__()
    path = tmp / "gateway.toml"
    return {
        "config files": (
            (
                "TOML text: random bytes/text, mutants of the example, mutated structures, deep "
                "nesting -> load_config"
            ),
            cases.config_files,
            lambda data: cases.run_config_file(path, data),
        ),
        "environment variables": (
            (
                "GATEWAY_* sets: known and random names; text, JSON, broken and deep JSON "
                "-> load_config"
            ),
            cases.env_sets,
            cases.run_env,
        ),
        "MQTT payloads": (
            (
                "command envelopes (random, JSON, deep, signed with random args/fields), "
                "withdrawal fan-out, fleet enrolled/status -> their parsers"
            ),
            cases.mqtt_inputs,
            lambda item: cases.run_mqtt(target, item),
        ),
        "OSDP replies": (
            "card read / keypad / status event sequences -> map_event (one reader's state)",
            st.lists(device_cases.osdp_events(), min_size=1, max_size=6),
            device_cases.run_osdp,
        ),
        "Wiegand frames": (
            "bit streams with random gaps -> WiegandFramer -> to_event",
            device_cases.wiegand_streams,
            device_cases.run_wiegand,
        ),
        "images": (
            "random bytes, mutated JPEG/PNG/BMP/WebP/TIFF/PNM, header size lies -> load_image",
            device_cases.image_bytes,
            device_cases.run_image,
        ),
    }


def run_class(strategy: Any, target: Callable[[Any], str], inputs: int) -> dict[str, Any]:
    """Feed ``inputs`` generated inputs to ``target``; count outcomes, failures, slowest."""
    from hypothesis import HealthCheck, given, settings

    from tests.fuzz import cases

    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    slowest = 0.0

    @settings(
        max_examples=inputs,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def feed(item: Any) -> None:
        nonlocal slowest
        start = time.monotonic()
        try:
            outcomes[target(item)] += 1
        except Exception as exc:  # noqa: BLE001 - every failure is counted, the run goes on
            outcomes["failure"] += 1
            if len(failures) < 5:
                failures.append(
                    "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
                )
        took = time.monotonic() - start
        slowest = max(slowest, took)
        if took > cases.HANG_S:
            outcomes["hang"] += 1

    started = time.monotonic()
    feed()
    return {
        "inputs": sum(outcomes.values()),
        "accepted": outcomes["ok"],
        "refused_with_error": outcomes["error"],
        "failures": outcomes["failure"] + outcomes["hang"],
        "hangs": outcomes["hang"],
        "slowest_ms": round(slowest * 1000, 1),
        "seconds": round(time.monotonic() - started, 1),
        "failure_examples": failures,
    }


def section(result: dict[str, Any]) -> list[str]:
    """The Markdown section (between its markers) for ``fuzz.json`` contents."""
    rows = result["classes"]
    total = sum(r["inputs"] for r in rows.values())
    fails = sum(r["failures"] for r in rows.values())
    md = [
        BEGIN,
        "## Fuzzing (fuzz_report.py)",
        "",
        (
            f"`python benchmarks/fuzz_report.py --inputs {result['inputs_per_class']}` on "
            f"{result['date']}, {result['seconds']:.0f} s; hypothesis strategies of the fuzz suite "
            "(`tests/fuzz/`, run in CI by `pytest -m fuzz` with fewer inputs). "
            "A failure is "
            "a traceback (anything but the project's own error for that input, with a message) or "
            f"an input slower than {result['hang_s']:.0f} s (a hang)."
        ),
        "",
        (
            "| class | inputs tried | accepted | refused with a clear error | failures | hangs "
            "| slowest input ms | what is fed |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        md.append(
            f"| {name} | {r['inputs']} | {r['accepted']} | {r['refused_with_error']} | "
            f"{r['failures']} | {r['hangs']} | {r['slowest_ms']} | {r['what']} |"
        )
    md += ["", f"**{total} inputs, {fails} failures.**", ""]
    for name, r in rows.items():
        for example in r["failure_examples"]:
            md.append(f"- {name}: `{example}`")
    base = result.get("baseline")
    if base:
        before = ", ".join(
            f"{name} {r['failures']} of {r['inputs']}" for name, r in base["classes"].items()
        )
        md += [
            (
                f"Before the fixes ({base['code']}, the same strategies, "
                f"{base['inputs_per_class']} inputs per class, {base['date']}), "
                f"failures: {before}."
            ),
            "",
        ]
    md += [END]
    return md


def write_section(report: Path, lines: list[str]) -> None:
    """Replace the fuzz section of ``report`` (or append it); leave the rest untouched."""
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    report.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fuzz figures for REPORT.md")
    ap.add_argument("--inputs", type=int, default=2000, help="inputs per class")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    logging.disable(logging.CRITICAL)  # refusals log warnings: not wanted here
    with contextlib.suppress(ImportError):
        import cv2

        getattr(cv2, "setLogLevel", lambda level: None)(0)  # decoder complaints: not wanted
    started = time.monotonic()
    from tests.fuzz import cases  # noqa: F401 - importable before timing starts

    classes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (what, strategy, target) in _classes(Path(tmp)).items():
            r = run_class(strategy, target, args.inputs)
            r["what"] = what
            classes[name] = r
            print(
                f"[fuzz] {name}: {r['inputs']} inputs, {r['failures']} failures, {r['seconds']} s",
                flush=True,
            )
    from tests.fuzz.cases import HANG_S

    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "inputs_per_class": args.inputs,
        "hang_s": HANG_S,
        "seconds": round(time.monotonic() - started, 1),
        "classes": classes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    baseline = args.out / "fuzz_baseline.json"  # the same run on older code, kept by hand
    if baseline.is_file():
        result["baseline"] = json.loads(baseline.read_text())
    (args.out / "fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    write_section(args.out / "REPORT.md", section(result))
    print(f"[fuzz] wrote {args.out / 'fuzz.json'} and the Fuzzing section of REPORT.md")
    return 1 if any(r["failures"] for r in classes.values()) else 0


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
