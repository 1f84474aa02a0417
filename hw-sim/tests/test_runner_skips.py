"""Runner: unmet needs are skipped with the reason; a set-up error fails one scenario only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hw_sim.runner import Observed, format_report, run_scenarios_async

TAIL = "steps: [{at: 0, action: open-door, args: {door: main-gate}}]\nexpect: [{absent: x}]\n"


class _Observer:
    def __init__(self) -> None:
        self.events: list[Observed] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class _Sim:
    def do(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"ok": True}

    def state(self) -> dict[str, Any]:
        return {"doors": {}}


def _write(tmp_path: Path, **texts: str) -> list[Path]:
    out = []
    for name, text in texts.items():
        p = tmp_path / f"{name}.yaml"
        p.write_text(text, encoding="utf-8")
        out.append(p)
    return out


def test_unmet_need_is_skipped_with_its_reason(tmp_path: Path) -> None:
    paths = _write(
        tmp_path,
        a=f"name: attack\nrequires: [face, liveness]\n{TAIL}",
        b=f"name: card\nrequires: [osdp]\n{TAIL}",
    )
    results = asyncio.run(
        run_scenarios_async(
            paths,
            _Sim(),
            observer=_Observer(),
            unmet={"liveness": "no anti-spoofing model here"},
            settle_s=0.0,
            sample_s=0.01,
        )
    )
    assert [(r.name, r.status) for r in results] == [("attack", "skipped"), ("card", "pass")]
    assert results[0].message == "liveness: no anti-spoofing model here"
    assert not results[0].passed
    assert "[    SKIPPED] attack" in format_report(results)


def test_set_up_error_fails_that_scenario_and_the_run_goes_on(tmp_path: Path) -> None:
    people = "fixtures: {people: [{ref: resident1, face: true}]}\n"
    paths = _write(
        tmp_path,
        a=f"name: first\n{people}{TAIL}",
        b=f"name: second\n{people}{TAIL}",
    )
    provisioned: list[str] = []

    async def harness(name: str, args: dict[str, Any]) -> None:
        if args.get("scenario") == "first":
            raise RuntimeError("person p1: 0 good image(s), at least 1 needed; nothing stored")
        provisioned.append(args["scenario"])

    results = asyncio.run(
        run_scenarios_async(
            paths, _Sim(), observer=_Observer(), harness=harness, settle_s=0.0, sample_s=0.01
        )
    )
    assert [(r.name, r.status) for r in results] == [("first", "error"), ("second", "pass")]
    assert results[0].message == (
        "set-up failed: RuntimeError: person p1: 0 good image(s), at least 1 needed; nothing stored"
    )
    assert provisioned == ["second"]
