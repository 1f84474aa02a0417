"""The demo's summary: the table, the counts with every skip reason, and the exit code."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def runnable(results: Sequence[Any]) -> list[Any]:
    """The results of scenarios that ran (or should have): all but the skipped ones."""
    return [r for r in results if r.status != "skipped"]


def format_summary(results: Sequence[Any]) -> str:
    """The summary table: scenario, expected, observed, pass/fail, time to decision."""
    rows = [("scenario", "expected", "observed", "result", "decision")]
    for r in results:
        expected = f"{len(r.checks)} checks"
        ok = sum(1 for c in r.checks if c.ok)
        observed = f"{ok} held"
        failed = next((c for c in r.checks if not c.ok), None)
        if r.status == "skipped":
            expected, observed = "-", r.message
        elif failed is not None:
            observed += f"; first miss: {failed.expected} -> {failed.observed}"
        elif r.message:
            observed += f"; {r.message}"
        ttd = f"{r.time_to_decision_s * 1000:.0f} ms" if r.time_to_decision_s is not None else "-"
        rows.append((r.name, expected, observed[:90], r.status.upper(), ttd))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_counts(results: Sequence[Any]) -> str:
    """``N of M runnable scenarios passed; K skipped`` and one line per skipped scenario."""
    ran = runnable(results)
    passed = sum(1 for r in ran if r.passed)
    skipped = [r for r in results if r.status == "skipped"]
    line = f"{passed} of {len(ran)} runnable scenarios passed"
    if skipped:
        line += f"; {len(skipped)} skipped:"
    lines = [line]
    lines += [f"  skipped {r.name}: needs {r.message}" for r in skipped]
    if not ran:
        lines.append("no scenario could run: nothing was demonstrated")
    return "\n".join(lines)


def exit_code(results: Sequence[Any]) -> int:
    """0 only when at least one scenario ran and every runnable scenario passed."""
    ran = runnable(results)
    return 0 if ran and all(r.passed for r in ran) else 1


def print_results(results: Sequence[Any]) -> None:
    """The summary and the counts, printed at the end of a demo run."""
    print("\n" + format_summary(results), flush=True)
    print("\n" + format_counts(results), flush=True)


def all_failed(files: Sequence[Path], message: str) -> list[Any]:
    """Every scenario of ``files`` as an error with ``message`` (the set-up failed)."""
    from hw_sim.runner import ScenarioResult

    return [ScenarioResult(f.stem, str(f), "error", message=message) for f in files]
