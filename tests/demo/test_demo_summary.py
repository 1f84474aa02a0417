"""``gateway demo`` never stops half-way: the summary table is always printed, skipped
scenarios are listed with their reason, the exit code is 0 only when every runnable
scenario passed."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.demo import report as demo_report
from gateway.demo import run as demo
from gateway.demo.needs import unmet_needs
from hw_sim.runner import ScenarioResult

TAIL = "steps: [{at: 0, action: open-door, args: {door: main-gate}}]\nexpect: [{absent: x}]\n"


def _scenarios(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for n in names:
        (folder / f"{n}.yaml").write_text(f"name: {n}\n{TAIL}")
    return folder


def _args(folder: Path) -> argparse.Namespace:
    # An external broker URL: no embedded broker is started (nothing connects to it here).
    return argparse.Namespace(scenarios=[folder], mqtt="mqtt://127.0.0.1:9", keep=False)


def test_set_up_failure_still_prints_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(stack: Any) -> dict[str, str]:
        raise RuntimeError("the daemon did not become ready")

    monkeypatch.setattr(demo, "_set_up", broken)
    code = asyncio.run(demo.run_demo(_args(_scenarios(tmp_path, "alpha", "beta"))))
    out = capsys.readouterr().out
    assert code == 1
    assert "scenario" in out
    assert "decision" in out
    for name in ("alpha", "beta"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        assert "ERROR" in line
        assert "the daemon did not become ready" in line
    assert "0 of 2 runnable scenarios passed" in out


def test_error_in_one_scenario_does_not_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def set_up(stack: Any) -> dict[str, str]:
        return {}

    async def quiet(self: Any, *a: Any, **k: Any) -> None:
        return None

    played: list[str] = []

    async def fake_run(paths: list[Path], *a: Any, **k: Any) -> list[ScenarioResult]:
        path = Path(paths[0])
        played.append(path.stem)
        if path.stem == "alpha":
            raise RuntimeError("simulator went away")
        if path.stem == "gamma":
            return [ScenarioResult("gamma", str(path), "skipped", message="liveness: no model")]
        return [ScenarioResult(path.stem, str(path), "pass")]

    monkeypatch.setattr(demo, "_set_up", set_up)
    monkeypatch.setattr(demo.DemoStack, "settle", quiet)
    monkeypatch.setattr(demo.DemoStack, "print_events_task", quiet)
    monkeypatch.setattr("hw_sim.runner.run_scenarios_async", fake_run)
    code = asyncio.run(demo.run_demo(_args(_scenarios(tmp_path, "alpha", "beta", "gamma"))))
    out = capsys.readouterr().out
    assert played == ["alpha", "beta", "gamma"]
    assert code == 1
    rows = {ln.split()[0]: ln for ln in out.splitlines() if ln.split()[:1] != []}
    assert "ERROR" in rows["alpha"]
    assert "simulator went away" in rows["alpha"]
    assert "PASS" in rows["beta"]
    assert "SKIPPED" in rows["gamma"]
    assert "1 of 2 runnable scenarios passed; 1 skipped:" in out
    assert "skipped gamma: needs liveness: no model" in out


def _r(name: str, status: Any) -> ScenarioResult:
    return ScenarioResult(name, f"{name}.yaml", status)


def test_exit_code_counts_only_runnable_scenarios() -> None:
    assert demo_report.exit_code([_r("a", "pass"), _r("b", "skipped")]) == 0
    assert demo_report.exit_code([_r("a", "pass"), _r("b", "fail")]) == 1
    assert demo_report.exit_code([_r("a", "pass"), _r("b", "error")]) == 1
    assert demo_report.exit_code([_r("a", "skipped")]) == 1  # nothing demonstrated
    assert demo_report.exit_code([]) == 1


def test_unmet_needs_name_the_missing_data(tmp_path: Path) -> None:
    unmet = unmet_needs(
        have_antispoof=False,
        shared=tmp_path / "shared",
        corpus_shortfall="the face corpus (skimage.data.astronaut) has 1 resident(s)",
        corpus_error="pip download face_recognition==1.3.0 failed: no network",
        broker_control=True,
    )
    assert set(unmet) == {"liveness", "face"}
    assert "MiniFASNet" in unmet["liveness"]
    assert str(tmp_path / "shared" / "models" / "antispoof") in unmet["liveness"]
    assert "no network" in unmet["face"]
    assert (
        unmet_needs(
            have_antispoof=True,
            shared=tmp_path,
            corpus_shortfall=None,
            corpus_error=None,
            broker_control=True,
        )
        == {}
    )


@pytest.mark.parametrize("with_antispoof", [False, True])
def test_fresh_clone_models_live_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_antispoof: bool
) -> None:
    """A model cache shared with a ../shared run must not lend a fresh clone its
    anti-spoofing models: without them the demo uses its own model directory."""
    from gateway.face.pipeline import FacePipeline

    shared = tmp_path / "shared"
    if with_antispoof:
        (shared / "models" / "antispoof").mkdir(parents=True)
    monkeypatch.setattr(demo, "SHARED", shared)
    monkeypatch.setattr(demo, "MODEL_CACHE", tmp_path / "cache")
    installed: list[Path] = []

    def install(model_dir: Path, shared_dir: Path) -> bool:
        installed.append(model_dir)
        return with_antispoof

    monkeypatch.setattr(demo, "install_models", install)
    monkeypatch.setattr(FacePipeline, "load", classmethod(lambda cls, d, s: object()))
    stack = demo.DemoStack(mqtt_url="mqtt://127.0.0.1:9", broker_control=None, workdir=tmp_path)
    stack.load_pipeline()
    want = "models" if with_antispoof else "models-no-antispoof"
    assert installed == [tmp_path / "cache" / want]
    assert stack.model_dir == tmp_path / "cache" / want
