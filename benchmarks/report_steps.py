"""The benchmark steps of benchmarks/report: each runs in its own process, or is re-used."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from report_measure import ROOT, search_scaling

PY = sys.executable
STEP_TIMEOUT_S = 3600
#: --reuse: take a step's result from its saved ``<name>.run.json`` instead of running it again
REUSE = False


class Step:
    """One benchmark subprocess: its command, exit code, output and JSON result."""

    def __init__(self, name: str, cmd: list[str], json_out: Path | None) -> None:
        self.name = name
        self.cmd = cmd
        self.json_out = json_out
        self.rc: int | None = None
        self.seconds = 0.0
        self.stdout = ""
        self.stderr = ""
        self.data: Any = None
        self.missing: str | None = None
        self.reused: str | None = None

    @property
    def meta(self) -> Path | None:
        """Where the step's exit code, time and output are saved (beside its JSON)."""
        return None if self.json_out is None else self.json_out.parent / f"{self.name}.run.json"

    def reusable(self) -> bool:
        return bool(REUSE and self.meta is not None and self.meta.is_file())

    def run(self) -> Step:
        if self.reusable() and self.meta is not None:
            saved = json.loads(self.meta.read_text())
            self.rc, self.seconds = saved["rc"], saved["seconds"]
            self.stdout, self.stderr = saved["stdout"], saved["stderr"]
            self.reused = saved.get("date", "an earlier run")
            self._load_json()
            print(f"[report] {self.name}: reused the result of {self.reused}", flush=True)
            return self
        print(f"[report] {self.name}: {shlex.join(self.display_cmd())}", flush=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                self.cmd,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=STEP_TIMEOUT_S,
                check=False,
            )
            self.rc, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            self.rc = -1
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            self.stderr = f"timed out after {STEP_TIMEOUT_S} s\n{err}"
        self.seconds = time.perf_counter() - t0
        self._load_json()
        if self.meta is not None:
            self.meta.write_text(
                json.dumps(
                    {
                        "rc": self.rc,
                        "seconds": self.seconds,
                        "stdout": self.stdout[-20000:],
                        "stderr": self.stderr[-5000:],
                        "cmd": self.display_cmd(),
                        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    },
                    indent=1,
                )
                + "\n"
            )
        print(f"[report] {self.name}: exit {self.rc} in {self.seconds:.0f} s", flush=True)
        return self

    def _load_json(self) -> None:
        if self.json_out is not None and self.json_out.is_file():
            try:
                self.data = json.loads(self.json_out.read_text())
            except json.JSONDecodeError as exc:
                self.stderr += f"\n[report] bad JSON in {self.json_out}: {exc}"

    def display_cmd(self) -> list[str]:
        return [
            "python" if c == PY else os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c
            for c in self.cmd
        ]

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.missing is None


def script_step(name: str, script: str, out: Path, extra: list[str] | None = None) -> Step:
    path = ROOT / "benchmarks" / script
    json_out = out / f"{name}.json"
    step = Step(name, [PY, str(path), "--json", str(json_out), *(extra or [])], json_out)
    if not path.is_file():
        step.missing = f"benchmarks/{script} does not exist (yet): not measured"
        print(f"[report] {name}: {step.missing}", flush=True)
        return step
    if json_out.exists() and not step.reusable():
        json_out.unlink()
    return step.run()


@dataclass
class Results:
    """What the steps produced, for the plots and the markdown."""

    steps: dict[str, Step]
    pairs_file: Path
    pairs_steps: list[Step]
    enrol: Step | None
    unlink: Step | None
    single: Step | None
    search: dict[str, Any] | None
    pair: Step | None = None

    @property
    def enrol_rows(self) -> list[dict[str, Any]]:
        """The enrolment experiment's rows (none when it was skipped or produced nothing)."""
        enrol = self.enrol
        return list(enrol.data.get("rows", [])) if enrol and enrol.data else []


def run_steps(args: argparse.Namespace, out: Path) -> Results:
    """Run (or, with --reuse, re-use) every step not in ``args.skip``, in the report's order."""
    global REUSE  # noqa: PLW0603 - one flag for the whole run, set once from the CLI
    REUSE = bool(args.reuse)
    lfw = (args.shared / "faces" / "lfw-dev").resolve()
    pairs_file = (args.pairs or lfw / "pairsDevTrain.txt").resolve()
    images = (args.images or lfw / "images").resolve()
    enrol_data = (args.enrol_data or lfw / "images").resolve()
    steps: dict[str, Step] = {}
    for name, script in (
        ("face", "bench_face.py"),
        ("loop", "bench_loop.py"),
        ("outbox", "bench_outbox.py"),
        ("stereo", "bench_stereo.py"),
        ("roster", "bench_roster.py"),
    ):
        if name in args.skip:
            continue
        steps[name] = script_step(name, script, out)
        if name == "loop" and steps[name].rc not in (0, None) and "--json" in steps[name].stderr:
            # the lead's loop benchmark may not take --json: run it plainly
            s = Step(name, [PY, str(ROOT / "benchmarks" / script)], None)
            steps[name] = s.run()
        if name == "loop" and "loop-gpio" not in args.skip:
            steps["loop-gpio"] = script_step("loop-gpio", script, out, ["--relay", "gpio"])
    pairs_steps: list[Step] = []
    if "pairs" not in args.skip and pairs_file.is_file():
        runs = (
            ("gateway", ["--pipeline", "gateway"]),
            ("gateway-nogate", ["--pipeline", "gateway", "--no-quality-gate"]),
            ("opencv", ["--pipeline", "opencv"]),
        )
        for tag, opts in runs:
            j = out / f"pairs_{tag}.json"
            cmd = [PY, "-m", "gateway.eval", "eval", "pairs", str(pairs_file), str(images)]
            cmd += [*opts, "--face", "centre", "--json", str(j)]
            step = Step(f"pairs-{tag}", cmd, j)
            if j.exists() and not step.reusable():
                j.unlink()
            pairs_steps.append(step.run())
    enrol: Step | None = None
    if "enrolment" not in args.skip:
        enrol = script_step("enrolment", "eval_enrolment.py", out, ["--data", str(enrol_data)])
    unlink: Step | None = None
    if "unlinkability" not in args.skip:
        data_arg = ["--data", str(enrol_data)]
        unlink = script_step("unlinkability", "eval_unlinkability.py", out, data_arg)
    single: Step | None = None
    if "single-frame" not in args.skip:
        single = script_step(
            "single-frame", "eval_single_frame.py", out, ["--data", str(enrol_data)]
        )
    pair: Step | None = None
    if "pair-frames" not in args.skip:
        pair = script_step("pair-frames", "eval_pair_frames.py", out, ["--data", str(enrol_data)])
    search = None
    if "search" not in args.skip:
        if REUSE and (out / "search.json").is_file():
            search = json.loads((out / "search.json").read_text())
            print("[report] search: reused search.json", flush=True)
        else:
            search = search_scaling(tuple(int(x) for x in args.search_sizes.split(",")))
            (out / "search.json").write_text(json.dumps(search, indent=2) + "\n")
    return Results(steps, pairs_file, pairs_steps, enrol, unlink, single, search, pair)
